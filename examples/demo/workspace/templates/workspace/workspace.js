// The workspace page: one socket (the Switchyard client), three channels.
//   room:lobby            chat lines (sent with the room.send command, answered by Django), presence
//   model:workspace.Task  every create/update/delete of a Task, wherever it happened
//   user:<id>             this user's notifications
// Each first subscribe starts from the position the page was rendered at, so nothing
// published since is missed; when Switchyard cannot replay (recovered: false), the page
// fetches the data again.
import { connect } from "/_switchyard/client.js";

const page = JSON.parse(document.getElementById("workspace-data").textContent);
const me = page.user.username;
const $ = (id) => document.getElementById(id);

/** What the tests (and a curious developer, in the console) can look at. */
const trace = { recoveryFailed: [], refetches: 0, states: [] };
window.workspace = trace;

// --- rendering ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value != null) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const initial = (name) => (name || "?").slice(0, 1).toUpperCase();
const hue = (name) => [...(name || "")].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 200);
const avatar = (name) => el("span", { class: "avatar", style: `--h:${hue(name)}`, title: name }, initial(name));

const messages = new Map(page.messages.map((m) => [m.id, m]));
function renderMessages() {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(
    ...[...messages.values()].map((m) =>
      el("li", { class: m.author === me ? "mine" : "", "data-testid": "message" },
        avatar(m.author),
        el("div", { class: "bubble" },
          el("div", { class: "meta" }, el("strong", {}, m.author), " ", el("span", { class: "muted" }, time(m.created))),
          el("div", { class: "text" }, m.text))),
    ),
  );
  if (atBottom || list.dataset.stuck !== "no") list.scrollTop = list.scrollHeight;
}

const tasks = new Map(page.tasks.map((t) => [t.id, t]));
function renderTasks() {
  const columns = page.statuses.map(({ value, label }) => {
    const mine = [...tasks.values()].filter((t) => t.status === value);
    return el("div", { class: `column ${value}`, "data-testid": `column-${value}` },
      el("h3", {}, label, el("span", { class: "count" }, String(mine.length))),
      ...mine.map(taskCard));
  });
  $("columns").replaceChildren(...columns);
}

function taskCard(task) {
  const statusIndex = page.statuses.findIndex((s) => s.value === task.status);
  const move = (delta) => () => command("task.update", { id: task.id, status: page.statuses[statusIndex + delta].value });
  const assignee = el("select", {
    "aria-label": "Assignee",
    onchange: (e) => command("task.update", { id: task.id, assignee: e.target.value || null }),
  }, el("option", { value: "" }, "nobody"), ...page.users.map((u) => el("option", { value: u, selected: u === task.assignee }, u)));
  return el("article", { class: "task", "data-testid": "task", "data-task-id": task.id },
    el("div", { class: "task-title" }, task.title),
    el("div", { class: "task-row" },
      task.assignee ? avatar(task.assignee) : el("span", { class: "avatar empty" }, "·"),
      assignee,
      el("span", { class: "spacer" }),
      el("button", { class: "icon", title: "Back", disabled: statusIndex === 0, onclick: move(-1) }, "←"),
      el("button", { class: "icon", title: "Forward", disabled: statusIndex === page.statuses.length - 1, onclick: move(1) }, "→"),
      el("button", { class: "icon danger", title: "Delete", onclick: () => command("task.delete", { id: task.id }) }, "×")));
}

function renderPresence(users) {
  $("presence").replaceChildren(
    ...users.map((u) => el("span", { class: "here", "data-testid": "present", "data-user": u.username }, avatar(u.username), u.username)),
  );
}

function banner(text, kind = "info", action = null) {
  const node = $("banner");
  node.hidden = !text;
  node.className = `banner ${kind}`;
  node.replaceChildren(text ?? "");
  if (action) node.append(" ", action);
}

function toast(text, kind = "info") {
  const node = el("div", { class: `toast ${kind}`, "data-testid": "toast" }, text);
  $("toasts").append(node);
  setTimeout(() => node.classList.add("gone"), 6000);
  setTimeout(() => node.remove(), 6600);
}

let unread = 0;
function notification(n) {
  $("no-notifications").hidden = true;
  $("notifications").prepend(el("li", { "data-testid": "notification" }, el("span", { class: "kind" }, n.kind), " ", n.text));
  unread += 1;
  $("bell-count").hidden = false;
  $("bell-count").textContent = String(unread);
  toast(n.text, "note");
}
$("bell").addEventListener("click", () => {
  $("panel").hidden = !$("panel").hidden;
  unread = 0;
  $("bell-count").hidden = true;
});

function showPositions() {
  const parts = [tasksSub, roomSub].map((s) => (s.position ? `${s.channel} @${s.position.offset}` : s.channel));
  $("positions").textContent = ` · ${parts.join(" · ")}`;
}

// --- the socket --------------------------------------------------------------------------

const sy = connect(); // the url the switchyard_client tag wrote into the page: /ws/workspace/
trace.client = sy;

const STATE_LABELS = { connecting: "connecting…", open: "live", closed: "reconnecting…", unauthorized: "signed out" };
sy.on("state", (s) => {
  trace.states.push(s);
  $("conn").dataset.state = s.state;
  $("conn").querySelector(".label").textContent = STATE_LABELS[s.state];
  if (s.state === "open") banner(null);
  if (s.state === "closed" && s.retryIn !== null && s.code !== 4401) {
    banner(`Connection lost (${s.code}); trying again in ${Math.ceil(s.retryIn / 1000)} s…`, "warn");
  }
});
sy.on("unauthorized", ({ code, reason }) => {
  const why = code === 4401 ? "You were logged out" : "You may not use this workspace";
  const again = el("a", { href: `/accounts/login/?next=${encodeURIComponent(location.pathname)}` }, "Log in again");
  banner(`${why}: Switchyard closed this page's socket (${code}${reason ? `: ${reason}` : ""}).`, "error", again);
  document.body.classList.add("signed-out");
  renderPresence([]);
});

async function command(name, args) {
  try {
    return await sy.call(name, args);
  } catch (e) {
    toast(`${name} failed: ${e.detail?.message ?? e.message} (${e.code})`, "error");
    return null;
  }
}

async function refetch(what) {
  trace.refetches += 1;
  const response = await fetch(`/workspace/${what}.json`, { headers: { accept: "application/json" } });
  if (!response.ok) return;
  const body = await response.json();
  if (what === "tasks") {
    tasks.clear();
    for (const t of body.tasks) tasks.set(t.id, t);
    renderTasks();
  } else {
    messages.clear();
    for (const m of body.messages) messages.set(m.id, m);
    renderMessages();
  }
}

function recoveryFailed(what) {
  return (info) => {
    trace.recoveryFailed.push(info.channel);
    toast(`Events on ${info.channel} could not be replayed; reloaded it.`, "warn");
    refetch(what);
  };
}

const tasksSub = sy.subscribe(page.channels.tasks, (m) => {
  if (m.event === "deleted") tasks.delete(m.data.id);
  else tasks.set(m.data.id, m.data);
  renderTasks();
  showPositions();
}, { onRecoveryFailed: recoveryFailed("tasks") });

async function refreshPresence() {
  try {
    renderPresence((await sy.presence(page.channels.room)).users);
  } catch {
    // the next join/leave or reconnect tries again
  }
}

const roomSub = sy.subscribe(page.channels.room, (m) => {
  messages.set(m.data.id, m.data);
  renderMessages();
  showPositions();
}, {
  onRecoveryFailed: recoveryFailed("messages"),
  onJoin: refreshPresence,
  onLeave: refreshPresence,
});
roomSub.ready.then(refreshPresence, () => {});
sy.on("open", refreshPresence);

sy.subscribe(page.channels.notifications, (m) => notification(m.data));

/** A one-field form that sends its text as command `name`'s `key`; the text comes back on failure. */
function sendsCommand(formId, inputId, name, key) {
  $(formId).addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $(inputId);
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    if (!(await command(name, { [key]: text }))) input.value = text;
  });
}
sendsCommand("composer", "say", "room.send", "text");
sendsCommand("new-task", "task-title", "task.create", "title");

renderMessages();
renderTasks();
showPositions();
