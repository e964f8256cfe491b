"""The settings django-switchyard reads: one accessor, read lazily, reset on `setting_changed`.

Every setting may also come from the environment variable of the same name, so
`manage.py switchyard run` (and a deployment's unit file) can hand them to Django without
editing settings.py. A setting wins over the environment.

    SWITCHYARD_TRANSPORT        how events leave Django: "auto" (the default: "postgres"
                                when the database is PostgreSQL, else "http"),
                                "postgres" (an outbox row inside the transaction; its
                                trigger notifies Switchyard on commit; needs the
                                app's migration and `[broker] kind = "postgres"`),
                                "http" (the admin API, after commit), or
                                "memory" (kept in `django_switchyard.testing.outbox`).
    SWITCHYARD_ADMIN_URL        the admin listener, e.g. "http://127.0.0.1:9090".
    SWITCHYARD_ADMIN_KEY        its bearer key (Switchyard's `[admin] key_env`).
    SWITCHYARD_BACKEND_SECRET   the HMAC secret Switchyard signs its calls with
                                (its `[backends] secret_env`).
    SWITCHYARD_BACKEND_SECRET_FALLBACKS
                                older secrets still accepted while rotating, like
                                Django's SECRET_KEY_FALLBACKS. Default: [].
    SWITCHYARD_SIGNATURE_MAX_AGE
                                seconds a signature stays valid, either way from now.
                                Default: 300, as Switchyard expects.
    SWITCHYARD_BINARY           the switchyard executable; default: looked up on PATH.
    SWITCHYARD_CLIENT_URL       where the browser client is served. Default:
                                "/_switchyard/client.js" (Switchyard serves it there).
    SWITCHYARD_PUBLISH_TIMEOUT  seconds one admin API call may take. Default: 2.
    SWITCHYARD_PUBLISH_RETRIES  further tries of an admin API call that failed to
                                connect or got a 5xx. Default: 2.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

TRANSPORTS = ("auto", "http", "postgres", "memory")
# Switchyard signs each call just before sending it, so five minutes covers clock skew
# between hosts while keeping the replay window short.
DEFAULT_SIGNATURE_MAX_AGE = 300
# An admin API call is one small POST on a private address: two seconds is a stuck node.
DEFAULT_PUBLISH_TIMEOUT = 2.0
# A node restarting takes a moment; two more tries cover it without holding a request long.
DEFAULT_PUBLISH_RETRIES = 2
DEFAULT_CLIENT_URL = "/_switchyard/client.js"
SECRET_ENV = "SWITCHYARD_BACKEND_SECRET"


@dataclass(frozen=True)
class SwitchyardSettings:
    """The resolved settings; build with `get()`, never by hand outside tests."""

    transport: str
    admin_url: str
    admin_key: str
    backend_secrets: tuple[str, ...]
    signature_max_age: int
    binary: str
    client_url: str
    publish_timeout: float
    publish_retries: int

    def resolved_transport(self, using: str = "default") -> str:
        """The transport `auto` stands for on database `using` (never "auto")."""
        if self.transport != "auto":
            return self.transport
        from django.db import connections

        return "postgres" if connections[using].vendor == "postgresql" else "http"


def _raw(name: str, default: Any) -> Any:
    """The setting `name`, else its environment variable, else `default`."""
    if hasattr(settings, name):
        return getattr(settings, name)
    if name in os.environ:
        return os.environ[name]
    return default


def _fallbacks(value: Any) -> list[str]:
    """SECRET_FALLBACKS as a list; from the environment it is a JSON array."""
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except ValueError:
            raise ImproperlyConfigured(
                "SWITCHYARD_BACKEND_SECRET_FALLBACKS from the environment must be a JSON array of strings"
            ) from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ImproperlyConfigured("SWITCHYARD_BACKEND_SECRET_FALLBACKS must be a list of strings")
    return list(value)


def _number(name: str, default: float, kind: type) -> Any:
    value = _raw(name, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < 0:
        raise ImproperlyConfigured(f"{name} must not be negative, not {value!r}")
    return number


@functools.lru_cache(maxsize=1)
def get() -> SwitchyardSettings:
    """The current settings, read once and cached until a setting changes (`reset`)."""
    transport = str(_raw("SWITCHYARD_TRANSPORT", "auto")).strip().lower()
    if transport not in TRANSPORTS:
        raise ImproperlyConfigured(f"SWITCHYARD_TRANSPORT must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    current = _raw("SWITCHYARD_BACKEND_SECRET", "") or ""
    secrets = tuple(s for s in [str(current), *_fallbacks(_raw("SWITCHYARD_BACKEND_SECRET_FALLBACKS", []))] if s)
    return SwitchyardSettings(
        transport=transport,
        admin_url=str(_raw("SWITCHYARD_ADMIN_URL", "") or "").rstrip("/"),
        admin_key=str(_raw("SWITCHYARD_ADMIN_KEY", "") or ""),
        backend_secrets=secrets,
        signature_max_age=_number("SWITCHYARD_SIGNATURE_MAX_AGE", DEFAULT_SIGNATURE_MAX_AGE, int),
        binary=str(_raw("SWITCHYARD_BINARY", "") or ""),
        client_url=str(_raw("SWITCHYARD_CLIENT_URL", DEFAULT_CLIENT_URL) or ""),
        publish_timeout=_number("SWITCHYARD_PUBLISH_TIMEOUT", DEFAULT_PUBLISH_TIMEOUT, float),
        publish_retries=_number("SWITCHYARD_PUBLISH_RETRIES", DEFAULT_PUBLISH_RETRIES, int),
    )


def reset(**kwargs: Any) -> None:
    """Forget the cached settings; connected to `setting_changed` by the app's `ready()`.

    Call it yourself after changing the environment in a test.
    """
    setting = kwargs.get("setting")
    if setting is None or setting.startswith("SWITCHYARD_") or setting == "DATABASES":
        get.cache_clear()
        from . import transports

        transports.reset()
