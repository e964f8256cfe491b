"""Sessions for scripts/bench-session, and Django's own get_user rate on them.

    python bench_sessions.py --pg URL --db NAME --n N --out DIR

Creates users and N logged-in sessions in PostgreSQL through Django's SessionStore and
get_session_auth_hash, writes DIR/keys.txt (one session key per line) and
DIR/settings.json, then times django.contrib.auth.get_user (session load + user load +
hash check, what AuthenticationMiddleware does) over every key, one process, and prints
`django_get_user_per_sec <rate>`.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
BACKEND = "django.contrib.auth.backends.ModelBackend"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", required=True)
    ap.add_argument("--db", default="switchyard_bench")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import psycopg

    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}"')
        conn.execute(f'CREATE DATABASE "{args.db}"')
    u = urlsplit(args.pg)
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY=SECRET,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": args.db, "USER": u.username or "postgres",
                               "PASSWORD": u.password or "", "HOST": u.hostname, "PORT": str(u.port or 5432)}},
        USE_TZ=True,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.contrib.auth import get_user
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.test import RequestFactory

    call_command("migrate", verbosity=0)
    users = [User.objects.create_user(f"user{i}", password="pw") for i in range(100)]
    keys = []
    for i in range(args.n):
        user = users[i % len(users)]
        s = SessionStore()
        s.update({"_auth_user_id": str(user.pk), "_auth_user_backend": BACKEND, "_auth_user_hash": user.get_session_auth_hash()})
        s.create()
        keys.append(s.session_key)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys.txt").write_text("\n".join(keys) + "\n")
    (out / "settings.json").write_text(json.dumps({"secret_key": SECRET, "database": urlunsplit((u.scheme, u.netloc, "/" + args.db, "", ""))}))

    rf = RequestFactory()
    requests = []
    for key in keys:
        r = rf.get("/")
        r.session = SessionStore(key)
        requests.append(r)
    start = time.perf_counter()
    for r in requests:
        user = get_user(r)
        assert user.is_authenticated
    elapsed = time.perf_counter() - start
    print(f"django_get_user_per_sec {len(keys) / elapsed:.0f}")
    print(f"django {django.get_version()} python {sys.version.split()[0]}", file=sys.stderr)


if __name__ == "__main__":
    main()
