"""Load client for scripts/bench-ws: WebSocket handshakes, idle sockets, echo and commands.

A hand-rolled RFC 6455 client on asyncio Protocols (uvloop when installed), because a
general-purpose client library costs more CPU per frame than the servers it measures.
Client frames are masked with the all-zero key (a valid key that makes masking free);
pings are answered with pongs so idle sockets stay open. Work is spread over `--procs`
processes (each under the open-files limit) and connections over `--sources` loopback
source addresses (127.0.0.2, 127.0.0.3, ...), each with its own ephemeral ports.

scripts/bench-ws runs the handshake and echo modes with examples/ws_load.rs instead, the
same work for a fraction of the CPU; they stay here for comparison.

Every mode prints one JSON line on stdout; `idle` prints `{"ready": ...}` once all its
sockets are open and keeps them until SIGTERM. Modes:

    idle       open --count sockets, --concurrency handshakes at a time, hold them
    handshake  --count handshakes (each proven by one echo round trip), then close
    echo       --connections sockets, each one message at a time, for --seconds
    command    like echo on a json route, each frame {"id": n, "<--command>": {}}
    http       the same command as signed POSTs straight to the Django view
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import os
import signal
import struct
import sys
import time
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # the plain loop works, only slower
    uvloop = None

HANDSHAKE_TIMEOUT = 30.0
ZERO_MASK = b"\0\0\0\0"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(opcode, payload):
    """A final client frame, masked with the zero key (so the payload goes as it is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + ZERO_MASK + payload


class Refused(Exception):
    """The server answered the upgrade with something other than 101, or closed."""


class WsClient(asyncio.Protocol):
    """One socket: sends the upgrade, then parses server frames (unmasked, unfragmented:
    every server here sends small messages whole). Messages go to `waiter`, one at a
    time; a close frame or a dropped connection fails it."""

    def __init__(self, request, loop):
        self.request = request
        self.transport = None
        self.buffer = bytearray()
        self.upgraded = False
        self.opened = loop.create_future()
        self.waiter = None
        self.pending = []  # messages that arrived while nobody waited (e.g. welcome)
        self.close_code = None

    # --- asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(Refused(status.decode("latin-1")))
                self.transport.close()
                return
            self.upgraded = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse_frames()

    def connection_lost(self, exc):
        self._fail(Refused(f"connection lost (close code {self.close_code})"))

    # --- frames

    def _parse_frames(self):
        buf = self.buffer
        while len(buf) >= 2:
            opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    return
                (length,) = struct.unpack_from("!H", buf, 2)
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                (length,) = struct.unpack_from("!Q", buf, 2)
                offset = 10
            if len(buf) < offset + length:
                return
            payload = bytes(buf[offset : offset + length])
            del buf[: offset + length]
            self._on_frame(opcode, payload)

    def _on_frame(self, opcode, payload):
        if opcode in (OP_TEXT, OP_BINARY):
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(payload)
            else:
                self.pending.append(payload)
        elif opcode == OP_PING:
            self.transport.write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            self._fail(Refused(f"closed by the server with {self.close_code}"))
            self.transport.close()

    def _fail(self, error):
        for future in (self.opened, self.waiter):
            if future is not None and not future.done():
                future.set_exception(error)

    # --- what the load modes call

    async def roundtrip(self, message, opcode=OP_TEXT):
        """Send one message and return the next message the server sends."""
        if self.transport.is_closing():
            raise Refused(f"closed (close code {self.close_code})")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(encode_frame(opcode, message))
        return await self.waiter

    async def next_message(self):
        if self.pending:
            return self.pending.pop(0)
        self.waiter = asyncio.get_running_loop().create_future()
        return await self.waiter

    def close(self):
        if not self.transport.is_closing():
            self.transport.write(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()


class Target:
    """Where and as whom to connect: URL, Origin, session keys, source addresses."""

    def __init__(self, args):
        url = urlsplit(args.url)
        self.host, self.port = url.hostname, url.port or 80
        self.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.origin = args.origin or f"http://{url.netloc}"
        self.keys = _read_keys(args.keys) if args.keys else [None]
        self.cookie_name = args.cookie_name
        self.sources = [f"127.0.0.{2 + i}" for i in range(args.sources)] or [None]

    def request(self, i):
        key = self.keys[i % len(self.keys)]
        cookie = f"Cookie: {self.cookie_name}={key}\r\n" if key else ""
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {self.origin}\r\n{cookie}\r\n"
        ).encode()

    async def open(self, i):
        """Connection number `i`: its own session key and source address; raises Refused."""
        loop = asyncio.get_running_loop()
        source = self.sources[i % len(self.sources)]
        _, client = await loop.create_connection(
            lambda: WsClient(self.request(i), loop),
            self.host,
            self.port,
            local_addr=(source, 0) if source else None,
        )
        try:
            await asyncio.wait_for(client.opened, HANDSHAKE_TIMEOUT)
        except BaseException:
            client.transport.abort()
            raise
        return client


def _read_keys(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


# === modes: each runs in one process on its share of the work ===


async def mode_idle(args, target, share, first, report):
    clients, failures = [], []
    semaphore = asyncio.Semaphore(args.concurrency)

    async def open_one(i):
        async with semaphore:
            try:
                clients.append(await target.open(i))
            except (TimeoutError, OSError, Refused) as error:
                failures.append(repr(error))

    started = time.perf_counter()
    await asyncio.gather(*(open_one(first + i) for i in range(share)))
    await asyncio.sleep(args.settle)  # a 4401 arrives just after the 101: let it
    still_open = sum(1 for c in clients if not c.transport.is_closing())
    report(
        {
            "opened": still_open,
            "failed": share - still_open,
            "seconds": time.perf_counter() - started,
            "errors": failures[:3],
        }
    )
    await asyncio.Event().wait()  # hold the sockets until SIGTERM


async def mode_handshake(args, target, share, first, report):
    done, failures = 0, []
    counter = iter(range(first, first + share))
    started = time.perf_counter()

    async def worker():
        nonlocal done
        for i in counter:
            try:
                client = await target.open(i)
                await asyncio.wait_for(client.roundtrip(b"x"), HANDSHAKE_TIMEOUT)
                client.close()
                done += 1
            except (TimeoutError, OSError, Refused) as error:
                failures.append(repr(error))

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    report(
        {
            "done": done,
            "failed": len(failures),
            "seconds": time.perf_counter() - started,
            "errors": failures[:3],
        }
    )


async def mode_roundtrips(args, target, share, first, report):
    """echo and command: `share` sockets, each one message at a time until the deadline."""
    clients = [await target.open(first + i) for i in range(share)]
    latencies, failures = [], []
    payload = b"x" * args.size
    command_mode = args.mode == "command"
    if command_mode:
        for client in clients:  # the welcome frame comes first on json routes
            await asyncio.wait_for(client.next_message(), HANDSHAKE_TIMEOUT)
    deadline = time.perf_counter() + args.seconds

    async def loop(client):
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            message = json.dumps({"id": n, args.command: {}}).encode() if command_mode else payload
            t0 = time.perf_counter()
            try:
                reply = await client.roundtrip(message)
                if command_mode and b'"result"' not in reply:
                    failures.append(reply[:200].decode("utf-8", "replace"))
                    continue
            except Refused as error:
                failures.append(repr(error))
                return
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    report(
        {
            "latencies": latencies,
            "failed": len(failures),
            "seconds": elapsed,
            "errors": failures[:3],
        }
    )


async def mode_http(args, target, share, first, report):
    """Signed POSTs of the command's call body straight to the view, `share` at a time.
    gunicorn's sync workers close after each response, so each call is a new connection,
    as Switchyard's calls to the same gunicorn are."""
    secret = os.environ["SWITCHYARD_BACKEND_SECRET"].encode()
    url = urlsplit(args.url)
    latencies, failures = [], []
    deadline = time.perf_counter() + args.seconds

    async def call(n):
        body = json.dumps(
            {
                "command": args.command,
                "args": {},
                "connection": {"id": f"bench-{n}", "path": "/ws/", "query": "", "state": {}},
                "user": None,
            }
        ).encode()
        t = str(int(time.time()))
        mac = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        head = (
            f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"X-Switchyard-Signature: t={t},v1={mac}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(head + body)
        response = await reader.read()  # until the server closes
        writer.close()
        return response

    async def loop(worker):
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            t0 = time.perf_counter()
            try:
                response = await call(f"{worker}-{n}")
            except OSError as error:
                failures.append(repr(error))
                continue
            if not response.startswith(b"HTTP/1.1 200") or b'"result"' not in response:
                failures.append(response[:200].decode("latin-1"))
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(loop(first + i) for i in range(share)))
    report(
        {
            "latencies": latencies,
            "failed": len(failures),
            "seconds": time.perf_counter() - started,
            "errors": failures[:3],
        }
    )


MODES = {
    "idle": mode_idle,
    "handshake": mode_handshake,
    "echo": mode_roundtrips,
    "command": mode_roundtrips,
    "http": mode_http,
}


# === processes ===


def _worker(args, index, share, first, conn):
    if uvloop is not None:
        uvloop.install()
    target = Target(args)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    def report(result):
        result["cpu"] = sum(os.times()[:2])
        conn.send(result)

    asyncio.run(MODES[args.mode](args, target, share, first, report))


def _shares(total, procs):
    procs = max(1, min(procs, total))
    base, extra = divmod(total, procs)
    return [base + (1 if i < extra else 0) for i in range(procs)]


def main():
    args = parse_args()
    total = args.count if args.mode in ("idle", "handshake") else args.connections
    shares = _shares(total, args.procs)
    # Each process opens its own sockets; the concurrency is split between them too.
    args.concurrency = max(1, args.concurrency // len(shares))
    context = multiprocessing.get_context("fork")
    workers, first = [], 0
    for index, share in enumerate(shares):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(args, index, share, first, child))
        process.start()
        workers.append((process, parent))
        first += share
    signal.signal(signal.SIGTERM, lambda *_: _stop(workers))

    wall = time.perf_counter()
    results = [parent.recv() for _, parent in workers]
    wall = time.perf_counter() - wall
    summary = _summarise(args.mode, results, wall, len(workers))
    print(json.dumps(summary), flush=True)
    if args.mode == "idle":
        signal.pause()  # until SIGTERM; _stop exits
    for process, _ in workers:
        process.join()


def _stop(workers):
    for process, _ in workers:
        process.terminate()
    for process, _ in workers:
        process.join()
    sys.exit(0)


def _summarise(mode, results, wall, procs):
    cpu = sum(r.pop("cpu") for r in results)
    errors = [e for r in results for e in r.pop("errors", [])][:3]
    summary = {"mode": mode, "procs": procs, "client_cpu": round(cpu / wall / procs, 2)}
    if mode == "idle":
        summary.update(
            ready=True,
            opened=sum(r["opened"] for r in results),
            failed=sum(r["failed"] for r in results),
            seconds=round(max(r["seconds"] for r in results), 2),
        )
    elif mode == "handshake":
        done = sum(r["done"] for r in results)
        seconds = max(r["seconds"] for r in results)
        summary.update(
            done=done,
            failed=sum(r["failed"] for r in results),
            seconds=round(seconds, 2),
            per_second=round(done / seconds, 1),
        )
    else:
        latencies = sorted(x for r in results for x in r["latencies"])
        seconds = max(r["seconds"] for r in results)
        summary.update(
            done=len(latencies),
            failed=sum(r["failed"] for r in results),
            seconds=round(seconds, 2),
            per_second=round(len(latencies) / seconds, 1),
            p50_ms=_percentile_ms(latencies, 0.50),
            p99_ms=_percentile_ms(latencies, 0.99),
        )
    summary["errors"] = errors
    return summary


def _percentile_ms(ordered, q):
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/path (http:// for http)")
    parser.add_argument("--origin", help="Origin header (default: http:// + the URL's host)")
    parser.add_argument("--keys", help="file of session keys, one a line, used round-robin")
    parser.add_argument("--cookie-name", default="sessionid")
    parser.add_argument("--count", type=int, default=1000, help="idle and handshake")
    parser.add_argument("--concurrency", type=int, default=256, help="handshakes at once")
    parser.add_argument("--connections", type=int, default=64, help="echo, command, http")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=32, help="echo message bytes")
    parser.add_argument("--command", default="demo.count")
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--sources", type=int, default=0, help="source addresses 127.0.0.2+")
    parser.add_argument("--settle", type=float, default=1.0, help="idle: wait after opening")
    return parser.parse_args()


if __name__ == "__main__":
    main()
