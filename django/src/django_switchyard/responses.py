"""What a command, hook or authorization answers Switchyard with (DESIGN.md, "Command backends").

A command returns a `CommandResponse`, or any other JSON value as its `result`. Bad
values (a state that is not a dict, a close code Switchyard would refuse) raise at once
in the project's code, where the mistake is, rather than as a vague error on the socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse, JsonResponse

# Every way a push item may be addressed; exactly one per item.
PUSH_TARGETS = ("channel", "user", "users", "connection", "connections", "broadcast")
# RFC 6455 §5.5.1: a close frame's reason fits in 123 bytes after the 2-byte code.
MAX_CLOSE_REASON = 123


def _channels(value: str | Iterable[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{what} must be channel names (non-empty strings)")
    return names


def push_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """`item` checked as one push: one target key, a string `event`, optional `data`."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a push item must be a dict, not {type(item).__name__}")
    targets = [key for key in PUSH_TARGETS if key in item]
    if len(targets) != 1:
        raise ValueError(f"a push item needs exactly one of {', '.join(PUSH_TARGETS)}; got {sorted(item)}")
    if not isinstance(item.get("event"), str) or not item["event"]:
        raise ValueError("a push item needs a non-empty string 'event'")
    unknown = set(item) - {*PUSH_TARGETS, "event", "data"}
    if unknown:
        raise ValueError(f"unknown keys in a push item: {', '.join(sorted(unknown))}")
    return dict(item)


@dataclass(frozen=True)
class Close:
    """A connect hook's refusal: Switchyard closes the socket with `code` and `reason`."""

    code: int
    reason: str = ""

    def __post_init__(self) -> None:
        code = self.code
        if not isinstance(code, int) or isinstance(code, bool) or not (code == 1000 or 3000 <= code <= 4999):
            raise ValueError(f"a close code from Django must be 1000 or 3000-4999, not {code!r}")
        if len(self.reason.encode()) > MAX_CLOSE_REASON:
            raise ValueError(f"a close reason is at most {MAX_CLOSE_REASON} bytes of UTF-8")


class CommandResponse:
    """A reply to Switchyard: `result` for the client, and optionally

    state        a dict that replaces the connection's state;
    push         a list of `{"channel": name | "user": id | "users": [...] |
                 "connection": id | "connections": [...] | "broadcast": True,
                 "event": str, "data": ...}` to deliver;
    subscribe /  channel names to add to or drop from this connection;
    unsubscribe
    close        (hooks) a `Close(code, reason)` refusing the socket.
    """

    __slots__ = ("result", "state", "push", "subscribe", "unsubscribe", "close")

    def __init__(
        self,
        result: Any = None,
        *,
        state: Mapping[str, Any] | None = None,
        push: Iterable[Mapping[str, Any]] | None = None,
        subscribe: str | Iterable[str] | None = None,
        unsubscribe: str | Iterable[str] | None = None,
        close: Close | None = None,
    ) -> None:
        if state is not None and not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict, not {type(state).__name__}")
        if close is not None and not isinstance(close, Close):
            raise TypeError("close must be a Close(code, reason)")
        self.result = result
        self.state = dict(state) if state is not None else None
        self.push = [push_item(item) for item in push] if push is not None else None
        self.subscribe = _channels(subscribe, "subscribe")
        self.unsubscribe = _channels(unsubscribe, "unsubscribe")
        self.close = close

    @classmethod
    def refuse(cls, code: int, reason: str = "") -> CommandResponse:
        """A connect hook's answer that closes the socket at once."""
        return cls(close=Close(code, reason))

    def to_json(self, *, with_result: bool = True) -> dict[str, Any]:
        """The reply body Switchyard reads; keys that were not given are left out, and
        `result` too when `with_result` is false (a hook's reply has none)."""
        body: dict[str, Any] = {"result": self.result} if with_result else {}
        for key in ("state", "push", "subscribe", "unsubscribe"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.close is not None:
            body["close"] = {"code": self.close.code, "reason": self.close.reason}
        return body

    def __repr__(self) -> str:
        return f"CommandResponse({self.to_json()!r})"


def as_http(value: Any) -> HttpResponse:
    """What a signed view returned, as the HTTP reply: a response passes through, a
    CommandResponse is its JSON, anything else is the `result`."""
    if isinstance(value, HttpResponse):
        return value
    if not isinstance(value, CommandResponse):
        value = CommandResponse(value)
    # JsonResponse encodes with DjangoJSONEncoder: dates, decimals and UUIDs work.
    return JsonResponse(value.to_json())


def error(status: int, code: str, message: str) -> JsonResponse:
    """The `{"error": {"code", "message"}}` reply Switchyard maps for the client."""
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)
