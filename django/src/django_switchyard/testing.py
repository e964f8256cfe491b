"""Test helpers for a project that uses django-switchyard, like `django.core.mail.outbox`.

With `SWITCHYARD_TRANSPORT = "memory"` (in test settings, or `capture()` around a
block), every event that would have reached Switchyard is appended to `outbox` when its
transaction commits, and every disconnect to `disconnects`:

    from django_switchyard import testing

    def test_a_new_order_is_announced(django_capture_on_commit_callbacks):
        with testing.capture() as events, django_capture_on_commit_callbacks(execute=True):
            Order.objects.create(total=10)
        assert [(e.channel, e.event) for e in events] == [("model:shop.Order", "created")]

Inside Django's `TestCase` nothing commits: use `captureOnCommitCallbacks(execute=True)`
(pytest-django: `django_capture_on_commit_callbacks`) or a `TransactionTestCase`.

`call_body` and `post_signed` play Switchyard against your command views.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.test import Client, override_settings
from django.test.client import ClientMixin

from . import signing
from .transports import Position


@dataclass(frozen=True)
class Event:
    """One published event as Switchyard would have received it (data after JSON)."""

    event: str
    data: Any
    channel: str | None = None
    user: str | None = None
    broadcast: bool = False
    item: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_message(cls, message: str) -> Event:
        item = json.loads(message)
        return cls(
            event=item["event"],
            data=item.get("data"),
            channel=item.get("channel"),
            user=item.get("user"),
            broadcast=bool(item.get("broadcast", False)),
            item=item,
        )


outbox: list[Event] = []
disconnects: list[dict[str, Any]] = []


def position(channel: str) -> Position:
    """The memory transport's position: how many events `channel` had, epoch "memory"."""
    return Position(channel, sum(1 for e in outbox if e.channel == channel), "memory")


def clear() -> None:
    """Empty `outbox` and `disconnects`."""
    outbox.clear()
    disconnects.clear()


@contextmanager
def capture() -> Iterator[list[Event]]:
    """Use the memory transport inside the block; yields the (emptied) outbox."""
    clear()
    with override_settings(SWITCHYARD_TRANSPORT="memory"):
        yield outbox


def call_body(
    command: str,
    args: Any = None,
    *,
    connection: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    seq: int | None = None,
) -> bytes:
    """The JSON body Switchyard sends for `command`, as bytes."""
    body: dict[str, Any] = {
        "command": command,
        "args": args,
        "connection": {"id": "c-1", "path": "/ws/", "query": "", "state": {}, **(connection or {})},
        "user": user,
    }
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def post_signed(
    client: Client | ClientMixin,
    path: str,
    body: bytes,
    secret: str,
    *,
    timestamp: float | None = None,
    signature: str | None = None,
) -> Any:
    """POST `body` to `path` with Django's test `client`, signed with `secret` at
    `timestamp` (now), or with the header value `signature` when given ("" for none)."""
    if signature is None:
        signature = signing.sign(secret, body, timestamp)
    extra = {"HTTP_X_SWITCHYARD_SIGNATURE": signature} if signature else {}
    return client.post(path, body, content_type="application/json", **extra)  # type: ignore[union-attr]
