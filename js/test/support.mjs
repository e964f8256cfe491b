// Helpers for the client's tests: a real Switchyard process, real Django sessions, a TCP
// path the test can cut, and a deliberately odd WebSocket server.
//
// The rules of tests/support/mod.rs hold here too: every server binds port 0 and the port
// is read back; nothing waits on a fixed sleep, only on a signal with bounded patience
// (`eventually`, `nextEvent`); a test sets an option only when it is about that option.

import { spawn, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync, existsSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** How long a test waits for something that should happen soon; a passing test never waits it out. */
export const PATIENCE = 20000;

/** A temp folder removed when the process exits. */
export function tempDir(prefix = "switchyard-js-") {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The switchyard binary: $SWITCHYARD_BIN, else the debug build of this repository. */
export function switchyardBin() {
  const bin = process.env.SWITCHYARD_BIN ?? path.join(ROOT, "target/debug/switchyard");
  if (!existsSync(bin)) throw new Error(`no switchyard binary at ${bin}: run cargo build (scripts/test does)`);
  return bin;
}

/** The venv python with Django: $SWITCHYARD_TEST_VENV, else .venv of this repository. */
function python() {
  const venv = process.env.SWITCHYARD_TEST_VENV ?? path.join(ROOT, ".venv");
  const bin = path.join(venv, "bin/python");
  if (!existsSync(bin)) throw new Error(`no Django venv at ${venv}: scripts/test makes it`);
  return bin;
}

// --- Django: users and sessions made by Django itself --------------------------------------

const FIXTURE = path.join(ROOT, "js/test/fixtures/django_sessions.py");

/**
 * A SQLite database migrated by Django, with users alice, bob (plain) and carol (staff),
 * each logged in once. `await login(user)` makes another session, `await logout(session)`
 * ends one the way Django's logout does (the row is deleted). One Python process answers
 * them all; `close()` ends it.
 */
export async function djangoSite(dir) {
  const database = path.join(dir, "db.sqlite3");
  const secretKey = randomBytes(24).toString("hex");
  const env = { ...process.env, DJANGO_SECRET_KEY: secretKey };
  const child = spawn(python(), [FIXTURE, database], { env, stdio: ["pipe", "pipe", "inherit"] });
  const answers = [];
  const waiting = [];
  eachLine(child.stdout, (line) => {
    const answer = JSON.parse(line);
    const taker = waiting.shift();
    if (taker) taker(answer);
    else answers.push(answer);
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  /** Sends one command line; resolves with its answer, rejects with the fixture's error. */
  const run = async (...words) => {
    child.stdin.write(`${words.join(" ")}\n`);
    const ready = answers.shift();
    // Django's start and migrate take seconds on a loaded machine: thrice the patience.
    const answer =
      ready ?? (await withPatience(`the Django fixture's answer to ${words[0]}`, new Promise((r) => waiting.push(r)), 3 * PATIENCE));
    if (answer.error) throw new Error(`django_sessions.py ${words.join(" ")}: ${answer.error}`);
    return answer;
  };
  const { users } = await run("init");
  return {
    database,
    secretKey,
    /** @type {Record<string, {id: string, cookie: string, session: string}>} */
    users,
    /** A new session of `username`: `{cookie, session}`. */
    login: (username) => run("login", username),
    /** Deletes session `session`, as Django's logout does. */
    logout: (session) => run("logout", session),
    async close() {
      child.stdin.end();
      await exited;
    },
  };
}

// --- Switchyard ------------------------------------------------------------------------------

/**
 * Starts the switchyard binary with `config` (TOML; `[admin]` and JSON logs are added) and
 * resolves once it logs "listening". `site` (from djangoSite) adds the `[django]` section.
 */
export async function startSwitchyard(dir, config, site = null) {
  const adminKey = randomBytes(16).toString("hex");
  const file = path.join(dir, `switchyard-${randomBytes(4).toString("hex")}.toml`);
  let text = `${config}\n[admin]\nlisten = "127.0.0.1:0"\nkey_env = "SWITCHYARD_ADMIN_KEY"\n`;
  if (site) {
    text += `[django]\nsecret_key_env = "DJANGO_SECRET_KEY"\ndatabase = "sqlite://${site.database}"\n`;
  }
  text += `[log]\nformat = "json"\nlevel = "info"\naccess = false\n`;
  writeFileSync(file, text);
  const env = { ...process.env, SWITCHYARD_ADMIN_KEY: adminKey, DJANGO_SECRET_KEY: site?.secretKey ?? "unused" };
  delete env.RUST_LOG;
  const child = spawn(switchyardBin(), ["run", "--config", file], { env, stdio: ["ignore", "ignore", "pipe"] });
  const lines = [];
  const { plain, admin } = await waitForLine(child, listeningAt, "switchyard", lines);
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    plain,
    admin,
    lines,
    /** `ws://PLAIN/PATH`. */
    ws: (p = "/ws/") => `ws://${plain}${p}`,
    /** POST an admin API call; resolves with the JSON reply (throws on non-2xx). */
    async api(p, body) {
      const response = await fetch(`http://${admin}${p}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${p}: ${response.status} ${text}`);
      return JSON.parse(text);
    },
    /** Publishes `data` as `event` on `channel`; resolves with the item's offset. */
    async publish(channel, event, data) {
      return this.api("/api/publish", { channel, event, data });
    },
    /** SIGTERM, then wait for the exit. */
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

// --- processes -------------------------------------------------------------------------------

/** Calls `onLine(line)` for each line `stream` (a child's stdout or stderr) writes. */
export function eachLine(stream, onLine) {
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buffered += chunk;
    let at;
    while ((at = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      onLine(line);
    }
  });
}

/**
 * Reads `child`'s stderr until `pick(line)` returns something; resolves with it. Rejects
 * when the child exits first or after `patience` ms. Every line is kept in `lines`
 * (bounded) for the failure message.
 */
export function waitForLine(child, pick, what, lines, patience = PATIENCE) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready within ${patience} ms:\n${lines.join("\n")}`)), patience);
    eachLine(child.stderr, (line) => {
      lines.push(line);
      if (lines.length > 500) lines.shift();
      const picked = pick(line);
      if (picked) {
        clearTimeout(timer);
        resolve(picked);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) during start-up:\n${lines.join("\n")}`));
    });
  });
}

/** `{plain, admin}` ("host:port") from Switchyard's JSON "listening" log line; null for other lines. */
export function listeningAt(line) {
  let value;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (value?.fields?.message !== "listening") return null;
  const addr = (text) => String(text).match(/\d+\.\d+\.\d+\.\d+:\d+/)?.[0];
  return { plain: addr(value.fields.plain), admin: addr(value.fields.admin) };
}

// --- sockets ---------------------------------------------------------------------------------

/**
 * A WebSocket class that sends what a browser on the socket's own origin sends: Origin,
 * and `cookie()` (read at each connect, so a test can change it between reconnects).
 */
export function browserSocket(cookie = () => null) {
  return class BrowserSocket extends WebSocket {
    constructor(url) {
      const u = new URL(url);
      const headers = { Origin: `http://${u.host}` };
      const value = cookie();
      if (value) headers.Cookie = value;
      super(url, { headers });
    }
  };
}

/**
 * A TCP path to `target` ("host:port") the test can cut: `cut()` drops every connection
 * and refuses new ones until `mend()`; `connections` counts the ones it let through.
 */
export async function cuttablePath(target) {
  const open = new Set();
  let cut = false;
  let connections = 0;
  const server = net.createServer((downstream) => {
    if (cut) return downstream.destroy();
    connections += 1;
    const [host, port] = target.split(":");
    const upstream = net.connect(Number(port), host);
    open.add(downstream).add(upstream);
    const end = () => {
      downstream.destroy();
      upstream.destroy();
      open.delete(downstream);
      open.delete(upstream);
    };
    downstream.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = `127.0.0.1:${server.address().port}`;
  return {
    addr,
    ws: (p = "/ws/") => `ws://${addr}${p}`,
    get connections() {
      return connections;
    },
    /** Drops every connection at once (no close frame: the network went away). */
    cut() {
      cut = true;
      for (const socket of open) socket.destroy();
      open.clear();
    },
    mend() {
      cut = false;
    },
    /** Later connections go to `next` ("host:port"). */
    retarget(next) {
      target = next;
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

// --- waiting ---------------------------------------------------------------------------------

/** Resolves once `check()` is true (looked at every 10 ms); rejects after PATIENCE naming `what`. */
export async function eventually(what, check) {
  const deadline = Date.now() + PATIENCE;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${PATIENCE} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The next `type` event of `client` that `accept` takes; rejects after PATIENCE. */
export function nextEvent(client, type, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${PATIENCE} ms`));
    }, PATIENCE);
    const off = client.on(type, (value) => {
      if (!accept(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Collects what a subscription handler receives; `waitFor(n)` resolves with the first n. */
export function collector() {
  const items = [];
  const handler = (message) => items.push(message);
  handler.items = items;
  handler.waitFor = async (n) => {
    await eventually(`${n} messages (have ${items.length})`, () => items.length >= n);
    return items.slice(0, n);
  };
  return handler;
}

// --- an odd server ---------------------------------------------------------------------------

/**
 * A WebSocket server that does only what the test tells it: `await server.nextPeer()`
 * gives each connection, whose `send(text)`, `sendBinary(bytes)`, `close(code, reason)`,
 * `destroy()` and `await peer.next()` (the next text frame the client sent, parsed) let
 * the test play a broken or hostile Switchyard.
 */
export async function oddServer() {
  const waiting = [];
  const arrived = [];
  let count = 0;
  const sockets = new Set();
  const server = http.createServer((req, res) => res.writeHead(404).end());
  server.on("upgrade", (req, socket) => {
    count += 1;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const peer = new Peer(socket, req.url);
    const taker = waiting.shift();
    if (taker) taker(peer);
    else arrived.push(peer);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  return {
    url: `ws://127.0.0.1:${port}/ws/`,
    /** How many upgrades it has taken. */
    get connections() {
      return count;
    },
    nextPeer() {
      const ready = arrived.shift();
      if (ready) return Promise.resolve(ready);
      return withPatience("a connection", new Promise((resolve) => waiting.push(resolve)));
    },
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

class Peer {
  #socket;
  #buffer = Buffer.alloc(0);
  #frames = [];
  #waiting = [];
  closed = false;

  constructor(socket, url) {
    this.#socket = socket;
    this.url = url;
    socket.on("data", (chunk) => this.#read(chunk));
    socket.on("close", () => {
      this.closed = true;
    });
  }

  /** A welcome as Switchyard sends it. */
  welcome(extra = {}) {
    this.send(JSON.stringify({ welcome: { connection: "c-1", user: null, resume: "t".repeat(32), resume_ttl: 300, ...extra } }));
  }

  send(text) {
    this.#write(0x1, Buffer.from(text));
  }

  sendBinary(bytes) {
    this.#write(0x2, Buffer.from(bytes));
  }

  close(code, reason = "") {
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.#write(0x8, payload);
    this.#socket.end();
  }

  /** Drops the TCP connection without a close frame. */
  destroy() {
    this.#socket.destroy();
  }

  /** The next text frame from the client, parsed as JSON. */
  next() {
    const frame = this.#frames.shift();
    if (frame !== undefined) return Promise.resolve(frame);
    return withPatience("a frame from the client", new Promise((resolve) => this.#waiting.push(resolve)));
  }

  #write(opcode, payload) {
    if (this.#socket.destroyed) return;
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255]) : null;
    if (!head) throw new Error("test frames stay under 64 KiB");
    this.#socket.write(Buffer.concat([head, payload]));
  }

  #read(chunk) {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const b = this.#buffer;
      if (b.length < 2) return;
      const opcode = b[0] & 0x0f;
      let length = b[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + 4 + length) return;
      const mask = b.subarray(at, at + 4);
      const payload = Buffer.from(b.subarray(at + 4, at + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      this.#buffer = b.subarray(at + 4 + length);
      if (opcode === 0x1) this.#deliver(JSON.parse(payload.toString("utf8")));
      else if (opcode === 0x8 && !this.#socket.destroyed) this.#socket.end();
    }
  }

  #deliver(frame) {
    const taker = this.#waiting.shift();
    if (taker) taker(frame);
    else this.#frames.push(frame);
  }
}

function withPatience(what, promise, patience = PATIENCE) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${patience} ms`)), patience);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
