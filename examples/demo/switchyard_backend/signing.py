"""The `X-Switchyard-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC covers `"<t>.<body bytes>"` with the shared backend secret, so the body cannot
be changed and an old call cannot be replayed once `t` is out of the window.
"""

import hashlib
import hmac
import time

from .exceptions import SignatureError

HEADER = "X-Switchyard-Signature"
SCHEME = "v1"


def sign(secret, body, timestamp=None):
    """The header value for `body` (bytes) signed with `secret` at `timestamp` (now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={_mac(secret, t, body)}"


def verify(header, body, secrets, max_age, now=None):
    """Check `header` against `body` and any of `secrets`; raise SignatureError if wrong.

    Every `v1=` value in the header is tried against every secret, each comparison in
    constant time, so a secret can be rotated on both sides without a flag day.
    """
    if not secrets:
        raise SignatureError("no backend secret is configured")
    if not header:
        raise SignatureError(f"no {HEADER} header")
    timestamp, macs = _parse(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > max_age:
        raise SignatureError(f"signature time {timestamp} is more than {max_age} s from now")
    for secret in secrets:
        expected = _mac(secret, timestamp, body).encode()
        if any(hmac.compare_digest(expected, mac) for mac in macs):
            return
    raise SignatureError("signature does not match")


def _parse(header):
    timestamp, macs = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if key == "t":
            if not value.isascii() or not value.isdigit():
                raise SignatureError("malformed signature time")
            timestamp = int(value)
        elif key == SCHEME:
            # Bytes, because compare_digest refuses non-ASCII str; header values are latin-1.
            macs.append(value.encode("latin-1", "replace"))
    if timestamp is None or not macs:
        raise SignatureError(f"signature header lacks t= or {SCHEME}=")
    return timestamp, macs


def _mac(secret, timestamp, body):
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
