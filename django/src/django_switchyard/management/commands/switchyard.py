"""`manage.py switchyard`: the Switchyard config from the settings, and the gateway in
front of the development server.

    manage.py switchyard --print-config [--listen ADDR] [--upstream URL] [--backend URL] [--admin ADDR]
    manage.py switchyard run [ADDRPORT] [--noreload]

`run` starts Django's `runserver` on a free loopback port and the switchyard binary
(`SWITCHYARD_BINARY`, else `switchyard` on PATH) on ADDRPORT (default 127.0.0.1:8000) in
front of it, with the derived config, its admin listener on another free port, and the
secrets both sides need handed over in the environment (random ones where the settings
have none). Ctrl-C stops both.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf, derive

# How long `run` waits for runserver and Switchyard to answer before giving up.
START_PATIENCE = 60.0
STOP_PATIENCE = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def split_addrport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{value!r} is not HOST:PORT or PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class Command(BaseCommand):
    help = "Print a Switchyard config derived from the settings, or run Switchyard in front of runserver."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", choices=["run"], help="run: Switchyard in front of runserver")
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="(run) where browsers connect")
        parser.add_argument("--print-config", action="store_true", help="write the derived config to stdout")
        parser.add_argument("--listen", action="append", help="(--print-config) [server] listen; repeatable")
        parser.add_argument("--upstream", default=derive.Addresses().upstream, help="(--print-config) Django's URL")
        parser.add_argument("--backend", help="(--print-config) http:// base of the command views")
        parser.add_argument("--admin", default=None, help="(--print-config) the admin listener's address")
        parser.add_argument("--noreload", action="store_true", help="(run) runserver without the autoreloader")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["print_config"]:
            self.stdout.write(self.config(options), ending="")
        elif options["action"] == "run":
            self.run(options)
        else:
            raise CommandError("give --print-config or run")

    def config(self, options: dict[str, Any]) -> str:
        addresses = derive.Addresses(
            listen=options["listen"] or derive.Addresses().listen,
            upstream=options["upstream"],
            backend=options["backend"],
            admin=options["admin"] or self.admin_listen(),
        )
        try:
            return derive.derive(addresses)
        except ImproperlyConfigured as problem:
            raise CommandError(str(problem)) from None

    @staticmethod
    def admin_listen() -> str:
        """The admin listener SWITCHYARD_ADMIN_URL points at, else the default."""
        url = conf.get().admin_url
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.hostname and parts.port:
                return f"{parts.hostname}:{parts.port}"
        return derive.DEFAULT_ADMIN_LISTEN

    # === run ===

    def run(self, options: dict[str, Any]) -> None:
        binary = self.binary()
        host, port = split_addrport(options["addrport"] if ":" in options["addrport"] else f":{options['addrport']}")
        upstream_port = free_port()
        settings = conf.get()
        admin = self.admin_listen() if settings.admin_url else f"127.0.0.1:{free_port()}"
        admin_key = settings.admin_key or secrets.token_urlsafe(32)
        backend_secret = settings.backend_secrets[0] if settings.backend_secrets else secrets.token_urlsafe(32)
        addresses = derive.Addresses(
            listen=[f"{host}:{port}"], upstream=f"http://127.0.0.1:{upstream_port}", admin=admin
        )
        try:
            config = derive.derive(addresses, listen_ports=[port])
            env = {**os.environ, **derive.secret_environment()}
        except ImproperlyConfigured as problem:
            raise CommandError(str(problem)) from None
        env.update(
            {
                derive.ADMIN_KEY_ENV: admin_key,
                derive.BACKEND_SECRET_ENV: backend_secret,
                "SWITCHYARD_ADMIN_URL": f"http://{admin}",
            }
        )
        with tempfile.TemporaryDirectory(prefix="switchyard-run-") as folder:
            path = Path(folder) / "switchyard.toml"
            path.write_text(config)
            self.serve(binary, path, env, host, port, upstream_port, options["noreload"])

    def binary(self) -> str:
        named = conf.get().binary or "switchyard"
        found = shutil.which(named)
        if not found:
            raise CommandError(f"no switchyard binary: {named!r} is not on PATH (set SWITCHYARD_BINARY)")
        return found

    def serve(
        self, binary: str, config: Path, env: dict[str, str], host: str, port: int, upstream_port: int, noreload: bool
    ) -> None:
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        runserver = [*manage, "runserver", f"127.0.0.1:{upstream_port}", *(["--noreload"] if noreload else [])]
        children: list[subprocess.Popen[bytes]] = []
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            # Each child in its own process group: Ctrl-C reaches this command only, which
            # stops Switchyard first (it drains requests to Django), then runserver.
            children.append(subprocess.Popen(runserver, env=env, start_new_session=True))
            children.append(subprocess.Popen([binary, "run", "--config", str(config)], env=env, start_new_session=True))
            self.wait_ready(children, [("127.0.0.1", upstream_port), (host, port)], lambda: stopping)
            if not stopping:
                self.stdout.write(f"Switchyard is serving http://{host}:{port}/ in front of runserver (Ctrl-C stops both)")
                self.stdout.flush()
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.2)
        finally:
            for child in reversed(children):
                self.stop_child(child)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        failed = [child for child in children if child.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
        if failed and not stopping:
            raise CommandError(f"{failed[0].args[0]} exited with status {failed[0].returncode}")

    @staticmethod
    def wait_ready(children: list[subprocess.Popen[bytes]], addresses: list[tuple[str, int]], stopped: Any) -> None:
        deadline = time.monotonic() + START_PATIENCE
        for address in addresses:
            while not stopped():
                try:
                    socket.create_connection(address, timeout=1).close()
                    break
                except OSError:
                    pass
                if any(child.poll() is not None for child in children):
                    raise CommandError("runserver or switchyard exited during start-up (see above)")
                if time.monotonic() > deadline:
                    raise CommandError(f"nothing listens on {address[0]}:{address[1]} after {START_PATIENCE:.0f} s")
                time.sleep(0.1)

    @staticmethod
    def stop_child(child: subprocess.Popen[bytes]) -> None:
        if child.poll() is not None:
            return
        try:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(STOP_PATIENCE)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
