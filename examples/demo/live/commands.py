"""The demo's commands and hooks, answered for Switchyard (see switchyard_backend).

`demo.*` exist for Switchyard's integration tests: each shows one part of the contract
(request.user through the forwarded cookie, state round trips, pushes, errors, timeouts).
`chat.send` is what the /live/ page uses.
"""

import time

from switchyard_backend import (
    CommandError,
    close,
    reply,
    state,
    switchyard_command,
    switchyard_hook,
)

from .models import HookCall

MAX_SLOW_SECONDS = 10  # demo.slow never holds a gunicorn worker longer than this
MAX_CHAT_TEXT = 500


@switchyard_command("demo.whoami")
def whoami(request, call):
    """Who Django thinks it is (from the cookie) beside who Switchyard says it is."""
    username = request.user.get_username() if request.user.is_authenticated else None
    return reply({"request_user": username, "payload_user": call.user})


@switchyard_command("demo.count")
def count(request, call):
    """Increment the connection's `count`: state round-trips through Switchyard."""
    previous = call.state.get("count", 0)
    n = (previous if isinstance(previous, int) and not isinstance(previous, bool) else 0) + 1
    return reply({"count": n}, state={**call.state, "count": n})


@switchyard_command("demo.push")
def push(request, call):
    """Push whatever list of push items the client sent in `args["push"]`."""
    items = _arg(call, "push", list)
    return reply({"ok": True}, push=items)


@switchyard_command("demo.fail")
def fail(request, call):
    """Answer with the HTTP status `args["status"]` (400-599, default 500)."""
    status = call.args.get("status", 500) if isinstance(call.args, dict) else 500
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise CommandError("bad_args", "'status' must be an integer from 400 to 599")
    raise CommandError("demo_failure", "asked to fail", status=status)


@switchyard_command("demo.slow")
def slow(request, call):
    """Sleep `args["seconds"]` (at most 10), to see backend timeouts."""
    seconds = _arg(call, "seconds", (int, float))
    time.sleep(min(max(seconds, 0), MAX_SLOW_SECONDS))
    return reply("done")


@switchyard_command("chat.send", login_required=True)
def chat_send(request, call):
    """Broadcast `args["text"]` as a `chat.message` from the logged-in user."""
    text = _arg(call, "text", str)
    if not text.strip() or len(text) > MAX_CHAT_TEXT:
        raise CommandError("bad_args", f"'text' must be 1 to {MAX_CHAT_TEXT} characters")
    message = {"user": request.user.get_username(), "text": text}
    return reply({"ok": True}, push=[{"broadcast": True, "event": "chat.message", "data": message}])


@switchyard_command("$authorize")
def authorize(request, call):
    """May this user subscribe to `args["channel"]`? For `subscribe = "backend"` rules
    (`project:*` in Switchyard's tests): any logged-in user may follow a project, only
    staff `project:staff`. Every call is recorded: Switchyard caches the answer per user
    and channel, so a second tab asks no more.
    """
    _record(HookCall.Kind.AUTHORIZE, call)
    channel = _arg(call, "channel", str)
    user = request.user
    allow = user.is_authenticated and (channel != "project:staff" or user.is_staff)
    return reply({"allow": allow})


@switchyard_hook("connect")
def on_connect(request, call):
    """Refuse sockets opened with `?refuse=1`; otherwise start their state."""
    _record(HookCall.Kind.CONNECT, call)
    if call.query.get("refuse") == "1":
        return close(4403, "refused by on_connect")
    return state({"joined": True, "connect_seq": call.seq})


@switchyard_hook("disconnect")
def on_disconnect(request, call):
    _record(HookCall.Kind.DISCONNECT, call)
    return {}


def _record(kind, call):
    HookCall.objects.create(
        kind=kind,
        connection=str(call.connection_id or ""),
        user_id=(call.user or {}).get("id"),
        seq=call.seq,
    )


def _arg(call, key, types):
    """`call.args[key]` if it has one of `types`, else a `bad_args` error."""
    value = call.args.get(key) if isinstance(call.args, dict) else None
    if not isinstance(value, types) or isinstance(value, bool):
        raise CommandError("bad_args", f"args must be an object with a valid {key!r}")
    return value
