"""The sample project django-switchyard's tests run against: an ordinary Django site.

Environment:
    SWITCHYARD_TEST_DATABASE  "sqlite" (default) or a PostgreSQL URL
                              (postgres://user@host:port/db, the harness cluster)
"""

import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-switchyard-tests-secret-key-0123456789")
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_switchyard",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "project.urls"

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
    url = os.environ.get("SWITCHYARD_TEST_DATABASE", "sqlite")
    if url == "sqlite":
        # A file for `manage.py` runs (the end-to-end tests point this at their own);
        # pytest-django's test database is SQLite's in-memory one.
        name = os.environ.get("SWITCHYARD_TEST_SQLITE") or os.path.join(tempfile.gettempdir(), "switchyard-app.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    parts = urlsplit(url)
    # The harness's cluster listens on a unix socket: its host is a %-quoted folder,
    # which urlsplit's `hostname` would lower-case.
    host = unquote(parts.netloc.rpartition("@")[2])
    port = ""
    if not host.startswith("/") and ":" in host:
        host, _, port = host.rpartition(":")
    # One database per Django version, so the versions' test runs never meet; the
    # end-to-end tests name their own.
    name = os.environ.get("SWITCHYARD_TEST_PG_NAME") or f"switchyard_app_{django.VERSION[0]}{django.VERSION[1]}"
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": parts.username or "postgres",
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": port,
        "TEST": {"NAME": f"test_{name}"},
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast tests
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = True

SWITCHYARD_TRANSPORT = os.environ.get("SWITCHYARD_TRANSPORT", "memory")
