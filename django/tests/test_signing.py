"""The signature check of every view Switchyard calls, played with Django's test client."""

import hashlib
import hmac
import logging
import time

import pytest

from django_switchyard import conf, signing
from django_switchyard.exceptions import SignatureError
from django_switchyard.testing import call_body, post_signed

from .conftest import SECRET

URL = "/switchyard/commands/shop.count/"
pytestmark = pytest.mark.django_db


def post(client, body=None, secret=SECRET, **kwargs):
    return post_signed(client, URL, body or call_body("shop.count"), secret, **kwargs)


def refused(client, caplog, reason, **kwargs):
    """POST; expect 403 `forbidden` and `reason` in the WARNING the app logged."""
    with caplog.at_level(logging.WARNING, logger="django_switchyard"):
        response = post(client, **kwargs)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    messages = [r.getMessage() for r in caplog.records if r.name == "django_switchyard"]
    assert any(reason in m for m in messages), messages
    return response


def test_a_good_signature_runs_the_command(client, backend_secret):
    response = post(client)
    assert response.status_code == 200
    assert response.json()["result"] == {"count": 1}


def test_a_missing_signature_is_403(client, caplog, backend_secret):
    refused(client, caplog, "no X-Switchyard-Signature header", signature="")


def test_a_signature_with_another_secret_is_403(client, caplog, backend_secret):
    refused(client, caplog, "does not match", secret="another-secret")


def test_a_signature_over_another_body_is_403(client, caplog, backend_secret):
    header = signing.sign(SECRET, call_body("shop.count", {"x": 1}))
    refused(client, caplog, "does not match", signature=header)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("garbage", "malformed signature header"),
        ("t=abc,v1=00", "malformed signature time"),
        ("t=-5,v1=00", "malformed signature time"),
        ("t=" + "9" * 5000 + ",v1=00", "malformed signature time"),
        ("t=١٢٣,v1=00", "malformed signature time"),
        ("v1=00", "lacks t="),
        ("t=1700000000", "lacks t="),
        ("t=1,t=2,v1=00", "two t= values"),
        ("t=1700000000," + ",".join(["v1=00"] * 9), "more than 8"),
    ],
)
def test_a_malformed_signature_is_403_and_says_why(client, caplog, backend_secret, header, reason):
    refused(client, caplog, reason, signature=header)


def test_a_non_ascii_mac_is_403(client, caplog, backend_secret):
    refused(client, caplog, "does not match", signature=f"t={int(time.time())},v1=é")


# The 300 s window at its edges, against a clock the test sets: `time.time` in the
# signing module is the verifier's clock; the signer is given its timestamp explicitly.
NOW = 1_700_000_000


def post_at(client, monkeypatch, timestamp):
    monkeypatch.setattr("django_switchyard.signing.time.time", lambda: float(NOW))
    return post(client, timestamp=timestamp)


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_a_signature_up_to_300_seconds_either_way_is_accepted(client, monkeypatch, backend_secret, offset):
    assert post_at(client, monkeypatch, NOW + offset).status_code == 200


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_signature_301_seconds_either_way_is_403(client, caplog, monkeypatch, backend_secret, offset):
    monkeypatch.setattr("django_switchyard.signing.time.time", lambda: float(NOW))
    refused(client, caplog, "more than 300 s", timestamp=NOW + offset)


def test_the_window_follows_the_max_age_setting(client, caplog, monkeypatch, backend_secret, settings):
    settings.SWITCHYARD_SIGNATURE_MAX_AGE = 10
    monkeypatch.setattr("django_switchyard.signing.time.time", lambda: float(NOW))
    refused(client, caplog, "more than 10 s", timestamp=NOW - 11)


def test_a_fallback_secret_is_accepted_while_rotating(client, settings):
    settings.SWITCHYARD_BACKEND_SECRET = "new"
    settings.SWITCHYARD_BACKEND_SECRET_FALLBACKS = [SECRET]
    assert post(client, secret=SECRET).status_code == 200
    assert post(client, secret="new").status_code == 200


def test_a_retired_secret_is_refused_after_rotation(client, caplog, settings):
    settings.SWITCHYARD_BACKEND_SECRET = "new"
    settings.SWITCHYARD_BACKEND_SECRET_FALLBACKS = []
    refused(client, caplog, "does not match", secret=SECRET)


def test_without_a_secret_every_call_is_403(client, caplog, settings):
    settings.SWITCHYARD_BACKEND_SECRET = ""
    refused(client, caplog, "no backend secret", secret="")


def test_the_environment_variable_is_the_default_secret(client, monkeypatch):
    monkeypatch.setenv("SWITCHYARD_BACKEND_SECRET", SECRET)
    conf.reset()
    assert post(client).status_code == 200


def test_fallbacks_from_the_environment_are_a_json_array(client, monkeypatch):
    monkeypatch.setenv("SWITCHYARD_BACKEND_SECRET", "new")
    monkeypatch.setenv("SWITCHYARD_BACKEND_SECRET_FALLBACKS", f'["{SECRET}"]')
    conf.reset()
    assert post(client).status_code == 200


def test_a_changed_setting_is_read_at_once(client, settings):
    settings.SWITCHYARD_BACKEND_SECRET = "first"
    assert post(client, secret="first").status_code == 200
    settings.SWITCHYARD_BACKEND_SECRET = "second"
    assert post(client, secret="first").status_code == 403


def test_sign_matches_the_documented_formula():
    # HMAC-SHA256("k", "1700000000.{}"), computed independently.
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signing.sign("k", b"{}", 1700000000) == f"t=1700000000,v1={expected}"


def test_verify_accepts_any_of_several_v1_values():
    good = signing.sign("k", b"{}", 1700000000).split(",")[1]
    signing.verify(f"t=1700000000,v1={'0' * 64},{good}", b"{}", ["k"], 300, now=1700000000)


def test_verify_names_the_reason_for_the_log():
    with pytest.raises(SignatureError, match="more than 300 s"):
        signing.verify(signing.sign("k", b"", 1), b"", ["k"], 300, now=1000)
