"""Fixtures shared by django-switchyard's tests: the sample project is `project/` + `shop/`."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from django_switchyard import conf, testing

SECRET = "test-backend-secret"


@pytest.fixture(autouse=True)
def _fresh_switchyard():
    """Each test starts with an empty outbox and freshly read settings."""
    testing.clear()
    conf.reset()
    yield
    testing.clear()
    conf.reset()


@pytest.fixture
def backend_secret(settings):
    settings.SWITCHYARD_BACKEND_SECRET = SECRET
    return SECRET


class AdminStandIn:
    """A real HTTP server on 127.0.0.1:0 answering like Switchyard's admin API.

    Records each request as (method, path, headers, JSON body); `answers` maps a path
    to a list of (status, body) to answer with in turn (default 200 `{}`).
    """

    def __init__(self):
        self.requests = []
        self.answers = {}
        self.arrived = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body are two writes: without this, Nagle holds the body.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer(None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length)) if length else None)

            def _answer(self, body):
                with stand_in.arrived:
                    stand_in.requests.append((self.command, self.path, dict(self.headers), body))
                    queue = stand_in.answers.get(self.path.split("?")[0], [])
                    status, reply = queue.pop(0) if queue else (200, {})
                    stand_in.arrived.notify_all()
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def wait_for(self, count, timeout=5.0):
        """Block until `count` requests arrived (bounded), then return them."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), self.requests
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin_api(settings):
    """The http transport pointed at a real local stand-in of the admin API."""
    stand_in = AdminStandIn()
    settings.SWITCHYARD_TRANSPORT = "http"
    settings.SWITCHYARD_ADMIN_URL = stand_in.url
    settings.SWITCHYARD_ADMIN_KEY = "admin-key"
    settings.SWITCHYARD_PUBLISH_RETRIES = 2
    yield stand_in
    conf.reset()
    stand_in.close()


@pytest.fixture
def memory(settings):
    settings.SWITCHYARD_TRANSPORT = "memory"
    return testing.outbox
