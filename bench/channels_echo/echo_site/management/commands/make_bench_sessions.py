"""`manage.py make_bench_sessions N USERS OUT`: N logged-in sessions spread over USERS users.

Each session is what `django.contrib.auth.login` would store (user id, backend, the
password-derived hash), written in bulk; OUT gets one session key per line. Every user
shares one password hash, computed once, so making thousands of users takes no time.
"""

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.crypto import get_random_string

BACKEND = "django.contrib.auth.backends.ModelBackend"
BATCH = 2000


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("sessions", type=int)
        parser.add_argument("users", type=int)
        parser.add_argument("out")

    def handle(self, sessions, users, out, **options):
        User = get_user_model()
        password = make_password("bench-password")
        User.objects.bulk_create(
            [User(username=f"bench{i}", password=password) for i in range(users)],
            batch_size=BATCH,
            ignore_conflicts=True,
        )
        people = list(User.objects.filter(username__startswith="bench").order_by("pk")[:users])
        store = SessionStore()
        expire = timezone.now() + timezone.timedelta(days=1)
        keys, rows = [], []
        for i in range(sessions):
            user = people[i % len(people)]
            key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
            data = {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: BACKEND,
                HASH_SESSION_KEY: user.get_session_auth_hash(),
            }
            rows.append(
                Session(session_key=key, session_data=store.encode(data), expire_date=expire)
            )
            keys.append(key)
        Session.objects.bulk_create(rows, batch_size=BATCH)
        with open(out, "w") as f:
            f.write("\n".join(keys) + "\n")
        self.stdout.write(f"{sessions} sessions for {len(people)} users in {out}")
