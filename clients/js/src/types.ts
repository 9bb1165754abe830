/**
 * The client's connection state. `closed` (by `close()`, or after giving up) and
 * `unauthorized` (the handshake was refused for the token twice in a row) are final
 * until `reconnect()`.
 */
export type State = "connecting" | "open" | "reconnecting" | "closed" | "unauthorized";

/** Event names and the type of their `data`, for `Roomcast<Listen, Emit>`. */
export type EventMap = Record<string, unknown>;

/** Options every request takes. */
export interface RequestOptions {
  /**
   * Milliseconds from the call (waiting in the queue included) before the request
   * rejects with `timeout`. Default: the client's `timeoutMs`.
   */
  timeout?: number;
  /** Aborting it rejects the request with `aborted` (and takes it out of the queue). */
  signal?: AbortSignal;
}

export interface SendOptions extends RequestOptions {
  /**
   * `false`: fire and forget. The frame carries no id, the server's ack is not awaited,
   * and the promise resolves once the frame is handed to the socket (a refusal arrives
   * through `onError`).
   */
  ack?: boolean;
}

type Token = string | null | undefined;
/**
 * A token, or a function called before every connection attempt (the first, every
 * reconnect, every make-before-break rotation) that returns one. `null`, `undefined`
 * or `""` connects without a token (anonymous).
 */
export type TokenSource = Token | (() => Token | Promise<Token>);

/** A position in a room's history: the last event seen. */
export interface Since {
  offset: number;
  epoch: string;
}

export interface JoinOptions extends RequestOptions {
  /** Ask the server for the events after this position (rooms with history only). */
  since?: Since;
}

export interface HistoryOptions extends RequestOptions {
  limit: number;
  /** Only events with a smaller offset. */
  before?: number;
}

export interface Sender {
  connectionId: string | null;
  userId: string | null;
  service?: true;
}

/** An `event` frame, as the server sends it. */
export interface RoomEvent<T = unknown> {
  type: "event";
  /** `null` for backend broadcasts to a user, to connections or to everyone. */
  room: string | null;
  event: string;
  data: T;
  from: Sender;
  ts: number;
  /** Rooms with history: the event's position in the room (+1 per event). */
  offset?: number;
  epoch?: string;
}

export interface Ack {
  type: "ack";
  id: number;
  ok: true;
  action: "join" | "leave" | "send";
  room: string;
  /** `send`: live members other than the sender that were posted to. */
  recipients?: number;
  /** `send`: how many of those posts API Gateway accepted. */
  delivered?: number;
  /**
   * `send` to a sharded (big) room, instead of `recipients` and `delivered`:
   * the event was handed to this many workers, which deliver it after the ack.
   */
  workers?: number;
  /** Rooms with history: the room's current offset (join) or the event's (send). */
  offset?: number;
  epoch?: string;
  /**
   * `join` with `since`: whether every missed event was delivered before this ack.
   * The client joins again after a replay cut short, so the ack it resolves with says
   * `false` only when the server could not deliver the missed events.
   */
  recovered?: boolean;
}

export interface History {
  type: "history";
  room: string;
  epoch: string;
  events: RoomEvent[];
  /** Only in a single page the server cut: older events are left out; `rc.history` follows them. */
  truncated?: true;
  /** With `truncated`: the `before` that asks for the older events. */
  before?: number;
}

export interface Presence {
  type: "presence";
  room: string;
  members: { userId: string | null; connections: number }[];
  count: number;
  /** Only in a single page the server cut; `rc.presence` follows the pages and merges them. */
  truncated?: true;
  /** With `truncated`: the page token of the next page. */
  after?: string;
}

export interface PresenceChange {
  type: "presence";
  room: string;
  change: "join" | "leave";
  member: { userId: string | null; connectionId: string };
}

/** What a rejoin after a reconnect found. */
export interface RejoinInfo {
  /** The room keeps history (the join ack carried an epoch). */
  history: boolean;
  /**
   * Every event since the last one seen was delivered: no refetch needed. Always
   * `false` for rooms without history, whose events during the gap are lost.
   */
  recovered: boolean;
  offset?: number;
  epoch?: string;
}

/** The part of the WebSocket API the client uses (browsers' WebSocket, Node 22's, ws). */
export interface WebSocketLike {
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string[]) => WebSocketLike;

export interface ReconnectOptions {
  /** Upper bound of the first wait (full jitter: a random wait up to the bound). Default 500 ms. */
  initialDelayMs?: number;
  /** Largest bound; the bound doubles per failed attempt up to this. Default 30 s. */
  maxDelayMs?: number;
  /** Retries after a failed or lost connection before giving up (state `closed`); reset by every successful one. Default Infinity. */
  maxAttempts?: number;
}

export interface ClientOptions {
  token?: TokenSource;
  /** Where the token goes: the `bearer` subprotocol (default) or the `token` query parameter. */
  tokenTransport?: "subprotocol" | "query";
  /** `false`: never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** How long a request waits for its reply once sent. Default 10 s. */
  ackTimeoutMs?: number;
  /**
   * The default `timeout` of every request, counted from the call (time spent queued
   * while disconnected included). Default: none (a queued request waits for a
   * connection, or for the client to give up).
   */
  timeoutMs?: number;
  /**
   * Replace the connection, make-before-break, this long before the token's `exp`
   * (read from the JWT payload, not verified), or at half its remaining lifetime when
   * that comes first. Default 60 s.
   */
  tokenRefreshMarginMs?: number;
  /**
   * Log connection attempts, states and the frames' action, room and id (never tokens
   * or data): `true` to `console.debug`, or a function that takes each line.
   */
  debug?: boolean | ((line: string) => void);
  /** Ping interval, well inside API Gateway's 10-minute idle timeout. Default 5 minutes. */
  pingIntervalMs?: number;
  /** Replace a connection this old, make-before-break, ahead of the 2-hour cap. Default 110 minutes. */
  maxConnectionMs?: number;
  /** Requests that may wait for a connection. Default 1000. */
  maxQueue?: number;
  /** Largest frame the server accepts (ROOMCAST_MAX_MESSAGE_BYTES). Default 32768. */
  maxMessageBytes?: number;
  /** A WebSocket implementation; default: the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
}
