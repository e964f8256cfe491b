"""Helpers for tests that play Switchyard: build a call body and POST it signed."""

import json

from . import signing


def call_body(command, args=None, *, connection=None, user=None, seq=None):
    """The JSON body Switchyard sends for `command`, as bytes."""
    body = {
        "command": command,
        "args": args,
        "connection": {"id": "c-1", "path": "/ws/", "query": "", "state": {}, **(connection or {})},
        "user": user,
    }
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def post_signed(client, path, body, secret, *, timestamp=None, signature=None):
    """POST `body` (bytes) to `path` with Django's test `client`, signed with `secret`
    at `timestamp` (now), or with the header value `signature` when given ("" for none)."""
    if signature is None:
        signature = signing.sign(secret, body, timestamp)
    headers = {signing.HEADER: signature} if signature else {}
    return client.post(path, body, content_type="application/json", headers=headers)
