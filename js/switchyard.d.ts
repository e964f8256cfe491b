// Types of Switchyard's browser client (switchyard.js, served at /_switchyard/client.js).

/** The version of this client. */
export const VERSION: string;

/** A user as Switchyard sends it: Django's pk as a string. */
export interface User {
  id: string;
  username: string;
  is_staff: boolean;
  is_superuser: boolean;
}

/** A channel position: the offset of an event and the epoch of the channel's history. */
export interface Position {
  offset: number;
  epoch: string;
}

export interface ConnectOptions {
  /** Default timeout of a call, in ms. Default 10000. */
  timeout?: number;
  /** How long a socket may take from opening to its `welcome`, in ms. Default 10000. */
  connectTimeout?: number;
  /** The first reconnect waits a random time up to this (ms); it doubles per failed attempt. Default 500. */
  minDelay?: number;
  /** The longest a reconnect waits, in ms. Default 30000. */
  maxDelay?: number;
  /** Most calls that wait for a connection; more fail with `queue_full`. Default 100. */
  maxQueued?: number;
  /** Reconnect with the welcome's resume token while it is valid. Default true. */
  resume?: boolean;
  /** The WebSocket class to use. Default: the global `WebSocket`. */
  WebSocket?: { new (url: string): WebSocket };
}

/** A push on a channel, as the subscription's handler receives it. */
export interface ChannelMessage<T = unknown> {
  channel: string;
  event: string;
  data: T;
  offset: number;
  epoch: string;
}

/** A filter Switchyard applies to the events' `data` before sending them. */
export type Filter = Record<
  string,
  string | number | boolean | null | { in: unknown[] } | { gt: number } | { gte: number } | { lt: number } | { lte: number }
>;

export interface PresenceChange {
  channel: string;
  user: User;
}

export interface Lost {
  channel: string;
  /** First offset dropped. */
  from: number;
  /** Last offset dropped. */
  to: number;
}

export interface RecoveryFailed extends Position {
  channel: string;
}

export interface SubscribeOptions {
  /** Only events whose `data` passes (applied by Switchyard). */
  filter?: Filter;
  /**
   * Recover from this position on the first subscribe. Default: the position the page
   * embedded with `{% switchyard_position %}` for this channel, if any; `null` for none.
   */
  since?: Position | null;
  /** Events were missed and cannot be replayed (`recovered: false`): refetch the data. */
  onRecoveryFailed?: (info: RecoveryFailed) => void;
  /** A user joined a presence channel (their first tab). */
  onJoin?: (change: PresenceChange) => void;
  /** A user left a presence channel (their last tab). */
  onLeave?: (change: PresenceChange) => void;
  /** Switchyard dropped events for this slow page (`slow_reader = "drop_oldest"`). */
  onLost?: (lost: Lost) => void;
  /** The subscription was refused (`forbidden`, `bad_args`...); it has ended. */
  onError?: (error: SwitchyardError) => void;
}

export interface SubscribeResult extends Position {
  channel: string;
  /** Present when the subscribe asked for `since`. */
  recovered?: boolean;
}

export interface Presence {
  channel: string;
  /** Subscribers, anonymous ones included. */
  count: number;
  /** The logged-in users among them, once each. */
  users: User[];
}

export interface History extends Position {
  channel: string;
  events: Array<{ event: string; data: unknown; offset: number }>;
  recovered?: boolean;
}

export interface Welcome {
  connection: string;
  user: User | null;
  resume?: string;
  resume_ttl?: number;
}

export type State = "connecting" | "open" | "closed" | "unauthorized";

export interface Closed {
  code: number;
  reason: string;
  /** ms until the next attempt; null when the page closed the client. */
  retryIn: number | null;
}

export interface Unauthorized {
  /** 4401: log in; 4403: this user may not be here. */
  code: number;
  reason: string;
}

export interface Opened {
  connection: string;
  user: User | null;
  /** The resume token restored the previous socket's subscriptions. */
  resumed: boolean;
}

export interface Events {
  state: { state: State } & Partial<Closed & Opened>;
  connecting: Record<string, never>;
  open: Opened;
  closed: Closed;
  unauthorized: Unauthorized;
  push: { event: string; data: unknown };
  join: PresenceChange;
  leave: PresenceChange;
  lost: Lost;
  recoveryFailed: RecoveryFailed;
  error: SwitchyardError | Error;
}

/** Error codes: the server's, then the client's own. */
export type ErrorCode =
  | "bad_frame"
  | "unknown_command"
  | "bad_args"
  | "forbidden"
  | "too_many_requests"
  | "backend_unavailable"
  | "backend_timeout"
  | "backend_error"
  | "timeout"
  | "disconnected"
  | "closed"
  | "unauthorized"
  | "queue_full"
  | "bad_reply";

export class SwitchyardError extends Error {
  constructor(code: string, message: string, detail?: unknown);
  readonly name: "SwitchyardError";
  code: ErrorCode | string;
  /** What the backend said (`detail` of the reply's error), if anything. */
  detail: unknown;
}

export class Subscription {
  readonly channel: string;
  /** The first subscribe result; rejects when the subscription is refused. */
  readonly ready: Promise<SubscribeResult>;
  /** The last position delivered (or joined at); null before the first reply. */
  readonly position: Position | null;
  readonly active: boolean;
  presence(): Promise<Presence>;
  unsubscribe(): void;
}

export class Client {
  constructor(url?: string, options?: ConnectOptions);
  readonly state: State;
  /** The user of the last welcome; null when anonymous or before it. */
  readonly user: User | null;
  /** The connection id of the last welcome. */
  readonly connection: string | null;
  readonly url: string;
  on<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): () => void;
  off<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): void;
  call<T = any>(command: string, args?: unknown, options?: { timeout?: number }): Promise<T>;
  subscribe<T = unknown>(
    channel: string,
    handler: (message: ChannelMessage<T>) => void,
    options?: SubscribeOptions,
  ): Subscription;
  presence(channel: string): Promise<Presence>;
  history(channel: string, options?: { since?: Position; limit?: number }): Promise<History>;
  publish(channel: string, event: string, data?: unknown): Promise<Position>;
  reconnect(): void;
  close(): void;
}

/** Opens a client on `url` (default: the page's `{% switchyard_client %}` url, else "/ws/"). */
export function connect(url?: string, options?: ConnectOptions): Client;
