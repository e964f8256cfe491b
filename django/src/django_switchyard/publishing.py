"""The publishing API: `publish`, `send_to_user`, `broadcast`, `disconnect`, `position`.

Every call encodes its data at once with `DjangoJSONEncoder` (dates, decimals, UUIDs;
anything else raises TypeError here, in the caller's code) and hands it to the
transport, which sends it only when the current transaction on `using` commits:
rolled-back work is never seen. Outside a transaction it leaves at once. A Switchyard
that cannot be reached is logged, never raised into the request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS

from . import transports
from .exceptions import PublishError
from .transports import Position

logger = logging.getLogger("django_switchyard")

# Channel and event names travel in every frame; a longer one is a mistake, not a name.
MAX_NAME = 200


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise ValueError(f"{what} must be a non-empty string of at most {MAX_NAME} characters, not {value!r}")
    return value


def _user_id(user: Any) -> str:
    """A user instance, or its primary key, as the string Switchyard addresses users by."""
    pk = getattr(user, "pk", user)
    if pk is None or isinstance(pk, bool) or (isinstance(pk, str) and not pk):
        raise ValueError(f"not a saved user or a primary key: {user!r}")
    return str(pk)


def encode(item: dict[str, Any]) -> str:
    """One admin API item as JSON text, with Django's encoder."""
    return json.dumps(item, cls=DjangoJSONEncoder, separators=(",", ":"), allow_nan=False)


def _send(items: list[dict[str, Any]], using: str | None) -> None:
    alias = using or DEFAULT_DB_ALIAS
    messages = [encode(item) for item in items]
    try:
        transport = transports.get(alias)
    except PublishError as failure:
        logger.error("cannot publish: %s", failure)
        return
    transport.publish(messages, alias)


def publish(channel: str, event: str, data: Any = None, *, using: str | None = None) -> None:
    """Deliver `event` with `data` to every socket subscribed to `channel`, on commit.

    Channel events get an offset and are kept in the channel's history (when its rule
    has one), so a client that reconnects receives what it missed.
    """
    _send([{"channel": _name(channel, "channel"), "event": _name(event, "event"), "data": data}], using)


def send_to_user(user: Any, event: str, data: Any = None, *, using: str | None = None) -> None:
    """Deliver `event` to every socket of `user` (an instance or a primary key), on commit.

    Not recoverable: a socket that is not open at that moment never sees it. Use a
    personal channel (`user:{user_id}`) for events that must not be missed.
    """
    _send([{"user": _user_id(user), "event": _name(event, "event"), "data": data}], using)


def broadcast(event: str, data: Any = None, *, using: str | None = None) -> None:
    """Deliver `event` to every open socket, on commit. Not recoverable."""
    _send([{"broadcast": True, "event": _name(event, "event"), "data": data}], using)


def disconnect(*, user: Any = None, session_key: str | None = None, using: str | None = None) -> None:
    """Close the sockets of `user` (instance or pk), or of one session, with 4401, on commit.

    Switchyard also drops what it cached about them, so the next handshake reads the
    session afresh. Exactly one of `user` and `session_key` is given.
    """
    if (user is None) == (session_key is None):
        raise ValueError("disconnect() takes exactly one of user= and session_key=")
    if user is not None:
        item: dict[str, Any] = {"user": _user_id(user)}
    else:
        item = {"session_key": _name(session_key, "session_key")}
    alias = using or DEFAULT_DB_ALIAS
    try:
        transport = transports.get(alias)
    except PublishError as failure:
        logger.error("cannot send a disconnect: %s", failure)
        return
    transport.disconnect(encode(item), alias)


def position(channel: str, *, using: str | None = None) -> Position | None:
    """Where `channel` stands now, read before the page's own queries, or None.

    Give it to the page (`{% switchyard_position %}`): the first subscribe with it as
    `since` recovers every event published after this call. None when Switchyard
    cannot say (not running, the channel has no history); the page then subscribes
    without `since` and sees live events only.
    """
    try:
        transport = transports.get(using or DEFAULT_DB_ALIAS)
    except PublishError as failure:
        logger.warning("no position for channel %r: %s", channel, failure)
        return None
    return transport.position(_name(channel, "channel"))
