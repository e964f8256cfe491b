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
import re
import unicodedata
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS

from . import transports
from .exceptions import PublishError
from .outbox import Row
from .transports import Position

logger = logging.getLogger("django_switchyard")

# What Switchyard takes (its admin API and the outbox table check the same): a channel name
# is 1-255 bytes of UTF-8 without whitespace or control characters, an event name 1-128
# bytes, an id (user pk, session key) 1-255 bytes.
MAX_CHANNEL = 255
MAX_EVENT = 128
MAX_ID = 255
# An event's data as JSON text: the outbox table's limit, kept on every transport.
MAX_DATA = 1 << 20
# Arrays and objects nested deeper than this are refused: Switchyard's JSON reader stops at
# 128 levels, and the item around the data takes a few.
MAX_DEPTH = 100

# A JSON string (to skip when counting brackets).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _utf8_length(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate): {value!r}") from None
    if size > limit:
        raise ValueError(f"{what} must be at most {limit} bytes of UTF-8, not {size}: {value[:80]!r}...")
    return value


def _channel(value: Any) -> str:
    name = _utf8_length(value, "channel", MAX_CHANNEL)
    bad = next((c for c in name if c.isspace() or unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise ValueError(f"channel must hold no whitespace or control characters ({bad!r} in {name!r})")
    return name


def _event(value: Any) -> str:
    return _utf8_length(value, "event", MAX_EVENT)


def _user_id(user: Any) -> str:
    """A user instance, or its primary key, as the string Switchyard addresses users by."""
    pk = getattr(user, "pk", user)
    if pk is None or isinstance(pk, bool) or (isinstance(pk, str) and not pk):
        raise ValueError(f"not a saved user or a primary key: {user!r}")
    return _utf8_length(str(pk), "user id", MAX_ID)


def encode(data: Any) -> str:
    """`data` as JSON text with Django's encoder: dates, decimals, UUIDs. Raises in the
    caller what Switchyard could not take: TypeError for what JSON cannot hold, ValueError
    for NaN, lone surrogates, more than MAX_DATA bytes or MAX_DEPTH levels."""
    text = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("the data holds a lone surrogate, which is not Unicode text") from None
    if size > MAX_DATA:
        raise ValueError(f"the data is {size} bytes as JSON; Switchyard takes at most {MAX_DATA}")
    if len(text) > 2 * MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise ValueError(f"the data nests arrays and objects more than {MAX_DEPTH} levels deep")
    return text


def _depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON `text`."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _send(rows: list[Row], using: str | None) -> None:
    """Hands `rows` (pushes, or one revocation) to the transport of database `using`; a
    transport that cannot be built is logged, never raised."""
    alias = using or DEFAULT_DB_ALIAS
    try:
        transport = transports.get(alias)
    except PublishError as failure:
        logger.error("cannot publish: %s", failure)
        return
    if rows[0].kind.startswith("revoke_"):
        transport.disconnect(rows[0], alias)
    else:
        transport.publish(rows, alias)


def publish(channel: str, event: str, data: Any = None, *, using: str | None = None) -> None:
    """Deliver `event` with `data` to every socket subscribed to `channel`, on commit.

    Channel events get an offset and are kept in the channel's history (when its rule
    has one), so a client that reconnects receives what it missed.
    """
    _send([Row("channel", channel=_channel(channel), event=_event(event), data=encode(data))], using)


def send_to_user(user: Any, event: str, data: Any = None, *, using: str | None = None) -> None:
    """Deliver `event` to every socket of `user` (an instance or a primary key), on commit.

    Not recoverable: a socket that is not open at that moment never sees it. Use a
    personal channel (`user:{user_id}`) for events that must not be missed.
    """
    _send([Row("users", ids=(_user_id(user),), event=_event(event), data=encode(data))], using)


def broadcast(event: str, data: Any = None, *, using: str | None = None) -> None:
    """Deliver `event` to every open socket, on commit. Not recoverable."""
    _send([Row("broadcast", event=_event(event), data=encode(data))], using)


def disconnect(*, user: Any = None, session_key: str | None = None, using: str | None = None) -> None:
    """Close the sockets of `user` (instance or pk), or of one session, with 4401, on commit.

    Switchyard also drops what it cached about them, so the next handshake reads the
    session afresh. Exactly one of `user` and `session_key` is given.
    """
    if (user is None) == (session_key is None):
        raise ValueError("disconnect() takes exactly one of user= and session_key=")
    if user is not None:
        row = Row("revoke_user", ids=(_user_id(user),))
    else:
        row = Row("revoke_session", ids=(_utf8_length(session_key, "session_key", MAX_ID),))
    _send([row], using)


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
    return transport.position(_channel(channel))
