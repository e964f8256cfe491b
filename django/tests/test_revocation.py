"""Pushed revocation: logouts, password changes, deactivation and deletion close sockets."""

import asyncio

import django
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction

from django_switchyard import testing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice(memory):
    user = User.objects.create_user("alice", password="old-password")
    testing.clear()
    return User.objects.get(pk=user.pk)  # as a view would load it


def test_logout_disconnects_that_session_only(client, alice):
    client.login(username="alice", password="old-password")
    key = client.session.session_key
    client.post("/logout/")
    assert testing.disconnects == [{"session_key": key}]


class Witness(list):
    """`testing.disconnects` that notes, as each revocation leaves, whether its session still exists."""

    def append(self, item):
        from django.contrib.sessions.models import Session

        super().append((item, Session.objects.filter(session_key=item.get("session_key")).exists()))


@pytest.fixture
def witness(monkeypatch):
    seen = Witness()
    monkeypatch.setattr(testing, "disconnects", seen)
    return seen


def test_a_logout_is_revoked_only_once_its_session_is_gone(client, alice, witness):
    # Sent while the row still existed, a handshake racing the revocation would be let in.
    client.login(username="alice", password="old-password")
    key = client.session.session_key
    client.post("/logout/")
    assert witness == [({"session_key": key}, False)]


@pytest.mark.skipif(django.VERSION < (5, 0), reason="alogout() is Django 5's")
def test_an_async_logout_is_revoked_only_once_its_session_is_gone(alice, witness):
    from asgiref.sync import sync_to_async
    from django.contrib.auth import alogout, login
    from django.db import connections
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = SessionStore()
    login(request, alice)
    request.session.save()
    key = request.session.session_key

    async def auser():
        return alice

    async def logout():
        await alogout(request)
        # The async ORM's thread has a connection of its own: close it, or the test database
        # cannot be dropped.
        await sync_to_async(connections.close_all)()

    request.auser = auser
    asyncio.run(logout())
    assert witness == [({"session_key": key}, False)]


def test_set_password_and_save_disconnects_the_user(alice):
    alice.set_password("new-password")
    alice.save()
    assert testing.disconnects == [{"user": str(alice.pk)}]


def test_a_password_assigned_directly_counts_too(alice):
    alice.password = "md5$x$0123"
    alice.save(update_fields=["password"])
    assert testing.disconnects == [{"user": str(alice.pk)}]


def test_deactivation_disconnects_the_user(alice):
    alice.is_active = False
    alice.save()
    assert testing.disconnects == [{"user": str(alice.pk)}]


def test_losing_staff_rights_disconnects_the_user(memory):
    boss = User.objects.create_user("boss", is_staff=True)
    boss = User.objects.get(pk=boss.pk)
    boss.is_staff = False
    boss.save()
    assert testing.disconnects == [{"user": str(boss.pk)}]


def test_deleting_a_user_disconnects_them(alice):
    pk = alice.pk
    alice.delete()
    assert testing.disconnects == [{"user": str(pk)}]


def test_other_changes_disconnect_nobody(alice):
    alice.first_name = "Alice"
    alice.save()
    alice.save(update_fields=["last_login"])
    assert testing.disconnects == []


def test_a_login_disconnects_nobody(client, alice):
    client.login(username="alice", password="old-password")
    assert testing.disconnects == []


def test_a_rolled_back_password_change_disconnects_nobody(alice):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            alice.set_password("new")
            alice.save()
            raise RuntimeError
    assert testing.disconnects == []


def test_changepassword_from_the_shell_disconnects_the_user(alice, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "Another-passw0rd!")
    call_command("changepassword", "alice", stdout=open("/dev/null", "w"))
    assert testing.disconnects == [{"user": str(alice.pk)}]


def test_the_admin_password_form_disconnects_the_user(client, alice):
    root = User.objects.create_superuser("root", password="pw")
    client.force_login(root)
    testing.clear()
    url = f"/admin/auth/user/{alice.pk}/password/"
    response = client.post(url, {"password1": "Fresh-passw0rd!", "password2": "Fresh-passw0rd!", "usable_password": "true"})
    assert response.status_code == 302, response.content[:300]
    assert {"user": str(alice.pk)} in testing.disconnects


def test_a_deferred_password_saved_later_counts_as_changed(alice):
    user = User.objects.only("username").get(pk=alice.pk)
    user.set_password("new")
    user.save()
    assert testing.disconnects == [{"user": str(alice.pk)}]
