"""Views that take WebSockets, as django-websocket offered: `@accept_websocket` and
`@require_websocket` on an ordinary view.

    from django_switchyard.websocket import accept_websocket

    @accept_websocket
    def echo(request):
        if not request.is_websocket():
            return render(request, "echo.html")          # plain HTTP, as before
        request.websocket.send(f"hello {request.user}")  # extra messages, in order
        request.websocket.state["seen"] = request.websocket.state.get("seen", 0) + 1
        return HttpResponse(request.websocket.message.upper())   # the reply message

`manage.py switchyard --print-config` gives each decorated view's URL a Switchyard route
with protocol "view" (`accept` or `require`): the browser opens a socket on the view's
own URL, and Switchyard posts each text message it sends there, signed, like a command
(`command` = "$message", `args` = the text). Inside, `request.is_websocket()` is True and
`request.websocket` holds the message, the connection's `state` (a dict; what the view
leaves in it comes back with the next message) and `send()`. The view's response body,
when it has one, is the last message sent back; a response that is not 2xx sends nothing
(Switchyard logs it as Django's fault and the socket stays open).

Plain HTTP requests to an `accept` view run it as before, CSRF checks included;
`require` views answer them 400. Only a call with a good signature skips CSRF.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, cast

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from . import signing
from .calls import Call
from .responses import error

MESSAGE_COMMAND = "$message"
# Set on a decorated view, for the derived config: "accept" or "require".
MARK = "switchyard_websocket"

ViewFunction = Callable[..., Any]


class WebSocket:
    """`request.websocket` while a view answers one message of a socket."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.message: str = call.args if isinstance(call.args, str) else ""
        self.state: dict[str, Any] = dict(call.state)
        self._outgoing: list[str] = []

    @property
    def connection_id(self) -> str | None:
        """The socket's id, for pushes to it from elsewhere (`{"connection": id}`)."""
        return self.call.connection_id

    @property
    def user(self) -> dict[str, Any] | None:
        """The user as Switchyard resolved the session (`request.user` is the same)."""
        return self.call.user

    def read(self) -> str:
        """The message being answered (django-websocket's name for it)."""
        return self.message

    def send(self, message: str | bytes | Any) -> None:
        """Send `message` back on the socket before the view's own reply: text as it is,
        bytes as UTF-8, anything else as JSON (DjangoJSONEncoder)."""
        if isinstance(message, bytes):
            message = message.decode("utf-8")
        elif not isinstance(message, str):
            message = json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))
        self._outgoing.append(message)

    def answer(self, response: HttpResponse) -> HttpResponse:
        """What Switchyard gets for this message: `{"messages": [...], "state": {...}}`."""
        if not 200 <= response.status_code < 300:
            return response
        if not getattr(response, "streaming", False) and response.content:
            self.send(response.content)
        return JsonResponse({"messages": self._outgoing, "state": self.state})


def _not_websocket() -> bool:
    return False


def _is_websocket() -> bool:
    return True


def _websocket_view(view: ViewFunction, kind: str) -> ViewFunction:
    # Deferred: views imports this module's siblings, and this one is imported by urls.
    from .views import signed_call

    protected = csrf_protect(view)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if signing.HEADER not in request.headers:
            if kind == "require":
                return HttpResponseBadRequest("This URL takes WebSocket connections only.\n")
            request.is_websocket = _not_websocket  # type: ignore[attr-defined]
            request.websocket = None  # type: ignore[attr-defined]
            return cast(HttpResponse, protected(request, *args, **kwargs))
        call = signed_call(request)
        if isinstance(call, HttpResponse):
            return call
        if call.command != MESSAGE_COMMAND or not isinstance(call.args, str):
            return error(400, "bad_request", f"a websocket view takes {MESSAGE_COMMAND!r} calls with a text message")
        websocket = WebSocket(call)
        request.is_websocket = _is_websocket  # type: ignore[attr-defined]
        request.websocket = websocket  # type: ignore[attr-defined]
        return websocket.answer(view(request, *args, **kwargs))

    setattr(wrapper, MARK, kind)
    # The middleware skips the wrapper; plain requests get CSRF checks from `protected`,
    # Switchyard's calls are refused unless signed.
    return cast(ViewFunction, csrf_exempt(wrapper))


def accept_websocket(view: ViewFunction) -> ViewFunction:
    """The view answers plain HTTP as before and each message of a socket on its URL."""
    return _websocket_view(view, "accept")


def require_websocket(view: ViewFunction) -> ViewFunction:
    """The view answers only messages of sockets on its URL; plain HTTP gets 400."""
    return _websocket_view(view, "require")
