// Switchyard's browser client: one ES module, no dependencies.
//
//   import { connect } from "/_switchyard/client.js";
//   const sy = connect("/ws/");
//   const sub = sy.subscribe("model:shop.Order", (m) => render(m.event, m.data), {
//     onRecoveryFailed: () => refetch(),
//   });
//   const reply = await sy.call("chat.send", { text: "hi" });
//
// It speaks the wire protocol of DESIGN.md ("Wire protocol"): the first frame is a
// `welcome`; a call is `{"id", "<command>": args}` answered by `{"id", "<command>":
// {"result"} | {"error"}}`; pushes, `join`/`leave` and `lost` arrive unasked.
//
// What it does for the page:
// - reconnects with exponential backoff and full jitter (a random delay between 0 and
//   min(maxDelay, minDelay * 2^attempt)), and stops for good after a 4401 or 4403 close
//   (the page must log in), except for one immediate retry after a 4401 that followed a
//   `welcome`: Django rotates the session key at login, and the new cookie may work;
// - resubscribes after every reconnect from the last offset and epoch each channel
//   delivered, using the `welcome`'s resume token when it is still valid, so the page sees
//   every event once and in order, or hears `onRecoveryFailed` (`recovered: false`) and
//   refetches;
// - a channel's first subscribe starts from the position the page embedded with
//   `{% switchyard_position %}`, so the events between the page's queries and the socket
//   are not lost either.
//
// Every queue it keeps is bounded: calls waiting for a connection (`maxQueued`), calls in
// flight (their timeouts), channels (the server's `max_subscriptions`).

/** The version of this client. */
export const VERSION = "0.1.0";

/** Top-level names that mark server frames; they cannot be commands. */
const RESERVED = new Set(["id", "welcome", "push", "join", "leave", "lost", "error"]);

/** Close codes after which retrying cannot help: the page must log in (4401) or may not be here (4403). */
const LOGIN_REQUIRED = 4401;
const NOT_ALLOWED = 4403;

/** A welcomed socket that stayed open this long resets the backoff. */
const STABLE_AFTER_MS = 5000;

/** @type {Required<Omit<import("./switchyard").ConnectOptions, "WebSocket">>} */
const DEFAULTS = {
  timeout: 10000,
  connectTimeout: 10000,
  minDelay: 500,
  maxDelay: 30000,
  maxQueued: 100,
  resume: true,
};

/**
 * A failed call, subscription or connection. `code` is the server's error code
 * (`bad_frame`, `unknown_command`, `bad_args`, `forbidden`, `too_many_requests`,
 * `backend_unavailable`, `backend_timeout`, `backend_error`) or one of the client's own:
 * `timeout` (no reply in time), `disconnected` (the socket closed before the reply: the
 * command may or may not have run), `closed` (the page closed the client),
 * `unauthorized` (the server refused the user), `queue_full` (too many calls waiting for a
 * connection), `bad_reply` (the server's reply did not fit the protocol).
 */
export class SwitchyardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {unknown} [detail]
   */
  constructor(code, message, detail) {
    super(message);
    this.name = "SwitchyardError";
    /** @type {string} */
    this.code = code;
    /** @type {unknown} */
    this.detail = detail;
  }
}

/**
 * Opens a client on `url` (`"/ws/"`, `"wss://example.com/ws/"`); without a url, the one
 * `{% switchyard_client %}` wrote into the page, else `"/ws/"`. Relative urls are taken
 * from the page's own origin (http → ws, https → wss). The client connects at once.
 *
 * @param {string} [url]
 * @param {import("./switchyard").ConnectOptions} [options]
 * @returns {Client}
 */
export function connect(url, options) {
  return new Client(url, options);
}

/**
 * One subscription of the page to a channel; `unsubscribe()` ends it.
 */
export class Subscription {
  /** @type {string} */
  channel;
  /** Settles with the first subscribe result, or rejects with a SwitchyardError. @type {Promise<import("./switchyard").SubscribeResult>} */
  ready;
  /** @type {ChannelState} */
  #state;
  /** @type {Client} */
  #client;
  /** @type {(m: import("./switchyard").ChannelMessage) => void} */
  #handler;
  /** @type {import("./switchyard").SubscribeOptions} */
  #options;
  /** @type {((r: import("./switchyard").SubscribeResult) => void) | null} */
  #resolve = null;
  /** @type {((e: SwitchyardError) => void) | null} */
  #reject = null;
  #active = true;

  /**
   * @param {Client} client
   * @param {ChannelState} state
   * @param {(m: import("./switchyard").ChannelMessage) => void} handler
   * @param {import("./switchyard").SubscribeOptions} options
   */
  constructor(client, state, handler, options) {
    this.#client = client;
    this.#state = state;
    this.#handler = handler;
    this.#options = options;
    this.channel = state.name;
    this.ready = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Failures also reach onError or the client's "error" event; a page that never awaits
    // `ready` must not get an unhandled rejection for them.
    this.ready.catch(() => {});
  }

  /** The last position this channel delivered (or joined at): `{offset, epoch}`, or null before the first reply. */
  get position() {
    return this.#state.position ? { ...this.#state.position } : null;
  }

  /** Whether the subscription is still wanted (false after `unsubscribe()` or a refusal). */
  get active() {
    return this.#active;
  }

  /** Who is on the channel now (channels with `presence = true`). */
  presence() {
    return this.#client.presence(this.channel);
  }

  /** Stops this subscription; the channel is left when no other subscription of the page wants it. */
  unsubscribe() {
    if (!this.#active) return;
    this.#active = false;
    this.#client._release(this.#state, this);
  }

  // --- called by the client -------------------------------------------------------------

  /** @param {import("./switchyard").ChannelMessage} message @internal */
  _deliver(message) {
    if (this.#active) guard(() => this.#handler(message));
  }

  /** @param {import("./switchyard").SubscribeResult} result @internal */
  _joined(result) {
    this.#resolve?.(result);
    this.#resolve = this.#reject = null;
  }

  /** Whether the page listens for this subscription's failure. @internal */
  get _hasOnError() {
    return typeof this.#options.onError === "function";
  }

  /**
   * The subscription ended without the page asking: refused, or the client closed.
   * @param {SwitchyardError} error
   * @param {boolean} notify  call onError (not when the page closed the client itself)
   * @internal
   */
  _failed(error, notify) {
    this.#active = false;
    this.#reject?.(error);
    this.#resolve = this.#reject = null;
    if (notify && this.#options.onError) guard(() => this.#options.onError?.(error));
  }

  /**
   * @param {"onRecoveryFailed" | "onJoin" | "onLeave" | "onLost"} name
   * @param {any} value
   * @internal
   */
  _notify(name, value) {
    const callback = this.#options[name];
    if (this.#active && callback) guard(() => callback(value));
  }
}

/**
 * What the client knows of one channel: shared by every Subscription of the page to it.
 * @typedef {object} ChannelState
 * @property {string} name
 * @property {object | undefined} filter
 * @property {string} filterKey  the filter as JSON, to tell two subscriptions' filters apart
 * @property {{offset: number, epoch: string} | null} position  the last delivered (or joined) position
 * @property {{offset: number, epoch: string} | null} since  where the first subscribe starts (the page's position)
 * @property {Set<Subscription>} subs
 * @property {number | null} pending  the id of the subscribe in flight; pushes wait for its reply
 * @property {boolean} leaving  unsubscribed while its subscribe was in flight
 */

/**
 * A call waiting for its reply.
 * @typedef {object} Pending
 * @property {string} command
 * @property {string} frame
 * @property {(value: any) => void} resolve
 * @property {(error: SwitchyardError) => void} reject
 * @property {ReturnType<typeof setTimeout> | null} timer
 * @property {boolean} sent
 * @property {ChannelState} [channel]  for the client's own subscribe calls
 */

/**
 * A connection to Switchyard that lives across reconnects.
 */
export class Client {
  /** @type {string} */
  #url;
  /** @type {typeof DEFAULTS} */
  #options;
  /** @type {typeof WebSocket} */
  #WebSocket;
  /** @type {WebSocket | null} */
  #ws = null;
  /** @type {"connecting" | "open" | "closed" | "unauthorized"} */
  #state = "closed";
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();
  #nextId = 1;
  /** @type {Map<number, Pending>} */
  #calls = new Map();
  /** Ids of calls waiting for a connection, in the order made. @type {number[]} */
  #queue = [];
  /** @type {Map<string, ChannelState>} */
  #channels = new Map();
  /** @type {import("./switchyard").Welcome | null} */
  #welcome = null;
  /** The last welcome's token and when its socket closed. @type {{token: string, ttl: number, closedAt: number} | null} */
  #resume = null;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #connectTimer = null;
  /** When the current socket got its welcome (ms), or null. @type {number | null} */
  #welcomedAt = null;
  /** The current socket is the one immediate retry after a 4401. */
  #authRetry = false;
  #stopped = false;
  #onOnline = () => {
    if (this.#retryTimer !== null) this.#retryNow();
  };

  /**
   * @param {string} [url]
   * @param {import("./switchyard").ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    const { WebSocket: Socket, ...rest } = options;
    this.#options = { ...DEFAULTS, ...definedOnly(rest) };
    const WS = Socket ?? globalThis.WebSocket;
    if (typeof WS !== "function") throw new TypeError("switchyard: no WebSocket here; pass options.WebSocket");
    this.#WebSocket = WS;
    this.#url = socketUrl(url ?? pageConfig().url ?? "/ws/");
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#open();
  }

  /** `connecting`, `open` (welcomed), `closed` (waiting to retry, or closed by the page) or `unauthorized` (no more retries). */
  get state() {
    return this.#state;
  }

  /** The user of the welcome (`{id, username, is_staff, is_superuser}`), null when anonymous or not yet welcomed. */
  get user() {
    return this.#welcome?.user ?? null;
  }

  /** The connection id of the welcome, null before it. */
  get connection() {
    return this.#welcome?.connection ?? null;
  }

  /** The socket url (without the resume token). */
  get url() {
    return this.#url;
  }

  /**
   * Listens to one of the client's events; returns a function that stops listening.
   * Events: `state` (every change: `{state, ...detail}`), `connecting`, `open`
   * (`{connection, user, resumed}`), `closed` (`{code, reason, retryIn}`), `unauthorized`
   * (`{code, reason}`), `push` (pushes to a user, a connection or everyone:
   * `{event, data}`), `join` / `leave` (`{channel, user}`), `lost` (`{channel, from, to}`),
   * `recoveryFailed` (`{channel, offset, epoch}`), `error` (a frame the client could not
   * use, or a failed subscription with no onError).
   *
   * @param {string} type
   * @param {Function} listener
   * @returns {() => void}
   */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /**
   * @param {string} type
   * @param {Function} listener
   */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  /**
   * Runs `command` with `args`; resolves with its result, rejects with a SwitchyardError
   * carrying the reply's `code` and `message` (or `timeout`, `disconnected`, ...). A call
   * made while the socket is not open waits for it (at most `maxQueued` calls), and its
   * timeout runs from now.
   *
   * @param {string} command
   * @param {unknown} [args]
   * @param {{timeout?: number}} [options]
   * @returns {Promise<any>}
   */
  call(command, args = null, options = {}) {
    if (typeof command !== "string" || command === "" || RESERVED.has(command)) {
      return Promise.reject(new TypeError(`switchyard: ${JSON.stringify(command)} cannot be a command`));
    }
    return this.#request(command, args === undefined ? null : args, options.timeout ?? this.#options.timeout);
  }

  /**
   * Subscribes `handler` to `channel`. Options: `filter` (applied by Switchyard: `{field:
   * value}`, `{field: {in: [...]}}`, `{field: {gt|gte|lt|lte: n}}`), `since` (`{offset,
   * epoch}` to recover from; by default the position the page embedded for this channel
   * with `{% switchyard_position %}`; `null` for none), `onRecoveryFailed` (events were
   * missed and cannot be replayed: refetch), `onJoin` / `onLeave` (presence), `onLost`
   * (the server dropped events for a slow reader), `onError` (the subscription was
   * refused). Two subscriptions of one page to a channel share it; they must use the same
   * filter.
   *
   * @param {string} channel
   * @param {(message: import("./switchyard").ChannelMessage) => void} handler
   * @param {import("./switchyard").SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(channel, handler, options = {}) {
    if (typeof channel !== "string" || channel === "") throw new TypeError("switchyard: a channel is a non-empty string");
    if (typeof handler !== "function") throw new TypeError("switchyard: subscribe needs a handler function");
    if (this.#stopped) throw new SwitchyardError("closed", "the client was closed");
    const filterKey = JSON.stringify(options.filter ?? null);
    let state = this.#channels.get(channel);
    if (state && state.filterKey !== filterKey) {
      throw new TypeError(`switchyard: ${channel} is already subscribed with another filter`);
    }
    const fresh = !state;
    if (!state) {
      const since = options.since === undefined ? pagePosition(channel) : options.since;
      state = {
        name: channel,
        filter: options.filter ?? undefined,
        filterKey,
        position: null,
        since: since ? { offset: since.offset, epoch: since.epoch } : null,
        subs: new Set(),
        pending: null,
        leaving: false,
      };
      this.#channels.set(channel, state);
    }
    state.leaving = false;
    const sub = new Subscription(this, state, handler, options);
    state.subs.add(sub);
    if (fresh) {
      if (this.#state === "open") this.#sendSubscribe(state);
    } else if (state.position && state.pending === null) {
      sub._joined({ channel, offset: state.position.offset, epoch: state.position.epoch });
    }
    return sub;
  }

  /**
   * Who is on a presence channel: `{channel, count, users}`.
   * @param {string} channel
   */
  presence(channel) {
    return this.call("presence", { channel });
  }

  /**
   * The events a channel keeps: `{channel, offset, epoch, events, recovered?}`.
   * @param {string} channel
   * @param {{since?: {offset: number, epoch: string}, limit?: number}} [options]
   */
  history(channel, options = {}) {
    return this.call("history", { channel, ...options });
  }

  /**
   * Publishes to a channel whose rule lets this user (`publish = ...`): `{offset, epoch}`.
   * @param {string} channel
   * @param {string} event
   * @param {unknown} [data]
   */
  publish(channel, event, data = null) {
    return this.call("publish", { channel, event, data });
  }

  /**
   * Connects again now: after `unauthorized` (the user logged in meanwhile), or to skip a
   * backoff delay. Does nothing while connecting or open.
   */
  reconnect() {
    if (this.#stopped || this.#state === "connecting" || this.#state === "open") return;
    this.#attempt = 0;
    this.#authRetry = false;
    this.#retryNow();
  }

  /** Closes the socket for good: no more retries; calls waiting fail with `closed`. */
  close() {
    if (this.#stopped) return;
    this.#stopped = true;
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#clearTimers();
    const ws = this.#detach();
    try {
      ws?.close(1000, "closed by the page");
    } catch {
      // already closing
    }
    this.#failAll("closed", "the client was closed");
    this.#setState("closed", { code: 1000, reason: "closed by the page", retryIn: null });
  }

  // --- the socket's life ------------------------------------------------------------------

  #open() {
    this.#clearTimers();
    let url = this.#url;
    const resume = this.#resume;
    if (this.#options.resume && resume && Date.now() - resume.closedAt < resume.ttl * 1000) {
      const u = new URL(url);
      u.searchParams.set("resume", resume.token);
      url = u.href;
    }
    this.#setState("connecting", {});
    let ws;
    try {
      ws = new this.#WebSocket(url);
    } catch (e) {
      // A url the browser refuses outright: retrying will not help either.
      this.#emit("error", e);
      this.#closed(1006, String(e));
      return;
    }
    this.#ws = ws;
    this.#welcomedAt = null;
    ws.onmessage = (e) => this.#onMessage(e.data);
    ws.onclose = (e) => {
      if (this.#ws === ws) {
        this.#ws = null;
        this.#closed(e.code, e.reason);
      }
    };
    // Browsers follow an error with a close event; some WebSocket implementations (Node
    // 20's) fire only the error when the handshake fails, so a socket that never opened
    // counts as closed at its error.
    ws.onerror = () => {
      if (this.#ws === ws && ws.readyState !== 1) {
        this.#detach();
        this.#closed(1006, "the connection failed");
      }
    };
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = null;
      if (this.#ws === ws && this.#welcomedAt === null) this.#drop(ws, "no welcome in time");
    }, this.#options.connectTimeout);
  }

  /**
   * Gives up on a socket ourselves (no welcome in time, a welcome we cannot read).
   * @param {WebSocket} ws
   * @param {string} reason
   */
  #drop(ws, reason) {
    if (this.#ws !== ws) return;
    this.#detach();
    try {
      ws.close(4000, reason);
    } catch {
      // already closing
    }
    this.#closed(1006, reason);
  }

  /** Unhooks the current socket; returns it. */
  #detach() {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  /**
   * The socket closed with `code`: fail what was in flight, then retry, or stop.
   * @param {number} code
   * @param {string} reason
   */
  #closed(code, reason) {
    const welcomedAt = this.#welcomedAt;
    const authRetry = this.#authRetry;
    this.#welcomedAt = null;
    this.#authRetry = false;
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    if (welcomedAt !== null && this.#welcome?.resume) {
      this.#resume = { token: this.#welcome.resume, ttl: this.#welcome.resume_ttl ?? 0, closedAt: Date.now() };
    }
    this.#failSent();
    if (this.#stopped) return;

    const lived = welcomedAt === null ? 0 : Date.now() - welcomedAt;
    const mayRetryLogin = welcomedAt !== null && (!authRetry || lived >= STABLE_AFTER_MS);
    if (code === NOT_ALLOWED || (code === LOGIN_REQUIRED && !mayRetryLogin)) {
      this.#unauthorized(code, reason);
      return;
    }
    if (code === LOGIN_REQUIRED) {
      // Django may have rotated the session key (a login): the new cookie may work.
      this.#authRetry = true;
      this.#setState("closed", { code, reason, retryIn: 0 });
      this.#open();
      return;
    }
    if (lived >= STABLE_AFTER_MS) this.#attempt = 0;
    const ceiling = Math.min(this.#options.maxDelay, this.#options.minDelay * 2 ** this.#attempt);
    const delay = Math.floor(Math.random() * ceiling);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    this.#setState("closed", { code, reason, retryIn: delay });
    this.#retryTimer = setTimeout(() => this.#retryNow(), delay);
  }

  #retryNow() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (!this.#stopped) this.#open();
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #unauthorized(code, reason) {
    this.#failQueued("unauthorized", reason || "the server refused this user");
    this.#setState("unauthorized", { code, reason });
  }

  #clearTimers() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#retryTimer = this.#connectTimer = null;
  }

  /**
   * @param {"connecting" | "open" | "closed" | "unauthorized"} state
   * @param {object} detail
   */
  #setState(state, detail) {
    this.#state = state;
    this.#emit("state", { state, ...detail });
    this.#emit(state, detail);
  }

  // --- frames in --------------------------------------------------------------------------

  /** @param {unknown} data */
  #onMessage(data) {
    if (typeof data !== "string") {
      this.#emit("error", new SwitchyardError("bad_reply", "a binary frame on a JSON socket"));
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.#emit("error", new SwitchyardError("bad_reply", "a frame that is not JSON", data.slice(0, 200)));
      return;
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      this.#emit("error", new SwitchyardError("bad_reply", "a frame that is not a JSON object", data.slice(0, 200)));
      return;
    }
    if ("welcome" in frame) this.#onWelcome(frame.welcome);
    else if (this.#welcomedAt === null) {
      this.#emit("error", new SwitchyardError("bad_reply", "a frame before the welcome", data.slice(0, 200)));
    } else if ("id" in frame) this.#onReply(frame);
    else if ("push" in frame) this.#onPush(frame.push);
    else if ("join" in frame || "leave" in frame) this.#onPresence(frame);
    else if ("lost" in frame) this.#onLost(frame.lost);
    else if ("error" in frame) this.#emit("error", serverError(frame.error));
    else this.#emit("error", new SwitchyardError("bad_reply", "a frame of an unknown kind", data.slice(0, 200)));
  }

  /** @param {any} welcome */
  #onWelcome(welcome) {
    const ws = this.#ws;
    if (!ws) return;
    if (!isObject(welcome) || typeof welcome.connection !== "string" || this.#welcomedAt !== null) {
      this.#emit("error", new SwitchyardError("bad_reply", "a welcome that does not fit the protocol"));
      this.#drop(ws, "bad welcome");
      return;
    }
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#welcomedAt = Date.now();
    this.#welcome = {
      connection: welcome.connection,
      user: isObject(welcome.user) ? welcome.user : null,
      resume: typeof welcome.resume === "string" ? welcome.resume : undefined,
      resume_ttl: typeof welcome.resume_ttl === "number" ? welcome.resume_ttl : undefined,
    };
    this.#resume = null;
    const resumed = isObject(welcome.resumed) && welcome.resumed.ok === true;
    this.#restore(resumed && Array.isArray(welcome.resumed.channels) ? welcome.resumed.channels : []);
    const queued = this.#queue;
    this.#queue = [];
    for (const id of queued) {
      const call = this.#calls.get(id);
      if (call) this.#transmit(id, call);
    }
    this.#setState("open", { connection: this.#welcome.connection, user: this.#welcome.user, resumed });
  }

  /**
   * After a welcome: keep what the resume token restored when nothing was missed on it,
   * resubscribe everything else from the last position it delivered, and leave restored
   * channels the page no longer wants. A restored channel whose offset moved on is
   * resubscribed too: the server replays from what it last *sent*, and only the page
   * knows what arrived before the connection died.
   * @param {any[]} restoredList
   */
  #restore(restoredList) {
    /** @type {Map<string, any>} */
    const restored = new Map();
    for (const entry of restoredList) {
      if (isObject(entry) && typeof entry.channel === "string") restored.set(entry.channel, entry);
    }
    for (const name of restored.keys()) {
      if (!this.#channels.has(name)) this.#send({ id: this.#nextId++, unsubscribe: name });
    }
    for (const state of this.#channels.values()) {
      state.pending = null;
      const r = restored.get(state.name);
      const at = state.position;
      const intact = r && !r.error && r.recovered === true && at && r.epoch === at.epoch && r.offset === at.offset;
      if (!intact) this.#sendSubscribe(state);
    }
  }

  /** @param {any} frame */
  #onReply(frame) {
    const id = frame.id;
    const call = typeof id === "number" ? this.#calls.get(id) : undefined;
    if (!call) return; // timed out, or not ours
    this.#calls.delete(id);
    if (call.timer !== null) clearTimeout(call.timer);
    const outcome = frame[call.command];
    if (call.channel) {
      this.#onSubscribed(call.channel, id, outcome, frame.error);
      return;
    }
    if (isObject(outcome) && "error" in outcome) call.reject(serverError(outcome.error));
    else if (isObject(outcome) && "result" in outcome) call.resolve(outcome.result);
    else if ("error" in frame) call.reject(serverError(frame.error));
    else call.reject(new SwitchyardError("bad_reply", `the reply has no outcome for ${call.command}`));
  }

  /**
   * The reply to one of our subscribes.
   * @param {ChannelState} state
   * @param {number} id
   * @param {any} outcome
   * @param {any} frameError
   */
  #onSubscribed(state, id, outcome, frameError) {
    if (state.pending !== id) return;
    state.pending = null;
    const asked = state.position ?? state.since;
    if (state.leaving || this.#channels.get(state.name) !== state) {
      if (isObject(outcome) && "result" in outcome) this.#send({ id: this.#nextId++, unsubscribe: state.name });
      return;
    }
    const result = isObject(outcome) ? outcome.result : undefined;
    if (!isObject(result) || typeof result.offset !== "number" || typeof result.epoch !== "string") {
      const error = isObject(outcome) && "error" in outcome ? serverError(outcome.error)
        : frameError ? serverError(frameError)
        : new SwitchyardError("bad_reply", `the subscribe reply for ${state.name} does not fit the protocol`);
      this.#channels.delete(state.name);
      const subs = [...state.subs];
      state.subs.clear();
      for (const sub of subs) sub._failed(error, true);
      if (!subs.some((s) => s._hasOnError)) this.#emit("error", error);
      return;
    }
    const now = { offset: result.offset, epoch: result.epoch };
    if (asked && result.recovered === true) {
      // The replay follows this reply; pushes move the position on from where we asked.
      state.position = { offset: asked.offset, epoch: asked.epoch };
    } else {
      state.position = now;
    }
    state.since = null;
    /** @type {import("./switchyard").SubscribeResult} */
    const info = { channel: state.name, offset: now.offset, epoch: now.epoch };
    if (asked) info.recovered = result.recovered === true;
    for (const sub of state.subs) sub._joined(info);
    if (asked && result.recovered !== true) {
      const failed = { channel: state.name, offset: now.offset, epoch: now.epoch };
      for (const sub of state.subs) sub._notify("onRecoveryFailed", failed);
      this.#emit("recoveryFailed", failed);
    }
  }

  /** @param {any} push */
  #onPush(push) {
    if (!isObject(push) || typeof push.event !== "string") {
      this.#emit("error", new SwitchyardError("bad_reply", "a push that does not fit the protocol"));
      return;
    }
    if (typeof push.channel !== "string") {
      this.#emit("push", { event: push.event, data: push.data });
      return;
    }
    const state = this.#channels.get(push.channel);
    if (!state || state.pending !== null || state.leaving) return; // not ours, or its replay follows our subscribe
    const { offset, epoch } = push;
    if (typeof offset === "number" && typeof epoch === "string") {
      const at = state.position;
      if (at && at.epoch === epoch && offset <= at.offset) return; // seen already (a replay overlapping)
      state.position = { offset, epoch };
    }
    /** @type {import("./switchyard").ChannelMessage} */
    const message = { channel: push.channel, event: push.event, data: push.data, offset, epoch };
    for (const sub of [...state.subs]) sub._deliver(message);
  }

  /** @param {any} frame */
  #onPresence(frame) {
    const kind = "join" in frame ? "join" : "leave";
    const body = frame[kind];
    if (!isObject(body) || typeof body.channel !== "string") return;
    const state = this.#channels.get(body.channel);
    const value = { channel: body.channel, user: body.user };
    if (state) for (const sub of state.subs) sub._notify(kind === "join" ? "onJoin" : "onLeave", value);
    this.#emit(kind, value);
  }

  /** @param {any} lost */
  #onLost(lost) {
    if (!isObject(lost) || typeof lost.channel !== "string") return;
    const value = { channel: lost.channel, from: lost.from, to: lost.to };
    const state = this.#channels.get(lost.channel);
    if (state) for (const sub of state.subs) sub._notify("onLost", value);
    this.#emit("lost", value);
  }

  // --- frames out -------------------------------------------------------------------------

  /**
   * @param {string} command
   * @param {unknown} args
   * @param {number} timeout
   */
  #request(command, args, timeout) {
    if (this.#stopped) return Promise.reject(new SwitchyardError("closed", "the client was closed"));
    if (this.#state === "unauthorized") {
      return Promise.reject(new SwitchyardError("unauthorized", "the server refused this user; log in"));
    }
    const open = this.#state === "open";
    if (!open && this.#queue.length >= this.#options.maxQueued) {
      return Promise.reject(new SwitchyardError("queue_full", `${this.#options.maxQueued} calls already wait for a connection`));
    }
    const id = this.#nextId++;
    let frame;
    try {
      frame = JSON.stringify({ id, [command]: args });
    } catch (e) {
      return Promise.reject(new TypeError(`switchyard: the arguments of ${command} are not JSON: ${e}`));
    }
    return new Promise((resolve, reject) => {
      /** @type {Pending} */
      const call = { command, frame, resolve, reject, timer: null, sent: false };
      call.timer = setTimeout(() => {
        this.#forget(id);
        reject(new SwitchyardError("timeout", `no reply to ${command} within ${timeout} ms`));
      }, timeout);
      this.#calls.set(id, call);
      if (open) this.#transmit(id, call);
      else this.#queue.push(id);
    });
  }

  /** @param {ChannelState} state */
  #sendSubscribe(state) {
    const id = this.#nextId++;
    /** @type {{channel: string, since?: object, filter?: object}} */
    const args = { channel: state.name };
    const since = state.position ?? state.since;
    if (since) args.since = since;
    if (state.filter !== undefined) args.filter = state.filter;
    const frame = JSON.stringify({ id, subscribe: args });
    /** @type {Pending} */
    const call = { command: "subscribe", frame, resolve() {}, reject() {}, timer: null, sent: false, channel: state };
    state.pending = id;
    this.#calls.set(id, call);
    this.#transmit(id, call);
  }

  /**
   * Called by Subscription.unsubscribe.
   * @param {ChannelState} state
   * @param {Subscription} sub
   * @internal
   */
  _release(state, sub) {
    state.subs.delete(sub);
    if (state.subs.size > 0 || this.#channels.get(state.name) !== state) return;
    this.#channels.delete(state.name);
    if (state.pending !== null) {
      state.leaving = true; // unsubscribed once the reply is in: frames may run concurrently
    } else if (this.#state === "open") {
      this.#send({ id: this.#nextId++, unsubscribe: state.name });
    }
  }

  /**
   * @param {number} id
   * @param {Pending} call
   */
  #transmit(id, call) {
    call.sent = true;
    if (!this.#sendText(call.frame)) {
      this.#calls.delete(id);
      if (call.timer !== null) clearTimeout(call.timer);
      if (call.channel) call.channel.pending = null;
      else call.reject(new SwitchyardError("disconnected", "the socket closed before the call was sent"));
    }
  }

  /** Fire-and-forget frames (unsubscribe): the reply is not awaited. @param {object} frame */
  #send(frame) {
    this.#sendText(JSON.stringify(frame));
  }

  /** @param {string} text */
  #sendText(text) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  /** @param {number} id */
  #forget(id) {
    this.#calls.delete(id);
    const at = this.#queue.indexOf(id);
    if (at >= 0) this.#queue.splice(at, 1);
  }

  /** Calls on the socket that just closed fail with `disconnected`: they may or may not have run. */
  #failSent() {
    for (const [id, call] of [...this.#calls]) {
      if (!call.sent) continue;
      this.#calls.delete(id);
      if (call.timer !== null) clearTimeout(call.timer);
      if (call.channel) call.channel.pending = null;
      else call.reject(new SwitchyardError("disconnected", `the socket closed before ${call.command} was answered`));
    }
  }

  /**
   * @param {string} code
   * @param {string} message
   */
  #failQueued(code, message) {
    for (const id of this.#queue) {
      const call = this.#calls.get(id);
      this.#calls.delete(id);
      if (!call) continue;
      if (call.timer !== null) clearTimeout(call.timer);
      call.reject(new SwitchyardError(code, message));
    }
    this.#queue = [];
  }

  /**
   * @param {string} code
   * @param {string} message
   */
  #failAll(code, message) {
    this.#failSent();
    this.#failQueued(code, message);
    for (const call of this.#calls.values()) {
      if (call.timer !== null) clearTimeout(call.timer);
      if (!call.channel) call.reject(new SwitchyardError(code, message));
    }
    this.#calls.clear();
    for (const state of this.#channels.values()) {
      for (const sub of state.subs) sub._failed(new SwitchyardError(code, message), false);
    }
    this.#channels.clear();
  }

  /**
   * @param {string} type
   * @param {unknown} value
   */
  #emit(type, value) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) guard(() => listener(value));
  }
}

// --- helpers --------------------------------------------------------------------------------

/** @param {unknown} value @returns {value is Record<string, any>} */
function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** @param {any} error */
function serverError(error) {
  if (!isObject(error)) return new SwitchyardError("bad_reply", "an error without a code");
  const code = typeof error.code === "string" ? error.code : "bad_reply";
  const message = typeof error.message === "string" ? error.message : code;
  return new SwitchyardError(code, message, error.detail);
}

/**
 * Runs a page callback; its exception is reported, never allowed to stop the client.
 * @param {() => void} fn
 */
function guard(fn) {
  try {
    fn();
  } catch (e) {
    if (typeof globalThis.reportError === "function") globalThis.reportError(e);
    else console.error(e);
  }
}

/**
 * @template {object} T
 * @param {T} object
 * @returns {Partial<T>}
 */
function definedOnly(object) {
  return /** @type {Partial<T>} */ (Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)));
}

/**
 * An absolute ws:// or wss:// url for `url`, relative ones taken from the page.
 * @param {string} url
 */
function socketUrl(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError(`switchyard: not a WebSocket url: ${url}`);
  u.searchParams.delete("resume");
  return u.href;
}

/** The settings `{% switchyard_client %}` wrote: `{url}`. @returns {{url?: string}} */
function pageConfig() {
  const text = globalThis.document?.getElementById("switchyard-config")?.textContent;
  if (!text) return {};
  try {
    const config = JSON.parse(text);
    return isObject(config) && typeof config.url === "string" ? { url: config.url } : {};
  } catch {
    return {};
  }
}

/**
 * The position `{% switchyard_position %}` embedded for `channel`, or null.
 * @param {string} channel
 * @returns {{offset: number, epoch: string} | null}
 */
function pagePosition(channel) {
  const scripts = globalThis.document?.querySelectorAll("script[data-switchyard-position]") ?? [];
  for (const script of scripts) {
    if (script.getAttribute("data-switchyard-position") !== channel) continue;
    try {
      const value = JSON.parse(script.textContent ?? "");
      if (isObject(value) && typeof value.offset === "number" && typeof value.epoch === "string") {
        return { offset: value.offset, epoch: value.epoch };
      }
    } catch {
      // an unreadable position: subscribe from now
    }
  }
  return null;
}

// A page whose own code is a classic script (not a module) finds the client here once
// this module has run (module scripts run before DOMContentLoaded).
if (globalThis.document && !("Switchyard" in globalThis)) {
  Object.defineProperty(globalThis, "Switchyard", {
    value: Object.freeze({ connect, Client, Subscription, SwitchyardError, VERSION }),
    configurable: true,
  });
}
