"""The workspace's commands: ordinary Django code that Switchyard calls (signed) when a page
sends `room.send`, `task.create`, `task.update` or `task.delete` over its socket.

`request.user` is the page's user (Switchyard forwards the browser's session cookie);
`CommandError` becomes the client's `{"error": {"code", "message"}}`.
"""

import re

from django.contrib.auth import get_user_model
from django.db import transaction

import django_switchyard as switchyard
from django_switchyard import CommandError

from . import notify
from .models import MAX_MESSAGE, MAX_TITLE, Message, Task

ROOMS = ("lobby",)
MENTION = re.compile(r"@([\w.@+-]{1,150})")


def room_channel(room):
    return f"room:{room}"


def _text(args, key, limit):
    value = args.get(key) if isinstance(args, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise CommandError("bad_args", f"'{key}' must be a non-empty string")
    value = value.strip()
    if len(value) > limit:
        raise CommandError("bad_args", f"'{key}' is longer than {limit} characters")
    return value


def _task(args):
    pk = args.get("id") if isinstance(args, dict) else None
    if not isinstance(pk, int) or isinstance(pk, bool):
        raise CommandError("bad_args", "'id' must be a task id")
    try:
        return Task.objects.select_for_update().get(pk=pk)
    except Task.DoesNotExist:
        raise CommandError("not_found", f"there is no task {pk}", status=404) from None


@switchyard.command("room.send", auth="authenticated")
def send(request, args):
    """Post a line to a room: stored, then pushed to everyone in it; @name mentions notify."""
    room = args.get("room", "lobby") if isinstance(args, dict) else "lobby"
    if room not in ROOMS:
        raise CommandError("bad_args", f"no room {room!r}")
    text = _text(args, "text", MAX_MESSAGE)
    with transaction.atomic():
        message = Message.objects.create(room=room, author=request.user, text=text)
        switchyard.publish(room_channel(room), "message", message.to_dict())
        names = set(MENTION.findall(text)) - {request.user.get_username()}
        for user in get_user_model().objects.filter(username__in=names):
            notify.user(user.pk, "mention", f"{request.user.get_username()} mentioned you: {text}", room=room)
    return {"ok": True, "id": message.pk}


@switchyard.command("task.create", auth="authenticated")
def create_task(request, args):
    title = _text(args, "title", MAX_TITLE)
    task = Task.objects.create(title=title)  # TaskEvents publishes "created" on commit
    return {"ok": True, "id": task.pk}


@switchyard.command("task.update", auth="authenticated")
def update_task(request, args):
    """Change a task's `status` and/or `assignee` (a username, or null for nobody)."""
    with transaction.atomic():
        task = _task(args)
        if "status" in args:
            if args["status"] not in Task.Status.values:
                raise CommandError("bad_args", f"'status' is one of {', '.join(Task.Status.values)}")
            task.status = args["status"]
        if "assignee" in args:
            name = args["assignee"]
            if name is None:
                task.assignee = None
            else:
                task.assignee = get_user_model().objects.filter(username=name).first()
                if task.assignee is None:
                    raise CommandError("bad_args", f"no user {name!r}")
        task.save()
    return {"ok": True}


@switchyard.command("task.delete", auth="authenticated")
def delete_task(request, args):
    with transaction.atomic():
        _task(args).delete()
    return {"ok": True}
