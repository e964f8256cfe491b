"""One call from Switchyard, as its signed body says: what `request.switchyard` is.

The body (DESIGN.md, "Command backends"): `command`, `args`, `connection` (`id`, `path`,
`query`, `state`), `user` (`id`, `username`, `is_staff`, `is_superuser`) or null, and for
hooks a per-user `seq`. Reading it is the second step of every signed view, after the
signature (`signing.verify`) and before any code of the project runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, QueryDict

from . import conf, signing
from .exceptions import BadCall


@dataclass(frozen=True)
class Call:
    """One signed call from Switchyard, available as `request.switchyard` in its view.

    command     the command's name, "$connect" / "$disconnect" for hooks, "$authorize"
                for a channel authorization, "$message" for a websocket view's message
    args        the client's argument, any JSON value (None for hooks)
    connection  {"id", "path", "query", "state"} of the socket the call comes from
    user        {"id", "username", "is_staff", "is_superuser"} as Switchyard resolved
                the session, or None; `request.user` is the same user when the
                browser's cookie is forwarded (the default)
    seq         the per-user sequence number of a hook call, else None
    """

    command: str
    args: Any = None
    connection: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] | None = None
    seq: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def connection_id(self) -> str | None:
        """The socket's id (the `connection` of its welcome), for pushes back to it."""
        value = self.connection.get("id")
        return str(value) if value is not None else None

    @property
    def path(self) -> str:
        """The socket's URL path: which route it came in on."""
        value = self.connection.get("path")
        return value if isinstance(value, str) else ""

    @property
    def route(self) -> str:
        """Another name for `path`."""
        return self.path

    @property
    def state(self) -> dict[str, Any]:
        """The connection's state, always a dict (empty until something sets it)."""
        state = self.connection.get("state")
        return state if isinstance(state, dict) else {}

    @property
    def query(self) -> QueryDict:
        """The socket URL's query string as a QueryDict."""
        query = self.connection.get("query")
        return QueryDict(query if isinstance(query, str) else "")

    @property
    def user_id(self) -> str | None:
        """The user's primary key as Switchyard sent it (a string), or None."""
        if self.user is None or self.user.get("id") is None:
            return None
        return str(self.user["id"])

    @property
    def is_authenticated(self) -> bool:
        """True when Switchyard resolved a user for the socket."""
        return self.user_id is not None


def verify(request: HttpRequest) -> None:
    """Raise SignatureError unless `request` carries a good `X-Switchyard-Signature`."""
    settings = conf.get()
    signing.verify(
        request.headers.get(signing.HEADER),
        request.body,
        settings.backend_secrets,
        settings.signature_max_age,
    )


def parse(body: bytes) -> Call:
    """The call in `body`, or BadCall naming what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BadCall(f"body is not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        raise BadCall("body must be an object with a string 'command'")
    connection = data.get("connection")
    connection = {} if connection is None else connection
    user = data.get("user")
    seq = data.get("seq")
    if not isinstance(connection, dict):
        raise BadCall("'connection' must be an object")
    if not (user is None or isinstance(user, dict)):
        raise BadCall("'user' must be an object or null")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise BadCall("'seq' must be an integer")
    return Call(data["command"], data.get("args"), connection, user, seq, data)
