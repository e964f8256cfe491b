"""The PostgreSQL outbox, Django's side: the table's install script and how a row is written.

The contract is Switchyard's `docs/outbox.md` (schema version 1); this module carries a
copy of its install script (`sql/outbox_v1_install.sql`, which a test compares with the
document) and writes rows as it says: one `INSERT` per event inside the caller's
transaction, no `NOTIFY` of our own (the table's deferred trigger numbers each row and
notifies when the transaction commits), nothing delivered on rollback.

The install script is idempotent and takes the same advisory lock as a Switchyard node
installing it, so the migration and a node may run in either order, or together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

# The schema version the script installs (docs/outbox.md, "Versions and migrations").
VERSION = 1
INSTALL_SCRIPT = "outbox_v1_install.sql"

INSERT = "INSERT INTO switchyard_outbox (kind, channel, ids, event, data) VALUES (%s, %s, %s, %s, %s::json)"

# docs/outbox.md, "Where a channel stands".
POSITION = (
    'SELECT coalesce(c."offset", 0), coalesce(c.epoch, switchyard_outbox_epoch(%s)) '
    "FROM (SELECT 1) one LEFT JOIN switchyard_channels c ON c.channel = %s"
)


def install_script() -> str:
    """Version 1's install script, as docs/outbox.md has it."""
    return resources.files("django_switchyard").joinpath("sql", INSTALL_SCRIPT).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Row:
    """One outbox row: `kind` and its target (`channel` or `ids`), the event, the data as JSON text."""

    kind: str
    event: str = "message"
    data: str = "null"
    channel: str | None = None
    ids: tuple[str, ...] | None = None

    def params(self) -> tuple[Any, ...]:
        """The values of `INSERT`."""
        return (self.kind, self.channel, list(self.ids) if self.ids is not None else None, self.event, self.data)

    def item(self) -> str:
        """The row as the admin API takes it: a `/api/publish` item, or for a revocation
        the `/api/disconnect` body. JSON text (the data is put in as it was encoded)."""
        first = self.ids[0] if self.ids else ""
        if self.kind == "revoke_user":
            return json.dumps({"user": first})
        if self.kind == "revoke_session":
            return json.dumps({"session_key": first})
        if self.kind == "channel":
            target = {"channel": self.channel}
        elif self.kind == "users" and self.ids is not None and len(self.ids) == 1:
            target = {"user": first}
        elif self.kind == "broadcast":
            target = {"broadcast": True}
        else:
            target = {self.kind: list(self.ids or ())}
        head = json.dumps({**target, "event": self.event}, separators=(",", ":"))
        return head[:-1] + ',"data":' + self.data + "}"


def install(schema_editor: Any) -> None:
    """Runs the install script on `schema_editor`'s database when it is PostgreSQL (the
    migration); other databases have no outbox (they publish over http)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        # One statement list; the migration's transaction holds it together, as a node's
        # BEGIN ... COMMIT does.
        cursor.execute(install_script())
