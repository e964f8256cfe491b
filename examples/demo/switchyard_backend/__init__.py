"""Answering Switchyard's calls from Django: command views and connection hooks.

Switchyard forwards a client's command (`{"chat.send": {...}}` on a socket) to a Django
view as a signed JSON POST, and calls hooks when a socket opens and closes. This package
is the Django side of that contract (DESIGN.md, "Command backends"):

    from switchyard_backend import CommandError, reply, switchyard_command

    @switchyard_command("chat.send", login_required=True)
    def send(request, call):
        text = call.args["text"]
        return reply({"ok": True}, push=[{"broadcast": True, "event": "chat.message",
                                           "data": {"text": text}}])

Register the views with `path("ws/", include("switchyard_backend.urls"))` and point
`[commands."chat.*"] url` at `http://HOST:PORT/ws/commands/{command}/`. Every call is
checked against `X-Switchyard-Signature` before any command runs; the secret is the
setting `SWITCHYARD_BACKEND_SECRET` (default: the environment variable of that name).

It is written to move, unchanged in shape, into the `django-switchyard` app.
"""

from .exceptions import CommandError, SignatureError
from .registry import switchyard_command, switchyard_hook
from .replies import close, reply, state

__all__ = [
    "CommandError",
    "SignatureError",
    "close",
    "reply",
    "state",
    "switchyard_command",
    "switchyard_hook",
]
