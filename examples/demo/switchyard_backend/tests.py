"""The signature check and the dispatch of switchyard_backend (`manage.py test`).

Calls go to the demo's registered commands (live/commands.py); only whether the call
gets through is checked here, each command's answer in live/tests.py.
"""

import hashlib
import hmac
import os
import time
from unittest import mock

from django.test import SimpleTestCase, TestCase, override_settings

from . import signing
from .exceptions import SignatureError
from .testing import call_body, post_signed

SECRET = "test-backend-secret"
URL = "/ws/commands/demo.count/"


@override_settings(SWITCHYARD_BACKEND_SECRET=SECRET)
class SignatureCheckTests(TestCase):
    def post(self, body=None, secret=SECRET, **kwargs):
        return post_signed(self.client, URL, body or call_body("demo.count"), secret, **kwargs)

    def assertRefused(self, reason, **kwargs):
        """POST with `kwargs` as `post` takes them; expect 403 and `reason` in the log."""
        with self.assertLogs("switchyard_backend", "WARNING") as logs:
            response = self.post(**kwargs)
        self.assertEqual(response.status_code, 403)
        self.assertEqual(response.json()["error"]["code"], "forbidden")
        self.assertIn(reason, logs.output[0])

    def test_a_good_signature_runs_the_command(self):
        response = self.post()
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["result"], {"count": 1})

    def test_a_missing_signature_is_403(self):
        self.assertRefused("no X-Switchyard-Signature header", signature="")

    def test_a_signature_with_another_secret_is_403(self):
        self.assertRefused("does not match", secret="another-secret")

    def test_a_signature_over_another_body_is_403(self):
        header = signing.sign(SECRET, call_body("demo.count", {"x": 1}))
        self.assertRefused("does not match", signature=header)

    def test_a_malformed_signature_is_403_with_what_is_wrong(self):
        now = int(time.time())
        cases = [
            ("garbage", "malformed signature header"),
            ("t=abc,v1=00", "malformed signature time"),
            ("t=-5,v1=00", "malformed signature time"),
            ("v1=00", "lacks t= or v1="),
            (f"t={now}", "lacks t= or v1="),
            (f"t={now},v1=é", "does not match"),
        ]
        for header, reason in cases:
            with self.subTest(header=header):
                self.assertRefused(reason, signature=header)

    @override_settings(
        SWITCHYARD_BACKEND_SECRET="new", SWITCHYARD_BACKEND_SECRET_FALLBACKS=[SECRET]
    )
    def test_a_fallback_secret_is_accepted_while_rotating(self):
        self.assertEqual(self.post().status_code, 200)

    @override_settings(SWITCHYARD_BACKEND_SECRET="")
    def test_without_a_secret_every_call_is_403(self):
        self.assertRefused("no backend secret", secret="")


@override_settings(SWITCHYARD_BACKEND_SECRET=SECRET)
class SignatureAgeTests(TestCase):
    """The 300 s window, against a clock the test sets: `time.time` in the signing module
    is the verifier's clock; the signer is given its timestamp explicitly."""

    NOW = 1_700_000_000

    def post_at(self, timestamp):
        with mock.patch("switchyard_backend.signing.time.time", return_value=float(self.NOW)):
            return post_signed(self.client, URL, call_body("demo.count"), SECRET, timestamp=timestamp)

    def assertAcceptedAt(self, timestamp):
        with self.assertNoLogs("switchyard_backend", "WARNING"):
            self.assertEqual(self.post_at(timestamp).status_code, 200)

    def assertRefusedAt(self, timestamp):
        with self.assertLogs("switchyard_backend", "WARNING") as logs:
            self.assertEqual(self.post_at(timestamp).status_code, 403)
        self.assertIn("more than 300 s", logs.output[0])

    def test_a_signature_exactly_300_seconds_old_is_accepted(self):
        self.assertAcceptedAt(self.NOW - 300)

    def test_a_signature_301_seconds_old_is_403(self):
        self.assertRefusedAt(self.NOW - 301)

    def test_a_signature_exactly_300_seconds_ahead_is_accepted(self):
        self.assertAcceptedAt(self.NOW + 300)

    def test_a_signature_301_seconds_ahead_is_403(self):
        self.assertRefusedAt(self.NOW + 301)


class SecretFromEnvironmentTests(TestCase):
    """Without the setting (the demo's settings.py has none), the env var is the secret."""

    def post(self):
        return post_signed(self.client, URL, call_body("demo.count"), SECRET)

    def test_the_environment_variable_is_the_default_secret(self):
        with mock.patch.dict(os.environ, {"SWITCHYARD_BACKEND_SECRET": SECRET}):
            self.assertEqual(self.post().status_code, 200)

    def test_without_the_environment_variable_calls_are_403(self):
        with mock.patch.dict(os.environ, {"SWITCHYARD_BACKEND_SECRET": ""}):
            with self.assertLogs("switchyard_backend", "WARNING"):
                self.assertEqual(self.post().status_code, 403)


@override_settings(SWITCHYARD_BACKEND_SECRET=SECRET)
class DispatchTests(TestCase):
    def test_an_unknown_command_is_404_unknown_command(self):
        response = post_signed(
            self.client, "/ws/commands/demo.nope/", call_body("demo.nope"), SECRET
        )
        self.assertEqual(response.status_code, 404)
        self.assertEqual(response.json()["error"]["code"], "unknown_command")

    def test_a_url_naming_another_command_than_the_body_is_400(self):
        response = post_signed(self.client, URL, call_body("demo.whoami"), SECRET)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["error"]["code"], "bad_request")

    def test_the_bare_commands_url_dispatches_on_the_body(self):
        response = post_signed(self.client, "/ws/commands/", call_body("demo.count"), SECRET)
        self.assertEqual(response.json()["result"], {"count": 1})

    def test_a_body_that_is_not_a_call_is_400(self):
        for body in [b"not json", b"[]", b'{"args": 1}', b'{"command": "demo.count", "seq": "x"}']:
            with self.subTest(body=body):
                response = post_signed(self.client, URL, body, SECRET)
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json()["error"]["code"], "bad_request")

    def test_get_is_405(self):
        self.assertEqual(self.client.get(URL).status_code, 405)

    def test_a_hook_url_refuses_a_command_body(self):
        response = post_signed(self.client, "/ws/hooks/connect/", call_body("demo.count"), SECRET)
        self.assertEqual(response.status_code, 400)


class SignTests(SimpleTestCase):
    def test_sign_matches_the_documented_formula(self):
        # HMAC-SHA256("k", "1700000000.{}"), computed independently.
        expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
        self.assertEqual(signing.sign("k", b"{}", 1700000000), f"t=1700000000,v1={expected}")

    def test_verify_accepts_any_of_several_v1_values(self):
        good = signing.sign("k", b"{}", 1700000000).split(",")[1]
        header = f"t=1700000000,v1={'0' * 64},{good}"
        signing.verify(header, b"{}", ["k"], 300, now=1700000000)

    def test_verify_names_the_reason_for_the_log(self):
        with self.assertRaisesMessage(SignatureError, "more than 300 s"):
            signing.verify(signing.sign("k", b"", 1), b"", ["k"], 300, now=1000)
