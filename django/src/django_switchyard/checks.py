"""System checks: say at startup what would otherwise fail quietly at run time.

switchyard.W001  no backend secret: every command and hook call will be refused.
switchyard.E002  SECURE_PROXY_SSL_HEADER names a header Switchyard does not set, so a
                 browser can send it and make a plain-HTTP request look secure.
switchyard.W003  (--deploy) SECURE_PROXY_SSL_HEADER is unset: behind a TLS-terminating
                 Switchyard, request.is_secure() is False and HTTPS origins fail CSRF.
switchyard.W004  USE_X_FORWARDED_PORT is on, but Switchyard does not set the header,
                 so a browser's value reaches Django.
switchyard.W005  (--deploy) USE_X_FORWARDED_HOST is off: Django builds absolute URLs from
                 Host, which is right only when nothing in front of Switchyard rewrites it.
switchyard.W006  the http transport has no SWITCHYARD_ADMIN_URL or SWITCHYARD_ADMIN_KEY:
                 events are logged and dropped (`manage.py switchyard run` sets both).
switchyard.E006  SWITCHYARD_TRANSPORT cannot work (an unknown name, postgres on another
                 database).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf

# What Switchyard sets on every request it forwards (replacing a browser's own).
FORWARDED_PROTO_META = "HTTP_X_FORWARDED_PROTO"


def check_secret(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        secrets = conf.get().backend_secrets
    except ImproperlyConfigured:
        return []  # check_transport reports the broken setting
    if secrets:
        return []
    return [
        checks.Warning(
            "No Switchyard backend secret: every command and hook call will be refused.",
            hint=f"Set the {conf.SECRET_ENV} environment variable (or setting) to the "
            "secret Switchyard's [backends] secret_env names.",
            id="switchyard.W001",
        )
    ]


def check_proxy_ssl_header(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not header or header[0] == FORWARDED_PROTO_META:
        return []
    return [
        checks.Error(
            f"SECURE_PROXY_SSL_HEADER names {header[0]}, which Switchyard passes through from the browser.",
            hint='Switchyard sets X-Forwarded-Proto: use ("HTTP_X_FORWARDED_PROTO", "https").',
            id="switchyard.E002",
        )
    ]


def check_proxy_ssl_header_set(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        return []
    return [
        checks.Warning(
            "SECURE_PROXY_SSL_HEADER is unset: behind a TLS-terminating Switchyard, Django "
            "sees every request as plain HTTP (request.is_secure() is False).",
            hint='Set SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https"); '
            "Switchyard replaces that header on every request it forwards.",
            id="switchyard.W003",
        )
    ]


def check_forwarded_port(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if not getattr(settings, "USE_X_FORWARDED_PORT", False):
        return []
    return [
        checks.Warning(
            "USE_X_FORWARDED_PORT is on, but Switchyard does not set X-Forwarded-Port: a browser's value reaches Django.",
            hint="Turn USE_X_FORWARDED_PORT off; Switchyard keeps the browser's Host, port included.",
            id="switchyard.W004",
        )
    ]


def check_forwarded_host(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if getattr(settings, "USE_X_FORWARDED_HOST", False):
        return []
    return [
        checks.Warning(
            "USE_X_FORWARDED_HOST is off: Django uses Host, which is right only when no load "
            "balancer in front of Switchyard rewrites it.",
            hint="Switchyard sets X-Forwarded-Host (believed only from [server] trusted_proxies): "
            "USE_X_FORWARDED_HOST = True is safe behind it.",
            id="switchyard.W005",
        )
    ]


def check_transport(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        current = conf.get()
    except ImproperlyConfigured as broken:
        return [checks.Error(str(broken), id="switchyard.E006")]
    kind = current.resolved_transport()
    if kind == "http" and not current.admin_url:
        return [
            checks.Warning(
                "SWITCHYARD_ADMIN_URL is not set: events have nowhere to go (the http transport).",
                hint='Set it to Switchyard\'s [admin] listen address, e.g. "http://127.0.0.1:9090", '
                "and SWITCHYARD_ADMIN_KEY to its key.",
                id="switchyard.W006",
            )
        ]
    if kind == "http" and not current.admin_key:
        return [
            checks.Warning(
                "SWITCHYARD_ADMIN_KEY is not set: Switchyard refuses admin API calls without its key.",
                hint="Set it to the key Switchyard's [admin] key_env or key_file holds.",
                id="switchyard.W006",
            )
        ]
    if kind == "postgres":
        from django.db import connections

        if connections["default"].vendor != "postgresql":
            return [
                checks.Error(
                    "SWITCHYARD_TRANSPORT is 'postgres' but the default database is not PostgreSQL.",
                    hint='Use "http" (the admin API) on this database.',
                    id="switchyard.E006",
                )
            ]
    return []


ALWAYS = [check_secret, check_proxy_ssl_header, check_forwarded_port, check_transport]
DEPLOY = [check_proxy_ssl_header_set, check_forwarded_host]
