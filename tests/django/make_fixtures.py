"""Session fixtures made by real Django, with Django's own verdict for each cookie.

Run by scripts/session-fixtures in each Django venv:

    python make_fixtures.py --out DIR --pg URL --pg-db PREFIX

For each database (sqlite, postgres) and each scenario (standard auth.User with the db
engine, signed_cookies, a custom user model with a UUID pk and email as USERNAME_FIELD)
it runs a child process that configures Django, migrates, creates users and sessions
through Django's own code (test client logins, password changes, deactivation, a key
rotated into SECRET_KEY_FALLBACKS, tampering, Python-only JSON values) and writes
DIR/<db>/<scenario>/cases.json:

    {"django": "5.2.8", "settings": {...what Switchyard's [django] section needs...},
     "cases": [{"name": ..., "cookie": "<Cookie header>", "django": {"user": {...}} |
                {"anonymous": true} | {"error": "ValidationError"}, "reason": "hash_mismatch"}]}

"django" is the oracle: what django.contrib.auth.get_user returned for a request with
that Cookie header, run inside a rolled-back transaction so that its side effects (flush,
cycle_key) leave the database as the fixture made it. "at" is when (Unix seconds) Django
gave that verdict: verdicts that depend on the clock (an expired row, a cookie an hour
from its max age) hold at that instant, so the Rust tests resolve each case with a clock
set to its "at" and the fixtures never go stale by the clock.
"reason" is our label of why a case is anonymous, checked against Switchyard's reason.

Each PostgreSQL scenario database also gets a copy, "<name>_template", that no test
connects to: a destructive test clones it (CREATE DATABASE ... TEMPLATE) into a database
of its own instead of disturbing the one every other test reads.

DIR/signing.json holds independent vectors for the signing envelope: values signed by
this Django's own signing.dumps, with and without compression, under several keys and
salts, at a fixed timestamp; and "verdicts", what this Django's signing.loads says with
time.time() set to a chosen instant about hostile values (a valid HMAC over a bad
timestamp or payload, tampered signatures), good ones at the edges of max_age, and keys
rotated into fallback_keys.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
NEW_KEY = "fixture-new-secret-key-\u00e9\u00fc-+3l@7x!k#v9q(2m_e&w=z8r^t1y$u%i"
OLD_KEY = "fixture-old-secret-key-rotated-into-fallbacks"
RETIRED_KEY = "fixture-retired-key-no-longer-a-fallback"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
COOKIE_AGE = 1209600
SCENARIOS = ("standard", "signed", "custom", "bigint")
ALLOW_ALL_BACKEND = "django.contrib.auth.backends.AllowAllUsersModelBackend"


# --- driver -------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--pg", default="")
    ap.add_argument("--pg-db", default="switchyard_fx")
    ap.add_argument("--child", nargs=2, metavar=("DB", "SCENARIO"))
    ap.add_argument("--signing-vectors", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args, *args.child)
        return
    if args.signing_vectors:
        signing_vectors(Path(args.out) / "signing.json")
        return
    import django

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamps = {}
    jobs = []
    for db in dbs(args):
        # SQLite fixtures survive a new PostgreSQL cluster; PostgreSQL ones live in it.
        stamps[db] = json.dumps(
            {
                "script": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
                "models": [hashlib.sha256((HERE / m / "models.py").read_bytes()).hexdigest() for m in ("fxaccounts", "fxbigusers")],
                "django": django.get_version(),
                "pg": args.pg if db == "postgres" else "",
            }
        )
        stamp = out / f"stamp-{db}.json"
        # Sessions expire after COOKIE_AGE (two weeks): regenerate well before.
        fresh = stamp.exists() and stamp.read_text() == stamps[db] and time.time() - stamp.stat().st_mtime < 3 * 86400
        if fresh and db == "postgres":
            names = [f"{args.pg_db}_{sc}{suffix}" for sc in SCENARIOS for suffix in ("", "_template")]
            fresh = pg_databases_exist(args.pg, names)
        if fresh and db == "sqlite":
            fresh = (out / "signing.json").exists()
        if fresh and all((out / db / sc / "cases.json").exists() for sc in SCENARIOS):
            print(f"{out}/{db}: up to date", file=sys.stderr)
            continue
        stamp.unlink(missing_ok=True)
        if db == "sqlite":
            cmd = [sys.executable, __file__, "--out", args.out, "--signing-vectors"]
            jobs.append((db, "signing", subprocess.Popen(cmd)))
        for sc in SCENARIOS:
            cmd = [sys.executable, __file__, "--out", args.out, "--pg", args.pg, "--pg-db", args.pg_db, "--child", db, sc]
            jobs.append((db, sc, subprocess.Popen(cmd)))
    failed = [f"{db}/{sc}" for db, sc, p in jobs if p.wait() != 0]
    if failed:
        sys.exit(f"fixture generation failed: {', '.join(failed)}")
    for db in {db for db, _, _ in jobs}:
        (out / f"stamp-{db}.json").write_text(stamps[db])


def pg_settings(url, name):
    """Django's DATABASES entry for database `name` on the server of `url`. The host may
    be a percent-encoded socket folder (scripts/pg-cluster's), so it is decoded here and
    never lower-cased (urlsplit's .hostname would)."""
    from urllib.parse import unquote, urlsplit

    userinfo, _, hostport = urlsplit(url).netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = hostport, ""
    if not hostport.startswith("[") and ":" in hostport:
        host, port = hostport.rsplit(":", 1)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(user) or "postgres",
        "PASSWORD": unquote(password),
        "HOST": unquote(host) or "127.0.0.1",
        "PORT": port or "5432",
    }


def pg_databases_exist(url, names):
    """A cluster on a reused port would match the stamp but lack the databases."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            found = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    except psycopg.Error:
        return False
    return all(n in found for n in names)


def dbs(args):
    return ["sqlite", "postgres"] if args.pg else ["sqlite"]


# --- child: one database, one scenario ---------------------------------------------


def child(args, db, scenario):
    import django
    from django.conf import settings

    outdir = Path(args.out) / db / scenario
    outdir.mkdir(parents=True, exist_ok=True)
    if db == "sqlite":
        path = outdir / "db.sqlite3"
        if path.exists():
            path.unlink()
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
        url = f"sqlite://{path}"
    else:
        from urllib.parse import urlsplit, urlunsplit

        name = f"{args.pg_db}_{scenario}"
        u = urlsplit(args.pg)
        recreate_pg_database(args.pg, name)
        database = pg_settings(args.pg, name)
        url = urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))

    sys.path.insert(0, str(HERE))
    apps = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
    user_model = "auth.User"
    backends = [MODEL_BACKEND]
    if scenario == "custom":
        apps.append("fxaccounts")
        user_model = "fxaccounts.User"
    if scenario == "bigint":
        apps.append("fxbigusers")
        user_model = "fxbigusers.User"
        backends = [MODEL_BACKEND, ALLOW_ALL_BACKEND]
    engine = "django.contrib.sessions.backends." + ("signed_cookies" if scenario == "signed" else "db")
    settings.configure(
        SECRET_KEY=NEW_KEY,
        SECRET_KEY_FALLBACKS=[OLD_KEY],
        INSTALLED_APPS=apps,
        DATABASES={"default": database},
        AUTH_USER_MODEL=user_model,
        SESSION_ENGINE=engine,
        SESSION_COOKIE_AGE=COOKIE_AGE,
        AUTHENTICATION_BACKENDS=backends,
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
            "django.contrib.auth.hashers.MD5PasswordHasher",
        ],
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    maker = {"standard": StandardCases, "signed": SignedCases, "custom": CustomCases, "bigint": BigintCases}[scenario]()
    maker.build()
    cases = [dict(c, at=time.time(), django=oracle(c["cookie"])) for c in maker.cases]
    user_table = {
        "standard": ("auth_user", "int", "username"),
        "signed": ("auth_user", "int", "username"),
        "custom": ("fxaccounts_user", "uuid", "email"),
        "bigint": ("fxbigusers_user", "int", "username"),
    }[scenario]
    doc = {
        "django": django.get_version(),
        "python": sys.version.split()[0],
        "scenario": scenario,
        "settings": {
            "secret_key": NEW_KEY,
            "secret_key_fallbacks": [OLD_KEY],
            "session_engine": "signed_cookies" if scenario == "signed" else "db",
            "database": url,
            "session_cookie_name": "sessionid",
            "session_cookie_age": COOKIE_AGE,
            "authentication_backends": backends,
            "user_table": user_table[0],
            "user_pk_type": user_table[1],
            "user_username_column": user_table[2],
        },
        "cases": cases,
    }
    (outdir / "cases.json").write_text(json.dumps(doc, indent=1, ensure_ascii=True))
    if db == "postgres":
        from django.db import connections

        connections.close_all()
        recreate_pg_database(args.pg, f"{name}_template", template=name)
    print(f"{outdir}: {len(cases)} cases", file=sys.stderr)


urlpatterns = []


def recreate_pg_database(url, name, template=None):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


# --- signing vectors -----------------------------------------------------------------

SIGNING_TIME = 1_700_000_000


def signing_vectors(path):
    """Values signed by Django's own signing.dumps at SIGNING_TIME, for Switchyard's
    signing tests to load (and, uncompressed, to reproduce byte for byte)."""
    import django
    from django.conf import settings

    settings.configure(SECRET_KEY="unused-the-vectors-pass-their-key", SECRET_KEY_FALLBACKS=[])
    django.setup()
    from django.core import signing

    keys = [NEW_KEY, "plain-ascii-key", "k"]
    # "django.core.signing" is dumps' default salt. Not "": Django's Signer replaces an
    # empty salt with its class path, which no session store ever relies on.
    salts = ["django.contrib.sessions.SessionStore", "django.contrib.sessions.backends.signed_cookies", "django.core.signing", "a salt with spaces:and:colons"]
    values = [
        {},
        {"_auth_user_id": "1", "_auth_user_backend": MODEL_BACKEND, "_auth_user_hash": "0" * 64},
        {"text": "\u00e9\u4e2d\u6587 \U0001f600", "n": [1, 2.5, -3, None, True, False]},
        {"pad": "a" * 300, "nested": {"list": list(range(40))}},
        [1, "two", {"three": 3}],
        "just a string",
        12345678901234567890,
    ]
    vectors = []
    with mock.patch("django.core.signing.time.time", return_value=float(SIGNING_TIME)):
        for key in keys:
            for salt in salts:
                for value in values:
                    for compress in (False, True):
                        signed = signing.dumps(value, key=key, salt=salt, compress=compress)
                        vectors.append({
                            "key": key,
                            "salt": salt,
                            "compress": compress,
                            "compressed": signed.startswith("."),
                            "value": value,
                            # What signing.dumps serialised: Switchyard's dumps takes this text.
                            "json": json.dumps(value, separators=(",", ":")),
                            "signed": signed,
                        })
    doc = {"django": django.get_version(), "timestamp": SIGNING_TIME, "vectors": vectors, "verdicts": signing_verdicts()}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=True))
    print(f"{path}: {len(vectors)} vectors", file=sys.stderr)


# Django's verdict, at a time the fixture sets, on values a hostile client or a clock
# could produce: (case, what signing.loads was given as the signed value).
def hostile_values(key, salt):
    from django.core import signing

    def with_valid_hmac(inner):
        # Signer.sign is TimestampSigner's own last step: the HMAC is right, so whatever
        # loads says comes from the timestamp or the payload, not the signature.
        return signing.Signer(key=key, salt=salt).sign(inner)

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    p = b64(b'{"a":1}')
    ts = signing.b62_encode(SIGNING_TIME)
    good = with_valid_hmac(f"{p}:{ts}")
    value, sig = good.rsplit(":", 1)
    yield "good", good
    yield "no_separator", p
    yield "empty", ""
    yield "only_a_colon", ":"
    yield "signature_cut_short", good[:-1]
    yield "trailing_space", good + " "
    yield "signature_upper_case", f"{value}:{sig.upper()}"
    yield "signature_with_padding", f"{value}:{sig}="
    yield "signature_from_another_salt", f"{value}:{signing.Signer(key=key, salt=salt + 'x').signature(value)}"
    yield "no_timestamp", with_valid_hmac(p)
    yield "empty_timestamp", with_valid_hmac(f"{p}:")
    yield "timestamp_zero", with_valid_hmac(f"{p}:0")
    yield "negative_timestamp", with_valid_hmac(f"{p}:-{ts}")
    yield "timestamp_with_leading_zeros", with_valid_hmac(f"{p}:00{ts}")
    yield "timestamp_not_base62", with_valid_hmac(f"{p}:{ts[:-1]}!")
    yield "timestamp_far_in_the_future", with_valid_hmac(f"{p}:zzzzzzz")
    yield "payload_with_padding", with_valid_hmac(f"{p}==:{ts}")
    yield "payload_with_a_colon", with_valid_hmac(f"{p[:4]}:{p[4:]}:{ts}")
    yield "payload_with_foreign_characters", with_valid_hmac(f"{p}!!:{ts}")
    yield "payload_not_base64_length", with_valid_hmac(f"{p}a:{ts}")
    yield "payload_not_json", with_valid_hmac(f"{b64(b'hello')}:{ts}")
    yield "payload_empty", with_valid_hmac(f":{ts}")
    yield "payload_latin1_bytes", with_valid_hmac(f"{b64(bytes([123, 34, 97, 34, 58, 34, 0xE9, 34, 125]))}:{ts}")
    yield "compressed_flag_without_zlib", with_valid_hmac(f".{p}:{ts}")
    yield "compressed_payload", with_valid_hmac(f".{b64(zlib.compress(b'[1,2,3]'))}:{ts}")
    yield "non_ascii_inner", with_valid_hmac(f"{p}\u00e9:{ts}")


def signing_verdicts():
    """What signing.loads says, with time.time() mocked to each chosen instant, about
    hostile values and about good ones at the edges of max_age and under rotated keys."""
    from django.core import signing

    t = float(SIGNING_TIME)
    # (max_age, now): no limit; exactly at it; half a second and a second past it; a
    # timestamp ahead of the clock; the session cookie age.
    clocks = [(None, t + 50), (100, t + 100), (100, t + 100.5), (100, t + 101), (100, t - 5000), (COOKIE_AGE, t + COOKIE_AGE)]
    out = []

    def verdict(case, key, fallbacks, salt, signed, max_age, now):
        with mock.patch("django.core.signing.time.time", return_value=now):
            try:
                value = signing.loads(signed, key=key, salt=salt, max_age=max_age, fallback_keys=fallbacks)
                django_says = {"ok": json.dumps(value, separators=(",", ":"))}
            except signing.SignatureExpired:
                django_says = {"error": "SignatureExpired"}
            except signing.BadSignature:
                django_says = {"error": "BadSignature"}
            except Exception as e:  # what SessionBase.decode catches: an empty session
                django_says = {"error": type(e).__name__}
        out.append({"case": case, "key": key, "fallbacks": fallbacks, "salt": salt, "signed": signed,
                    "max_age": max_age, "now": now, "django": django_says})

    for key, salt in [(NEW_KEY, "django.contrib.sessions.SessionStore"), ("k", "a salt with spaces:and:colons")]:
        for case, signed in hostile_values(key, salt):
            for max_age, now in clocks:
                verdict(case, key, [], salt, signed, max_age, now)
    with mock.patch("django.core.signing.time.time", return_value=t):
        signed = signing.dumps({"a": 1}, key=OLD_KEY, salt="django.contrib.sessions.SessionStore", compress=True)
    for case, key, fallbacks in [
        ("signed_with_the_fallback", NEW_KEY, [OLD_KEY]),
        ("signed_with_the_second_fallback", NEW_KEY, [RETIRED_KEY, OLD_KEY]),
        ("signed_with_a_retired_key", NEW_KEY, [RETIRED_KEY]),
    ]:
        verdict(case, key, fallbacks, "django.contrib.sessions.SessionStore", signed, 100, t + 100)
    return out


class Rollback(Exception):
    pass


def oracle(cookie_header):
    """What Django's own get_user says for a request carrying this Cookie header."""
    from django.contrib.auth import get_user
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.db import transaction
    from django.test import RequestFactory

    request = RequestFactory().get("/", HTTP_COOKIE=cookie_header) if cookie_header else RequestFactory().get("/")
    result = None
    try:
        with transaction.atomic():
            SessionMiddleware(lambda r: None).process_request(request)
            user = get_user(request)
            if user.is_authenticated:
                result = {
                    "user": {
                        "id": str(user.pk),
                        "username": user.get_username(),
                        "is_staff": bool(getattr(user, "is_staff", False)),
                        "is_superuser": bool(getattr(user, "is_superuser", False)),
                    }
                }
            else:
                result = {"anonymous": True}
            raise Rollback
    except Rollback:
        pass
    except Exception as e:  # Django would answer 500: record which exception
        result = {"error": type(e).__name__}
    return result


# --- building blocks ----------------------------------------------------------------


def client():
    from django.test import Client

    return Client()


def session_cookie(c):
    return c.cookies["sessionid"].value


def flip_last_char(s):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(s[-1])
    return s[:-1] + alphabet[i ^ 1]


def legacy_pre31(data, secret):
    """The pre-3.1 session format (Django 3.2's _legacy_encode), by hand."""
    serialized = json.dumps(data, separators=(",", ":")).encode()
    key = hashlib.sha1(("django.contrib.sessions" + "SessionStore" + secret).encode()).digest()
    h = hmac.new(key, serialized, hashlib.sha1).hexdigest()
    return base64.b64encode(h.encode() + b":" + serialized).decode("ascii")


class Cases:
    def __init__(self):
        self.cases = []

    def add(self, name, cookie, reason=None):
        self.cases.append({"name": name, "cookie": cookie, "reason": reason})

    def fast_user(self, **fields):
        """A user with a cheap (MD5) password hash: the hash string is all that matters."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import make_password

        User = get_user_model()
        user = User(**fields)
        user.password = make_password("pw-" + str(fields), hasher="md5")
        user.save()
        return user

    def login(self, user):
        c = client()
        c.force_login(user, backend=MODEL_BACKEND)
        return c


class DbCases(Cases):
    """Sessions in the django_session table (db and cached_db engines)."""

    def store(self, data, signer_key=None, store_class=None):
        """A session row written by Django's SessionStore, optionally under another key or class."""
        from django.contrib.sessions.backends.db import SessionStore
        from django.test import override_settings

        cls = SessionStore
        if store_class:
            cls = type(store_class, (SessionStore,), {})
            cls.__qualname__ = store_class
        overrides = {"SECRET_KEY": signer_key, "SECRET_KEY_FALLBACKS": []} if signer_key else {}
        with override_settings(**overrides):
            s = cls()
            s.update(data)
            s.create()
        return s.session_key

    def raw_row(self, session_data, expired=False):
        from datetime import timedelta

        from django.contrib.sessions.backends.db import SessionStore
        from django.contrib.sessions.models import Session
        from django.utils import timezone

        key = SessionStore()._get_new_session_key()
        delta = timedelta(hours=-1) if expired else timedelta(seconds=COOKIE_AGE)
        Session.objects.create(session_key=key, session_data=session_data, expire_date=timezone.now() + delta)
        return key

    def row_data(self, key):
        from django.contrib.sessions.models import Session

        return Session.objects.get(session_key=key).session_data

    def auth_fields(self, user):
        return {
            "_auth_user_id": user._meta.pk.value_to_string(user),
            "_auth_user_backend": MODEL_BACKEND,
            "_auth_user_hash": user.get_session_auth_hash(),
        }


class StandardCases(DbCases):
    def build(self):
        from datetime import timedelta

        from django.contrib.auth.models import User
        from django.contrib.sessions.models import Session
        from django.test import override_settings
        from django.utils import timezone

        # A real login through the test client, with the default (PBKDF2) hasher.
        alice = User.objects.create_user("alice", "alice@example.com", "alice-password")
        c = client()
        assert c.login(username="alice", password="alice-password")
        alice_key = session_cookie(c)
        self.add("login_alice", f"sessionid={alice_key}")

        root = self.fast_user(username="root", is_staff=True, is_superuser=True)
        self.add("login_superuser", f"sessionid={session_cookie(self.login(root))}")
        staff = self.fast_user(username="staff", is_staff=True)
        self.add("login_staff", f"sessionid={session_cookie(self.login(staff))}")
        big = self.fast_user(id=2147483000, username="bigid")
        self.add("login_bigint_pk", f"sessionid={session_cookie(self.login(big))}")
        uni = self.fast_user(username="\u00e9milie-\u4e2d\u6587")
        self.add("login_unicode_username", f"sessionid={session_cookie(self.login(uni))}")

        # cached_db writes through to the table: same answer as db.
        with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cached_db"):
            cached = self.fast_user(username="cached")
            self.add("login_cached_db_engine", f"sessionid={session_cookie(self.login(cached))}")

        # Cookie parsing: last duplicate wins, quoting, whitespace, case-sensitive names.
        self.add("cookie_duplicate_last_wins", f"sessionid=zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz; sessionid={alice_key}")
        self.add("cookie_duplicate_first_valid", f"sessionid={alice_key}; sessionid=zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "no_such_session")
        self.add("cookie_quoted", f'csrftoken=abc; sessionid="{alice_key}"')
        self.add("cookie_whitespace", f"  csrftoken = abc ;   sessionid =  {alice_key}  ;")
        self.add("cookie_name_case", f"SessionId={alice_key}", "no_cookie")
        self.add("cookie_absent", "csrftoken=abc", "no_cookie")
        self.add("cookie_empty_header", "", "no_cookie")
        self.add("key_too_short", "sessionid=abc1234", "malformed_key")
        self.add("key_uppercase", f"sessionid={alice_key.upper()}", "malformed_key")
        self.add("key_unknown", "sessionid=" + "q" * 32, "no_such_session")

        # Deactivated after login.
        carol = self.fast_user(username="carol")
        carol_key = session_cookie(self.login(carol))
        carol.is_active = False
        carol.save()
        self.add("inactive_user", f"sessionid={carol_key}", "inactive")

        # Password changed after login: the session's hash no longer matches.
        dave = self.fast_user(username="dave")
        dave_key = session_cookie(self.login(dave))
        dave.set_password("a-new-password")
        dave.save()
        self.add("password_changed", f"sessionid={dave_key}", "hash_mismatch")

        # User deleted after login.
        gone = self.fast_user(username="gone")
        gone_key = session_cookie(self.login(gone))
        gone.delete()
        self.add("user_deleted", f"sessionid={gone_key}", "no_such_user")

        # Logged out: the row is gone.
        leaver = self.fast_user(username="leaver")
        lc = self.login(leaver)
        leaver_key = session_cookie(lc)
        lc.logout()
        self.add("logged_out", f"sessionid={leaver_key}", "no_such_session")

        # Expired row.
        late = self.fast_user(username="late")
        late_key = session_cookie(self.login(late))
        Session.objects.filter(session_key=late_key).update(expire_date=timezone.now() - timedelta(seconds=1))
        self.add("expired_row", f"sessionid={late_key}", "expired")

        # Logged in while OLD_KEY was SECRET_KEY; OLD_KEY is now a fallback (both the
        # signature and the auth hash verify only under the fallback).
        erin = self.fast_user(username="erin")
        with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[]):
            erin_key = session_cookie(self.login(erin))
        self.add("signed_with_fallback_key", f"sessionid={erin_key}")
        # Signed with a key that is no longer even a fallback.
        frank = self.fast_user(username="frank")
        with override_settings(SECRET_KEY=RETIRED_KEY, SECRET_KEY_FALLBACKS=[]):
            frank_key = session_cookie(self.login(frank))
        self.add("signed_with_retired_key", f"sessionid={frank_key}", "bad_signature")

        # Sessions without a user, or with odd auth fields.
        self.add("anonymous_session", f"sessionid={self.store({'cart': [1, 2, 3]})}", "no_user_id")
        self.add("empty_session", f"sessionid={self.store({})}", "no_user_id")
        fields = self.auth_fields(alice)
        self.add("python_nan", f"sessionid={self.store(dict(fields, score=float('nan'), inf=float('inf')))}")
        lone = dict(fields, s="\ud800 lone")
        self.add("python_lone_surrogate", f"sessionid={self.store(lone)}")
        self.add("python_bigint", f"sessionid={self.store(dict(fields, big=10**40))}")
        self.add("python_duplicate_keys", "sessionid=" + self.raw_row(self.sign_json(
            '{"_auth_user_id":"999999","_auth_user_backend":"%s","_auth_user_hash":"%s","_auth_user_id":"%s"}'
            % (MODEL_BACKEND, fields["_auth_user_hash"], alice.pk))))
        self.add("id_json_int", f"sessionid={self.store(dict(fields, _auth_user_id=alice.pk))}")
        self.add("id_not_integer", f"sessionid={self.store(dict(fields, _auth_user_id='abc'))}", "invalid_user_id")
        self.add("id_null", f"sessionid={self.store(dict(fields, _auth_user_id=None))}", "no_such_user")
        no_backend = {k: v for k, v in fields.items() if k != "_auth_user_backend"}
        self.add("backend_missing", f"sessionid={self.store(no_backend)}", "no_backend")
        self.add("backend_not_configured", f"sessionid={self.store(dict(fields, _auth_user_backend='django.contrib.auth.backends.RemoteUserBackend'))}", "backend_not_allowed")
        no_hash = {k: v for k, v in fields.items() if k != "_auth_user_hash"}
        self.add("hash_missing", f"sessionid={self.store(no_hash)}", "no_hash")
        self.add("hash_empty", f"sessionid={self.store(dict(fields, _auth_user_hash=''))}", "no_hash")
        self.add("hash_wrong", f"sessionid={self.store(dict(fields, _auth_user_hash='0' * 64))}", "hash_mismatch")
        legacy_sha1 = hmac.new(hashlib.sha256(b"x").digest(), b"y", hashlib.sha1).hexdigest()
        self.add("hash_legacy_sha1", f"sessionid={self.store(dict(fields, _auth_user_hash=legacy_sha1))}", "hash_mismatch")
        self.add("not_an_object", "sessionid=" + self.raw_row(self.sign_json("[1,2,3]")), "corrupt")

        # Tampered session data.
        data = self.row_data(alice_key)
        self.add("tampered_payload", "sessionid=" + self.raw_row("x" + data[1:] if data[0] != "x" else "y" + data[1:]), "bad_signature")
        self.add("signature_noncanonical_last_char", "sessionid=" + self.raw_row(flip_last_char(data)), "bad_signature")
        self.add("signature_padded", "sessionid=" + self.raw_row(data + "="), "bad_signature")
        self.add("no_separator", "sessionid=" + self.raw_row("garbage"), "bad_signature")
        self.add("legacy_pre31_format", "sessionid=" + self.raw_row(legacy_pre31(fields, NEW_KEY)), "bad_signature")
        self.add("other_store_class_salt", f"sessionid={self.store(fields, store_class='CustomSessionStore')}", "bad_signature")
        self.add("expired_row_otherwise_valid", "sessionid=" + self.raw_row(data, expired=True), "expired")
        # Uncompressed (short) and compressed (long) payloads.
        self.add("uncompressed_payload", "sessionid=" + self.raw_row(self.sign_json(json.dumps(fields, separators=(",", ":")), compress=False)))
        self.add("compressed_payload", "sessionid=" + self.raw_row(self.sign_json(json.dumps(dict(fields, pad="a" * 500), separators=(",", ":")))))

    def sign_json(self, text, compress=True):
        """signing.dumps of JSON text we wrote by hand (for payloads json.dumps cannot make)."""
        import zlib

        from django.core.signing import TimestampSigner, b64_encode

        data = text.encode("latin-1")
        is_compressed = False
        if compress:
            z = zlib.compress(data)
            if len(z) < len(data) - 1:
                data, is_compressed = z, True
        b64 = b64_encode(data).decode()
        if is_compressed:
            b64 = "." + b64
        return TimestampSigner(salt="django.contrib.sessions.SessionStore").sign(b64)


class SignedCases(Cases):
    """The signed_cookies engine: the cookie is the session."""

    def build(self):
        from django.contrib.auth.models import User
        from django.core import signing
        from django.test import override_settings

        alice = User.objects.create_user("alice", "alice@example.com", "alice-password")
        c = client()
        assert c.login(username="alice", password="alice-password")
        alice_cookie = session_cookie(c)
        self.add("login_alice", f"sessionid={alice_cookie}")
        root = self.fast_user(username="root", is_staff=True, is_superuser=True)
        self.add("login_superuser", f"sessionid={session_cookie(self.login(root))}")

        # Logout cannot revoke a signed cookie: the copied value still works.
        leaver = self.fast_user(username="leaver")
        lc = self.login(leaver)
        leaver_cookie = session_cookie(lc)
        lc.logout()
        self.add("logged_out_cookie_still_valid", f"sessionid={leaver_cookie}")

        dave = self.fast_user(username="dave")
        dave_cookie = session_cookie(self.login(dave))
        dave.set_password("changed")
        dave.save()
        self.add("password_changed", f"sessionid={dave_cookie}", "hash_mismatch")

        carol = self.fast_user(username="carol")
        carol_cookie = session_cookie(self.login(carol))
        carol.is_active = False
        carol.save()
        self.add("inactive_user", f"sessionid={carol_cookie}", "inactive")

        erin = self.fast_user(username="erin")
        with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[]):
            self.add("signed_with_fallback_key", f"sessionid={session_cookie(self.login(erin))}")
        frank = self.fast_user(username="frank")
        with override_settings(SECRET_KEY=RETIRED_KEY, SECRET_KEY_FALLBACKS=[]):
            self.add("signed_with_retired_key", f"sessionid={session_cookie(self.login(frank))}", "bad_signature")

        # Age: signed long ago (expired), just inside the age, and in the future.
        late = self.fast_user(username="late")
        for name, offset, reason in [("expired_cookie", -COOKIE_AGE - 60, "expired"), ("cookie_near_max_age", -COOKIE_AGE + 3600, None), ("future_timestamp", 86400, None)]:
            with mock.patch("django.core.signing.time.time", return_value=time.time() + offset):
                self.add(name, f"sessionid={session_cookie(self.login(late))}", reason)

        self.add("tampered_cookie", f"sessionid={'x' + alice_cookie[1:] if alice_cookie[0] != 'x' else 'y' + alice_cookie[1:]}", "bad_signature")
        self.add("signature_noncanonical_last_char", f"sessionid={flip_last_char(alice_cookie)}", "bad_signature")
        self.add("db_salt_is_not_cookie_salt", "sessionid=" + signing.dumps({"a": 1}, salt="django.contrib.sessions.SessionStore", compress=True), "bad_signature")
        fields = {"_auth_user_id": str(alice.pk), "_auth_user_backend": MODEL_BACKEND, "_auth_user_hash": alice.get_session_auth_hash()}
        salt = "django.contrib.sessions.backends.signed_cookies"
        self.add("python_nan", "sessionid=" + signing.dumps(dict(fields, n=float("nan")), salt=salt, compress=True))
        self.add("anonymous_session", "sessionid=" + signing.dumps({"x": 1}, salt=salt, compress=True), "no_user_id")
        self.add("short_garbage", "sessionid=abc", "bad_signature")


class CustomCases(DbCases):
    """A custom user model: UUID pk, email as the username field."""

    def build(self):
        from django.contrib.auth import get_user_model

        User = get_user_model()
        alice = User.objects.create_user("alice@example.com", "alice-password")
        c = client()
        assert c.login(email="alice@example.com", password="alice-password")
        self.add("login_alice_uuid", f"sessionid={session_cookie(c)}")
        root = User.objects.create_user("root@example.com", "pw", is_staff=True, is_superuser=True)
        self.add("login_superuser_uuid", f"sessionid={session_cookie(self.login(root))}")
        carol = User.objects.create_user("carol@example.com", "pw")
        carol_key = session_cookie(self.login(carol))
        carol.is_active = False
        carol.save()
        self.add("inactive_user", f"sessionid={carol_key}", "inactive")
        dave = User.objects.create_user("dave@example.com", "pw")
        dave_key = session_cookie(self.login(dave))
        dave.set_password("changed")
        dave.save()
        self.add("password_changed", f"sessionid={dave_key}", "hash_mismatch")
        fields = self.auth_fields(alice)
        self.add("id_uuid_braces", f"sessionid={self.store(dict(fields, _auth_user_id='{' + alice.pk.hex + '}'))}")
        self.add("id_not_uuid", f"sessionid={self.store(dict(fields, _auth_user_id='42'))}", "invalid_user_id")
        import uuid

        self.add("id_unknown_uuid", f"sessionid={self.store(dict(fields, _auth_user_id=str(uuid.uuid4())))}", "no_such_user")


class BigintCases(DbCases):
    """A custom user model with a 64-bit pk, and AllowAllUsersModelBackend configured."""

    def build(self):
        from django.contrib.auth import get_user_model

        User = get_user_model()
        big = User.objects.create_user("big", "pw", id=9007199254740993)
        self.add("login_pk_past_2_pow_53", f"sessionid={session_cookie(self.login(big))}")
        fields = self.auth_fields(big)
        self.add("id_out_of_bigint_range", f"sessionid={self.store(dict(fields, _auth_user_id=str(2**70)))}", "no_such_user")
        sleepy = User.objects.create_user("sleepy", "pw", id=9007199254740999, is_active=False)
        c = client()
        c.force_login(sleepy, backend=ALLOW_ALL_BACKEND)
        self.add("inactive_user_allowed_by_allow_all_backend", f"sessionid={session_cookie(c)}")
        self.add("inactive_user_via_model_backend", f"sessionid={self.store(self.auth_fields(sleepy))}", "inactive")


if __name__ == "__main__":
    main()
