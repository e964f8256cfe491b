// The demo site as a user runs it, for the browser tests: its own SQLite database migrated
// by Django, real gunicorn, and the switchyard binary with the config django-switchyard
// derives from the demo's settings (plus examples/demo/switchyard-extra.toml, as
// scripts/demo does), and Debian's chromium driven by playwright-core.
//
// Every server binds port 0 and the port is read back, except Switchyard's admin listener:
// Django must be told where it is before gunicorn starts, and Switchyard can only start
// after gunicorn (it needs the command views' port), so that one port is chosen free
// beforehand. A restart keeps Switchyard's ports, so pages reconnect to the same address.

import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

import { listeningAt, PATIENCE, ROOT, switchyardBin, tempDir, waitForLine } from "../test/support.mjs";

const DEMO = path.join(ROOT, "examples/demo");
export const USERS = { alice: "alice-password", bob: "bob-password" };

/** Where screenshots go: $SWITCHYARD_E2E_OUT, else var/e2e in the repository. */
export const OUT = process.env.SWITCHYARD_E2E_OUT ?? path.join(ROOT, "var/e2e");

function python() {
  const venv = process.env.SWITCHYARD_TEST_VENV ?? path.join(ROOT, ".venv");
  return path.join(venv, "bin/python");
}

/** A TCP port that was free a moment ago (only for the admin listener: see above). */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A fresh database on the PostgreSQL cluster `$SWITCHYARD_TEST_PG` names (the one scripts/test
 * starts): its URL, and `drop()`. Made with the demo venv's psycopg, nothing installed here.
 */
export function freshPostgres(name) {
  const cluster = process.env.SWITCHYARD_TEST_PG;
  if (!cluster) throw new Error("SWITCHYARD_TEST_PG is not set: run scripts/test (it starts a PostgreSQL cluster)");
  const admin = (sql) =>
    execFileSync(python(), ["-c", "import psycopg, sys\nwith psycopg.connect(sys.argv[1], autocommit=True) as c:\n    c.execute(sys.argv[2])", cluster, sql]);
  admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  admin(`CREATE DATABASE "${name}"`);
  const url = new URL(cluster);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}

/**
 * The demo site: `base` is Switchyard's http:// address; `startSwitchyard()`, `stopSwitchyard()`,
 * `manage(...)`, `shell(code)`, `stop()`. `database`: a PostgreSQL URL to run on instead of a
 * SQLite file (django-switchyard's transport and Switchyard's broker are then PostgreSQL's).
 */
export async function startDemo({ database } = {}) {
  const dir = tempDir("switchyard-e2e-");
  const env = {
    ...process.env,
    DEMO_DB: path.join(dir, "demo.sqlite3"),
    ...(database ? { DEMO_DATABASE_URL: database } : {}),
    DJANGO_SECRET_KEY: randomBytes(24).toString("hex"),
    SWITCHYARD_BACKEND_SECRET: randomBytes(24).toString("hex"),
    SWITCHYARD_ADMIN_KEY: randomBytes(16).toString("hex"),
    DJANGO_DEBUG: "1",
  };
  delete env.RUST_LOG;
  const manage = (...args) => execFileSync(python(), ["manage.py", ...args], { cwd: DEMO, env, encoding: "utf8" });
  // Before Switchyard runs, events (the starter tasks') have nowhere to go: keep them in memory.
  const setup = { ...env, SWITCHYARD_TRANSPORT: "memory" };
  for (const args of [["migrate", "--noinput", "-v", "0"], ["ensure_workspace"]]) {
    execFileSync(python(), ["manage.py", ...args], { cwd: DEMO, env: setup, encoding: "utf8" });
  }

  const adminPort = await freePort();
  env.SWITCHYARD_ADMIN_URL = `http://127.0.0.1:${adminPort}`;
  const socket = path.join(dir, "gunicorn.sock");
  const gunicornLines = [];
  const gunicorn = spawn(
    path.join(path.dirname(python()), "gunicorn"),
    ["--bind", `unix:${socket}`, "--bind", "127.0.0.1:0", "--workers", "2", "--no-control-socket", "--preload", "demo.wsgi:application"],
    { cwd: DEMO, env, stdio: ["ignore", "ignore", "pipe"] },
  );
  const gunicornExited = new Promise((resolve) => gunicorn.on("exit", resolve));
  const listening = (line) => line.match(/Listening at: .*http:\/\/127\.0\.0\.1:(\d+)/)?.[1];
  const backendPort = await waitForLine(gunicorn, listening, "gunicorn", gunicornLines, 3 * PATIENCE);

  const config = path.join(dir, "switchyard.toml");
  const writeConfig = (listen) => {
    const derived = manage(
      "switchyard", "--print-config",
      "--listen", listen,
      "--upstream", `unix:${socket}`,
      "--backend", `http://127.0.0.1:${backendPort}`,
      "--admin", `127.0.0.1:${adminPort}`,
    );
    writeFileSync(config, derived);
    appendFileSync(config, `\n${readFileSync(path.join(DEMO, "switchyard-extra.toml"), "utf8")}\n[log]\nformat = "json"\n`);
  };

  let switchyard = null;
  const switchyardLines = [];
  const startSwitchyard = async () => {
    const child = spawn(switchyardBin(), ["run", "--config", config], { env, stdio: ["ignore", "ignore", "pipe"] });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    const { plain } = await waitForLine(child, listeningAt, "switchyard", switchyardLines, 3 * PATIENCE);
    switchyard = { child, exited };
    return plain;
  };
  const stopSwitchyard = async () => {
    if (!switchyard) return;
    if (switchyard.child.exitCode === null) switchyard.child.kill("SIGTERM");
    await switchyard.exited;
    switchyard = null;
  };

  writeConfig("127.0.0.1:0");
  const plain = await startSwitchyard();
  writeConfig(plain); // a restart listens where the pages already are

  return {
    base: `http://${plain}`,
    dir,
    /** `manage.py ARGS...` of the demo, with the site's environment; returns its stdout. */
    manage,
    /** Runs Python code in the demo's Django (`manage.py shell -c`). */
    shell: (code) => manage("shell", "-c", code),
    lines: switchyardLines,
    stopSwitchyard,
    startSwitchyard,
    async stop() {
      await stopSwitchyard();
      if (gunicorn.exitCode === null) gunicorn.kill("SIGTERM");
      await gunicornExited;
    },
  };
}

// --- the browser -----------------------------------------------------------------------------

/** Debian's chromium: $CHROMIUM, else /usr/bin/chromium. */
export function chromiumPath() {
  const bin = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(bin)) throw new Error(`no chromium at ${bin}: scripts/test installs Debian's`);
  return bin;
}

/** Launches headless chromium through playwright-core. */
export async function launchBrowser() {
  const { chromium } = await import("playwright-core");
  // Chromium's sandbox refuses to run as root (CI containers); a normal user keeps it.
  const args = process.getuid?.() === 0 ? ["--no-sandbox"] : [];
  return chromium.launch({ executablePath: chromiumPath(), args });
}

/**
 * A browser context logged in as `username` through the demo's login form (the session
 * cookie is Django's, HttpOnly), with the workspace page open and its socket live.
 */
export async function loggedIn(browser, base, username) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  // Each subscribe reply as Switchyard sent it (`{channel, offset, epoch, recovered?}`), from
  // the socket's own frames: what the server said, not what the page made of it.
  const subscribed = [];
  page.on("websocket", (socket) =>
    socket.on("framereceived", ({ payload }) => {
      if (typeof payload !== "string" || !payload.includes('"subscribe"')) return;
      try {
        const result = JSON.parse(payload).subscribe?.result;
        if (result) subscribed.push(result);
      } catch {
        // not JSON: not a reply
      }
    }),
  );
  await page.goto(`${base}/accounts/login/?next=/workspace/`);
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", USERS[username]);
  await Promise.all([page.waitForURL("**/workspace/"), page.click("button[type=submit]")]);
  await page.waitForSelector("[data-testid=conn-state][data-state=open]", { timeout: PATIENCE });
  return { context, page, problems, subscribed };
}

/** Saves a screenshot of `page` as OUT/NAME.png; returns its path. */
export async function screenshot(page, name) {
  mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
