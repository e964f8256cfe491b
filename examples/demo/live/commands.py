"""The demo's commands and hooks, answered for Switchyard (django-switchyard's registry).

django-switchyard finds this module by itself (every installed app's `commands.py`) and
serves it at /ws/commands/<name>/ (demo/urls.py mounts `django_switchyard.urls` there).
`demo.*` exist for Switchyard's integration tests: each shows one part of the contract
(request.user through the forwarded cookie, state round trips, pushes, errors, timeouts).
`chat.send` is what the /live/ page uses.
"""

import time

from django.http import JsonResponse

import django_switchyard as switchyard
from django_switchyard import CommandError, CommandResponse

from .models import HookCall

MAX_SLOW_SECONDS = 10  # demo.slow never holds a gunicorn worker longer than this
MAX_CHAT_TEXT = 500


@switchyard.command("demo.whoami")
def whoami(request, args):
    """Who Django thinks it is (from the cookie) beside who Switchyard says it is."""
    username = request.user.get_username() if request.user.is_authenticated else None
    return {"request_user": username, "payload_user": request.switchyard.user}


@switchyard.command("demo.count")
def count(request, args):
    """Increment the connection's `count`: state round-trips through Switchyard."""
    state = request.switchyard.state
    previous = state.get("count", 0)
    n = (previous if isinstance(previous, int) and not isinstance(previous, bool) else 0) + 1
    return CommandResponse({"count": n}, state={**state, "count": n})


@switchyard.command("demo.push")
def push(request, args):
    """Push whatever list of push items the client sent in `args["push"]`.

    Sent as the client wrote them (a JsonResponse passes through unchecked, where a
    CommandResponse would refuse odd items), so Switchyard's own handling can be tested.
    """
    items = _arg(args, "push", list)
    return JsonResponse({"result": {"ok": True}, "push": items})


@switchyard.command("demo.fail")
def fail(request, args):
    """Answer with the HTTP status `args["status"]` (400-599, default 500)."""
    status = args.get("status", 500) if isinstance(args, dict) else 500
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise CommandError("bad_args", "'status' must be an integer from 400 to 599")
    raise CommandError("demo_failure", "asked to fail", status=status)


@switchyard.command("demo.slow")
def slow(request, args):
    """Sleep `args["seconds"]` (at most 10), to see backend timeouts."""
    seconds = _arg(args, "seconds", (int, float))
    time.sleep(min(max(seconds, 0), MAX_SLOW_SECONDS))
    return "done"


@switchyard.command("chat.send", auth="authenticated")
def chat_send(request, args):
    """Broadcast `args["text"]` as a `chat.message` from the logged-in user."""
    text = _arg(args, "text", str)
    if not text.strip() or len(text) > MAX_CHAT_TEXT:
        raise CommandError("bad_args", f"'text' must be 1 to {MAX_CHAT_TEXT} characters")
    message = {"user": request.user.get_username(), "text": text}
    return CommandResponse({"ok": True}, push=[{"broadcast": True, "event": "chat.message", "data": message}])


@switchyard.authorize("project:*")
def authorize_project(request, channel):
    """May this user subscribe to `channel`? For `subscribe = "backend"` rules (`project:*`
    in Switchyard's tests): any logged-in user may follow a project, only staff
    `project:staff`. Every call is recorded: Switchyard caches the answer per user and
    channel, so a second tab asks no more.
    """
    _record(HookCall.Kind.AUTHORIZE, request.switchyard)
    user = request.user
    return user.is_authenticated and (channel != "project:staff" or user.is_staff)


@switchyard.hook("connect")
def on_connect(request):
    """Refuse sockets opened with `?refuse=1`; otherwise start their state."""
    call = request.switchyard
    _record(HookCall.Kind.CONNECT, call)
    if call.query.get("refuse") == "1":
        return CommandResponse.refuse(4403, "refused by on_connect")
    return {"joined": True, "connect_seq": call.seq}


@switchyard.hook("disconnect")
def on_disconnect(request):
    _record(HookCall.Kind.DISCONNECT, request.switchyard)


def _record(kind, call):
    HookCall.objects.create(
        kind=kind,
        connection=str(call.connection_id or ""),
        user_id=call.user_id,
        seq=call.seq,
    )


def _arg(args, key, types):
    """`args[key]` if it has one of `types`, else a `bad_args` error."""
    value = args.get(key) if isinstance(args, dict) else None
    if not isinstance(value, types) or isinstance(value, bool):
        raise CommandError("bad_args", f"args must be an object with a valid {key!r}")
    return value
