"""Which function answers which command or hook, filled by the two decorators.

Apps register at import, as they do template tags: put the decorated functions in a
module your AppConfig.ready() imports (the demo's `live/commands.py`).
"""

import functools

from .exceptions import CommandError

HOOK_KINDS = ("connect", "disconnect")

_commands = {}
_hooks = {}


def switchyard_command(name, *, login_required=False):
    """Register `fn(request, call) -> dict` as the command `name` (e.g. "chat.send").

    `call` is a `views.Call`; the return value is the reply body (see `replies.reply`).
    With `login_required`, an anonymous `request.user` gets 403 `forbidden` first.
    Registering the same name twice is a programming error and raises ValueError.
    """

    def register(fn):
        if name in _commands:
            raise ValueError(f"switchyard command {name!r} is registered twice")
        _commands[name] = _guard(fn) if login_required else fn
        return fn

    return register


def switchyard_hook(kind):
    """Register `fn(request, call) -> dict` for the "connect" or "disconnect" hook.

    A connect hook answers `replies.state(...)` or `replies.close(code, reason)`; what a
    disconnect hook answers is ignored (`{}` will do).
    """
    if kind not in HOOK_KINDS:
        raise ValueError(f"unknown switchyard hook {kind!r}; expected one of {HOOK_KINDS}")

    def register(fn):
        if kind in _hooks:
            raise ValueError(f"switchyard hook {kind!r} is registered twice")
        _hooks[kind] = fn
        return fn

    return register


def command(name):
    """The function registered for `name`, or None."""
    return _commands.get(name)


def hook(kind):
    """The function registered for hook `kind`, or None."""
    return _hooks.get(kind)


def _guard(fn):
    @functools.wraps(fn)
    def wrapper(request, call):
        if not request.user.is_authenticated:
            raise CommandError("forbidden", "log in to use this command", status=403)
        return fn(request, call)

    return wrapper
