"""The workspace's commands and pages, with django-switchyard's memory transport standing
in for Switchyard's admin API (what would have been published is in `testing.outbox`)."""

import json

from django.contrib.auth import get_user_model
from django.test import TestCase, override_settings

from django_switchyard import testing

from .models import Message, Task

SECRET = "workspace-tests-secret"


@override_settings(SWITCHYARD_BACKEND_SECRET=SECRET, SWITCHYARD_TRANSPORT="memory")
class WorkspaceTestCase(TestCase):
    def setUp(self):
        User = get_user_model()
        self.alice = User.objects.create_user("alice")  # no password: nothing to hash
        self.bob = User.objects.create_user("bob")
        self.client.force_login(self.alice)
        testing.clear()

    def call(self, command, args):
        """Runs `command` as Switchyard would for alice's socket; returns (status, reply)."""
        user = {"id": str(self.alice.pk), "username": "alice", "is_staff": False, "is_superuser": False}
        body = testing.call_body(command, args, user=user)
        with self.captureOnCommitCallbacks(execute=True):
            response = testing.post_signed(self.client, f"/ws/commands/{command}/", body, SECRET)
        return response.status_code, json.loads(response.content)

    def published(self):
        return [(e.channel, e.event) for e in testing.outbox]


class ChatTests(WorkspaceTestCase):
    def test_a_line_is_stored_and_pushed_to_the_room(self):
        status, reply = self.call("room.send", {"text": "  hello  "})
        self.assertEqual(status, 200)
        message = Message.objects.get()
        self.assertEqual((message.author, message.text), (self.alice, "hello"))
        self.assertEqual(self.published(), [("room:lobby", "message")])
        self.assertEqual(testing.outbox[0].data["author"], "alice")

    def test_a_mention_notifies_the_mentioned_user_only(self):
        self.call("room.send", {"text": "@bob and @alice and @nobody: look"})
        notes = [e for e in testing.outbox if e.event == "notification"]
        self.assertEqual([e.channel for e in notes], [f"user:{self.bob.pk}"])
        self.assertEqual(notes[0].data["kind"], "mention")

    def test_an_empty_line_is_bad_args_and_nothing_is_stored(self):
        status, reply = self.call("room.send", {"text": "   "})
        self.assertEqual(status, 400)
        self.assertEqual(reply["error"]["code"], "bad_args")
        self.assertFalse(Message.objects.exists())
        self.assertEqual(testing.outbox, [])


class TaskTests(WorkspaceTestCase):
    def test_creating_a_task_publishes_it_on_the_model_channel(self):
        status, reply = self.call("task.create", {"title": "Ship it"})
        self.assertEqual(status, 200)
        self.assertEqual(self.published(), [("model:workspace.Task", "created")])
        self.assertEqual(testing.outbox[0].data["title"], "Ship it")

    def test_assigning_a_task_tells_the_new_assignee_once(self):
        task = Task.objects.create(title="Review")
        testing.clear()
        self.call("task.update", {"id": task.pk, "assignee": "bob"})
        self.call("task.update", {"id": task.pk, "status": "doing"})
        notes = [e for e in testing.outbox if e.event == "notification"]
        self.assertEqual([(e.channel, e.data["kind"]) for e in notes], [(f"user:{self.bob.pk}", "assigned")])
        self.assertEqual([e.event for e in testing.outbox if e.channel == "model:workspace.Task"], ["updated", "updated"])

    def test_an_unknown_status_or_user_is_bad_args(self):
        task = Task.objects.create(title="Review")
        self.assertEqual(self.call("task.update", {"id": task.pk, "status": "later"})[1]["error"]["code"], "bad_args")
        self.assertEqual(self.call("task.update", {"id": task.pk, "assignee": "zed"})[1]["error"]["code"], "bad_args")
        task.refresh_from_db()
        self.assertEqual((task.status, task.assignee), ("todo", None))

    def test_deleting_a_missing_task_is_not_found(self):
        status, reply = self.call("task.delete", {"id": 999})
        self.assertEqual((status, reply["error"]["code"]), (404, "not_found"))


class PageTests(WorkspaceTestCase):
    def test_the_page_embeds_a_position_for_each_of_its_channels(self):
        response = self.client.get("/workspace/")
        self.assertEqual(response.status_code, 200)
        for channel in ["model:workspace.Task", "room:lobby", f"user:{self.alice.pk}"]:
            self.assertContains(response, f'data-switchyard-position="{channel}"')

    def test_the_page_and_its_refetch_need_a_login(self):
        self.client.logout()
        for path in ["/workspace/", "/workspace/tasks.json", "/workspace/messages.json"]:
            self.assertEqual(self.client.get(path).status_code, 302, path)

    def test_the_refetch_lists_every_task(self):
        Task.objects.create(title="One")
        Task.objects.create(title="Two")
        self.assertEqual([t["title"] for t in self.client.get("/workspace/tasks.json").json()["tasks"]], ["One", "Two"])
