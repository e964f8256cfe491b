// The demo on PostgreSQL (a fresh database on the cluster scripts/test starts,
// $SWITCHYARD_TEST_PG), in headless Chromium: django-switchyard's transport is the outbox
// table and Switchyard's broker is PostgreSQL's. Switchyard is stopped mid-test, Django
// publishes while it is down, and after the restart every page shows every event, replayed
// from the outbox (recovered, no refetch). Screenshots go to OUT.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { PATIENCE } from "../test/support.mjs";
import { freshPostgres, launchBrowser, loggedIn, screenshot, startDemo } from "./stack.mjs";

let database;
let demo;
let browser;
/** @type {Awaited<ReturnType<typeof loggedIn>>[]} */
let pages = [];

before(async () => {
  database = freshPostgres(`switchyard_e2e_demo_${process.pid}`);
  demo = await startDemo({ database: database.url });
  browser = await launchBrowser();
  pages = [await loggedIn(browser, demo.base, "alice"), await loggedIn(browser, demo.base, "bob")];
});

after(async () => {
  await browser?.close();
  await demo?.stop();
  database?.drop();
});

const wait = { timeout: PATIENCE };
const trace = (page) => page.evaluate(() => ({ ...window.workspace, client: undefined }));

test("after a Switchyard restart (PostgreSQL broker) every page shows every event published while it was down, replayed, not refetched", async () => {
  const [alice, bob] = pages;
  const before = await Promise.all(pages.map(({ page }) => trace(page)));
  const replies = pages.map(({ subscribed }) => subscribed.length);
  await demo.stopSwitchyard();
  for (const { page } of pages) await page.locator("[data-testid=conn-state][data-state=closed]").waitFor(wait);
  await screenshot(alice.page, "05-postgres-restart-down");

  // Django publishes while no Switchyard runs: each event is a committed outbox row.
  const stamp = Date.now();
  const lines = [1, 2, 3, 4, 5].map((n) => `While Switchyard was down, line ${n} (${stamp})`);
  const title = `Task added while Switchyard was down ${stamp}`;
  demo.shell(
    [
      "import django_switchyard as switchyard",
      "from django.contrib.auth import get_user_model",
      "from workspace.models import Message, Task",
      "bob = get_user_model().objects.get(username='bob')",
      `for text in ${JSON.stringify(lines)}:`,
      "    message = Message.objects.create(room='lobby', author=bob, text=text)",
      "    switchyard.publish('room:lobby', 'message', message.to_dict())",
      `Task.objects.create(title=${JSON.stringify(title)})`,
    ].join("\n"),
  );

  await demo.startSwitchyard();
  for (const { page } of pages) {
    await page.locator("[data-testid=conn-state][data-state=open]").waitFor(wait);
    await page.locator("[data-testid=column-todo] [data-testid=task]", { hasText: title }).waitFor(wait);
    await page.locator("[data-testid=message]", { hasText: lines.at(-1) }).waitFor(wait);
    const shown = (await page.locator("[data-testid=message] .text").allTextContents()).filter((t) => t.includes(`(${stamp})`));
    assert.deepEqual(shown, lines, "every line, once, in order");
  }
  const afterwards = await Promise.all(pages.map(({ page }) => trace(page)));
  for (const [i, now] of afterwards.entries()) {
    assert.deepEqual(now.recoveryFailed, before[i].recoveryFailed, "every channel recovered");
    assert.equal(now.refetches, before[i].refetches, "nothing was fetched again: the events were replayed");
  }
  // On the wire: the new process answered each resubscribe with recovered: true.
  for (const [i, { subscribed }] of pages.entries()) {
    const answers = Object.fromEntries(subscribed.slice(replies[i]).map((r) => [r.channel, r.recovered]));
    assert.equal(answers["room:lobby"], true, JSON.stringify(answers));
    assert.equal(answers["model:workspace.Task"], true, JSON.stringify(answers));
  }
  await screenshot(alice.page, "05-postgres-restart-recovered-alice");
  await screenshot(bob.page, "05-postgres-restart-recovered-bob");

  // Live events flow through the new process too.
  const live = `After the PostgreSQL restart ${Date.now()}`;
  await bob.page.fill("[data-testid=chat-input]", live);
  await bob.page.click("[data-testid=chat-send]");
  await alice.page.locator("[data-testid=message]", { hasText: live }).waitFor(wait);
  assert.deepEqual(alice.problems.concat(bob.problems), [], "no script errors on either page");
});
