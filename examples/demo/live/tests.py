"""The demo's commands, hooks, hook log and /live/ page (`manage.py test`).

Each test plays Switchyard: a signed POST shaped as DESIGN.md's command backends say.
"""

import io
import time
from unittest import mock

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import TestCase, override_settings

from django_switchyard.testing import call_body, post_signed

from .models import HookCall

SECRET = "test-backend-secret"
USERNAME, PASSWORD = "demo", "demo-password"


@override_settings(SWITCHYARD_BACKEND_SECRET=SECRET)
class SwitchyardCallTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        call_command("ensure_demo_user", stdout=io.StringIO())
        user = get_user_model().objects.get(username=USERNAME)
        cls.payload_user = {
            "id": str(user.pk),
            "username": USERNAME,
            "is_staff": False,
            "is_superuser": False,
        }

    def command(self, name, args=None, **body):
        return post_signed(
            self.client, f"/ws/commands/{name}/", call_body(name, args, **body), SECRET
        )

    def hook(self, kind, **body):
        return post_signed(self.client, f"/ws/hooks/{kind}/", call_body(f"${kind}", **body), SECRET)

    def login(self):
        self.client.login(username=USERNAME, password=PASSWORD)


class WhoamiTests(SwitchyardCallTestCase):
    def test_whoami_sees_the_user_of_the_forwarded_cookie(self):
        self.login()
        response = self.command("demo.whoami", user=self.payload_user)
        self.assertEqual(
            response.json(),
            {"result": {"request_user": USERNAME, "payload_user": self.payload_user}},
        )

    def test_whoami_without_a_cookie_has_no_request_user(self):
        response = self.command("demo.whoami")
        self.assertEqual(response.json(), {"result": {"request_user": None, "payload_user": None}})


class CountTests(SwitchyardCallTestCase):
    def test_count_starts_at_one(self):
        self.assertEqual(
            self.command("demo.count").json(), {"result": {"count": 1}, "state": {"count": 1}}
        )

    def test_count_increments_the_state_and_keeps_the_rest(self):
        state = {"count": 41, "joined": True}
        response = self.command("demo.count", connection={"state": state})
        self.assertEqual(
            response.json(), {"result": {"count": 42}, "state": {"count": 42, "joined": True}}
        )


class PushTests(SwitchyardCallTestCase):
    def test_push_echoes_the_push_list(self):
        items = [
            {"connection": "c-2", "event": "a", "data": 1},
            {"user": "7", "event": "b", "data": None},
            {"broadcast": True, "event": "c", "data": {"x": [1]}},
        ]
        response = self.command("demo.push", {"push": items})
        self.assertEqual(response.json(), {"result": {"ok": True}, "push": items})

    def test_push_without_a_list_is_400_bad_args(self):
        response = self.command("demo.push", {"push": "nope"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["error"]["code"], "bad_args")


class FailTests(SwitchyardCallTestCase):
    def test_fail_answers_the_status_it_was_asked_for(self):
        for status in [403, 500, 503]:
            with self.subTest(status=status):
                response = self.command("demo.fail", {"status": status})
                self.assertEqual(response.status_code, status)
                self.assertEqual(
                    response.json(),
                    {"error": {"code": "demo_failure", "message": "asked to fail"}},
                )

    def test_fail_refuses_a_status_that_is_not_an_error(self):
        self.assertEqual(self.command("demo.fail", {"status": 200}).status_code, 400)


class SlowTests(SwitchyardCallTestCase):
    def test_slow_sleeps_then_answers_done(self):
        started = time.monotonic()
        response = self.command("demo.slow", {"seconds": 0.2})
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertEqual(response.json(), {"result": "done"})

    def test_slow_sleeps_at_most_ten_seconds(self):
        with mock.patch("live.commands.time.sleep") as sleep:
            self.command("demo.slow", {"seconds": 3600})
        sleep.assert_called_once_with(10)


class ChatTests(SwitchyardCallTestCase):
    def test_chat_send_broadcasts_the_message_as_the_logged_in_user(self):
        self.login()
        response = self.command("chat.send", {"text": "hi"}, user=self.payload_user)
        self.assertEqual(
            response.json(),
            {
                "result": {"ok": True},
                "push": [
                    {
                        "broadcast": True,
                        "event": "chat.message",
                        "data": {"user": USERNAME, "text": "hi"},
                    }
                ],
            },
        )

    def test_chat_send_when_anonymous_is_403_forbidden(self):
        response = self.command("chat.send", {"text": "hi"})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(response.json()["error"]["code"], "forbidden")

    def test_chat_send_without_text_is_400_bad_args(self):
        self.login()
        for args in [None, {}, {"text": ""}, {"text": 5}, {"text": "x" * 501}]:
            with self.subTest(args=args):
                self.assertEqual(self.command("chat.send", args).status_code, 400)


class AuthorizeTests(SwitchyardCallTestCase):
    def authorize(self, channel):
        args = {"channel": channel, "action": "subscribe"}
        return self.command("$authorize", args, connection={"id": "c-1"}).json()

    def test_a_logged_in_user_may_follow_a_project(self):
        self.login()
        self.assertEqual(self.authorize("project:alpha"), {"result": {"allow": True}})

    def test_an_anonymous_user_may_not(self):
        self.assertEqual(self.authorize("project:alpha"), {"result": {"allow": False}})

    def test_project_staff_needs_staff(self):
        self.login()
        self.assertEqual(self.authorize("project:staff"), {"result": {"allow": False}})
        get_user_model().objects.filter(username=USERNAME).update(is_staff=True)
        self.assertEqual(self.authorize("project:staff"), {"result": {"allow": True}})

    def test_each_call_is_recorded_in_the_log(self):
        self.authorize("project:alpha")
        self.assertEqual(list(HookCall.objects.values_list("kind", "connection")), [("authorize", "c-1")])


class HookTests(SwitchyardCallTestCase):
    def test_connect_sets_the_initial_state(self):
        response = self.hook("connect", user=self.payload_user, seq=3)
        self.assertEqual(response.json(), {"state": {"joined": True, "connect_seq": 3}})

    def test_connect_with_refuse_1_closes_with_4403(self):
        response = self.hook("connect", connection={"query": "a=b&refuse=1"}, seq=1)
        self.assertEqual(
            response.json(), {"close": {"code": 4403, "reason": "refused by on_connect"}}
        )

    def test_disconnect_answers_an_empty_object(self):
        self.assertEqual(self.hook("disconnect", seq=2).json(), {})

    def test_each_hook_call_is_recorded_once_in_the_log(self):
        self.hook("connect", connection={"id": "c-9"}, user=self.payload_user, seq=1)
        self.hook("connect", connection={"id": "other"}, seq=1)
        self.hook("disconnect", connection={"id": "c-9"}, user=self.payload_user, seq=2)
        calls = self.client.get("/ws/hooks/log/?connection=c-9").json()["calls"]
        user_id = self.payload_user["id"]
        self.assertEqual(
            [(c["kind"], c["connection"], c["user"], c["seq"]) for c in calls],
            [("connect", "c-9", user_id, 1), ("disconnect", "c-9", user_id, 2)],
        )

    def test_an_unsigned_hook_call_is_refused_and_not_recorded(self):
        body = call_body("$connect", seq=1)
        with self.assertLogs("django_switchyard", "WARNING"):
            response = post_signed(self.client, "/ws/hooks/connect/", body, "", signature="")
        self.assertEqual(response.status_code, 403)
        self.assertFalse(HookCall.objects.exists())

    def test_the_hook_log_needs_a_connection(self):
        self.assertEqual(self.client.get("/ws/hooks/log/").status_code, 400)


class LivePageTests(TestCase):
    def test_live_page_opens_a_socket_on_ws(self):
        response = self.client.get("/live/")
        self.assertContains(response, '"/ws/"')
        self.assertContains(response, "chat.send")
