"""@accept_websocket / @require_websocket: a socket's messages reach an ordinary view."""

import json

import pytest
from django.test import Client

from django_switchyard import derive
from django_switchyard.testing import call_body, post_signed

pytestmark = pytest.mark.django_db


def message(client, path, text, secret, state=None):
    body = call_body("$message", text, connection={"path": path, "state": state or {}})
    return post_signed(client, path, body, secret)


def test_a_message_gets_the_views_sends_then_its_body(client, backend_secret):
    answer = message(client, "/live/echo/", "hi", backend_secret)
    assert answer.status_code == 200
    assert answer.json()["messages"] == [json.dumps({"hello": "anonymous", "seen": 1}, separators=(",", ":")), "HI"]


def test_the_state_the_view_leaves_comes_back(client, backend_secret):
    answer = message(client, "/live/echo/", "hi", backend_secret, state={"seen": 4})
    assert answer.json()["state"] == {"seen": 5}


def test_plain_http_to_an_accept_view_runs_it_as_before(client):
    answer = client.get("/live/echo/")
    assert (answer.status_code, answer.content) == (200, b"plain page")


def test_a_plain_post_to_an_accept_view_still_needs_its_csrf_token():
    answer = Client(enforce_csrf_checks=True).post("/live/echo/", {"x": "1"})
    assert answer.status_code == 403


def test_plain_http_to_a_require_view_is_400(client):
    assert client.get("/live/rooms/lobby/").status_code == 400


def test_a_require_view_answers_messages_with_its_url_arguments(client, backend_secret):
    answer = message(client, "/live/rooms/lobby/", "hello", backend_secret)
    assert answer.json()["messages"] == ["lobby: hello"]


def test_a_message_with_a_bad_signature_is_403_and_the_view_never_runs(client, backend_secret):
    body = call_body("$message", "hi")
    answer = post_signed(client, "/live/echo/", body, backend_secret, signature="t=1,v1=00")
    assert answer.status_code == 403
    assert b"HI" not in answer.content


def test_a_call_that_is_not_a_message_is_400(client, backend_secret):
    answer = post_signed(client, "/live/echo/", call_body("shop.count", None), backend_secret)
    assert answer.status_code == 400


def test_the_derived_config_routes_each_websocket_view_to_itself():
    assert derive.websocket_views() == [("/live/echo/", "accept"), ("/live/rooms/*", "require")]
