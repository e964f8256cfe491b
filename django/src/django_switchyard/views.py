"""The views Switchyard calls: your own (`command_view`, `CommandView`) and the registry's.

The life of a call: POST only → the signature over the raw body (403 otherwise, and
only then is the view exempt from CSRF) → the JSON body of the agreed shape (400) →
`request.switchyard` → the project's function → its answer as the JSON reply. A
`CommandError` on the way is `{"error": {"code", "message"}}` with its status, which
Switchyard maps for the client (403 → `forbidden`, others → `backend_error`).

    from django_switchyard.views import command_view, CommandResponse

    @command_view
    def rename(request):
        board = Board.objects.get(pk=request.switchyard.state["board"])
        ...
        return CommandResponse({"ok": True}, push=[{"channel": f"board:{board.pk}", ...}])
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, cast

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from . import calls, registry
from .calls import Call
from .exceptions import CommandError, SignatureError
from .responses import Close, CommandResponse, as_http, error

__all__ = ["Call", "Close", "CommandError", "CommandResponse", "CommandView", "command_view"]

logger = logging.getLogger("django_switchyard")

HOOK_COMMANDS = {"connect": "$connect", "disconnect": "$disconnect"}
AUTHORIZE_COMMAND = "$authorize"

ViewFunction = Callable[..., Any]


def signed_call(request: HttpRequest) -> Call | HttpResponse:
    """The verified call of `request`, or the refusal to send instead.

    Sets `request.switchyard` on success. A bad signature is logged at WARNING with its
    reason (the caller learns only "forbidden"); a bad body is a 400 `bad_request`.
    """
    if request.method != "POST":
        return error(405, "method_not_allowed", "Switchyard calls are POST")
    try:
        calls.verify(request)
    except SignatureError as refusal:
        logger.warning("refused a Switchyard call to %s: %s", request.path, refusal)
        return error(403, "forbidden", "bad or missing signature")
    try:
        call = calls.parse(request.body)
    except CommandError as bad:
        logger.warning("a signed Switchyard call to %s is malformed: %s", request.path, bad.message)
        return error(bad.status, bad.code, bad.message)
    request.switchyard = call  # type: ignore[attr-defined]
    return call


def _run(request: HttpRequest, run: Callable[[Call], Any]) -> HttpResponse:
    call = signed_call(request)
    if isinstance(call, HttpResponse):
        return call
    try:
        return as_http(run(call))
    except CommandError as failure:
        return error(failure.status, failure.code, failure.message)


def command_view(view: ViewFunction) -> ViewFunction:
    """Make `view(request, *args, **kwargs)` a view only Switchyard may call.

    Inside, `request.switchyard` is the `Call` (args, connection, state, user, seq). The
    view returns a `CommandResponse`, any JSON value (the result), or an HttpResponse;
    it may raise `CommandError`. Works for command URLs and for hook URLs (`$connect`,
    `$disconnect` calls) alike.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _run(request, lambda call: view(request, *args, **kwargs))

    # The browser never posts here: a signed body is the protection, and an unsigned
    # call is refused before the view runs, so CSRF is waived only for signed calls.
    return cast(ViewFunction, csrf_exempt(wrapper))


@method_decorator(csrf_exempt, name="dispatch")
class CommandView(View):
    """A class-based view Switchyard calls: override `command(request, args)`.

    Only POST is served; the signature is checked before `command` runs, exactly as
    `command_view` does.
    """

    http_method_names = ["post"]

    def command(self, request: HttpRequest, args: Any) -> Any:
        """Answer the call: a `CommandResponse`, a JSON value (the result), or an HttpResponse."""
        raise NotImplementedError(f"{type(self).__name__} must define command(request, args)")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _run(request, lambda call: self.command(request, call.args))

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return error(405, "method_not_allowed", "Switchyard calls are POST")


# === the registry's views (django_switchyard.urls) ===


@csrf_exempt
def dispatch_command(request: HttpRequest, name: str | None = None) -> HttpResponse:
    """POST commands/<name>/: run the registered command the signed body names.

    `name` from the URL must agree with the body's `command` (the URL is not signed).
    Unknown commands are 404 `unknown_command`.
    """
    return _run(request, lambda call: _run_command(request, call, name))


@csrf_exempt
def dispatch_hook(request: HttpRequest, kind: str) -> HttpResponse:
    """POST hooks/connect/ and hooks/disconnect/: the registered hook, or accept."""
    return _run(request, lambda call: _run_hook(request, call, kind))


@csrf_exempt
def dispatch_authorize(request: HttpRequest) -> HttpResponse:
    """POST authorize/: may this user subscribe to `args.channel`? Asks the registered
    authorizer whose pattern matches; with none, the answer is no."""
    return _run(request, lambda call: _run_authorize(request, call))


def _run_command(request: HttpRequest, call: Call, name: str | None) -> Any:
    if name is not None and name != call.command:
        raise CommandError("bad_request", f"URL names {name!r} but the body {call.command!r}")
    command = registry.get_command(call.command)
    if command is None:
        raise CommandError("unknown_command", f"no command {call.command!r}", status=404)
    if not registry.user_passes(request.user, command.auth):
        raise CommandError("forbidden", f"{call.command} needs a user who is {command.auth}", status=403)
    return command.fn(request, call.args)


def _run_hook(request: HttpRequest, call: Call, kind: str) -> Any:
    if call.command != HOOK_COMMANDS[kind]:
        raise CommandError("bad_request", f"the {kind} hook got {call.command!r}")
    fn = registry.get_hook(kind)
    answer = fn(request) if fn is not None else None
    if kind == "disconnect" or answer is None:
        answer = CommandResponse()
    elif isinstance(answer, dict):
        answer = CommandResponse(state=answer)
    if isinstance(answer, CommandResponse):
        return JsonResponse(answer.to_json(with_result=False))
    return answer


def _run_authorize(request: HttpRequest, call: Call) -> Any:
    if call.command != AUTHORIZE_COMMAND:
        raise CommandError("bad_request", f"the authorize view got {call.command!r}")
    channel = call.args.get("channel") if isinstance(call.args, dict) else None
    if not isinstance(channel, str) or not channel:
        raise CommandError("bad_request", "an authorization names a 'channel'")
    authorizer = registry.get_authorizer(channel)
    allowed = bool(authorizer is not None and authorizer.fn(request, channel))
    return authorization_reply(allowed)


def authorization_reply(allowed: bool) -> CommandResponse:
    """The answer to a `subscribe = "backend"` question (the one place its shape lives)."""
    return CommandResponse({"allow": allowed})
