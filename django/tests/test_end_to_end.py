"""The whole path, with nothing stood in: the sample project under `manage.py switchyard
run` (the real switchyard binary in front of runserver, with the config derived from the
settings), a browser's requests and a real WebSocket through the binary.

The site gets its own database (a SQLite file, or a fresh PostgreSQL database on the
harness cluster), migrated by `manage.py migrate`; the staff user logs in through the
admin's login form like a person, and the socket carries the session cookie Django set.

Needs the binary: SWITCHYARD_BIN (scripts/test-django-app sets it; without it these tests
are skipped, with it missing they fail).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TESTS = Path(__file__).resolve().parent
BINARY = os.environ.get("SWITCHYARD_BIN", "")
# How long anything here may take on a loaded machine; a signal ends each wait sooner.
PATIENCE = 30.0
PASSWORD = "e2e-password-0123"

pytestmark = pytest.mark.skipif(not BINARY, reason="needs the switchyard binary (SWITCHYARD_BIN)")


# === the site ===


def free_port() -> int:
    # runserver cannot report a port it chose, and `switchyard run` picks its upstream
    # the same way: a port the kernel just handed out and released.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_postgres_database(url: str, name: str) -> None:
    """Drop and create database `name` on the cluster `url` names."""
    import psycopg

    from project.settings import _database

    os.environ["SWITCHYARD_TEST_PG_NAME"] = name
    try:
        db = _database()
    finally:
        del os.environ["SWITCHYARD_TEST_PG_NAME"]
    params = {"host": db["HOST"], "port": db["PORT"] or None, "user": db["USER"], "password": db["PASSWORD"] or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


class Site:
    """`manage.py switchyard run` on a port of its own; stopped like Ctrl-C."""

    def __init__(self, folder: Path) -> None:
        import django

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / "site.log"
        database = os.environ.get("SWITCHYARD_TEST_DATABASE", "sqlite")
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "SWITCHYARD_TRANSPORT": "auto",
            "SWITCHYARD_BINARY": str(Path(BINARY).resolve()),
            "SWITCHYARD_TEST_SQLITE": str(folder / "site.sqlite3"),
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        }
        if database != "sqlite":
            name = f"switchyard_e2e_{django.VERSION[0]}{django.VERSION[1]}"
            fresh_postgres_database(database, name)
            self.env["SWITCHYARD_TEST_PG_NAME"] = name
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(TESTS / "manage.py"), "switchyard", "run", f"127.0.0.1:{self.port}", "--noreload"],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self.wait_serving()

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, str(TESTS / "manage.py"), *args], env=self.env, check=True)

    def wait_serving(self) -> None:
        """Until the command says both servers answer (it checks), bounded."""
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.process.stdout is not None
        out = self.process.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
        deadline = time.monotonic() + 2 * PATIENCE
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"`switchyard run` did not start: {self.log.read_text()[-3000:]}") from None
            if b"Switchyard is serving" in line:
                return

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(PATIENCE)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    running = Site(tmp_path_factory.mktemp("site"))
    yield running
    running.stop()


# === a browser ===


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookies and forms, as a person's browser, through Switchyard."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def cookie(self, name: str) -> str:
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value or ""
        raise AssertionError(f"no {name} cookie: {[c.name for c in self.jar]}")

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = None
        headers = {}
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["X-CSRFToken"] = self.cookie("csrftoken")
        request = urllib.request.Request(self.site.base + path, data=data, headers=headers)
        try:
            with self.opener.open(request, timeout=PATIENCE) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as answer:
            return answer.code, answer.read().decode()

    def login(self, username: str = "root") -> None:
        status, _ = self.request("/admin/login/")
        assert status == 200
        status, body = self.request(
            "/admin/login/?next=/admin/", {"username": username, "password": PASSWORD, "next": "/admin/"}
        )
        assert status == 302, body[-500:]
        self.cookie("sessionid")

    def admin(self, path: str, form: dict[str, str]) -> None:
        """POST an admin form; the admin answers a save with a redirect."""
        status, body = self.request(path, form)
        assert status == 302, body[-2000:]

    def socket(self, path: str = "/ws/"):
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        return connect(
            f"ws://127.0.0.1:{self.site.port}{path}",
            origin=self.site.base,
            additional_headers={"Cookie": cookies},
            open_timeout=PATIENCE,
        )


def frame(ws) -> dict:
    return json.loads(ws.recv(timeout=PATIENCE))


@contextlib.contextmanager
def subscribed(browser: Browser, channel: str):
    """A socket of `browser`'s, past its welcome and subscribed to `channel`."""
    with browser.socket() as ws:
        assert "welcome" in frame(ws)
        ws.send(json.dumps({"id": 1, "subscribe": {"channel": channel}}))
        reply = frame(ws)
        assert reply["id"] == 1 and "result" in reply["subscribe"], reply
        yield ws


def pushes(ws, count: int) -> list[dict]:
    got = []
    while len(got) < count:
        message = frame(ws)
        if "push" in message:
            got.append(message["push"])
    return got


# === the tests ===


@pytest.fixture
def staff(site):
    browser = Browser(site)
    browser.login()
    return browser


def product_form(name: str, price: str) -> dict[str, str]:
    return {"name": name, "price": price, "secret_note": "hush", "owner": "", "code": str(uuid.uuid4()), "_save": "Save"}


def test_admin_creates_updates_and_deletes_reach_a_subscribed_socket_in_order(staff):
    with subscribed(staff, "model:shop.Product") as ws:
        staff.admin("/admin/shop/product/add/", product_form("lamp", "12.50"))
        [created] = pushes(ws, 1)
        pk = created["data"]["id"]
        staff.admin(f"/admin/shop/product/{pk}/change/", product_form("desk lamp", "14.00"))
        staff.admin(f"/admin/shop/product/{pk}/delete/", {"post": "yes"})
        updated, deleted = pushes(ws, 2)
    assert [(p["event"], p["data"]["name"], p["data"]["price"]) for p in (created, updated, deleted)] == [
        ("created", "lamp", "12.50"),
        ("updated", "desk lamp", "14.00"),
        ("deleted", "desk lamp", "14.00"),
    ]
    assert created["offset"] < updated["offset"] < deleted["offset"]
    assert "secret_note" not in created["data"]


def test_work_rolled_back_is_never_delivered(site, staff):
    with subscribed(staff, "model:shop.Product") as ws:
        status, _ = staff.request("/rolled-back/", {})
        assert status == 200
        # Events leave in order: had the rolled-back ones left, they would come first.
        [first] = pushes(ws, 1)
    assert (first["event"], first["data"]) == ("after-rollback", {"ghosts": 0})


def test_a_logout_closes_that_users_socket_at_once(staff):
    with subscribed(staff, "model:shop.Product") as ws:
        status, _ = staff.request("/logout/", {})
        assert status in (200, 302)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=PATIENCE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_websocket_view_answers_each_message_and_plain_http_still_works(staff):
    with staff.socket("/live/echo/") as ws:
        for seen, text in enumerate(["hi", "again"], start=1):
            ws.send(text)
            assert json.loads(ws.recv(timeout=PATIENCE)) == {"hello": "root", "seen": seen}
            assert ws.recv(timeout=PATIENCE) == text.upper()
    assert staff.request("/live/echo/") == (200, "plain page")


# === the postgres transport: events as outbox rows, delivered by the binary's broker ===

on_postgres = pytest.mark.skipif(
    os.environ.get("SWITCHYARD_TEST_DATABASE", "sqlite") == "sqlite", reason="the outbox lives in PostgreSQL"
)


def pg_settings(name: str) -> dict:
    """DATABASES["default"] of the sample project on database `name` of the harness cluster."""
    from project.settings import _database

    os.environ["SWITCHYARD_TEST_PG_NAME"] = name
    try:
        return _database()
    finally:
        del os.environ["SWITCHYARD_TEST_PG_NAME"]


def pg_params(name: str) -> dict:
    """psycopg.connect() keywords for database `name`."""
    db = pg_settings(name)
    return {"host": db["HOST"], "port": db["PORT"] or None, "user": db["USER"], "dbname": name}


def site_query(site: Site, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(**pg_params(site.env["SWITCHYARD_TEST_PG_NAME"])) as db:
        return db.execute(sql).fetchall()


@on_postgres
def test_the_outbox_delivers_each_kind_in_commit_order_and_never_a_rolled_back_event(site, staff):
    assert site_query(site, "SELECT count(*) FROM switchyard_outbox WHERE event = 'first'") == [(0,)]
    with subscribed(staff, "model:shop.Product") as ws:
        status, body = staff.request("/outbox-tour/", {})
        assert status == 200, body
        seen = pushes(ws, 5)
    assert [p["event"] for p in seen] == ["first", "notice", "everyone", "big", "last"]
    assert seen[1]["data"] == {"to": "root"} and seen[3]["data"] == {"text": "x" * 100_000}
    offsets = [p["offset"] for p in seen if "offset" in p]
    assert len(offsets) == 3 and offsets == sorted(offsets)
    # Written by Django's own transaction (auto is postgres here), the one that wrote the
    # Note: the http transport's rows would be the node's, written after that commit.
    writers = site_query(
        site,
        "SELECT DISTINCT xmin::text FROM switchyard_outbox WHERE event IN ('first', 'notice', 'everyone', 'big') "
        "UNION SELECT xmin::text FROM shop_note WHERE text = 'outbox tour'",
    )
    assert len(writers) == 1, writers
    assert site_query(site, "SELECT count(*) FROM switchyard_outbox WHERE event = 'ghost'") == [(0,)]


@on_postgres
def test_a_disconnect_through_the_outbox_closes_the_users_socket(site):
    browser = Browser(site)
    browser.login()
    with subscribed(browser, "model:shop.Product") as ws:
        status, _ = browser.request("/disconnect-me/", {})
        assert status == 200
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=PATIENCE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert site_query(site, "SELECT kind FROM switchyard_outbox ORDER BY id DESC LIMIT 1") == [("revoke_user",)]


# What the outbox consists of, as PostgreSQL describes it: two installs that agree here are
# the same tables, columns, checks, indexes, triggers, functions and sequences.
CATALOG = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(column_default, '')
       || ' ' || is_nullable
  FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'switchyard%'
UNION ALL SELECT 'constraint', conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE conrelid::regclass::text LIKE 'switchyard%' AND contype <> 't'
UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE tablename LIKE 'switchyard%'
UNION ALL SELECT 'trigger', pg_get_triggerdef(oid) FROM pg_trigger
  WHERE tgrelid::regclass::text LIKE 'switchyard%' AND NOT tgisinternal
UNION ALL SELECT 'function', pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'public' AND p.proname LIKE 'switchyard%'
UNION ALL SELECT 'sequence', sequence_name FROM information_schema.sequences WHERE sequence_name LIKE 'switchyard%'
UNION ALL SELECT 'version', version::text FROM switchyard_outbox_meta
ORDER BY 1, 2
"""


def catalog(name: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(**pg_params(name)) as db:
        return db.execute(CATALOG).fetchall()


def store(name: str) -> str:
    import psycopg

    with psycopg.connect(**pg_params(name)) as db:
        return db.execute("SELECT store FROM switchyard_outbox_meta").fetchone()[0]


class Node:
    """The binary alone with `[broker] kind = "postgres"` on database `name`: it installs the
    outbox itself when it finds none."""

    def __init__(self, folder: Path, name: str) -> None:
        from django_switchyard.derive import database_url

        url, _ = database_url("postgresql", pg_settings(name))
        (folder / "admin-key").write_text("node-admin-key")
        config = folder / "node.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{free_port()}"\n[upstream]\nurl = "http://127.0.0.1:9"\n'
            f'[admin]\nlisten = "127.0.0.1:{free_port()}"\nkey_file = "{folder / "admin-key"}"\n'
            f'[[routes]]\npath = "/ws/"\n[broker]\nkind = "postgres"\ndatabase = "{url}"\n'
        )
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        self.process = subprocess.Popen(
            [BINARY, "run", "--config", str(config)], env=env, stderr=subprocess.PIPE, start_new_session=True
        )
        self.lines: list[bytes] = []
        listening = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if b"broker listening" in line:
                    listening.set()

        threading.Thread(target=read, daemon=True).start()
        assert listening.wait(PATIENCE), b"".join(self.lines)[-3000:].decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(PATIENCE)


def migrate(name: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "SWITCHYARD_TEST_PG_NAME": name,
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(TESTS / "manage.py"), "migrate", "--noinput", "-v", "0"], env=env, check=True)


@on_postgres
def test_the_migration_and_the_brokers_own_install_agree_in_either_order(tmp_path):
    import django

    database = os.environ["SWITCHYARD_TEST_DATABASE"]
    suffix = f"{django.VERSION[0]}{django.VERSION[1]}"
    broker_first, migrate_first = f"switchyard_order_b_{suffix}", f"switchyard_order_m_{suffix}"
    for name in (broker_first, migrate_first):
        fresh_postgres_database(database, name)
    # The broker first: it installs the outbox; migrating afterwards changes nothing.
    node = Node(tmp_path, broker_first)
    node.stop()
    installed, its_store = catalog(broker_first), store(broker_first)
    assert ("version", "1") in installed
    migrate(broker_first)
    assert catalog(broker_first) == installed and store(broker_first) == its_store
    # The migration first: the same outbox, and a node starting on it takes it as it is
    # (the site fixture's tests deliver through one).
    migrate(migrate_first)
    assert catalog(migrate_first) == installed
    Node(tmp_path, migrate_first).stop()
    assert catalog(migrate_first) == installed
