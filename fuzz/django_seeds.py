"""Seed inputs for the fuzz targets from what real Django made.

    python3 fuzz/django_seeds.py FIXTURES OUT

FIXTURES is scripts/session-fixtures' output (var/session-fixtures): for each Django
version and scenario, the cookies of cases.json (logins, tampering, expiry, duplicates)
and the session rows of db.sqlite3. Writes OUT/<target>/<sha1>, in the input shape of
each target (fuzz/fuzz_targets/*.rs):

- cookies: each case's Cookie header;
- signing: each signed cookie value and each session_data blob;
- session: each blob as an envelope (mode byte 0), its JSON payload (1), its zlib stream
  (2, compressed blobs only), and that JSON with `_auth_user_hash` made for the target's
  user row (so `verify` lets it in), under each policy bit;
- pyjson: each JSON payload.

Standard library only; reads no network and writes only under OUT.
"""

import base64
import hashlib
import hmac
import json
import pathlib
import sqlite3
import sys
import zlib

# fuzz_targets/session.rs: PASSWORD, and make_fixtures.py's SECRET_KEY.
PASSWORD = "pbkdf2_sha256$1000000$fuzz$c2FsdGVkLWhhc2gtb2YtdGhlLWZ1enotcGFzc3dvcmQ="
SECRET_KEY = "fixture-new-secret-key-\u00e9\u00fc-+3l@7x!k#v9q(2m_e&w=z8r^t1y$u%i"
AUTH_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"


def put(out, target, data):
    if isinstance(data, str):
        data = data.encode("latin-1", "surrogateescape")
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def b64_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def auth_hash(password):
    key = hashlib.sha256((AUTH_HASH_SALT + SECRET_KEY).encode()).digest()
    return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()


def blob_seeds(out, blob):
    put(out, "signing", blob)
    value = blob.rsplit(":", 1)[0]
    put(out, "session", b"\x00" + value.encode())
    payload = value.rsplit(":", 1)[0]
    try:
        raw = b64_decode(payload.lstrip("."))
        data = zlib.decompress(raw) if payload.startswith(".") else raw
    except Exception:
        return
    if payload.startswith("."):
        put(out, "session", b"\x02" + raw)
    put(out, "session", b"\x01" + data)
    put(out, "pyjson", data)
    try:
        session = json.loads(data.decode("latin-1"))
    except ValueError:
        return
    if isinstance(session, dict) and "_auth_user_id" in session:
        session["_auth_user_hash"] = auth_hash(PASSWORD)
        text = json.dumps(session, separators=(",", ":")).encode("latin-1")
        for policy in (0, 4, 8, 12):
            put(out, "session", bytes([1 | policy]) + text)


def main(fixtures, out):
    fixtures, out = pathlib.Path(fixtures), pathlib.Path(out)
    for cases in sorted(fixtures.glob("*/sqlite/*/cases.json")):
        for case in json.loads(cases.read_text())["cases"]:
            header = case["cookie"]
            put(out, "cookies", header)
            for part in header.split(";"):
                value = part.partition("=")[2].strip()
                if ":" in value:
                    blob_seeds(out, value)
        db = cases.with_name("db.sqlite3")
        if db.exists():
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                rows = con.execute("SELECT session_data FROM django_session").fetchall()
            except sqlite3.Error:
                rows = []
            finally:
                con.close()
            for (blob,) in rows:
                blob_seeds(out, blob)


if __name__ == "__main__":
    main(*sys.argv[1:])
