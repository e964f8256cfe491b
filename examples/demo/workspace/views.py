"""The workspace page and its refetch endpoint.

The page is rendered with the recent messages and every task, and with each channel's
position read *before* those queries (`{% switchyard_position %}`): the client's first
subscribe starts there, so an event published between the queries and the socket is
replayed rather than lost. When Switchyard cannot replay (`recovered: false`, e.g. it
restarted with the in-process broker), the page calls `tasks.json` / `messages.json`.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render

import django_switchyard as switchyard

from . import notify
from .commands import room_channel
from .events import TaskEvents
from .models import Message, Task

RECENT_MESSAGES = 50
ROOM = "lobby"


def _messages():
    recent = Message.objects.filter(room=ROOM).select_related("author").order_by("-id")[:RECENT_MESSAGES]
    return [m.to_dict() for m in reversed(recent)]


def _tasks():
    return [t.to_dict() for t in Task.objects.select_related("assignee")]


@login_required
def workspace(request):
    channels = {
        "tasks": TaskEvents.default_channel(),
        "room": room_channel(ROOM),
        "notifications": notify.channel(request.user.pk),
    }
    # Positions first, then the queries: nothing committed in between is missed.
    positions = [switchyard.position(name) for name in channels.values()]
    page = {
        "user": {"id": str(request.user.pk), "username": request.user.get_username()},
        "users": list(get_user_model().objects.filter(is_active=True).order_by("username").values_list("username", flat=True)),
        "channels": channels,
        "messages": _messages(),
        "tasks": _tasks(),
        "statuses": [{"value": value, "label": label} for value, label in Task.Status.choices],
    }
    return render(request, "workspace/workspace.html", {"page": page, "positions": positions})


@login_required
def tasks_json(request):
    return JsonResponse({"tasks": _tasks()})


@login_required
def messages_json(request):
    return JsonResponse({"messages": _messages()})
