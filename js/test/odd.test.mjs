// The client against a server that does exactly what each test tells it (support's
// oddServer): timeouts, backoff delays, lost frames, broken frames, what a reconnect
// sends. What real Switchyard does is tested in client.test.mjs; these are the cases a
// real server will not produce on demand.

import assert from "node:assert/strict";
import { after, afterEach, test } from "node:test";

import { connect } from "../switchyard.js";
import { eventually, nextEvent, oddServer } from "./support.mjs";

const servers = [];
const clients = [];

async function server() {
  const made = await oddServer();
  servers.push(made);
  return made;
}

function open(url, options = {}) {
  const client = connect(url, options);
  clients.push(client);
  return client;
}

/** A client of a fresh odd server, welcomed: `{srv, client, peer}`. */
async function welcomed(options = {}) {
  const srv = await server();
  const client = open(srv.url, options);
  const peer = await srv.nextPeer();
  const opened = nextEvent(client, "open");
  peer.welcome();
  await opened;
  return { srv, client, peer };
}

const random = Math.random;
afterEach(() => {
  Math.random = random;
});

after(() => {
  for (const client of clients) client.close();
  for (const made of servers) made.close();
});

test("a call without a reply rejects with timeout, and a late reply is ignored", async () => {
  const { client, peer } = await welcomed();
  const errors = [];
  client.on("error", (e) => errors.push(e));
  const started = Date.now();
  const call = client.call("slow.thing", { n: 1 }, { timeout: 150 });
  const frame = await peer.next();
  assert.deepEqual(frame, { id: frame.id, "slow.thing": { n: 1 } });
  await assert.rejects(call, { name: "SwitchyardError", code: "timeout" });
  assert.ok(Date.now() - started >= 140, "not before its timeout");
  peer.send(JSON.stringify({ id: frame.id, "slow.thing": { result: "late" } }));
  peer.send(JSON.stringify({ id: 999, ping: { result: "pong" } })); // not ours either
  const next = client.call("ping");
  const ping = await peer.next();
  peer.send(JSON.stringify({ id: ping.id, ping: { result: "pong" } }));
  assert.equal(await next, "pong");
  assert.deepEqual(errors, []);
});

test("an error reply rejects with its code, message and detail", async () => {
  const { client, peer } = await welcomed();
  const call = client.call("chat.send", { text: "hi" });
  const frame = await peer.next();
  const error = { code: "backend_error", message: "the backend answered 500", detail: { why: "db" } };
  peer.send(JSON.stringify({ id: frame.id, "chat.send": { error } }));
  await assert.rejects(call, { code: "backend_error", message: "the backend answered 500", detail: { why: "db" } });
});

test("a call in flight when the socket drops rejects with disconnected", async () => {
  const { client, peer } = await welcomed();
  const call = client.call("chat.send", {});
  await peer.next();
  peer.destroy();
  await assert.rejects(call, { code: "disconnected" });
});

test("calls beyond maxQueued while disconnected fail with queue_full", async () => {
  const srv = await server();
  const client = open(srv.url, { maxQueued: 2 });
  const first = client.call("echo", 1);
  const second = client.call("echo", 2);
  await assert.rejects(client.call("echo", 3), { code: "queue_full" });
  const peer = await srv.nextPeer();
  peer.welcome();
  for (const n of [1, 2]) {
    const frame = await peer.next();
    assert.equal(frame.echo, n, "queued calls go out in order");
    peer.send(JSON.stringify({ id: frame.id, echo: { result: n } }));
  }
  assert.deepEqual(await Promise.all([first, second]), [1, 2]);
});

test("failed attempts wait a random delay under a ceiling that doubles up to maxDelay", async () => {
  const srv = await server();
  Math.random = () => 0.999; // the top of each range: the delay shows its ceiling
  const client = open(srv.url, { minDelay: 10, maxDelay: 80 });
  const delays = [];
  client.on("closed", (c) => delays.push(c.retryIn));
  for (let i = 0; i < 6; i++) (await srv.nextPeer()).destroy();
  await eventually("six closes", () => delays.length >= 6);
  assert.deepEqual(delays.slice(0, 6), [9, 19, 39, 79, 79, 79]);
});

test("full jitter: a delay may be anything from zero to its ceiling", async () => {
  const srv = await server();
  Math.random = () => 0;
  const client = open(srv.url, { minDelay: 5000, maxDelay: 30000 });
  const delays = [];
  client.on("closed", (c) => delays.push(c.retryIn));
  const started = Date.now();
  for (let i = 0; i < 3; i++) (await srv.nextPeer()).destroy();
  await eventually("three closes", () => delays.length >= 3);
  assert.deepEqual(delays.slice(0, 3), [0, 0, 0]);
  assert.ok(Date.now() - started < 5000, "no attempt waited out a minDelay of 5 s");
});

test("state events follow the socket: connecting, open, closed with its retry, connecting, open", async () => {
  const srv = await server();
  const client = open(srv.url, { minDelay: 10 });
  const states = [];
  client.on("state", (s) => states.push(s));
  states.push({ state: client.state });
  let peer = await srv.nextPeer();
  peer.welcome({ user: { id: "7", username: "alice", is_staff: false, is_superuser: false } });
  await eventually("open", () => client.state === "open");
  assert.equal(client.user.username, "alice");
  peer.close(1011, "server going away");
  peer = await srv.nextPeer();
  peer.welcome();
  await eventually("open again", () => states.filter((s) => s.state === "open").length === 2);
  assert.deepEqual(states.map((s) => s.state), ["connecting", "open", "closed", "connecting", "open"]);
  const closed = states[2];
  assert.equal(closed.code, 1011);
  assert.equal(closed.reason, "server going away");
  assert.ok(closed.retryIn >= 0 && closed.retryIn < 10);
  assert.equal(client.user, null, "the new welcome's user");
});

test("no welcome within connectTimeout: the client gives up on that socket and tries again", async () => {
  const srv = await server();
  const client = open(srv.url, { connectTimeout: 100, minDelay: 10 });
  const silent = await srv.nextPeer();
  const closed = await nextEvent(client, "closed");
  assert.match(closed.reason, /welcome/);
  const second = await srv.nextPeer();
  await eventually("the silent socket is closed", () => silent.closed);
  second.welcome();
  await nextEvent(client, "open");
});

test("a reconnect carries the resume token and resubscribes from the last offset and epoch", async () => {
  const { srv, client, peer } = await welcomed({ minDelay: 10 });
  const got = [];
  const sub = client.subscribe("news", (m) => got.push(m));
  const subscribe = await peer.next();
  assert.deepEqual(subscribe.subscribe, { channel: "news" });
  peer.send(JSON.stringify({ id: subscribe.id, subscribe: { result: { channel: "news", offset: 4, epoch: "e1" } } }));
  await sub.ready;
  for (const offset of [5, 6]) {
    peer.send(JSON.stringify({ push: { channel: "news", event: "item", data: { offset }, offset, epoch: "e1" } }));
  }
  await eventually("two pushes", () => got.length === 2);
  peer.destroy();
  const again = await srv.nextPeer();
  assert.equal(new URL(again.url, "ws://x").searchParams.get("resume"), "t".repeat(32));
  again.welcome({ resumed: { ok: false, reason: "the resume token is unknown, used or expired" } });
  const resubscribe = await again.next();
  assert.deepEqual(resubscribe.subscribe, { channel: "news", since: { offset: 6, epoch: "e1" } });
});

test("a channel the resume token restored with nothing missed is not subscribed again", async () => {
  const { srv, client, peer } = await welcomed({ minDelay: 10 });
  const sub = client.subscribe("news", () => {});
  const subscribe = await peer.next();
  peer.send(JSON.stringify({ id: subscribe.id, subscribe: { result: { channel: "news", offset: 4, epoch: "e1" } } }));
  await sub.ready;
  peer.destroy();
  const again = await srv.nextPeer();
  const restored = { channel: "news", offset: 4, epoch: "e1", recovered: true };
  const reopened = nextEvent(client, "open");
  again.welcome({ resumed: { ok: true, channels: [restored] } });
  assert.equal((await reopened).resumed, true);
  const ping = client.call("ping");
  const next = await again.next();
  assert.deepEqual(Object.keys(next), ["id", "ping"], "the first frame after the welcome is the ping, no subscribe");
  again.send(JSON.stringify({ id: next.id, ping: { result: "pong" } }));
  await ping;
});

test("lost frames reach the subscription's onLost and the client's lost event", async () => {
  const { client, peer } = await welcomed();
  const lostBySub = [];
  const sub = client.subscribe("ticks", () => {}, { onLost: (l) => lostBySub.push(l) });
  const subscribe = await peer.next();
  peer.send(JSON.stringify({ id: subscribe.id, subscribe: { result: { channel: "ticks", offset: 0, epoch: "e" } } }));
  await sub.ready;
  const lost = nextEvent(client, "lost");
  peer.send(JSON.stringify({ lost: { channel: "ticks", from: 3, to: 9 } }));
  assert.deepEqual(await lost, { channel: "ticks", from: 3, to: 9 });
  assert.deepEqual(lostBySub, [{ channel: "ticks", from: 3, to: 9 }]);
});

test("a push repeating an offset already delivered is dropped", async () => {
  const { client, peer } = await welcomed();
  const got = [];
  const sub = client.subscribe("news", (m) => got.push(m.offset));
  const subscribe = await peer.next();
  peer.send(JSON.stringify({ id: subscribe.id, subscribe: { result: { channel: "news", offset: 1, epoch: "e" } } }));
  await sub.ready;
  for (const offset of [2, 3, 2, 3, 4]) {
    peer.send(JSON.stringify({ push: { channel: "news", event: "x", data: null, offset, epoch: "e" } }));
  }
  await eventually("offset 4", () => got.includes(4));
  assert.deepEqual(got, [2, 3, 4]);
});

test("frames the client cannot use are reported as errors and the socket stays open", async () => {
  const { client, peer } = await welcomed();
  const errors = [];
  client.on("error", (e) => errors.push(e.code));
  peer.send("not json");
  peer.send("[1, 2]");
  peer.sendBinary([1, 2, 3]);
  peer.send(JSON.stringify({ surprise: true }));
  const call = client.call("ping");
  const frame = await peer.next();
  peer.send(JSON.stringify({ id: frame.id, ping: { result: "pong" } }));
  assert.equal(await call, "pong");
  assert.deepEqual(errors, ["bad_reply", "bad_reply", "bad_reply", "bad_reply"]);
  assert.equal(client.state, "open");
});

test("a handler that throws does not stop the others or the client", async () => {
  const { client, peer } = await welcomed();
  const reported = [];
  const original = globalThis.reportError;
  globalThis.reportError = (e) => reported.push(e.message);
  try {
    const got = [];
    const first = client.subscribe("news", () => {
      throw new Error("page bug");
    });
    client.subscribe("news", (m) => got.push(m.data));
    const subscribe = await peer.next();
    peer.send(JSON.stringify({ id: subscribe.id, subscribe: { result: { channel: "news", offset: 0, epoch: "e" } } }));
    await first.ready;
    peer.send(JSON.stringify({ push: { channel: "news", event: "x", data: "hello", offset: 1, epoch: "e" } }));
    await eventually("the second handler ran", () => got.length === 1);
    assert.deepEqual(reported, ["page bug"]);
  } finally {
    globalThis.reportError = original;
  }
});
