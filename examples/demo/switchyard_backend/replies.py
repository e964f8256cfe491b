"""Builders for the JSON a command or hook answers with (DESIGN.md, "Command backends").

A command function may return any dict of that shape; these only spell it out.
"""


def reply(result=None, *, state=None, push=None, subscribe=None, unsubscribe=None):
    """A command's reply: `result` for the client, and optionally

    state        a dict that replaces the connection's state;
    push         a list of `{"connection": id | "user": id | "broadcast": True |
                 "channel": name, "event": str, "data": ...}` to deliver;
    subscribe /  channel names to add to or drop from this connection.
    unsubscribe
    """
    body = {"result": result}
    for key, value in [
        ("state", state),
        ("push", push),
        ("subscribe", subscribe),
        ("unsubscribe", unsubscribe),
    ]:
        if value is not None:
            body[key] = value
    return body


def state(value):
    """A hook's reply that accepts the socket and sets its initial state (a dict)."""
    return {"state": value}


def close(code, reason):
    """A connect hook's reply that refuses the socket: Switchyard closes it with `code`
    (4000-4999, e.g. 4403) and `reason` (at most 123 bytes of UTF-8)."""
    return {"close": {"code": code, "reason": reason}}
