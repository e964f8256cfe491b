"""The exceptions of django-switchyard, each with when it is raised."""

from __future__ import annotations


class SwitchyardError(Exception):
    """Base class of every exception this app raises on purpose."""


class SignatureError(SwitchyardError):
    """Raised by `signing.verify` when a call's `X-Switchyard-Signature` is missing,
    malformed, signed with another secret, or dated outside the allowed window.

    The message says which, for the log; the caller only ever learns "forbidden".
    """


class CommandError(SwitchyardError):
    """Raised by a command, hook or websocket view to answer with an error instead of a result.

    Switchyard turns the reply into that command's `{"error": {"code", "message"}}`; a
    403 becomes `forbidden` for the client whatever the code, any other status
    `backend_error` carrying this code and message.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class BadCall(CommandError):
    """Raised while reading a signed call whose body is not the agreed shape (400 `bad_request`)."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_request", message, status=400)


class PublishError(SwitchyardError):
    """Raised by a transport when Switchyard refused or never answered an admin API call.

    `publish()` and friends catch it and log it after the transaction committed: a
    request never fails because Switchyard is down. It escapes only from `position()`
    callers that ask for it (`raise_errors=True`) and from the transports themselves.
    """
