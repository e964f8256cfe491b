"""The exceptions of switchyard_backend."""


class SignatureError(Exception):
    """Raised by `signing.verify` when a call's `X-Switchyard-Signature` is missing,
    malformed, signed with another secret, or dated outside the allowed window.

    The message says which, for the log; the caller only ever learns "forbidden".
    """


class CommandError(Exception):
    """Raised by a command or hook function to answer with an error instead of a result.

    Switchyard turns the reply into that command's `{"error": {"code", "message"}}`; a
    403 becomes `forbidden` for the client whatever the code, any other status
    `backend_error` carrying this code and message.
    """

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
