// The demo's workspace page in headless Chromium (Debian's, driven by playwright-core),
// logged in as two users in two browser contexts: chat through Django's command views,
// presence, a model row created through Django appearing live, a Switchyard restart with
// the in-process broker (the page hears recovered: false and refetches), and a logout
// that closes the socket with 4401 and is shown on the page. Screenshots go to OUT.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { PATIENCE } from "../test/support.mjs";
import { launchBrowser, loggedIn, OUT, screenshot, startDemo } from "./stack.mjs";

let demo;
let browser;
/** @type {Awaited<ReturnType<typeof loggedIn>>} */
let alice;
/** @type {Awaited<ReturnType<typeof loggedIn>>} */
let bob;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  alice = await loggedIn(browser, demo.base, "alice");
  bob = await loggedIn(browser, demo.base, "bob");
  console.log(`screenshots in ${OUT}`);
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

const wait = { timeout: PATIENCE };

/** The text of every element matching `selector` on `page`. */
const texts = (page, selector) => page.locator(selector).allTextContents();

test("presence lists both users in each browser", async () => {
  for (const { page } of [alice, bob]) {
    await page.locator('[data-testid=present][data-user=alice]').waitFor(wait);
    await page.locator('[data-testid=present][data-user=bob]').waitFor(wait);
  }
  assert.deepEqual((await texts(alice.page, "[data-testid=present]")).map((t) => t.slice(1)).sort(), ["alice", "bob"]);
});

test("a chat message sent by one user appears in the other's page, and an @mention notifies", async () => {
  const text = `Morning @bob, stand-up in 5 (${Date.now()})`;
  await alice.page.fill("[data-testid=chat-input]", text);
  await alice.page.click("[data-testid=chat-send]");
  await bob.page.locator("[data-testid=message]", { hasText: text }).waitFor(wait);
  await alice.page.locator("[data-testid=message]", { hasText: text }).waitFor(wait);
  await bob.page.locator("[data-testid=toast]", { hasText: "alice mentioned you" }).waitFor(wait);
  assert.equal(await alice.page.locator("[data-testid=toast]", { hasText: "mentioned you" }).count(), 0, "only bob is told");
  await screenshot(alice.page, "01-chat-alice");
  await screenshot(bob.page, "01-chat-bob");
});

test("a task created through Django (not through a page) appears live in both browsers", async () => {
  const title = `Created in the Django shell ${Date.now()}`;
  demo.shell(`from workspace.models import Task; Task.objects.create(title=${JSON.stringify(title)})`);
  for (const { page } of [alice, bob]) {
    await page.locator("[data-testid=column-todo] [data-testid=task]", { hasText: title }).waitFor(wait);
  }
});

test("a task added and assigned in one browser moves live in the other, and the assignee is notified", async () => {
  const title = `Write the release notes ${Date.now()}`;
  await alice.page.fill("[data-testid=task-input]", title);
  await alice.page.click("[data-testid=task-add]");
  const inBob = bob.page.locator("[data-testid=task]", { hasText: title });
  await inBob.waitFor(wait);
  const inAlice = alice.page.locator("[data-testid=task]", { hasText: title });
  await inAlice.locator("select").selectOption("bob");
  await bob.page.locator("[data-testid=toast]", { hasText: `You were given the task “${title}”` }).waitFor(wait);
  await inAlice.locator("button[title=Forward]").click();
  await bob.page.locator("[data-testid=column-doing] [data-testid=task]", { hasText: title }).waitFor(wait);
  await screenshot(bob.page, "02-board-bob");
});

test("after a Switchyard restart (local broker) the page hears recovered: false and refetches what it missed", async () => {
  const before = await alice.page.evaluate(() => window.workspace.refetches);
  const replies = alice.subscribed.length;
  await demo.stopSwitchyard();
  await alice.page.locator("[data-testid=conn-state][data-state=closed]").waitFor(wait);
  await screenshot(alice.page, "03-restart-reconnecting");
  // Published while Switchyard is down: django-switchyard logs the failed publish; the
  // row is only in the database. The in-process broker's history went with the process.
  const title = `Added while Switchyard was down ${Date.now()}`;
  demo.shell(`from workspace.models import Task; Task.objects.create(title=${JSON.stringify(title)})`);
  await demo.startSwitchyard();
  for (const { page } of [alice, bob]) {
    await page.locator("[data-testid=conn-state][data-state=open]").waitFor(wait);
    await page.locator("[data-testid=task]", { hasText: title }).waitFor(wait);
  }
  const trace = await alice.page.evaluate(() => ({ ...window.workspace, client: undefined }));
  assert.ok(trace.recoveryFailed.includes("model:workspace.Task"), `recoveryFailed: ${trace.recoveryFailed}`);
  assert.ok(trace.refetches > before, "the page fetched the board again");
  await alice.page.locator("[data-testid=toast]", { hasText: "could not be replayed" }).first().waitFor(wait);
  // On the wire: the new process answered the board's resubscribe with recovered: false.
  const board = alice.subscribed.slice(replies).filter((r) => r.channel === "model:workspace.Task");
  assert.deepEqual(board.map((r) => r.recovered), [false], JSON.stringify(board));
  // And live events flow again on the new process.
  const live = `After the restart ${Date.now()}`;
  await bob.page.fill("[data-testid=chat-input]", live);
  await bob.page.click("[data-testid=chat-send]");
  await alice.page.locator("[data-testid=message]", { hasText: live }).waitFor(wait);
  await screenshot(alice.page, "03-restart-recovered");
});

test("logging out in another tab closes this page's socket with 4401 and the page says so", async () => {
  const other = await alice.context.newPage();
  await other.goto(`${demo.base}/`);
  await Promise.all([other.waitForURL(`${demo.base}/`), other.click("header form button[type=submit]")]);
  const { page } = alice;
  await page.locator("[data-testid=conn-state][data-state=unauthorized]").waitFor(wait);
  const banner = await page.locator("[data-testid=banner]").textContent();
  assert.match(banner, /logged out/);
  assert.match(banner, /4401/);
  const states = await page.evaluate(() => window.workspace.states.map((s) => [s.state, s.code ?? null]));
  const closed = states.findIndex(([state, code]) => state === "closed" && code === 4401);
  assert.ok(closed >= 0, JSON.stringify(states));
  const since = states.slice(closed);
  assert.deepEqual(since.at(-1), ["unauthorized", 4401], JSON.stringify(states));
  // django-switchyard reports the logout only once the session is deleted, so the one
  // immediate retry is refused (4401) and never welcomed; no retry waited out a backoff and
  // none followed the refusal.
  assert.ok(!since.some(([state]) => state === "open"), `welcomed after the logout: ${JSON.stringify(states)}`);
  assert.ok(since.every(([state, code]) => state !== "closed" || code === 4401), JSON.stringify(states));
  assert.ok(since.filter(([state]) => state === "connecting").length <= 1, JSON.stringify(states));
  await screenshot(page, "04-logged-out");
  // Bob's page carries on and sees alice leave.
  await bob.page.locator("[data-testid=present][data-user=alice]").waitFor({ state: "detached", ...wait });
  assert.equal(await bob.page.getAttribute("[data-testid=conn-state]", "data-state"), "open");
  assert.deepEqual(alice.problems.concat(bob.problems), [], "no script errors on either page");
});
