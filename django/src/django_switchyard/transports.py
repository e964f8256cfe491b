"""How an event leaves Django: the transports behind `publish()` and `disconnect()`.

Each transport gets outbox rows (`outbox.Row`: the target, the event, the data already
encoded) and decides how and when they leave:

- `postgres`: an `INSERT` into `switchyard_outbox` at once, inside the current
  transaction (docs/outbox.md); the table's trigger numbers the row and notifies every
  Switchyard node when that transaction commits, so a rollback takes the event with it.
  A failing insert (no outbox table) is a database error in the caller's transaction,
  like any of its queries. Positions are read from the table.
- `http`: POST to Switchyard's admin API (`/api/publish`, `/api/disconnect`) once the
  transaction commits (`transaction.on_commit`), so rolled-back work is never seen.
  Connection failures and 5xx are retried briefly; a final failure is logged, never
  raised into the request.
- `memory`: kept in `django_switchyard.testing.outbox` / `.disconnects` on commit.

Nothing is built at import: `get()` makes the transport on first use and `reset()`
(on `setting_changed`) forgets it.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import DatabaseError, connections, transaction

from . import conf, outbox
from .exceptions import PublishError
from .outbox import Row

logger = logging.getLogger("django_switchyard")


@dataclass(frozen=True)
class Position:
    """Where a channel stands: the offset of its last event and its epoch.

    A page that subscribes with `since=position.as_since()` receives every event
    published after the position was read, or `recovered: false`.
    """

    channel: str
    offset: int
    epoch: str

    def as_since(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


class Transport(Protocol):
    """What `publish()`, `disconnect()` and `position()` need from a transport."""

    def publish(self, rows: list[Row], using: str) -> None:
        """Deliver `rows` (pushes) when the transaction on `using` commits, never on rollback."""

    def disconnect(self, row: Row, using: str) -> None:
        """Deliver `row` (`revoke_user` or `revoke_session`) when the transaction commits."""

    def position(self, channel: str) -> Position | None:
        """The channel's current position, or None when it cannot be had."""


# === impl Http ===


class AdminClient:
    """A small client of Switchyard's admin API: one keep-alive connection per thread."""

    def __init__(self, url: str, key: str, timeout: float, retries: int) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PublishError(f"SWITCHYARD_ADMIN_URL must be http://HOST:PORT, not {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.retries = retries
        self._local = threading.local()

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """The JSON answer of `method path`; PublishError when it cannot be had.

        Connection failures, timeouts and 5xx are tried again `retries` times with a
        short growing pause; a 4xx is our mistake and fails at once.
        """
        attempt = 0
        while True:
            try:
                status, payload = self._once(method, path, body)
            except (OSError, http.client.HTTPException) as failure:
                self._drop()
                problem = f"{method} {path}: {failure or type(failure).__name__}"
            else:
                if status < 400:
                    return payload
                problem = f"{method} {path} answered {status}: {payload!r}"
                if status < 500:
                    raise PublishError(problem)
            if attempt >= self.retries:
                raise PublishError(problem)
            time.sleep(0.05 * 4**attempt)
            attempt += 1

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            connection = kind(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _once(self, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
        connection = self._connection()
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, self.prefix + path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        if response.getheader("connection", "").lower() == "close":
            self._drop()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw[:200].decode("utf-8", "replace")

    def close(self) -> None:
        self._drop()


class HttpTransport:
    """Events through the admin API after commit."""

    def __init__(self, client: AdminClient) -> None:
        self.client = client

    def publish(self, rows: list[Row], using: str) -> None:
        body = ("[" + ",".join(row.item() for row in rows) + "]").encode()
        transaction.on_commit(lambda: self._send("/api/publish", body), using=using)

    def disconnect(self, row: Row, using: str) -> None:
        body = row.item().encode()
        transaction.on_commit(lambda: self._send("/api/disconnect", body), using=using)

    def _send(self, path: str, body: bytes) -> None:
        try:
            self.client.request("POST", path, body)
        except PublishError as failure:
            # After commit: the work is done and the request must not fail for this.
            logger.error("Switchyard did not take %s: %s", path, failure)

    def position(self, channel: str) -> Position | None:
        query = urllib.parse.urlencode({"channel": channel})
        try:
            answer = self.client.request("GET", f"/api/channels?{query}")
        except PublishError as failure:
            logger.warning("no position for channel %r: %s", channel, failure)
            return None
        return position_from_answer(channel, answer)


def position_from_answer(channel: str, answer: Any) -> Position | None:
    """The position of `channel` in a `GET /api/channels` answer, or None.

    Accepts the channel's own object or a list (under `channels`) holding it; a channel
    nobody published to yet has no entry, and that is None too.
    """
    candidates: list[Any]
    if isinstance(answer, dict) and isinstance(answer.get("channels"), list):
        candidates = answer["channels"]
    elif isinstance(answer, list):
        candidates = answer
    else:
        candidates = [answer]
    for entry in candidates:
        if not isinstance(entry, dict) or entry.get("channel", channel) != channel:
            continue
        offset, epoch = entry.get("offset", entry.get("last_offset")), entry.get("epoch")
        if isinstance(offset, int) and not isinstance(offset, bool) and isinstance(epoch, str):
            return Position(channel, offset, epoch)
    return None


# === impl Postgres ===


class PostgresTransport:
    """Events as outbox rows, written inside the transaction on `using` (docs/outbox.md)."""

    def __init__(self, using: str) -> None:
        self.using = using

    def publish(self, rows: list[Row], using: str) -> None:
        self._insert(rows, using)

    def disconnect(self, row: Row, using: str) -> None:
        self._insert([row], using)

    def _insert(self, rows: list[Row], using: str) -> None:
        # In the caller's transaction, no savepoint: the event commits or rolls back with the
        # work it announces. The items were checked before (publishing.py), so what can fail
        # here is the database itself (no outbox table: migrations not run), and that is an
        # error in the caller's transaction, as any other failed query of theirs.
        with connections[using].cursor() as cursor:
            cursor.executemany(outbox.INSERT, [row.params() for row in rows])

    def position(self, channel: str) -> Position | None:
        try:
            with connections[self.using].cursor() as cursor:
                cursor.execute(outbox.POSITION, [channel, channel])
                offset, epoch = cursor.fetchone()
        except DatabaseError as failure:
            logger.warning("no position for channel %r: %s", channel, failure)
            return None
        return Position(channel, int(offset), str(epoch))


# === impl Memory ===


class MemoryTransport:
    """Events into `django_switchyard.testing`'s lists, on commit, for a project's tests."""

    def publish(self, rows: list[Row], using: str) -> None:
        from . import testing

        def record() -> None:
            testing.outbox.extend(testing.Event.from_message(row.item()) for row in rows)

        transaction.on_commit(record, using=using)

    def disconnect(self, row: Row, using: str) -> None:
        from . import testing

        message = row.item()
        transaction.on_commit(lambda: testing.disconnects.append(json.loads(message)), using=using)

    def position(self, channel: str) -> Position | None:
        from . import testing

        return testing.position(channel)


# === the transport in use ===

_transports: dict[str, Transport] = {}
_lock = threading.Lock()


def get(using: str = "default") -> Transport:
    """The transport the settings name for database `using`, built on first use."""
    transport = _transports.get(using)
    if transport is None:
        with _lock:
            transport = _transports.get(using) or _build(using)
            _transports[using] = transport
    return transport


def _build(using: str) -> Transport:
    settings = conf.get()
    kind = settings.resolved_transport(using)
    if kind == "memory":
        return MemoryTransport()
    if kind == "postgres":
        vendor = connections[using].vendor
        if vendor != "postgresql":
            raise PublishError(
                f"SWITCHYARD_TRANSPORT is 'postgres' but database {using!r} is {vendor}: "
                "the outbox lives in PostgreSQL (use 'http' or 'auto')"
            )
        return PostgresTransport(using)
    if kind == "http":
        if not settings.admin_url:
            raise PublishError("SWITCHYARD_ADMIN_URL is not set: nowhere to publish (see manage.py check)")
        client = AdminClient(settings.admin_url, settings.admin_key, settings.publish_timeout, settings.publish_retries)
        return HttpTransport(client)
    raise PublishError(f"the {kind!r} transport is not available")  # conf.get() refuses other names


def reset() -> None:
    """Forget the transports (closing their connections); the next use builds anew."""
    with _lock:
        built = list(_transports.values())
        _transports.clear()
    for transport in built:
        client = getattr(transport, "client", None)
        if isinstance(client, AdminClient):
            client.close()
