// The browser client against a real Switchyard process, with users and sessions made by
// real Django: calls, subscriptions, recovery after a dropped network, presence, and what
// happens after 4401/4403.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { connect, SwitchyardError } from "../switchyard.js";
import {
  ROOT,
  browserSocket,
  collector,
  cuttablePath,
  djangoSite,
  eventually,
  nextEvent,
  startSwitchyard,
  tempDir,
} from "./support.mjs";

const CONFIG = `
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:9"

[[routes]]
path = "/ws/"

[[routes]]
path = "/ws/members/"
auth = "authenticated"

[[routes]]
path = "/ws/staff/"
auth = "staff"

[[channels]]
pattern = "news"
subscribe = "anyone"
history = { size = 100, ttl = "10m" }

[[channels]]
pattern = "brief"
subscribe = "anyone"
history = { size = 2, ttl = "10m" }

[[channels]]
pattern = "room:*"
subscribe = "authenticated"
presence = true
`;

const dir = tempDir();
/** @type {ReturnType<typeof djangoSite>} */
let site;
/** @type {Awaited<ReturnType<typeof startSwitchyard>>} */
let sy;
const clients = [];
const lines = [];

/** A client of `url` as a browser with `cookie` (a function, read at each connect). */
function open(url, cookie = () => null, options = {}) {
  const client = connect(url, { WebSocket: browserSocket(cookie), minDelay: 20, maxDelay: 200, ...options });
  clients.push(client);
  return client;
}

/** A TCP path to Switchyard the test can cut (closed after the file). */
async function cutLine() {
  const made = await cuttablePath(sy.plain);
  lines.push(made);
  return made;
}

async function opened(client) {
  if (client.state !== "open") await nextEvent(client, "open");
  return client;
}

before(async () => {
  site = await djangoSite(dir);
  sy = await startSwitchyard(dir, CONFIG, site);
});

after(async () => {
  for (const client of clients) client.close();
  for (const made of lines) made.close();
  await sy?.stop();
  await site?.close();
});

describe("calls", () => {
  test("a call resolves with the command's result", async () => {
    const client = await opened(open(sy.ws()));
    assert.equal(await client.call("ping"), "pong");
    assert.deepEqual(await client.call("echo", { a: [1, "two"] }), { a: [1, "two"] });
  });

  test("a refused command rejects with the reply's code and message", async () => {
    const client = await opened(open(sy.ws()));
    await assert.rejects(client.call("no.such"), (e) => {
      assert.ok(e instanceof SwitchyardError);
      assert.equal(e.code, "unknown_command");
      assert.match(e.message, /no.such/);
      return true;
    });
    await assert.rejects(client.publish("news", "x", 1), { name: "SwitchyardError", code: "forbidden" });
    await assert.rejects(client.history("news", { limit: 0 }), { code: "bad_args" });
  });

  test("calls made before the welcome are sent once it arrives, in order", async () => {
    const client = open(sy.ws());
    assert.equal(client.state, "connecting");
    const replies = await Promise.all([client.call("echo", 1), client.call("echo", 2), client.call("whoami")]);
    assert.deepEqual(replies, [1, 2, null]);
  });

  test("the welcome's user is the Django session's user", async () => {
    const alice = site.users.alice;
    const client = await opened(open(sy.ws(), () => alice.cookie));
    assert.equal(client.user.username, "alice");
    assert.equal(client.user.id, alice.id);
    assert.equal((await client.call("whoami")).username, "alice");
  });
});

describe("subscriptions", () => {
  test("pushes arrive in order with rising offsets", async () => {
    const client = await opened(open(sy.ws()));
    const got = collector();
    const sub = client.subscribe("news", got);
    const joined = await sub.ready;
    for (let i = 0; i < 5; i++) await sy.publish("news", "item", { i });
    const items = await got.waitFor(5);
    assert.deepEqual(items.map((m) => m.data.i), [0, 1, 2, 3, 4]);
    assert.deepEqual(items.map((m) => m.offset), [1, 2, 3, 4, 5].map((n) => joined.offset + n));
    assert.ok(items.every((m) => m.channel === "news" && m.event === "item" && m.epoch === joined.epoch));
    assert.deepEqual(sub.position, { offset: joined.offset + 5, epoch: joined.epoch });
  });

  test("a filter lets only matching events through", async () => {
    const client = await opened(open(sy.ws()));
    const got = collector();
    await client.subscribe("news", got, { filter: { level: { gte: 3 } } }).ready;
    for (const level of [1, 5, 2, 3]) await sy.publish("news", "log", { level });
    await sy.publish("news", "log", { level: 9, last: true });
    await eventually("the last event", () => got.items.some((m) => m.data.last));
    assert.deepEqual(got.items.map((m) => m.data.level), [5, 3, 9]);
  });

  test("since replays what was published before the subscribe", async () => {
    const { offset, epoch } = (await sy.api("/api/channels?channel=news")).channels[0];
    await sy.publish("news", "early", { n: 1 });
    await sy.publish("news", "early", { n: 2 });
    const client = await opened(open(sy.ws()));
    const got = collector();
    const joined = await client.subscribe("news", got, { since: { offset, epoch } }).ready;
    assert.equal(joined.recovered, true);
    assert.deepEqual((await got.waitFor(2)).map((m) => m.data.n), [1, 2]);
  });

  test("a refused subscription rejects ready and calls onError", async () => {
    const client = await opened(open(sy.ws()));
    const errors = [];
    const sub = client.subscribe("nowhere", () => {}, { onError: (e) => errors.push(e) });
    await assert.rejects(sub.ready, { code: "forbidden" });
    assert.equal(errors.length, 1);
    assert.equal(sub.active, false);
    const members = client.subscribe("room:lobby", () => {});
    await assert.rejects(members.ready, { code: "forbidden" }, "anonymous may not join a room");
  });

  test("unsubscribe stops the handler and leaves the channel on the server", async () => {
    const client = await opened(open(sy.ws()));
    const got = collector();
    const sub = client.subscribe("news", got);
    await sub.ready;
    const subscribers = async () => (await sy.api("/api/channels?channel=news")).channels[0].subscribers;
    const before = await subscribers();
    sub.unsubscribe();
    await eventually("the server drops the subscriber", async () => (await subscribers()) === before - 1);
    await sy.publish("news", "after", {});
    assert.equal(await client.call("ping"), "pong");
    assert.deepEqual(got.items, []);
  });
});

describe("recovery after reconnects", () => {
  /** A client on a cuttable path, subscribed to `channel`, having seen one event. */
  async function connectedThroughCut(channel, options = {}) {
    const line = await cutLine();
    const client = await opened(open(line.ws(), () => null, options));
    const got = collector();
    const failures = [];
    const sub = client.subscribe(channel, got, { onRecoveryFailed: (f) => failures.push(f) });
    await sub.ready;
    await sy.publish(channel, "before", { n: 0 });
    await got.waitFor(1);
    return { line, client, got, failures, sub };
  }

  /** Cuts the line, publishes `n` events meanwhile, mends it; resolves when reopened. */
  async function missEvents({ line, client }, channel, n) {
    const closed = nextEvent(client, "closed");
    line.cut();
    await closed;
    for (let i = 1; i <= n; i++) await sy.publish(channel, "missed", { n: i });
    const reopened = nextEvent(client, "open");
    line.mend();
    return reopened;
  }

  test("after a dropped connection every missed event arrives once, in order (resume token)", async () => {
    const setup = await connectedThroughCut("news");
    const reopened = await missEvents(setup, "news", 5);
    assert.equal(reopened.resumed, true, "the resume token restored the subscriptions");
    await sy.publish("news", "live", { n: 6 });
    const items = await setup.got.waitFor(7);
    assert.deepEqual(items.map((m) => m.data.n), [0, 1, 2, 3, 4, 5, 6]);
    const offsets = items.map((m) => m.offset);
    assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), "no gap, no duplicate");
    assert.deepEqual(setup.failures, []);
  });

  test("without the resume token the client resubscribes from its last offset", async () => {
    const setup = await connectedThroughCut("news", { resume: false });
    const reopened = await missEvents(setup, "news", 3);
    assert.equal(reopened.resumed, false);
    await sy.publish("news", "live", { n: 4 });
    assert.deepEqual((await setup.got.waitFor(5)).map((m) => m.data.n), [0, 1, 2, 3, 4]);
    await eventually("nothing more", async () => (await setup.client.call("ping")) === "pong");
    assert.equal(setup.got.items.length, 5);
  });

  test("when history no longer covers the gap, onRecoveryFailed fires and live events go on", async () => {
    const setup = await connectedThroughCut("brief"); // keeps 2 events
    const recoveryFailed = nextEvent(setup.client, "recoveryFailed");
    await missEvents(setup, "brief", 4);
    const failed = await recoveryFailed;
    assert.equal(failed.channel, "brief");
    assert.equal(setup.failures.length, 1);
    assert.deepEqual(setup.failures[0], failed);
    await sy.publish("brief", "live", { n: 5 });
    const items = await setup.got.waitFor(2);
    assert.deepEqual(items.map((m) => m.data.n), [0, 5], "the lost events are not replayed in part");
    assert.equal(items[1].offset, failed.offset + 1);
  });
});

describe("presence", () => {
  test("join and leave reach the other subscribers; presence() lists both users", async () => {
    const { alice, bob } = site.users;
    const a = await opened(open(sy.ws(), () => alice.cookie));
    const joins = [];
    const leaves = [];
    const subA = a.subscribe("room:tea", () => {}, { onJoin: (j) => joins.push(j), onLeave: (l) => leaves.push(l) });
    await subA.ready;
    const b = await opened(open(sy.ws(), () => bob.cookie));
    await b.subscribe("room:tea", () => {}).ready;
    await eventually("alice hears bob join", () => joins.some((j) => j.user.username === "bob"));
    const here = await subA.presence();
    assert.deepEqual(here.users.map((u) => u.username).sort(), ["alice", "bob"]);
    assert.equal(here.count, 2);
    b.close();
    await eventually("alice hears bob leave", () => leaves.some((l) => l.user.username === "bob"));
    assert.equal(joins.filter((j) => j.user.username === "alice").length, 0, "no join for one's own first tab");
  });
});

describe("login and logout", () => {
  test("a 4401 after a welcome gets one immediate retry, then unauthorized and no more attempts", async () => {
    const { cookie, session } = await site.login("bob");
    const line = await cutLine();
    const client = await opened(open(line.ws("/ws/members/"), () => cookie));
    const states = [];
    client.on("state", (s) => states.push(s));
    await site.logout(session);
    const unauthorized = nextEvent(client, "unauthorized");
    await sy.api("/api/disconnect", { session_key: session });
    const refused = await unauthorized;
    assert.equal(refused.code, 4401);
    assert.deepEqual(states.map((s) => s.state), ["closed", "connecting", "unauthorized"]);
    assert.equal(states[0].retryIn, 0, "the retry after a welcome is immediate");
    assert.equal(line.connections, 2, "the first socket and the one retry");
    await assert.rejects(client.call("ping"), { code: "unauthorized" });
    assert.equal(client.state, "unauthorized");
    assert.equal(line.connections, 2, "no retries after unauthorized");
  });

  test("a rotated session key reconnects at once with the new cookie and keeps the subscriptions", async () => {
    let { cookie, session } = await site.login("alice");
    const client = await opened(open(sy.ws("/ws/members/"), () => cookie));
    const got = collector();
    await client.subscribe("news", got).ready;
    const first = client.connection;
    const next = await site.login("alice"); // Django's login: a new key, the old one dead
    await site.logout(session);
    cookie = next.cookie;
    const reopened = nextEvent(client, "open");
    await sy.api("/api/disconnect", { session_key: session });
    const opened_ = await reopened;
    assert.equal(opened_.user.username, "alice");
    assert.notEqual(client.connection, first);
    await sy.publish("news", "after", { rotated: true });
    assert.deepEqual((await got.waitFor(1))[0].data, { rotated: true });
    session = next.session;
  });

  test("an anonymous socket on a members route gets 4401 once and is not retried", async () => {
    const line = await cutLine();
    const client = open(line.ws("/ws/members/"));
    const refused = await nextEvent(client, "unauthorized");
    assert.equal(refused.code, 4401);
    assert.equal(client.user, null);
    assert.equal(line.connections, 1);
  });

  test("4403 ends in unauthorized without a retry", async () => {
    const line = await cutLine();
    const client = open(line.ws("/ws/staff/"), () => site.users.alice.cookie);
    const refused = await nextEvent(client, "unauthorized");
    assert.equal(refused.code, 4403);
    assert.equal(line.connections, 1);
    const carol = await opened(open(line.ws("/ws/staff/"), () => site.users.carol.cookie));
    assert.equal(carol.user.is_staff, true, "a staff user is let in");
  });

  test("reconnect() after unauthorized tries again, with the cookie of now", async () => {
    let cookie = null;
    const client = open(sy.ws("/ws/members/"), () => cookie);
    await nextEvent(client, "unauthorized");
    cookie = site.users.bob.cookie; // the user logged in in another tab
    const reopened = nextEvent(client, "open");
    client.reconnect();
    assert.equal((await reopened).user.username, "bob");
  });
});

describe("the client's life", () => {
  test("close() stops retries and fails what waits with closed", async () => {
    const line = await cutLine();
    const client = await opened(open(line.ws()));
    const closed = nextEvent(client, "closed");
    line.cut();
    await closed;
    const waiting = client.call("ping");
    client.close();
    await assert.rejects(waiting, { code: "closed" });
    line.mend();
    assert.equal(client.state, "closed");
    await assert.rejects(client.call("ping"), { code: "closed" });
    assert.equal(line.connections, 1);
  });
});

describe("/_switchyard/client.js", () => {
  test("the binary serves this module, and the served module connects", async () => {
    const response = await fetch(`http://${sy.plain}/_switchyard/client.js`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/javascript/);
    const served = await response.text();
    // Not assert.equal: a mismatch would print the whole module twice.
    assert.ok(served === readFileSync(path.join(ROOT, "js/switchyard.js"), "utf8"), "the binary embeds js/switchyard.js as it is now (rebuild it)");
    const etag = response.headers.get("etag");
    const again = await fetch(`http://${sy.plain}/_switchyard/client.js`, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);

    const file = path.join(tempDir(), "client.mjs");
    writeFileSync(file, served);
    const module = await import(file);
    const client = module.connect(sy.ws(), { WebSocket: browserSocket() });
    clients.push(client);
    await opened(client);
    assert.equal(await client.call("ping"), "pong");
  });
});
