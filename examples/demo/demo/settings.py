"""Settings for the Switchyard demo site.

The site runs behind Switchyard, which terminates TLS and sets X-Forwarded-Proto and
X-Forwarded-Host, so Django is told to believe those two headers. Browsers reach gunicorn
only through Switchyard (a unix socket); Switchyard's command calls come in on a loopback
TCP port, since backend URLs are http://HOST:PORT. Any local process can reach that port
and forge those headers: fine for a demo on your own machine, not for a shared host.

Environment:
    DJANGO_SECRET_KEY  the signing key (a fixed dev key when unset: never deploy that)
    DJANGO_DEBUG       "1" (default) for debug pages, "0" for production-like errors
    DEMO_DB            path of the SQLite database (default: db.sqlite3 beside manage.py)
    DEMO_DATABASE_URL  postgres://USER@HOST[:PORT]/NAME (HOST may be a %-quoted socket
                       folder) to run on PostgreSQL instead: django-switchyard then writes
                       events to the outbox table, and Switchyard's broker is PostgreSQL's
    SWITCHYARD_BACKEND_SECRET  the secret Switchyard signs command and hook calls with
                       (read by django-switchyard; unset, every such call is refused)
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

# A dev default keeps `scripts/demo` zero-config. Switchyard's session bridge verifies
# session data with this same key, so when you set one here, set it there too.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "switchyard-demo-insecure-dev-key-do-not-deploy-4f9c2a"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "site_pages",
    "django_switchyard",
    "live",
    "workspace",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database():
    url = os.environ.get("DEMO_DATABASE_URL")
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DEMO_DB") or BASE_DIR / "db.sqlite3"}
    parts = urlsplit(url)
    # urlsplit's `hostname` would lower-case a socket folder: take the text after "@".
    host = unquote(parts.netloc.rpartition("@")[2])
    port = ""
    if not host.startswith("/") and ":" in host:
        host, _, port = host.rpartition(":")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": port,
    }


DATABASES = {"default": _database()}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sessions stay in the database (Django's default `db` engine): Switchyard reads the
# django_session and auth_user tables of this SQLite file to know who a socket belongs to.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "workspace"
LOGOUT_REDIRECT_URL = "home"

# Switchyard is the only thing in front of gunicorn and always sets these two headers
# (replacing whatever the browser sent), so Django may trust them.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = True

# The demo's two listeners. Same-origin POSTs pass without this list when the proxy's
# forwarded headers are right; the list keeps the demo usable while they are not.
CSRF_TRUSTED_ORIGINS = [
    "https://localhost:8443",
    "https://127.0.0.1:8443",
    "http://localhost:8080",
    "http://127.0.0.1:8080",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# The admin's CSS and JS, served by Django itself while DEBUG is on (demo/urls.py).
STATIC_URL = "static/"

# The workspace's channels: the board's tasks, chat rooms with presence, and each user's
# notifications, all kept for ten minutes so a page that was reconnecting gets what it
# missed (the first rule that matches wins, so these come before the one TaskEvents declares).
SWITCHYARD_CHANNELS = [
    # The board's channel (TaskEvents) with a history: on PostgreSQL a page that was
    # reconnecting replays what it missed from the outbox instead of reloading the board.
    {"pattern": "model:workspace.Task", "subscribe": "authenticated", "history": {"size": 500, "ttl": "10m"}},
    {"pattern": "room:*", "subscribe": "authenticated", "presence": True, "history": {"size": 200, "ttl": "10m"}},
    {"pattern": "user:{user_id}", "subscribe": "authenticated", "history": {"size": 50, "ttl": "10m"}},
]
