"""The views Switchyard calls: one for commands, one per hook.

The life of a call: POST only → signature over the raw body → JSON body of the agreed
shape → the registered function → its dict as the JSON reply. Any refusal on the way is
`{"error": {"code", "message"}}` with a status Switchyard maps for the client.
"""

import json
import logging
from dataclasses import dataclass, field

from django.http import JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from . import conf, registry, signing
from .exceptions import CommandError, SignatureError

logger = logging.getLogger("switchyard_backend")

HOOK_COMMANDS = {"connect": "$connect", "disconnect": "$disconnect"}


@dataclass(frozen=True)
class Call:
    """One call from Switchyard, as its signed body says.

    command     the command's name, or "$connect" / "$disconnect" for hooks
    args        the client's argument, any JSON value (None for hooks)
    connection  {"id", "path", "query", "state"} of the socket the call comes from
    user        {"id", "username", "is_staff", "is_superuser"} as Switchyard resolved
                the session, or None; `request.user` is the same user when the
                browser's cookie is forwarded (the default)
    seq         the per-user sequence number of a hook call, else None
    """

    command: str
    args: object = None
    connection: dict = field(default_factory=dict)
    user: dict | None = None
    seq: int | None = None

    @property
    def connection_id(self):
        return self.connection.get("id")

    @property
    def state(self):
        """The connection's state, always a dict (empty until something sets it)."""
        state = self.connection.get("state")
        return state if isinstance(state, dict) else {}

    @property
    def query(self):
        """The socket URL's query string as a QueryDict."""
        return QueryDict(self.connection.get("query") or "")


# csrf_exempt: the browser never posts here; the signature is the protection.
@csrf_exempt
def command_view(request, name=None):
    """POST /ws/commands/<name>/: run the command the signed body names.

    `name` from the URL must agree with the body's `command` (the URL is not signed).
    Unknown commands are 404 `unknown_command`.
    """
    return _answer(request, lambda call: _run_command(request, call, name))


@csrf_exempt
def hook_view(request, kind):
    """POST /ws/hooks/connect/ and /ws/hooks/disconnect/."""
    return _answer(request, lambda call: _run_hook(request, call, kind))


def _run_command(request, call, name):
    if name is not None and name != call.command:
        raise CommandError("bad_request", f"URL names {name!r} but the body {call.command!r}")
    fn = registry.command(call.command)
    if fn is None:
        raise CommandError("unknown_command", f"no command {call.command!r}", status=404)
    return fn(request, call)


def _run_hook(request, call, kind):
    if call.command != HOOK_COMMANDS[kind]:
        raise CommandError("bad_request", f"the {kind} hook got {call.command!r}")
    fn = registry.hook(kind)
    if fn is None:
        return {}
    return fn(request, call)


def _answer(request, run):
    if request.method != "POST":
        return _error(405, "method_not_allowed", "POST only")
    body = request.body
    try:
        signing.verify(
            request.headers.get(signing.HEADER),
            body,
            conf.backend_secrets(),
            conf.signature_max_age(),
        )
    except SignatureError as error:
        logger.warning("refused a Switchyard call to %s: %s", request.path, error)
        return _error(403, "forbidden", "bad or missing signature")
    try:
        call = _parse(body)
        reply = run(call)
    except CommandError as error:
        return _error(error.status, error.code, error.message)
    if not isinstance(reply, dict):
        raise TypeError(f"a switchyard command must return a dict, not {type(reply).__name__}")
    return JsonResponse(reply)


def _parse(body):
    try:
        data = json.loads(body)
    except ValueError as error:
        raise CommandError("bad_request", f"body is not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        raise CommandError("bad_request", "body must be an object with a string 'command'")
    connection = data.get("connection") or {}
    user = data.get("user")
    seq = data.get("seq")
    if not isinstance(connection, dict) or not (user is None or isinstance(user, dict)):
        raise CommandError("bad_request", "'connection' must be an object, 'user' one or null")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise CommandError("bad_request", "'seq' must be an integer")
    return Call(data["command"], data.get("args"), connection, user, seq)


def _error(status, code, message):
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)
