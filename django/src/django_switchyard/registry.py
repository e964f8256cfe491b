"""Which function answers which command, hook or channel authorization.

Filled by the decorators in any installed app's `commands.py`, which the app's `ready()`
imports (like `admin.py`), and read by the one URL that dispatches by name
(`path("switchyard/", include("django_switchyard.urls"))`) and by the derived config:

    import django_switchyard as switchyard

    @switchyard.command("chat.send", auth="authenticated")
    def send(request, args):
        return switchyard.CommandResponse({"ok": True}, push=[...])

    @switchyard.hook("connect")
    def joined(request):
        return {"joined_at": time.time()}          # the connection's first state

    @switchyard.authorize("project:*")
    def may_follow(request, channel):
        return request.user.has_perm("projects.view_project")
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.http import HttpRequest

AUTH_RULES = ("anyone", "authenticated", "staff", "superuser")
HOOK_KINDS = ("connect", "disconnect")
# Names a client may send: Switchyard reserves these top-level keys for its own frames.
RESERVED = frozenset({"id", "welcome", "push", "join", "leave", "lost", "error"})
# What Switchyard accepts as a command name in a config key; keeps the derived TOML plain.
COMMAND_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Command:
    """A registered command: `fn(request, args)` under `name`, for users passing `auth`."""

    name: str
    fn: Callable[[HttpRequest, Any], Any]
    auth: str
    module: str


@dataclass(frozen=True)
class Authorizer:
    """A registered channel authorization: `fn(request, channel) -> bool` for `pattern`."""

    pattern: str
    fn: Callable[[HttpRequest, str], Any]

    def matches(self, channel: str) -> bool:
        return pattern_matches(self.pattern, channel)


_commands: dict[str, Command] = {}
_hooks: dict[str, Callable[[HttpRequest], Any]] = {}
_authorizers: list[Authorizer] = []


def command(name: str, *, auth: str = "anyone", login_required: bool = False) -> Callable[[F], F]:
    """Register `fn(request, args)` as the command `name` (e.g. "chat.send").

    `args` is the client's argument; the function returns a `CommandResponse`, or any
    JSON value as the result, or raises `CommandError`. `auth` ("anyone",
    "authenticated", "staff", "superuser"; `login_required=True` is "authenticated") is
    checked by Switchyard (the derived config carries it) and again here against
    `request.user`. Registering the same name twice raises ValueError.
    """
    if login_required:
        auth = "authenticated"
    if auth not in AUTH_RULES:
        raise ValueError(f"auth must be one of {', '.join(AUTH_RULES)}, not {auth!r}")
    if not isinstance(name, str) or not COMMAND_NAME.fullmatch(name) or name in RESERVED:
        raise ValueError(f"{name!r} cannot be a command name: letters, digits and _ . : - only, not a reserved word")

    def register(fn: F) -> F:
        if name in _commands:
            raise ValueError(f"switchyard command {name!r} is registered twice ({_commands[name].module})")
        _commands[name] = Command(name, fn, auth, getattr(fn, "__module__", "?"))
        return fn

    return register


def hook(kind: str) -> Callable[[F], F]:
    """Register `fn(request)` for the "connect" or "disconnect" hook.

    A connect hook returns None (accept), a dict (the connection's first state), or
    `CommandResponse.refuse(4403, "reason")`; what a disconnect hook returns is ignored.
    """
    if kind not in HOOK_KINDS:
        raise ValueError(f"unknown switchyard hook {kind!r}; expected one of {HOOK_KINDS}")

    def register(fn: F) -> F:
        if kind in _hooks:
            raise ValueError(f"switchyard hook {kind!r} is registered twice")
        _hooks[kind] = fn
        return fn

    return register


def authorize(pattern: str) -> Callable[[F], F]:
    """Register `fn(request, channel) -> bool` deciding who may subscribe to `pattern`.

    `pattern` is a channel rule's: exact, a trailing `*` for a prefix. The derived
    config makes it a `subscribe = "backend"` rule that asks this function.
    """
    if not isinstance(pattern, str) or not pattern or "*" in pattern[:-1]:
        raise ValueError(f"{pattern!r} is not a channel pattern (exact, or a trailing * for a prefix)")

    def register(fn: F) -> F:
        if any(a.pattern == pattern for a in _authorizers):
            raise ValueError(f"switchyard channel {pattern!r} has two authorizers")
        _authorizers.append(Authorizer(pattern, fn))
        return fn

    return register


def pattern_matches(pattern: str, channel: str) -> bool:
    """Switchyard's channel rule match: exact, or a prefix when `pattern` ends in `*`."""
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return channel == pattern


def get_command(name: str) -> Command | None:
    """The command registered as `name`, or None."""
    return _commands.get(name)


def get_hook(kind: str) -> Callable[[HttpRequest], Any] | None:
    """The function registered for hook `kind`, or None."""
    return _hooks.get(kind)


def get_authorizer(channel: str) -> Authorizer | None:
    """The first authorizer whose pattern matches `channel` (registration order), or None."""
    return next((a for a in _authorizers if a.matches(channel)), None)


def commands() -> list[Command]:
    """Every registered command, by name."""
    return [_commands[name] for name in sorted(_commands)]


def hooks() -> list[str]:
    """The kinds of hook that have a function."""
    return [kind for kind in HOOK_KINDS if kind in _hooks]


def authorizers() -> list[Authorizer]:
    """Every registered channel authorization, in registration order."""
    return list(_authorizers)


def user_passes(user: Any, auth: str) -> bool:
    """True when Django's `request.user` satisfies the auth rule `auth`."""
    if auth == "anyone":
        return True
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    if auth == "staff":
        return bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    if auth == "superuser":
        return bool(getattr(user, "is_superuser", False))
    return True
