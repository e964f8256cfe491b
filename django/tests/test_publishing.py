"""publish / send_to_user / broadcast / disconnect / position: what leaves, and when.

The http transport talks to a real HTTP server on a loopback port standing in for the
admin API; the end-to-end tests (test_end_to_end.py) use the real binary.
"""

import datetime
import decimal
import logging
import uuid

import pytest
from django.contrib.auth.models import User
from django.db import transaction

import django_switchyard as switchyard
from django_switchyard import testing

pytestmark = pytest.mark.django_db(transaction=True)


def test_publish_sends_a_channel_item_to_the_admin_api(admin_api):
    switchyard.publish("news", "published", {"id": 1})
    method, path, headers, body = admin_api.wait_for(1)[0]
    assert (method, path) == ("POST", "/api/publish")
    assert headers["Authorization"] == "Bearer admin-key"
    assert body == [{"channel": "news", "event": "published", "data": {"id": 1}}]


def test_send_to_user_addresses_the_user_by_a_string_pk(admin_api):
    user = User.objects.create_user("u")
    switchyard.send_to_user(user, "notice", "hi")
    switchyard.send_to_user(42, "notice")
    bodies = [r[3] for r in admin_api.wait_for(2)]
    assert bodies == [
        [{"user": str(user.pk), "event": "notice", "data": "hi"}],
        [{"user": "42", "event": "notice", "data": None}],
    ]


def test_broadcast_addresses_everyone(admin_api):
    switchyard.broadcast("maintenance", {"in": 300})
    assert admin_api.wait_for(1)[0][3] == [{"broadcast": True, "event": "maintenance", "data": {"in": 300}}]


def test_disconnect_names_a_user_or_a_session(admin_api):
    switchyard.disconnect(user=7)
    switchyard.disconnect(session_key="abc")
    sent = [(r[1], r[3]) for r in admin_api.wait_for(2)]
    assert sent == [("/api/disconnect", {"user": "7"}), ("/api/disconnect", {"session_key": "abc"})]


@pytest.mark.parametrize("kwargs", [{}, {"user": 1, "session_key": "k"}])
def test_disconnect_takes_exactly_one_target(kwargs):
    with pytest.raises(ValueError):
        switchyard.disconnect(**kwargs)


def test_data_is_encoded_with_djangos_encoder(admin_api):
    code = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    switchyard.publish("c", "e", {"at": when, "price": decimal.Decimal("9.90"), "code": code})
    data = admin_api.wait_for(1)[0][3][0]["data"]
    assert data == {"at": "2024-05-01T12:30:00Z", "price": "9.90", "code": str(code)}


def test_data_json_cannot_carry_raises_in_the_caller(admin_api):
    with pytest.raises(TypeError):
        switchyard.publish("c", "e", {"x": object()})
    with pytest.raises(ValueError):
        switchyard.publish("c", "e", {"x": float("nan")})


# Switchyard's own rule (and the outbox table's): 1-255 bytes of UTF-8, no whitespace or
# control characters; "é" is two bytes, so 128 of them are too long.
@pytest.mark.parametrize(
    "channel", ["", None, 5, "x" * 256, "é" * 128, "chat lobby", "chat\u2028lobby", "chat\x00", "chat\x7f", "\ud800"]
)
def test_a_bad_channel_name_raises(admin_api, channel):
    with pytest.raises(ValueError):
        switchyard.publish(channel, "e")


def test_nothing_leaves_before_the_transaction_commits(admin_api):
    with transaction.atomic():
        switchyard.publish("c", "first")
        # A send is synchronous (the stand-in records before it answers), so had
        # publish() sent anything, it would be recorded by now.
        assert admin_api.requests == []
    assert admin_api.wait_for(1)[0][3][0]["event"] == "first"


def test_a_rolled_back_transaction_publishes_nothing(admin_api):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            switchyard.publish("c", "never")
            raise RuntimeError
    switchyard.publish("c", "after")
    assert [r[3][0]["event"] for r in admin_api.wait_for(1)] == ["after"]


def test_a_rolled_back_savepoint_drops_only_its_own_events(admin_api):
    with transaction.atomic():
        switchyard.publish("c", "kept")
        try:
            with transaction.atomic():
                switchyard.publish("c", "dropped")
                raise RuntimeError
        except RuntimeError:
            pass
        switchyard.publish("c", "kept too")
    switchyard.publish("c", "marker")
    events = [r[3][0]["event"] for r in admin_api.wait_for(3)]
    assert events == ["kept", "kept too", "marker"]


def test_events_leave_in_the_order_they_were_published(admin_api):
    with transaction.atomic():
        for n in range(20):
            switchyard.publish("c", "n", n)
    assert [r[3][0]["data"] for r in admin_api.wait_for(20)] == list(range(20))


def test_a_5xx_is_retried_briefly(admin_api):
    admin_api.answers["/api/publish"] = [(503, {}), (502, {})]
    switchyard.publish("c", "e")
    assert len(admin_api.wait_for(3)) == 3


def test_a_switchyard_that_is_down_is_logged_and_never_raised(settings, caplog):
    settings.SWITCHYARD_TRANSPORT = "http"
    settings.SWITCHYARD_ADMIN_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.SWITCHYARD_ADMIN_KEY = "k"
    settings.SWITCHYARD_PUBLISH_RETRIES = 1
    with caplog.at_level(logging.ERROR, logger="django_switchyard"):
        switchyard.publish("c", "e")
    assert any("did not take /api/publish" in r.getMessage() for r in caplog.records)


def test_a_4xx_is_not_retried_and_is_logged(admin_api, caplog):
    admin_api.answers["/api/publish"] = [(400, {"error": "bad item"})]
    with caplog.at_level(logging.ERROR, logger="django_switchyard"):
        switchyard.publish("c", "e")
    assert len(admin_api.requests) == 1
    assert any("400" in r.getMessage() for r in caplog.records)


def test_without_an_admin_url_publishing_logs_and_goes_on(settings, caplog):
    settings.SWITCHYARD_TRANSPORT = "http"
    settings.SWITCHYARD_ADMIN_URL = ""
    with caplog.at_level(logging.ERROR, logger="django_switchyard"):
        switchyard.publish("c", "e")
    assert any("SWITCHYARD_ADMIN_URL is not set" in r.getMessage() for r in caplog.records)


def test_position_reads_the_channel_offset_and_epoch(admin_api):
    admin_api.answers["/api/channels"] = [(200, {"channels": [{"channel": "news", "offset": 41, "epoch": "k3f"}]})]
    position = switchyard.position("news")
    assert (position.offset, position.epoch) == (41, "k3f")
    assert admin_api.requests[0][1] == "/api/channels?channel=news"


def test_position_quotes_the_channel_name(admin_api):
    switchyard.position("model:a+b&c=d%")
    assert admin_api.wait_for(1)[0][1] == "/api/channels?channel=model%3Aa%2Bb%26c%3Dd%25"


@pytest.mark.parametrize(
    "answer",
    [{}, {"channels": []}, {"channels": [{"channel": "other", "offset": 1, "epoch": "e"}]}, {"offset": "1", "epoch": "e"}],
)
def test_position_is_none_when_switchyard_cannot_say(admin_api, answer):
    admin_api.answers["/api/channels"] = [(200, answer)]
    assert switchyard.position("news") is None


def test_position_is_none_when_switchyard_is_down(settings):
    settings.SWITCHYARD_TRANSPORT = "http"
    settings.SWITCHYARD_ADMIN_URL = "http://127.0.0.1:9"
    settings.SWITCHYARD_PUBLISH_RETRIES = 0
    assert switchyard.position("news") is None


# === the memory transport (django_switchyard.testing) ===


def test_the_memory_transport_records_events_on_commit(memory):
    with transaction.atomic():
        switchyard.publish("c", "e", {"n": 1})
        assert testing.outbox == []
    assert [(e.channel, e.event, e.data) for e in testing.outbox] == [("c", "e", {"n": 1})]


def test_capture_switches_to_memory_for_a_block(admin_api):
    with testing.capture() as events:
        switchyard.broadcast("x")
    assert [e.broadcast for e in events] == [True]
    assert admin_api.requests == []


def test_the_memory_transport_records_disconnects(memory):
    switchyard.disconnect(session_key="k")
    assert testing.disconnects == [{"session_key": "k"}]
