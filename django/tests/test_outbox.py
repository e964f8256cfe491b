"""The postgres transport against the real PostgreSQL test database (the harness cluster):
rows written inside the caller's transaction, numbered and notified only on commit, as
Switchyard's docs/outbox.md says. On SQLite only the checks that the transport is refused
there (and that the migration's script is the document's) run.

The end-to-end tests (test_end_to_end.py) deliver these rows through the real binary.
"""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import select
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.db import connection, transaction

import django_switchyard as switchyard
from django_switchyard import conf, outbox
from shop.models import Note

DOC = Path(__file__).resolve().parents[2] / "docs" / "outbox.md"
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="the outbox lives in PostgreSQL")


def test_the_migrations_install_script_is_the_one_in_docs_outbox_md():
    doc = DOC.read_text()
    first = "-- switchyard outbox schema v1: install\n"
    start = doc.index("```sql\n" + first) + len("```sql\n")
    block = doc[start : doc.index("\n```", start) + 1]
    assert outbox.install_script() == block


@pytest.fixture
def pg(settings):
    """The postgres transport, on an empty outbox (Django's flush leaves tables that are no model's)."""
    settings.SWITCHYARD_TRANSPORT = "postgres"
    conf.reset()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE switchyard_outbox, switchyard_outbox_stamps, switchyard_channels")


def rows(where: str = "TRUE", params: tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT o.kind, o.channel, o.ids, o.event, o.data::text, s.pos, s.\"offset\" FROM switchyard_outbox o "
            f"LEFT JOIN switchyard_outbox_stamps s ON s.id = o.id WHERE {where} ORDER BY o.id",
            params,
        )
        return cursor.fetchall()


# === on PostgreSQL ===


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_auto_is_postgres_on_postgresql(settings):
    settings.SWITCHYARD_TRANSPORT = "auto"
    assert conf.get().resolved_transport() == "postgres"


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_is_written_inside_the_transaction_and_numbered_only_when_it_commits(pg):
    with transaction.atomic():
        switchyard.publish("news", "published", {"id": 1})
        # In the transaction, unnumbered: the deferred trigger runs at commit.
        assert rows() == [("channel", "news", None, "published", '{"id":1}', None, None)]
    [(kind, channel, ids, event, data, pos, offset)] = rows()
    assert (kind, channel, event, data, offset) == ("channel", "news", "published", '{"id":1}', 1)
    assert pos is not None


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_no_row_and_takes_no_offset(pg):
    with pytest.raises(RuntimeError), transaction.atomic():
        switchyard.publish("news", "never")
        raise RuntimeError
    with transaction.atomic():
        switchyard.publish("news", "kept")
        try:
            with transaction.atomic():
                switchyard.publish("news", "dropped with its savepoint")
                raise RuntimeError
        except RuntimeError:
            pass
    assert [(r[3], r[6]) for r in rows()] == [("kept", 1)]


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_every_target_of_the_admin_api_is_a_row_of_its_kind(pg):
    user = User.objects.create_user("u")
    switchyard.send_to_user(user, "notice", "hi")
    switchyard.broadcast("maintenance", {"in": 300})
    switchyard.disconnect(user=user)
    switchyard.disconnect(session_key="k" * 32)
    assert [r[:5] for r in rows()] == [
        ("users", None, [str(user.pk)], "notice", '"hi"'),
        ("broadcast", None, None, "maintenance", '{"in":300}'),
        ("revoke_user", None, [str(user.pk)], "message", "null"),
        ("revoke_session", None, ["k" * 32], "message", "null"),
    ]
    assert all(r[5] is not None for r in rows()), "each numbered"


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_data_is_stored_as_djangos_encoder_wrote_it(pg):
    code = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    switchyard.publish("c", "e", {"z": when, "a": decimal.Decimal("9.90"), "code": code, "text": "ünï\u2028"})
    [row] = rows()
    assert row[4] == '{"z":"2024-05-01T12:30:00Z","a":"9.90","code":"%s","text":"ünï\u2028"}' % code


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_the_commit_notifies_with_the_payload_docs_outbox_md_describes(pg, django_db_blocker):
    import psycopg

    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN switchyard_outbox")
        with transaction.atomic():
            switchyard.publish("news", "published", {"id": 7})
            assert not select.select([listener.fileno()], [], [], 0)[0], "nothing before the commit"
        [notice] = list(listener.notifies(timeout=10, stop_after=1))
    payload = json.loads(notice.payload)
    assert {k: payload[k] for k in ("v", "kind", "channel", "ids", "event", "data", "offset")} == {
        "v": 1,
        "kind": "channel",
        "channel": "news",
        "ids": None,
        "event": "published",
        "data": {"id": 7},
        "offset": 1,
    }
    assert isinstance(payload["pos"], int) and isinstance(payload["epoch"], str)


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_100_kb_event_is_written_whole(pg):
    big = {"text": "x" * 100_000}
    switchyard.publish("news", "big", big)
    assert json.loads(rows()[0][4]) == big


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_position_is_read_from_the_table(pg):
    before = switchyard.position("news")
    assert before is not None and before.offset == 0
    switchyard.publish("news", "one")
    switchyard.publish("news", "two")
    after = switchyard.position("news")
    assert (after.offset, after.epoch) == (2, before.epoch), "a new channel's first event carries the epoch read before"


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_outbox_table_publishing_fails_the_callers_transaction(pg):
    from django.db import ProgrammingError

    with pytest.raises(ProgrammingError, match="switchyard_outbox"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE switchyard_outbox RENAME TO switchyard_outbox_away")
        # The event belongs to the work: neither commits without the other.
        Note.objects.create(text="announced")
        switchyard.publish("news", "lost")
    assert not Note.objects.exists()
    assert rows() == []


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_the_table_itself_refuses_data_over_1_mib_from_any_writer(pg):
    from django.db import IntegrityError

    huge = outbox.Row("channel", channel="news", data='"' + "x" * (1 << 20) + '"')
    with pytest.raises(IntegrityError, match="switchyard_outbox_data"), connection.cursor() as cursor:
        cursor.execute(outbox.INSERT, huge.params())


# === what is refused before any SQL, on every transport ===


@pytest.mark.parametrize(
    "data, problem",
    [
        ({"text": "x" * (1 << 20)}, "bytes as JSON"),
        (json.loads("[" * 101 + "]" * 101), "levels deep"),
        ({"text": "\ud800"}, "lone surrogate"),
    ],
)
@pytest.mark.django_db
def test_data_switchyard_could_not_take_raises_in_the_caller(memory, data, problem):
    with pytest.raises(ValueError, match=problem):
        switchyard.publish("news", "e", data)


@pytest.mark.django_db
def test_data_nested_100_deep_and_brackets_inside_strings_are_fine(memory):
    switchyard.publish("news", "e", json.loads("[" * 100 + "]" * 100))
    switchyard.publish("news", "e", {"text": "[" * 500 + '\\"{'})


@pytest.mark.parametrize("event", ["", "e" * 129, "é" * 65])
@pytest.mark.django_db
def test_an_event_name_longer_than_128_bytes_raises(memory, event):
    with pytest.raises(ValueError):
        switchyard.publish("news", event)


# === on another database ===


@pytest.mark.skipif(connection.vendor == "postgresql", reason="about other databases")
@pytest.mark.django_db(transaction=True)
def test_the_postgres_transport_on_another_database_is_a_check_error_and_a_logged_refusal(pg, caplog):
    assert "switchyard.E006" in [m.id for m in checks.run_checks(tags=["switchyard"])]
    with caplog.at_level(logging.ERROR, logger="django_switchyard"):
        switchyard.publish("news", "e")
    assert any("'postgres' but database 'default' is sqlite" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(connection.vendor == "postgresql", reason="about other databases")
def test_auto_is_http_on_sqlite(settings):
    settings.SWITCHYARD_TRANSPORT = "auto"
    assert conf.get().resolved_transport() == "http"
