"""A Switchyard config derived from the Django settings (`manage.py switchyard --print-config`).

What Django already knows, Switchyard is told rather than asked again: the session
engine and cookie, the database, the user table and its columns (`AUTH_USER_MODEL`),
`AUTHENTICATION_BACKENDS`, the origins (`ALLOWED_HOSTS`, `CSRF_TRUSTED_ORIGINS`), the
commands and hooks registered with this app, a channel rule per `ModelEvents` class and
per authorizer, and `pushed_revocation = true` (this app reports every logout, password
change and deactivation). Secrets are never written: the config names environment
variables (`DJANGO_SECRET_KEY`, `DJANGO_SECRET_KEY_FALLBACKS`, `SWITCHYARD_BACKEND_SECRET`,
`SWITCHYARD_ADMIN_KEY`, and `DJANGO_DATABASE_URL` when the database has a password), which
`secret_environment()` fills for `manage.py switchyard run`.

Extra settings read here:

    SWITCHYARD_WEBSOCKET_PATH   the route the browser client opens; default "/ws/".
    SWITCHYARD_CHANNELS         more `[[channels]]` rules, as dicts with Switchyard's keys
                                (e.g. {"pattern": "news", "subscribe": "anyone",
                                "history": {"size": 100, "ttl": "10m"}}); the admin API
                                refuses events for channels no rule covers.
    WEBSOCKET_ACCEPT_ALL        `[websocket] accept_all` (django-websocket's setting).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models
from django.urls import NoReverseMatch, URLResolver, get_resolver, reverse
from django.urls.resolvers import RoutePattern
from django.utils.module_loading import import_string

from . import conf, events, registry, websocket

SECRET_KEY_ENV = "DJANGO_SECRET_KEY"
SECRET_KEY_FALLBACKS_ENV = "DJANGO_SECRET_KEY_FALLBACKS"
DATABASE_URL_ENV = "DJANGO_DATABASE_URL"
ADMIN_KEY_ENV = "SWITCHYARD_ADMIN_KEY"
BACKEND_SECRET_ENV = conf.SECRET_ENV
DEFAULT_WEBSOCKET_PATH = "/ws/"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9090"
# Django's own default for DEBUG with ALLOWED_HOSTS empty.
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]
# Django's default PostgreSQL socket folder (libpq's) when HOST is empty.
DEFAULT_PG_SOCKET_DIR = "/var/run/postgresql"

SESSION_ENGINES = {
    "django.contrib.sessions.backends.db": "db",
    "django.contrib.sessions.backends.cached_db": "cached_db",
    "django.contrib.sessions.backends.signed_cookies": "signed_cookies",
}


@dataclass
class Addresses:
    """Where things listen; the defaults suit `gunicorn -b 127.0.0.1:8001` behind it.

    listen    Switchyard's own HTTP address, what browsers reach
    upstream  where Django serves pages ("http://HOST:PORT" or "unix:/path")
    backend   the http:// base Switchyard calls command views and hooks at (an upstream
              on a unix socket needs a TCP one for these)
    admin     the admin listener Django publishes to (keep it private)
    """

    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:8000"])
    upstream: str = "http://127.0.0.1:8001"
    backend: str | None = None
    admin: str = DEFAULT_ADMIN_LISTEN

    @property
    def backend_base(self) -> str:
        base = self.backend or self.upstream
        if not base.startswith("http://"):
            raise ImproperlyConfigured(
                f"Switchyard calls command views over http://; give a TCP address for them (not {base!r})"
            )
        return base.rstrip("/")


# === TOML, written by hand: the few shapes a config needs ===


def toml_value(value: Any) -> str:
    """`value` as TOML: strings, integers, floats, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r} here")
        return repr(value)
    if isinstance(value, str):
        # json.dumps escapes quotes, backslashes and control characters as TOML wants;
        # ensure_ascii=False keeps other text readable (both are valid basic strings).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


class Writer:
    """Collects sections; `text()` joins them with a blank line between."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def section(self, header: str, values: Mapping[str, Any], comment: str = "") -> None:
        lines = [f"# {line}" for line in comment.splitlines()] if comment else []
        lines.append(header)
        lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items() if v is not None)
        self.parts.append("\n".join(lines))

    def text(self) -> str:
        return "\n\n".join(self.parts) + "\n"


# === what Django says ===


def session_engine() -> dict[str, Any]:
    """The `[django]` keys of SESSION_ENGINE (a subclass of a known store counts as it)."""
    engine = settings.SESSION_ENGINE
    if engine in SESSION_ENGINES:
        return {"session_engine": SESSION_ENGINES[engine]}
    store = import_string(f"{engine}.SessionStore")
    for known, name in SESSION_ENGINES.items():
        if issubclass(store, import_string(f"{known}.SessionStore")):
            keys: dict[str, Any] = {"session_engine": name, "session_store_class": store.__qualname__}
            model = getattr(store, "get_model_class", None)
            if name != "signed_cookies" and callable(model):
                keys["session_table"] = model()._meta.db_table
            return keys
    raise ImproperlyConfigured(
        f"Switchyard reads sessions stored by the db, cached_db or signed_cookies engines, not {engine!r}"
    )


def database(alias: str = "default") -> tuple[str, str | None]:
    """`[django] database` for database `alias`, and the URL with its password (for
    DJANGO_DATABASE_URL) when it has one."""
    return database_url(connections[alias].vendor, connections[alias].settings_dict)


def database_url(vendor: str, db: Mapping[str, Any]) -> tuple[str, str | None]:
    """The URL Switchyard reads a database of `vendor` at, as DATABASES[...] `db` describes it."""
    if vendor == "sqlite":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise ImproperlyConfigured("Switchyard reads the SQLite database from its file: an in-memory one cannot be shared")
        return "sqlite://" + str(Path(name).resolve()), None
    if vendor == "postgresql":
        host = str(db.get("HOST") or DEFAULT_PG_SOCKET_DIR)
        host = urllib.parse.quote(host, safe="") if host.startswith("/") else host
        port = f":{db['PORT']}" if db.get("PORT") else ""
        user = urllib.parse.quote(str(db.get("USER") or ""), safe="")
        name = urllib.parse.quote(str(db.get("NAME") or ""), safe="")
        at = f"{user}@" if user else ""
        url = f"postgres://{at}{host}{port}/{name}"
        password = db.get("PASSWORD")
        if password:
            secret = f"postgres://{user}:{urllib.parse.quote(str(password), safe='')}@{host}{port}/{name}"
            return url, secret
        return url, None
    raise ImproperlyConfigured(f"Switchyard reads Django's sessions from SQLite or PostgreSQL, not {vendor}")


def _column(model: type[models.Model], name: str) -> str:
    """The column of field `name`, or "" when the model has no such concrete field."""
    try:
        found = model._meta.get_field(name)
    except Exception:  # noqa: BLE001 - FieldDoesNotExist, or an attribute that is no field
        return ""
    return getattr(found, "column", None) or ""


def user_columns() -> dict[str, Any]:
    """The `[django]` keys describing AUTH_USER_MODEL's table."""
    model = get_user_model()
    pk = model._meta.pk
    assert pk is not None
    target = pk.target_field if isinstance(pk, models.OneToOneField) else pk
    if isinstance(target, models.UUIDField):
        pk_type = "uuid"
    elif isinstance(target, (models.AutoField, models.BigAutoField, models.SmallAutoField, models.IntegerField)):
        pk_type = "int"
    else:
        raise ImproperlyConfigured(f"Switchyard reads integer or UUID user keys, not {type(target).__name__}")
    username = _column(model, model.USERNAME_FIELD)
    return {
        "user_table": model._meta.db_table,
        "user_pk_column": pk.column,
        "user_pk_type": pk_type,
        "user_username_column": username,
        "user_password_column": _column(model, "password"),
        "user_is_active_column": _column(model, "is_active"),
        "user_is_staff_column": _column(model, "is_staff"),
        "user_is_superuser_column": _column(model, "is_superuser"),
    }


def origins(listen_ports: Iterable[int] = ()) -> list[str] | None:
    """The origins that may open sockets: ALLOWED_HOSTS (https, and http when not
    redirecting to https) and CSRF_TRUSTED_ORIGINS. None means Switchyard's default, the
    request's own scheme://host: when a host is "*", or nothing exact can be listed.

    Wildcards (".example.com", "https://*.example.com") cannot be written as origins;
    their exact domain is listed, subdomains are not.
    """
    hosts = list(settings.ALLOWED_HOSTS) or (DEBUG_HOSTS if settings.DEBUG else [])
    if "*" in hosts:
        return None
    schemes = ["https"] if getattr(settings, "SECURE_SSL_REDIRECT", False) else ["https", "http"]
    ports = [None, *listen_ports]
    found: list[str] = []
    for host in hosts:
        host = host.lstrip(".")
        if not host:
            continue
        for scheme in schemes:
            for port in ports:
                found.append(f"{scheme}://{host}" + (f":{port}" if port else ""))
    for origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", []):
        if "*" not in origin:
            found.append(origin)
    return list(dict.fromkeys(found)) or None


def _url(view: str, **kwargs: str) -> str | None:
    try:
        return reverse(view, kwargs=kwargs or None)
    except NoReverseMatch:
        return None


# === the config ===


def derive(addresses: Addresses | None = None, *, listen_ports: Iterable[int] = ()) -> str:
    """The config text. ImproperlyConfigured names what Switchyard cannot follow."""
    addresses = addresses or Addresses()
    out = Writer()
    out.section(
        "[server]",
        {"listen": addresses.listen},
        "Derived from the Django settings by `manage.py switchyard --print-config`.\n"
        f"Secrets come from the environment: {SECRET_KEY_ENV} (SECRET_KEY), {SECRET_KEY_FALLBACKS_ENV}\n"
        f"(SECRET_KEY_FALLBACKS as a JSON array), {BACKEND_SECRET_ENV}, {ADMIN_KEY_ENV}.",
    )
    out.section("[upstream]", {"url": addresses.upstream})
    out.section("[websocket]", {"accept_all": bool(getattr(settings, "WEBSOCKET_ACCEPT_ALL", False))})
    out.section(
        "[admin]",
        {"listen": addresses.admin, "key_env": ADMIN_KEY_ENV},
        "Where django-switchyard publishes (SWITCHYARD_ADMIN_URL = http://<this address>).",
    )
    url, secret_url = database()
    django_keys: dict[str, Any] = {
        "secret_key_env": SECRET_KEY_ENV,
        "secret_key_fallbacks_env": SECRET_KEY_FALLBACKS_ENV,
        **session_engine(),
    }
    if secret_url:
        django_keys["database_env"] = DATABASE_URL_ENV
    else:
        django_keys["database"] = url
    django_keys.update(
        {
            "session_cookie_name": settings.SESSION_COOKIE_NAME,
            "session_cookie_age": int(settings.SESSION_COOKIE_AGE),
            "authentication_backends": list(settings.AUTHENTICATION_BACKENDS),
            **user_columns(),
            "pushed_revocation": True,
        }
    )
    out.section(
        "[django]",
        django_keys,
        "Django's sessions and users, as settings.py has them. pushed_revocation: django-switchyard\n"
        "reports every logout, password change and deactivation (outbox row or admin API).",
    )
    out.section("[backends]", {"secret_env": BACKEND_SECRET_ENV})
    base = addresses.backend_base
    allowed = origins(listen_ports)
    # Before the client's route: the first matching route wins.
    for path, kind in websocket_views():
        out.section(
            "[[routes]]",
            {"path": path, "websocket": kind, "protocol": "view", "view": base + "{path}", "origins": allowed},
            "A view decorated with @%s_websocket: each message is posted to it." % kind,
        )
    route: dict[str, Any] = {
        "path": str(getattr(settings, "SWITCHYARD_WEBSOCKET_PATH", DEFAULT_WEBSOCKET_PATH)),
        "websocket": "require",
        "protocol": "json",
        "origins": allowed,
    }
    for kind in registry.hooks():
        hook_url = _url(f"django_switchyard:hook-{kind}")
        if hook_url:
            route[f"on_{kind}"] = base + hook_url
    out.section("[[routes]]", route, "The socket the browser client opens ({% switchyard_client %}).")
    _commands(out, base)
    _channels(out, base)
    return out.text()


def websocket_views() -> list[tuple[str, str]]:
    """(route path, "accept" | "require") for each URL of a view decorated with
    `@accept_websocket` / `@require_websocket`, in URLconf order. A URL with converters
    or a regex becomes a prefix route up to its first variable part ("/rooms/*")."""
    found: list[tuple[str, str]] = []

    def walk(patterns: Iterable[Any], prefix: str) -> None:
        for entry in patterns:
            route = prefix if prefix.endswith("*") else prefix + _literal(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
                continue
            kind = getattr(entry.callback, websocket.MARK, None)
            if kind is not None:
                found.append(("/" + route, kind))

    walk(get_resolver().url_patterns, "")
    return found


def _literal(pattern: Any) -> str:
    """The fixed start of a URL pattern; with a variable part, that start and "*"."""
    if isinstance(pattern, RoutePattern):
        text = str(pattern)
        cut = text.find("<")
    else:
        text = str(pattern.regex.pattern).lstrip("^").rstrip("$").replace("\\/", "/")
        cut = next((i for i, c in enumerate(text) if c in ".^$*+?{}[]\\|()"), -1)
    return text if cut < 0 else text[:cut] + "*"


def _commands(out: Writer, base: str) -> None:
    found = registry.commands()
    if not found:
        return
    path = _url("django_switchyard:command", name="NAME")
    if path is None:
        raise ImproperlyConfigured(
            'commands are registered but django_switchyard.urls is not mounted: add path("switchyard/", '
            'include("django_switchyard.urls")) to the URLconf'
        )
    url = base + path.replace("NAME", "{command}")
    for command in found:
        out.section(f"[commands.{toml_value(command.name)}]", {"backend": "http", "url": url, "auth": command.auth})


def _channels(out: Writer, base: str) -> None:
    rules: list[dict[str, Any]] = []
    for declared in events.declared():
        rules.append({"pattern": declared.default_channel(), "subscribe": declared.subscribe})
    # send_to_user-style personal channels (ModelEvents.channels() often routes there).
    rules.append({"pattern": "user:{user_id}", "subscribe": "authenticated"})
    authorize = _url("django_switchyard:authorize")
    for authorizer in registry.authorizers():
        if authorize is None:
            raise ImproperlyConfigured("authorizers are registered but django_switchyard.urls is not mounted")
        rules.append({"pattern": authorizer.pattern, "subscribe": "backend", "authorize": base + authorize})
    extra = getattr(settings, "SWITCHYARD_CHANNELS", [])
    if not isinstance(extra, (list, tuple)) or not all(isinstance(r, Mapping) and "pattern" in r for r in extra):
        raise ImproperlyConfigured('SWITCHYARD_CHANNELS must be a list of dicts, each with a "pattern"')
    # The project's own rules first: the first matching rule wins in Switchyard.
    for rule in [*extra, *rules]:
        out.section("[[channels]]", dict(rule))


def secret_environment() -> dict[str, str]:
    """The environment variables the derived config names, filled from the settings."""
    env = {
        SECRET_KEY_ENV: settings.SECRET_KEY,
        SECRET_KEY_FALLBACKS_ENV: json.dumps(list(getattr(settings, "SECRET_KEY_FALLBACKS", []))),
    }
    _, secret_url = database()
    if secret_url:
        env[DATABASE_URL_ENV] = secret_url
    return env
