"""The `X-Switchyard-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC covers `"<t>.<body bytes>"` with the shared backend secret, so the body cannot
be changed and an old call cannot be replayed once `t` is out of the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from .exceptions import SignatureError

HEADER = "X-Switchyard-Signature"
SCHEME = "v1"
# A header Switchyard writes has one `v1=`; a few allow a rotating signer to send both.
MAX_SIGNATURES = 8
# Unix seconds fit in 11 digits until the year 5138; longer is garbage (and int() of a
# 5000-digit string raises ValueError since Python 3.11).
MAX_TIME_DIGITS = 12


def sign(secret: str, body: bytes, timestamp: float | None = None) -> str:
    """The header value for `body` signed with `secret` at `timestamp` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={_mac(secret, t, body)}"


def verify(
    header: str | None, body: bytes, secrets: Sequence[str], max_age: float, now: float | None = None
) -> None:
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
        # No short-circuit: every pair is compared, so timing says nothing about which.
        matches = [hmac.compare_digest(expected, mac) for mac in macs]
        if any(matches):
            return
    raise SignatureError("signature does not match")


def _parse(header: str) -> tuple[int, list[bytes]]:
    timestamp: int | None = None
    macs: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if key == "t":
            if timestamp is not None:
                raise SignatureError("signature header has two t= values")
            if not value.isascii() or not value.isdigit() or len(value) > MAX_TIME_DIGITS:
                raise SignatureError("malformed signature time")
            timestamp = int(value)
        elif key == SCHEME:
            if len(macs) == MAX_SIGNATURES:
                raise SignatureError(f"signature header has more than {MAX_SIGNATURES} {SCHEME}= values")
            # Bytes, because compare_digest refuses non-ASCII str; header values are latin-1.
            macs.append(value.encode("latin-1", "replace"))
    if timestamp is None or not macs:
        raise SignatureError(f"signature header lacks t= or {SCHEME}=")
    return timestamp, macs


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
