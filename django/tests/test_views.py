"""The views Switchyard calls: the registry's dispatch, hooks, authorization, and a
project's own `command_view` / `CommandView`. Hostile bodies included."""

import json

import pytest
from django.contrib.auth.models import User

from django_switchyard import CommandResponse
from django_switchyard.responses import Close
from django_switchyard.testing import call_body, post_signed
from shop.models import Product

from .conftest import SECRET

pytestmark = pytest.mark.django_db


def command(client, name, args=None, url=None, **body):
    return post_signed(client, url or f"/switchyard/commands/{name}/", call_body(name, args, **body), SECRET)


def hook(client, kind, **body):
    return post_signed(client, f"/switchyard/hooks/{kind}/", call_body(f"${kind}", **body), SECRET)


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="pw")


@pytest.fixture
def staff(db):
    return User.objects.create_user("boss", password="pw", is_staff=True)


# === the command registry ===


def test_a_registered_command_runs_by_name(client, backend_secret):
    assert command(client, "shop.count").json() == {"result": {"count": 1}, "state": {"count": 1}}


def test_the_state_comes_from_the_connection(client, backend_secret):
    response = command(client, "shop.count", connection={"state": {"count": 41, "other": "x"}})
    assert response.json()["state"] == {"count": 42, "other": "x"}


def test_a_plain_return_value_is_the_result(client, backend_secret):
    response = command(client, "shop.whoami", {"a": [1, 2]})
    assert response.json() == {"result": {"request_user": None, "payload_user": None, "args": {"a": [1, 2]}}}


def test_request_user_comes_from_the_forwarded_cookie(client, backend_secret, alice):
    client.force_login(alice)
    payload = {"id": str(alice.pk), "username": "alice", "is_staff": False, "is_superuser": False}
    result = command(client, "shop.whoami", user=payload).json()["result"]
    assert result["request_user"] == "alice"
    assert result["payload_user"] == payload


def test_an_unknown_command_is_404_unknown_command(client, backend_secret):
    response = command(client, "shop.nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_command"


def test_a_url_naming_another_command_than_the_body_is_400(client, backend_secret):
    response = post_signed(client, "/switchyard/commands/shop.admin/", call_body("shop.count"), SECRET)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_the_bare_commands_url_dispatches_on_the_body(client, backend_secret):
    response = post_signed(client, "/switchyard/commands/", call_body("shop.count"), SECRET)
    assert response.json()["result"] == {"count": 1}


def test_an_authenticated_command_refuses_an_anonymous_request_with_403(client, backend_secret):
    response = command(client, "shop.buy", {"product": 1})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_an_authenticated_command_runs_for_a_logged_in_user(client, backend_secret, alice):
    product = Product.objects.create(name="kettle")
    client.force_login(alice)
    body = command(client, "shop.buy", {"product": product.pk}).json()
    assert body == {
        "result": {"bought": "kettle"},
        "push": [{"user": str(alice.pk), "event": "bought", "data": {"product": product.pk}}],
        "subscribe": [f"product:{product.pk}"],
    }


def test_a_staff_command_refuses_a_plain_user(client, backend_secret, alice, staff):
    client.force_login(alice)
    assert command(client, "shop.admin").status_code == 403
    client.force_login(staff)
    assert command(client, "shop.admin").json() == {"result": "yes"}


def test_a_command_error_keeps_its_status_code_and_message(client, backend_secret):
    response = command(client, "shop.fail")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "out_of_stock", "message": "none left"}}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe garbage",
        b"[]",
        b"null",
        b'{"args": 1}',
        b'{"command": 5}',
        b'{"command": "shop.count", "seq": "x"}',
        b'{"command": "shop.count", "seq": true}',
        b'{"command": "shop.count", "connection": []}',
        b'{"command": "shop.count", "user": "root"}',
        b"[" * 100000 + b"]" * 100000,
    ],
)
def test_a_signed_body_that_is_not_a_call_is_400(client, backend_secret, body):
    response = post_signed(client, "/switchyard/commands/", body, SECRET)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_odd_connection_values_are_read_safely(client, backend_secret):
    body = json.dumps(
        {"command": "shop.count", "connection": {"state": [1], "query": 5, "path": None, "id": 7}}
    ).encode()
    response = post_signed(client, "/switchyard/commands/", body, SECRET)
    assert response.json()["state"] == {"count": 1}


def test_get_is_405(client, backend_secret):
    assert client.get("/switchyard/commands/shop.count/").status_code == 405


def test_an_unsigned_post_is_refused_before_csrf_or_the_command(client, backend_secret):
    csrf_client = type(client)(enforce_csrf_checks=True)
    response = csrf_client.post("/switchyard/commands/shop.count/", call_body("shop.count"), content_type="application/json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_signed_post_needs_no_csrf_token(client, backend_secret):
    csrf_client = type(client)(enforce_csrf_checks=True)
    response = post_signed(csrf_client, "/switchyard/commands/shop.count/", call_body("shop.count"), SECRET)
    assert response.status_code == 200


# === hooks ===


def test_the_connect_hook_sets_the_first_state(client, backend_secret):
    assert hook(client, "connect", seq=3).json() == {"state": {"joined": True, "seq": 3}}


def test_the_connect_hook_may_refuse_the_socket(client, backend_secret):
    response = hook(client, "connect", connection={"query": "refuse=1"})
    assert response.json()["close"] == {"code": 4403, "reason": "refused by on_connect"}


def test_the_disconnect_hook_answers_nothing_to_apply(client, backend_secret):
    assert hook(client, "disconnect", seq=4).json() == {}


def test_a_hook_url_refuses_a_command_body(client, backend_secret):
    response = post_signed(client, "/switchyard/hooks/connect/", call_body("shop.count"), SECRET)
    assert response.status_code == 400


def test_a_hook_call_needs_a_signature_too(client, backend_secret):
    response = post_signed(client, "/switchyard/hooks/connect/", call_body("$connect"), "wrong")
    assert response.status_code == 403


# === channel authorization ===


def authorize(client, channel):
    body = call_body("$authorize", {"channel": channel})
    return post_signed(client, "/switchyard/authorize/", body, SECRET)


def test_an_authorizer_allows_by_its_own_rule(client, backend_secret, alice):
    client.force_login(alice)
    assert authorize(client, "product:7").json()["result"] == {"allow": True}
    assert authorize(client, "product:secret").json()["result"] == {"allow": False}


def test_an_authorizer_refuses_anonymous_users_by_its_own_rule(client, backend_secret):
    assert authorize(client, "product:7").json()["result"] == {"allow": False}


def test_a_channel_no_authorizer_matches_is_refused(client, backend_secret, alice):
    client.force_login(alice)
    assert authorize(client, "elsewhere").json()["result"] == {"allow": False}


@pytest.mark.parametrize("args", [None, {}, {"channel": ""}, {"channel": 5}, ["product:1"]])
def test_an_authorization_without_a_channel_is_400(client, backend_secret, args):
    body = call_body("$authorize", args)
    assert post_signed(client, "/switchyard/authorize/", body, SECRET).status_code == 400


# === a project's own views ===


def test_command_view_gives_the_view_its_call(client, backend_secret):
    response = post_signed(client, "/own/rename/", call_body("board.rename", {"name": "Q3"}), SECRET)
    assert response.json() == {"result": {"name": "Q3"}, "state": {"name": "Q3"}}


def test_command_view_refuses_an_unsigned_call(client, backend_secret):
    response = post_signed(client, "/own/rename/", call_body("board.rename", {"name": "Q3"}), "nope")
    assert response.status_code == 403


def test_command_view_maps_a_command_error(client, backend_secret):
    response = post_signed(client, "/own/rename/", call_body("board.rename", {}), SECRET)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_args"


def test_a_command_view_class_answers_signed_posts(client, backend_secret):
    Product.objects.create(name="a", price="1.50")
    Product.objects.create(name="b", price="2.25")
    response = post_signed(client, "/own/class/", call_body("shop.total"), SECRET)
    assert response.json() == {"result": {"total": "3.75"}}


def test_a_command_view_class_refuses_get_and_unsigned_posts(client, backend_secret):
    assert client.get("/own/class/").status_code == 405
    assert post_signed(client, "/own/class/", call_body("shop.total"), "").status_code == 403


# === what a reply may hold ===


def test_a_response_leaves_out_what_was_not_given():
    assert CommandResponse(5).to_json() == {"result": 5}


@pytest.mark.parametrize(
    "item",
    [
        {"event": "x"},
        {"channel": "a", "user": "1", "event": "x"},
        {"channel": "a"},
        {"channel": "a", "event": ""},
        {"channel": "a", "event": "x", "colour": "red"},
    ],
)
def test_a_bad_push_item_raises_in_the_project_code(item):
    with pytest.raises(ValueError):
        CommandResponse(push=[item])


@pytest.mark.parametrize("code", [999, 1001, 2999, 5000, True, "4403"])
def test_a_close_code_switchyard_would_refuse_raises(code):
    with pytest.raises(ValueError):
        Close(code, "no")


def test_a_close_reason_longer_than_123_bytes_raises():
    with pytest.raises(ValueError):
        Close(4403, "é" * 62)


def test_state_must_be_a_dict():
    with pytest.raises(TypeError):
        CommandResponse(state=[1])


def test_subscribe_takes_one_name_or_a_list():
    assert CommandResponse(subscribe="a").to_json()["subscribe"] == ["a"]
    with pytest.raises(ValueError):
        CommandResponse(subscribe=["a", ""])
