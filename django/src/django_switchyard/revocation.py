"""Pushed revocation: tell Switchyard at once when a session or a user stops being good.

Connected by the app's `ready()` (with `dispatch_uid`s, so twice is once):

- `user_logged_out` → `disconnect(session_key=...)`: that browser's sockets close with 4401,
  sent once the session is gone (see `logged_out`).
- a user saved with another password hash (`set_password()` + `save()`, the admin's
  password form, `changepassword`), made inactive, or given other staff or superuser
  rights, and a user deleted → `disconnect(user=...)`: every socket of that user closes,
  and the sessions whose hash no longer matches are anonymous at their next handshake.

Each goes out when the transaction commits, like every event. Because every logout,
password change and deactivation is reported, the derived config turns Switchyard's
`[django] pushed_revocation` on, which lets handshakes use its cache.

What a user save compares with is what the instance held when it was loaded (kept at
`post_init`, no query). Not seen: `QuerySet.update(password=..., is_active=...)` and
changes made outside Django; Switchyard's periodic re-check (`revalidate`) covers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import post_delete, post_init, post_save
from django.http import HttpRequest

from . import publishing

# What decides whether a session's sockets may stay open: the hash the session was
# signed against, whether the user may log in, and the rights routes check.
WATCHED = ("password", "is_active", "is_staff", "is_superuser")
SNAPSHOT = "_switchyard_auth_snapshot"


def connect() -> None:
    """Connect the receivers; called by `ready()`."""
    user_model = get_user_model()
    user_logged_out.connect(logged_out, dispatch_uid="django_switchyard.revocation.logged_out")
    post_init.connect(remember, sender=user_model, dispatch_uid="django_switchyard.revocation.remember")
    post_save.connect(saved, sender=user_model, dispatch_uid="django_switchyard.revocation.saved")
    post_delete.connect(deleted, sender=user_model, dispatch_uid="django_switchyard.revocation.deleted")


def _snapshot(instance: Any) -> dict[str, Any]:
    """The watched values the instance holds now; deferred fields are left out (no query)."""
    loaded = instance.__dict__
    return {name: loaded[name] for name in _watched(instance) if name in loaded}


def _watched(instance: Any) -> list[str]:
    names = {f.attname for f in instance._meta.concrete_fields}
    return [name for name in WATCHED if name in names]


def remember(sender: Any, instance: Any, **kwargs: Any) -> None:
    instance.__dict__[SNAPSHOT] = _snapshot(instance)


def saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    before = instance.__dict__.get(SNAPSHOT)
    after = _snapshot(instance)
    instance.__dict__[SNAPSHOT] = after
    if created or raw or before is None:
        return
    update_fields = kwargs.get("update_fields")
    changed = [
        name
        for name in _watched(instance)
        if name in after
        and (update_fields is None or name in update_fields)
        # A field not loaded before but saved now may have changed: assume it did.
        and (name not in before or before[name] != after[name])
    ]
    if changed:
        publishing.disconnect(user=instance, using=kwargs.get("using"))


def deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is not None:
        publishing.disconnect(user=instance, using=kwargs.get("using"))


def logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        after_delete(session, lambda: publishing.disconnect(session_key=key))
    elif user is not None and getattr(user, "pk", None) is not None:
        # No session key to name (a custom logout): closing all of the user's sockets
        # errs on the safe side.
        publishing.disconnect(user=user)


def after_delete(session: Any, revoke: Callable[[], None]) -> None:
    """Run `revoke` once `session` is deleted, not before.

    Django sends `user_logged_out` *before* `logout()` flushes the session. A revocation
    sent from the signal closes the sockets while the session row still exists, and a
    handshake racing it (a reconnect, another tab) reads the old session and is let in.
    So the revocation waits for the session's own `delete()` / `adelete()` (what
    `flush()` / `aflush()` call, whichever backend): this instance's methods are wrapped
    once, run the deletion, put the originals back and then revoke. With the postgres
    transport the revocation row then follows the deletion in the same transaction (or
    commits after it); with http it leaves after commit, as every event does.
    """
    delete, adelete = session.delete, getattr(session, "adelete", None)

    def restore() -> None:
        for name in ("delete", "adelete"):
            session.__dict__.pop(name, None)

    def delete_then_revoke(*args: Any, **kwargs: Any) -> Any:
        restore()
        result = delete(*args, **kwargs)
        revoke()
        return result

    async def adelete_then_revoke(*args: Any, **kwargs: Any) -> Any:
        restore()
        assert adelete is not None
        result = await adelete(*args, **kwargs)
        await sync_to_async(revoke)()
        return result

    session.delete = delete_then_revoke
    if adelete is not None:
        session.adelete = adelete_then_revoke
