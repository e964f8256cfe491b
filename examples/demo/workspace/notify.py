"""Per-user notifications: events on the channel `user:<id>`, which only that user may
subscribe to (Switchyard binds `{user_id}` to the subscriber), kept in its history so a
page that was reconnecting still gets them."""

import django_switchyard as switchyard


def channel(user_id):
    return f"user:{user_id}"


def user(user_id, kind, text, **extra):
    """Tell user `user_id` something: `kind` ("mention", "assigned"), a sentence, and extras."""
    switchyard.publish(channel(user_id), "notification", {"kind": kind, "text": text, **extra})
