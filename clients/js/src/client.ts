import { RoomcastError } from "./errors.js";
import { readToken } from "./token.js";
import type {
  Ack,
  ClientOptions,
  EventMap,
  History,
  HistoryOptions,
  JoinOptions,
  Presence,
  PresenceChange,
  RejoinInfo,
  RequestOptions,
  RoomEvent,
  SendOptions,
  Since,
  State,
  TokenSource,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
import { byteLength, checkCount, checkEvent, checkRoom } from "./validate.js";

type Frame = Record<string, unknown>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Reply = { [k: string]: any };
type Listener = (...args: never[]) => void;
type Timer = ReturnType<typeof setTimeout>;

/** A request from the app (or a rejoin): sent once a connection is ready. */
interface Request {
  frame: Frame;
  /** Order of creation: requests put back after a lost connection keep their order. */
  order: number;
  resolve(reply: Reply): void;
  reject(err: RoomcastError): void;
  /** Safe to send again when its connection drops before the reply (join, leave, reads). */
  retry: boolean;
  /** Later requests wait for its reply (a join must land before the sends that follow it). */
  gate: boolean;
  /** Fire and forget: sent without an id, done once handed to the socket. */
  noAck?: boolean;
  /** Takes it off the connection it waits on (set while it is in flight). */
  unsend?: () => void;
}

interface Pending {
  request: Request;
  timer: Timer;
  done(): void;
}

interface Conn {
  ws?: WebSocketLike;
  pending: Map<number, Pending>;
  /**
   * Set by a `token_expired` error: the id of the request it refused (the server refuses
   * every later frame too, so none of them was carried out and all may be sent again),
   * or, when it named no request, one past the last id sent (requests waiting for a
   * reply may or may not have been carried out).
   */
  expired?: number;
  /** When its token stops being valid (local clock), if the token says. */
  expiresAt?: number | undefined;
  /** The user id its token names (`sub`), as the server puts it in `from.userId`. */
  user?: string | null;
  /** The HTTP status of a refused handshake, when the platform tells it. */
  status?: number;
  /** Its API Gateway connection id, once a `pong` told it. */
  id?: string;
}

interface RoomState {
  /** Acked and not left: rejoined after a reconnect. */
  joined: boolean;
  offset?: number | undefined;
  epoch?: string | undefined;
  /** Offsets delivered recently, to drop events seen twice (recovery, overlapping connections). */
  seen: Set<number>;
  /** A replay was cut short: the offset the next join's `since` continues from. */
  from?: number | undefined;
}

const SEEN = 512;
/** A join with `since` may replay for up to 12 s before its ack (API Gateway's limit is 29 s). */
const REPLAY_ACK_MS = 30_000;
const OVERLAP_KEYS = 4096;
/** Own sends remembered to recognise their copies (within the last ack timeout). */
const SENT = 256;
/** Listener keys; room events are keyed `EVENT` + room + "\n" + event name. */
const ANY = "any";
const STATE = "state";
const ERROR = "error";
const REJOIN = "rejoin";
const EVENT = "event\n";
const PRESENCE = "presence\n";
/** Most `presence` pages one call follows: a bound, should a server hand out tokens forever. */
const MAX_PRESENCE_PAGES = 1000;
const eventKey = (room: string | null, event: string) => `${EVENT}${room ?? ""}\n${event}`;
/** What identifies a copy of one of this client's sends: the sender's user, room, event name and data. */
const echoKey = (user: unknown, room: unknown, event: unknown, data: unknown) =>
  `${user}\n${room}\n${event}\n${JSON.stringify(data ?? null)}`;

let wsModule: Promise<WebSocketConstructor> | undefined;
function platformWebSocket(): Promise<WebSocketConstructor> {
  const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (g) return Promise.resolve(g);
  // A variable specifier keeps bundlers from pulling `ws` into browser builds.
  const name = "ws";
  return (wsModule ??= import(name).then(
    (imported: { WebSocket?: WebSocketConstructor; default: WebSocketConstructor }) => imported.WebSocket ?? imported.default,
    () => {
      throw new RoomcastError("invalid", "this runtime has no WebSocket: install the ws package");
    },
  ));
}

// Cheap fingerprint of a frame's text (FNV-1a plus length), for overlap deduplication.
function fingerprint(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return text.length + ":" + (hash >>> 0);
}

/**
 * Opens a client; it connects at once and reconnects by itself until `close()`.
 * `Listen` and `Emit` map event names to their data's type (like socket.io-client's
 * `Socket<ListenEvents, EmitEvents>`).
 */
export function connect<Listen extends EventMap = EventMap, Emit extends EventMap = Listen>(
  url: string,
  options?: ClientOptions,
): Roomcast<Listen, Emit> {
  return new Roomcast<Listen, Emit>(url, options);
}

export class Roomcast<Listen extends EventMap = EventMap, Emit extends EventMap = Listen> {
  /** The connection state; see `onState`. */
  state: State = "connecting";

  /**
   * The current connection's id (API Gateway's `connectionId`, what other members
   * see as `from.connectionId`), from the `pong` to the ping sent when it opens;
   * `undefined` until then. A reconnect changes it.
   */
  get connectionId(): string | undefined {
    return this.#conn?.id;
  }
  readonly #url: string;
  readonly #options: ClientOptions;
  readonly #settings: {
    ackTimeoutMs: number;
    timeoutMs: number | undefined;
    pingIntervalMs: number;
    maxConnectionMs: number;
    tokenRefreshMarginMs: number;
    maxQueue: number;
    maxMessageBytes: number;
    initialDelayMs: number;
    maxDelayMs: number;
    maxAttempts: number;
  };
  readonly #token: TokenSource;
  readonly #log: ((line: string) => void) | undefined;
  #conn?: Conn | undefined;
  #next?: Conn | undefined;
  readonly #conns = new Set<Conn>();
  readonly #queue: Request[] = [];
  readonly #rooms = new Map<string, RoomState>();
  readonly #listeners = new Map<string, Set<Listener>>();
  #seq = 0;
  #attempts = 0;
  /** Handshakes refused for the token in a row (401/403). */
  #authRefusals = 0;
  /** The current outage's first failure was reported: later attempts stay quiet. */
  #outageReported = false;
  #flushing = false;
  readonly #timers = new Set<Timer>();
  /** The primary connection's ping and rotation timers. */
  readonly #connTimers = new Set<Timer>();
  /** Fingerprints of events seen while two connections overlap. */
  #overlapSeen?: Set<string> | undefined;
  /**
   * This client's sends of the last ack timeout, by connection: the server leaves out
   * only the sending connection, so while another one is joined (a handover) it
   * receives a copy of the client's own event.
   */
  #sent: { conn: Conn; key: string; at: number }[] = [];

  constructor(url: string, options: ClientOptions = {}) {
    const backoff = options.reconnect;
    this.#url = url;
    this.#options = options;
    this.#token = options.token;
    this.#settings = {
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      timeoutMs: options.timeoutMs,
      pingIntervalMs: options.pingIntervalMs ?? 300_000,
      maxConnectionMs: options.maxConnectionMs ?? 6_600_000,
      tokenRefreshMarginMs: options.tokenRefreshMarginMs ?? 60_000,
      maxQueue: options.maxQueue ?? 1000,
      maxMessageBytes: options.maxMessageBytes ?? 32_768,
      initialDelayMs: (backoff || {}).initialDelayMs ?? 500,
      maxDelayMs: (backoff || {}).maxDelayMs ?? 30_000,
      maxAttempts: backoff === false ? 0 : (backoff?.maxAttempts ?? Infinity),
    };
    const debug = options.debug;
    this.#log = typeof debug === "function" ? debug : debug ? (line) => console.debug("roomcast: " + line) : undefined;
    // After the caller's synchronous code: its onError and onState see the first attempt.
    queueMicrotask(() => this.#conns.size || this.#stopped() || void this.#open());
  }

  // ---- public API ----

  /** Joins a room; resolves with the ack. Rejoined after every reconnect until `leave`. */
  join(room: string, opts: JoinOptions = {}): Promise<Ack> {
    return this.#guard(() => {
      checkRoom(room);
      const since = opts.since;
      if (since) {
        checkCount(since.offset, "since.offset", 0);
        if (typeof since.epoch !== "string") throw new RoomcastError("invalid", "since.epoch must be a string", room);
      }
      let roomState = this.#rooms.get(room);
      if (!roomState) this.#rooms.set(room, (roomState = { joined: false, seen: new Set() }));
      if (since) Object.assign(roomState, { offset: since.offset, epoch: since.epoch, seen: new Set(), from: undefined });
      const joining = roomState;
      const attempt = (): Promise<Reply> =>
        this.#request(this.#joinFrame(room, joining), true, true, opts).then((ack) => (this.#cutShort(joining, ack) ? attempt() : ack));
      return attempt().then(
        (ack) => {
          this.#joined(joining, ack as Ack);
          return ack as Ack;
        },
        (e: RoomcastError) => {
          if (!joining.joined && this.#rooms.get(room) === joining) this.#rooms.delete(room);
          throw e;
        },
      );
    });
  }

  /** Leaves a room: its events stop and it is not rejoined. */
  leave(room: string, opts?: RequestOptions): Promise<Ack> {
    return this.#guard(() => {
      checkRoom(room);
      this.#rooms.delete(room);
      return this.#request({ action: "leave", room }, true, true, opts) as Promise<Ack>;
    });
  }

  /**
   * Sends an event to the room's other members; resolves with the ack (after the
   * fan-out), or with `{ack: false}` once the frame is handed to the socket.
   */
  send<E extends keyof Emit & string>(room: string, event: E, data: Emit[E], opts: SendOptions & { ack: false }): Promise<void>;
  send<E extends keyof Emit & string>(room: string, event: E, data?: Emit[E], opts?: SendOptions): Promise<Ack>;
  send(room: string, event: string, data?: unknown, opts: SendOptions = {}): Promise<Ack | void> {
    return this.#guard(() => {
      checkRoom(room);
      checkEvent(event);
      const frame = { action: "send", room, event, data };
      let text: string;
      try {
        text = JSON.stringify(frame);
      } catch (e) {
        throw new RoomcastError("invalid", "data is not JSON-serializable", room, { cause: e });
      }
      // The id adds at most 24 bytes.
      if (byteLength(text) + 24 > this.#settings.maxMessageBytes) {
        throw new RoomcastError("too_large", `the frame is over ${this.#settings.maxMessageBytes} bytes`, room);
      }
      if (opts.ack === false) return this.#request(frame, false, false, opts, true).then(() => undefined);
      return this.#request(frame, false, false, opts).then((ack) => {
        const roomState = this.#rooms.get(room);
        // The sender gets no copy of its own event, but recovery would replay it.
        if (roomState?.epoch !== undefined && typeof ack.offset === "number" && (ack.epoch ?? roomState.epoch) === roomState.epoch) {
          // Seen, but not a position to recover from: others' earlier events may be in flight.
          this.#mark(roomState, ack.offset, false);
        }
        return ack as Ack;
      });
    });
  }

  /**
   * The room's stored events (rooms with history), oldest first: up to `limit`.
   * A reply the server cut to its size bound (`truncated`, `before`) is followed
   * by requests for the older events until `limit` events came or none are left.
   */
  history(room: string, opts: HistoryOptions): Promise<History> {
    return this.#guard(async () => {
      checkRoom(room);
      checkCount(opts.limit, "limit", 1);
      if (opts.before !== undefined) checkCount(opts.before, "before", 0);
      let before = opts.before;
      let result: History | undefined;
      for (;;) {
        const limit = opts.limit - (result?.events.length ?? 0);
        const frame = { action: "history", room, limit, before };
        const page = (await this.#request(frame, true, false, opts)) as History;
        // Offsets of another epoch do not follow on: keep the first epoch's.
        if (result !== undefined && page.epoch !== result.epoch) return result;
        result = result === undefined ? page : { ...page, events: [...page.events, ...result.events] };
        if (!page.truncated || page.before === undefined || result.events.length >= opts.limit) break;
        before = page.before;
      }
      delete result.truncated;
      delete result.before;
      return result;
    });
  }

  /**
   * The room's members (rooms with presence). A reply the server cut (`truncated`,
   * `after`) is followed by requests for the next pages, merged by user.
   */
  presence(room: string, opts?: RequestOptions): Promise<Presence> {
    return this.#guard(async () => {
      checkRoom(room);
      let after: string | undefined;
      const users = new Map<string | null, number>();
      let result: Presence | undefined;
      for (let pages = 0; ; pages++) {
        const page = (await this.#request({ action: "presence", room, after }, true, false, opts)) as Presence;
        for (const m of page.members) users.set(m.userId, (users.get(m.userId) ?? 0) + m.connections);
        result = { ...page, count: (result?.count ?? 0) + page.count };
        // Members come in connection-id order; a page that names no further one ends it.
        if (!page.truncated || page.after === undefined || page.after === after || pages >= MAX_PRESENCE_PAGES) break;
        after = page.after;
      }
      result.members = [...users].map(([userId, connections]) => ({ userId, connections }));
      delete result.truncated;
      delete result.after;
      return result;
    });
  }

  /**
   * Calls `handler(data, frame)` for each `event` in `room` (`null`: backend broadcasts
   * that name no room). Returns a function that removes the handler.
   */
  on<E extends keyof Listen & string>(
    room: string | null,
    event: E,
    handler: (data: Listen[E], frame: RoomEvent<Listen[E]>) => void,
  ): () => void {
    return this.#listen(eventKey(room, event), handler);
  }

  /** Like `on`, for the next such event only. */
  once<E extends keyof Listen & string>(
    room: string | null,
    event: E,
    handler: (data: Listen[E], frame: RoomEvent<Listen[E]>) => void,
  ): () => void {
    const off = this.on(room, event, (data, frame) => {
      off();
      handler(data, frame);
    });
    return off;
  }

  /** Removes one handler, or every handler of the room and event. */
  off(room: string | null, event: keyof Listen & string, handler?: (data: never, frame: never) => void): void {
    const key = eventKey(room, event);
    if (handler) this.#listeners.get(key)?.delete(handler);
    else this.#listeners.delete(key);
  }

  /** Every event frame, whatever its room and name. */
  onAny(handler: (frame: RoomEvent) => void): () => void {
    return this.#listen(ANY, handler);
  }

  onState(handler: (state: State) => void): () => void {
    return this.#listen(STATE, handler);
  }

  /**
   * Errors that answer no request: `token_expired` (the client reconnects with a fresh
   * token), the first failed attempt of an outage (`refused`, `token`), a room that
   * could not be rejoined, API Gateway error frames, stopping (`unauthorized`, or
   * `closed` after giving up).
   */
  onError(handler: (err: RoomcastError) => void): () => void {
    return this.#listen(ERROR, handler);
  }

  /** After every rejoin of a room on a new connection: whether missed events were recovered. */
  onRejoin(handler: (room: string, info: RejoinInfo) => void): () => void {
    return this.#listen(REJOIN, handler);
  }

  /** Members joining and leaving the room (rooms with `presenceEvents`). */
  onPresence(room: string, handler: (change: PresenceChange) => void): () => void {
    return this.#listen(PRESENCE + room, handler);
  }

  /** The last position seen in a room with history, for `join(room, { since })` elsewhere. */
  position(room: string): Since | undefined {
    const roomState = this.#rooms.get(room);
    return roomState?.epoch !== undefined && roomState.offset !== undefined ? { offset: roomState.offset, epoch: roomState.epoch } : undefined;
  }

  /**
   * Connects again: after `close()`, giving up or `unauthorized`, with the same
   * listeners and rooms (rejoined once connected); when open, replaces the connection
   * make-before-break (with a fresh token). While connecting or reconnecting an
   * attempt is already on its way.
   */
  reconnect(): void {
    if (this.state === "open") return this.#rotate();
    if (this.state !== "closed" && this.state !== "unauthorized") return;
    this.#attempts = this.#authRefusals = 0;
    this.#outageReported = false;
    this.#setState("connecting");
    void this.#open();
  }

  /** Closes every connection; waiting and unanswered requests fail with `closed`. */
  close(): void {
    this.#stop("closed");
  }

  // ---- requests ----

  #guard<T>(f: () => Promise<T>): Promise<T> {
    try {
      return f();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Whether the client has stopped (`closed`, `unauthorized`): nothing is sent. */
  #stopped(): boolean {
    return this.state === "closed" || this.state === "unauthorized";
  }

  #stoppedError(room?: string): RoomcastError {
    return this.state === "unauthorized"
      ? new RoomcastError("unauthorized", "the server refused the token", room)
      : new RoomcastError("closed", "the client is closed", room);
  }

  #request(frame: Frame, retry: boolean, gate: boolean, opts: RequestOptions = {}, noAck = false): Promise<Reply> {
    const room = frame.room as string | undefined;
    return new Promise<Reply>((resolve, reject) => {
      const { signal } = opts;
      if (this.#stopped()) return reject(this.#stoppedError(room));
      if (signal?.aborted) return reject(new RoomcastError("aborted", "the request was aborted", room, { cause: signal.reason }));
      if (this.#queue.length >= this.#settings.maxQueue) {
        return reject(new RoomcastError("queue_full", `over ${this.#settings.maxQueue} requests waiting for a connection`, room));
      }
      let timer: Timer | undefined;
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const request: Request = {
        frame,
        order: ++this.#seq,
        retry,
        gate,
        noAck,
        resolve: (reply) => (finish(), resolve(reply)),
        reject: (err) => (finish(), reject(err)),
      };
      const cancel = (err: RoomcastError) => {
        const i = this.#queue.indexOf(request);
        if (i >= 0) this.#queue.splice(i, 1);
        request.unsend?.();
        request.reject(err);
      };
      const onAbort = () => cancel(new RoomcastError("aborted", "the request was aborted", room, { cause: signal!.reason }));
      const ms = opts.timeout ?? this.#settings.timeoutMs;
      if (ms !== undefined && ms < Infinity) {
        timer = setTimeout(() => cancel(new RoomcastError("timeout", `no reply within ${ms} ms of the call`, room)), ms);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(request);
      void this.#flush();
    });
  }

  /** Sends waiting requests in order; a gate (join, leave) holds the rest until its reply. */
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      let conn: Conn | undefined;
      // A connection whose token expired refuses every frame: wait for the next one.
      while (this.#queue.length && this.state === "open" && (conn = this.#conn) && conn.expired === undefined) {
        const request = this.#queue.shift()!;
        const sent = this.#transmit(conn, request);
        if (request.gate) await sent;
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Sends one request on `conn`; resolves once it is answered, timed out or put back. */
  #transmit(conn: Conn, request: Request): Promise<void> {
    return new Promise((done) => {
      const { frame } = request;
      this.#log?.(`send ${frame.action}${frame.room ? " " + String(frame.room) : ""}`);
      if (frame.action === "send") {
        const now = Date.now();
        this.#sent = this.#sent.filter((s) => now - s.at < this.#settings.ackTimeoutMs).slice(-SENT);
        this.#sent.push({ conn, key: echoKey(conn.user, frame.room, frame.event, frame.data), at: now });
      }
      if (request.noAck) {
        try {
          conn.ws!.send(JSON.stringify(frame));
          request.resolve({});
        } catch {
          request.reject(new RoomcastError("closed", "the connection closed before the frame was sent", frame.room as string));
        }
        return done();
      }
      const id = ++this.#seq;
      const ms = frame.since ? Math.max(REPLAY_ACK_MS, this.#settings.ackTimeoutMs) : this.#settings.ackTimeoutMs;
      const timer = setTimeout(() => {
        const err = new RoomcastError("timeout", `no reply within ${ms} ms`, frame.room as string);
        this.#settle(conn, id, err);
      }, ms);
      conn.pending.set(id, { request, timer, done });
      request.unsend = () => {
        if (conn.pending.get(id)?.request !== request) return;
        conn.pending.delete(id);
        clearTimeout(timer);
        done();
      };
      try {
        conn.ws!.send(JSON.stringify({ ...frame, id }));
      } catch {
        // The socket is closing: its close event puts the request back or fails it.
      }
    });
  }

  #settle(conn: Conn, id: number, reply: Reply | RoomcastError): void {
    const waiting = conn.pending.get(id);
    if (!waiting) return;
    conn.pending.delete(id);
    clearTimeout(waiting.timer);
    waiting.done();
    const { request } = waiting;
    if (reply instanceof RoomcastError) request.reject(reply);
    else if (reply.type !== "error") request.resolve(reply);
    else if (reply.code === "token_expired" && request.order) this.#requeue([request]);
    else request.reject(new RoomcastError(String(reply.code), String(reply.message ?? reply.code), request.frame.room as string));
  }

  #requeue(requests: Request[]): void {
    this.#queue.push(...requests);
    this.#queue.sort((a, b) => a.order - b.order);
  }

  /** A connection is gone: requests safe to repeat wait for the next one, sends fail. */
  #abandon(conn: Conn): void {
    const again: Request[] = [];
    for (const [id, waiting] of conn.pending) {
      clearTimeout(waiting.timer);
      waiting.done();
      const { request } = waiting;
      const room = request.frame.room as string;
      if (this.#stopped()) request.reject(this.#stoppedError(room));
      else if (request.order && (request.retry || (conn.expired !== undefined && id >= conn.expired))) again.push(request);
      else {
        const message = "the connection dropped before the reply; the send may or may not have been delivered";
        request.reject(new RoomcastError("closed", message, room));
      }
    }
    conn.pending.clear();
    this.#requeue(again);
  }

  /** Stops the client in a final state: every connection closed, everything waiting rejected. */
  #stop(final: "closed" | "unauthorized"): void {
    if (this.#stopped()) return;
    this.#setState(final);
    for (const timer of [...this.#timers, ...this.#connTimers]) clearTimeout(timer);
    this.#timers.clear();
    this.#connTimers.clear();
    for (const conn of [...this.#conns]) {
      this.#abandon(conn);
      conn.ws?.close(1000);
    }
    this.#conns.clear();
    this.#conn = this.#next = this.#overlapSeen = undefined;
    this.#sent = [];
    for (const request of this.#queue.splice(0)) request.reject(this.#stoppedError(request.frame.room as string));
  }

  // ---- connections ----

  async #open(): Promise<void> {
    const conn: Conn = { pending: new Map() };
    if (this.#conns.size) this.#overlapSeen ??= new Set();
    this.#conns.add(conn);
    this.#next = conn;
    this.#log?.(`connecting (attempt ${this.#attempts + 1})`);
    let token: string | null | undefined;
    let Ctor: WebSocketConstructor;
    try {
      try {
        token = typeof this.#token === "function" ? await this.#token() : this.#token;
      } catch (e) {
        throw new RoomcastError("token", "the token function failed", undefined, { cause: e });
      }
      Object.assign(conn, readToken(token, Date.now()));
      Ctor = this.#options.WebSocket ?? (await platformWebSocket());
    } catch (e) {
      return this.#fail(conn, e as RoomcastError);
    }
    if (this.#next !== conn) return;
    let url = this.#url;
    let protocols: string[] | undefined;
    if (token && this.#options.tokenTransport === "query") {
      url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    } else if (token) protocols = ["bearer", token];
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url, protocols);
    } catch {
      // The platform's message may quote the subprotocols, and so the token.
      return this.#fail(conn, new RoomcastError("invalid", "the URL or the token cannot open a WebSocket"));
    }
    this.#watch(conn, ws);
  }

  #watch(conn: Conn, ws: WebSocketLike): void {
    conn.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.#authRefusals = 0;
      this.#log?.("socket open; rejoining");
      void this.#rejoin(conn);
    };
    ws.onmessage = (ev) => this.#receive(conn, ev.data);
    ws.onerror = (ev) => {
      // ws (Node) names the status of a refused handshake: "Unexpected server response: 403".
      // Browsers tell nothing: there a refusal looks like any network failure.
      const status = /response: (\d{3})/.exec(String((ev as { message?: unknown } | null)?.message));
      if (status && !opened) conn.status = Number(status[1]);
    };
    ws.onclose = (ev) => {
      this.#log?.(`socket closed (${ev?.code ?? "?"}${conn.status ? ", handshake " + conn.status : ""})`);
      if (!opened && this.#handshakeRefused(conn)) return;
      this.#lost(conn);
    };
  }

  /**
   * A connection closed before it opened. Refused for the token (401/403) twice in a
   * row, with a fresh token asked for in between: the client stops as `unauthorized`.
   * Returns whether it stopped.
   */
  #handshakeRefused(conn: Conn): boolean {
    if (conn.status === 401 || conn.status === 403) {
      if (++this.#authRefusals >= 2) {
        this.#conns.delete(conn);
        this.#emitError(new RoomcastError("unauthorized", `the server refused the token (HTTP ${conn.status}) twice in a row`));
        this.#stop("unauthorized");
        return true;
      }
    } else this.#authRefusals = 0;
    this.#reportOutage(new RoomcastError("refused", "the connection closed before it opened"));
    return false;
  }

  /** The first failure of an outage is reported; the retries after it are not. */
  #reportOutage(e: RoomcastError): void {
    if (this.#outageReported) return;
    this.#outageReported = true;
    this.#emitError(e);
  }

  /** An attempt failed before a socket existed: retried, unless no attempt can succeed. */
  #fail(conn: Conn, e: RoomcastError): void {
    if (e.code !== "invalid") {
      this.#reportOutage(e);
      return this.#lost(conn);
    }
    this.#emitError(e);
    this.#conns.delete(conn);
    this.close();
  }

  /** Joins every room again on a new connection, then makes it the one requests use. */
  async #rejoin(conn: Conn): Promise<void> {
    const done = new Set<string>();
    // Rooms joined on the old connection while this one was rejoining are joined too.
    for (;;) {
      const rooms = [...this.#rooms].filter(([room, roomState]) => roomState.joined && !done.has(room));
      if (!rooms.length) break;
      const results = await Promise.all(
        rooms.map(([room, roomState]) => {
          done.add(room);
          return this.#recover(conn, room, roomState);
        }),
      );
      if (!this.#conns.has(conn) || this.#stopped()) return;
      for (const [i, res] of results.entries()) {
        const [room, roomState] = rooms[i]!;
        if (!(res instanceof RoomcastError)) {
          if (this.#rooms.get(room) === roomState) this.#emit(REJOIN, room, this.#joined(roomState, res as Ack));
        } else if (res.code === "timeout" || res.code === "closed" || res.code === "token_expired") {
          // The connection is unusable; its close event starts another attempt.
          return conn.ws?.close(4000);
        } else {
          // Refused now (policy changed, roles gone): the app must know the room is lost.
          if (this.#rooms.get(room) === roomState) this.#rooms.delete(room);
          this.#emitError(res);
        }
      }
    }
    // Rooms left on the old connection meanwhile.
    for (const room of done) if (!this.#rooms.has(room)) void this.#internal(conn, { action: "leave", room });
    this.#promote(conn);
  }

  /** `conn` is ready: it becomes the connection requests use; the old one retires. */
  #promote(conn: Conn): void {
    const old = this.#conn;
    this.#conn = conn;
    this.#next = undefined;
    this.#attempts = 0;
    this.#outageReported = false;
    const now = Date.now();
    // The old connection stays open for one ack timeout (and no longer than its token):
    // replies to its requests and events of fan-outs that read the member list before
    // this connection joined are still on their way to it. Copies that reach both are
    // dropped (`overlapSeen`, offsets).
    if (old) this.#later(() => old.ws?.close(1000), Math.min(this.#settings.ackTimeoutMs, (old.expiresAt ?? Infinity) - now));
    for (const timer of this.#connTimers) clearTimeout(timer);
    this.#connTimers.clear();
    // At once, for the pong's connection id; then every pingIntervalMs.
    void this.#internal(conn, { action: "ping" });
    this.#ping(conn);
    let rotateIn = this.#settings.maxConnectionMs;
    if (conn.expiresAt !== undefined && typeof this.#token === "function") {
      // Ahead of the token's expiry, so the server never has to refuse it (a static
      // token cannot be replaced: the server will say token_expired).
      const left = conn.expiresAt - now;
      rotateIn = Math.min(rotateIn, Math.max(left - this.#settings.tokenRefreshMarginMs, left / 2, 1000));
    }
    this.#log?.(`open; replaced in ${Math.round(rotateIn)} ms`);
    this.#later(() => this.#rotate(), rotateIn, this.#connTimers);
    this.#setState("open");
    void this.#flush();
  }

  /** Joins `room` on `conn`, again after each replay cut short, until the server has replayed all it can. */
  async #recover(conn: Conn, room: string, roomState: RoomState): Promise<Reply | RoomcastError> {
    // A long replay is charged to the rate limit (up to a window's budget): a
    // continuation refused with rate_limited waits for the window to turn.
    for (let pause = 1000; ; ) {
      const res = await this.#internal(conn, this.#joinFrame(room, roomState));
      if (res instanceof RoomcastError && res.code === "rate_limited" && roomState.from !== undefined && pause <= 16000) {
        this.#log?.(`replay continuation rate limited; again in ${pause} ms`);
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause *= 2;
        continue;
      }
      if (res instanceof RoomcastError || !this.#cutShort(roomState, res)) return res;
    }
  }

  /** A request of the client's own on `conn`: resolves with the reply or the error. */
  #internal(conn: Conn, frame: Frame): Promise<Reply | RoomcastError> {
    return new Promise(
      (resolve) => void this.#transmit(conn, { frame, order: 0, resolve, reject: resolve, retry: false, gate: false }),
    );
  }

  #ping(conn: Conn): void {
    this.#later(
      () =>
        this.#conn === conn &&
        void this.#internal(conn, { action: "ping" }).then((reply) =>
          // No pong: the connection is dead without having said so.
          reply instanceof RoomcastError ? conn.ws?.close(4000) : this.#ping(conn),
        ),
      this.#settings.pingIntervalMs,
      this.#connTimers,
    );
  }

  /** Make-before-break: a new connection is opened and rejoined before this one closes. */
  #rotate(): void {
    if (this.state === "open" && !this.#next) void this.#open();
  }

  #lost(conn: Conn): void {
    this.#conns.delete(conn);
    this.#abandon(conn);
    if (this.#stopped()) return;
    if (this.#conns.size < 2) {
      // Copies of one event reach both connections at about the same time.
      this.#later(() => {
        if (this.#conns.size < 2) this.#overlapSeen = undefined;
      }, this.#settings.ackTimeoutMs);
    }
    const wait = () => {
      // A failed rotation is retried as long as the old connection lives.
      if (!this.#conn && this.#attempts >= this.#settings.maxAttempts) {
        this.#emitError(new RoomcastError("closed", `gave up after ${this.#attempts} failed connection attempts`));
        return this.close();
      }
      // After token_expired the first attempt goes at once: nothing is wrong with the network.
      const fresh = conn.expired !== undefined && !this.#attempts;
      const bound = fresh ? 0 : Math.min(this.#settings.maxDelayMs, this.#settings.initialDelayMs * 2 ** this.#attempts);
      this.#attempts++;
      this.#later(() => this.#next || (this.#conn ? this.#rotate() : void this.#open()), Math.random() * bound);
    };
    if (conn === this.#next) {
      this.#next = undefined;
      wait();
    } else if (conn === this.#conn) {
      this.#conn = undefined;
      for (const timer of this.#connTimers) clearTimeout(timer);
      this.#setState(this.state === "connecting" ? "connecting" : "reconnecting");
      if (!this.#next) wait();
    }
  }

  #later(f: () => void, ms: number, set = this.#timers): void {
    const timer = setTimeout(() => {
      set.delete(timer);
      f();
    }, ms);
    set.add(timer);
  }

  // ---- frames ----

  #receive(conn: Conn, data: unknown): void {
    if (typeof data !== "string") return;
    let message: Reply;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.type === "pong" && typeof message.connectionId === "string") conn.id = message.connectionId;
    const id = typeof message.id === "number" && conn.pending.has(message.id) ? message.id : undefined;
    if (this.#log && message.type !== "event") this.#log(`received ${message.type}${message.code ? " " + message.code : ""}${id ? " for " + id : ""}`);
    if (message.type === "error" && message.code === "token_expired") {
      conn.expired ??= id ?? this.#seq + 1;
      // A retiring connection's token may run out: its replacement is already open.
      if (conn === this.#conn || conn === this.#next) {
        this.#emitError(new RoomcastError("token_expired", "the token expired; reconnecting with a fresh one"));
      }
      // The server closes the connection too; closing first saves a round trip.
      conn.ws?.close(4001);
    }
    if (id !== undefined) return this.#settle(conn, id, message);
    if (message.type === "event") return this.#event(conn, message as unknown as RoomEvent, data);
    // Replayed events packed in one frame: each is handled as if it had come alone.
    if (message.type === "replay" && Array.isArray(message.events)) {
      for (const frame of message.events) if (frame?.type === "event") this.#event(conn, frame, JSON.stringify(frame));
      return;
    }
    if (message.type === "presence") return this.#emit(PRESENCE + message.room, message);
    if (message.type === "error") {
      if (message.code !== "token_expired") this.#emitError(new RoomcastError(String(message.code), String(message.message ?? message.code), message.room));
    } else if (typeof message.message === "string") {
      this.#emitError(new RoomcastError("gateway", message.message));
    }
  }

  #event(conn: Conn, frame: RoomEvent, raw: string): void {
    if (this.#sent.some((s) => s.conn !== conn)) {
      // This client's own event, through its other connection during a handover (the
      // server passes `data` on byte for byte).
      const key = echoKey(frame.from?.userId, frame.room, frame.event, frame.data);
      const i = this.#sent.findIndex((s) => s.key === key && s.conn !== conn);
      if (i >= 0) return void this.#sent.splice(i, 1);
    }
    if (this.#overlapSeen) {
      const key = fingerprint(raw);
      if (this.#overlapSeen.has(key)) return;
      if (this.#overlapSeen.size >= OVERLAP_KEYS) this.#overlapSeen.delete(this.#overlapSeen.values().next().value!);
      this.#overlapSeen.add(key);
    }
    const roomState = frame.room === null ? undefined : this.#rooms.get(frame.room);
    // A left room's events still in flight (or on a connection not yet told to leave).
    if (frame.room !== null && !roomState) return;
    const offset = frame.offset;
    if (roomState && typeof offset === "number" && typeof frame.epoch === "string") {
      // While a cut-short replay continues, live events may have moved `offset` far ahead of it.
      const low = roomState.from ?? roomState.offset;
      if (roomState.epoch !== frame.epoch) Object.assign(roomState, { epoch: frame.epoch, offset: undefined, seen: new Set(), from: undefined });
      else if (roomState.seen.has(offset) || (low !== undefined && offset <= low - SEEN)) return;
      this.#mark(roomState, offset);
    }
    this.#emit(ANY, frame);
    this.#emit(eventKey(frame.room, frame.event), frame.data, frame);
  }

  #mark(roomState: RoomState, offset: number, advance = true): void {
    roomState.seen.add(offset);
    if (roomState.seen.size > SEEN) roomState.seen.delete(roomState.seen.values().next().value!);
    if (advance) roomState.offset = Math.max(roomState.offset ?? offset, offset);
  }

  #joinFrame(room: string, roomState: RoomState): Frame {
    const offset = roomState.from ?? roomState.offset;
    const since = roomState.epoch !== undefined && offset !== undefined ? { offset, epoch: roomState.epoch } : undefined;
    // Packed: the replayed events come in a few `replay` frames instead of one frame each.
    return since ? { action: "join", room, since, pack: true } : { action: "join", room };
  }

  /**
   * A join ack whose replay was cut short by the server's bounds (`replayedTo`): the
   * next join continues from there. Returns whether to join again.
   */
  #cutShort(roomState: RoomState, ack: Reply): boolean {
    const to = ack.replayedTo;
    if (ack.recovered !== false || typeof to !== "number" || ack.epoch !== roomState.epoch || to <= (roomState.from ?? -1)) return false;
    this.#log?.(`replay cut short at ${to}; joining again`);
    roomState.from = to;
    return true;
  }

  /** Records a join ack; returns what it says about recovery. */
  #joined(roomState: RoomState, ack: Ack): RejoinInfo {
    roomState.joined = true;
    roomState.from = undefined;
    if (typeof ack.epoch !== "string") return { history: false, recovered: false };
    const recovered = ack.recovered === true && roomState.epoch === ack.epoch;
    if (roomState.epoch !== ack.epoch) roomState.seen = new Set();
    roomState.epoch = ack.epoch;
    roomState.offset = recovered && roomState.offset !== undefined ? Math.max(roomState.offset, ack.offset ?? 0) : ack.offset;
    return { history: true, recovered, offset: roomState.offset ?? 0, epoch: ack.epoch };
  }

  // ---- listeners ----

  #listen(key: string, listener: Listener): () => void {
    let set = this.#listeners.get(key);
    if (!set) this.#listeners.set(key, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  #emit(key: string, ...args: unknown[]): void {
    for (const listener of this.#listeners.get(key) ?? []) {
      try {
        (listener as (...a: unknown[]) => void)(...args);
      } catch (e) {
        // An app handler's exception must not break the client's state; report it as uncaught.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  #emitError(e: RoomcastError): void {
    this.#log?.(`error ${e.code}${e.room ? " in " + e.room : ""}`);
    this.#emit(ERROR, e);
  }

  #setState(next: State): void {
    if (this.state === next) return;
    this.state = next;
    this.#log?.(`state ${next}`);
    this.#emit(STATE, next);
  }
}
