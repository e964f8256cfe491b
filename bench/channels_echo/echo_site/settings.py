"""Settings of the Channels yardstick. Environment (scripts/bench-ws and bench-hub set them):

DJANGO_SECRET_KEY  the key sessions are signed with (Switchyard gets the same one)
BENCH_DB           the SQLite file with the users and sessions
BENCH_LAYER        the channel layer: "memory" (default, one process) or "redis"
BENCH_REDIS        channels_redis's host for "redis", e.g. unix:///tmp/redis.sock
"""

import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "daphne",
    "channels",
    "echo_site",
]

ROOT_URLCONF = "echo_site.urls"
ASGI_APPLICATION = "echo_site.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BENCH_DB"],
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
USE_TZ = True

# Capacity: messages waiting per consumer before group_send drops them (default 100).
if os.environ.get("BENCH_LAYER", "memory") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["BENCH_REDIS"]], "capacity": 1000},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }
