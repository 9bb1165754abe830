import { RoomcastError } from "./errors.js";
import type {
  Ack,
  ClientOptions,
  History,
  HistoryOptions,
  JoinOptions,
  Presence,
  PresenceChange,
  RejoinInfo,
  RoomEvent,
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
type Handler = (...args: never[]) => void;

/** A request from the app (or a rejoin): sent once a connection is ready. */
interface Req {
  f: Frame;
  /** Order of creation: requests put back after a lost connection keep their order. */
  n: number;
  ok(reply: Reply): void;
  ko(err: RoomcastError): void;
  /** Safe to send again when its connection drops before the reply (join, leave, reads). */
  retry: boolean;
  /** Later requests wait for its reply (a join must land before the sends that follow it). */
  gate: boolean;
}

interface Pending {
  r: Req;
  timer: ReturnType<typeof setTimeout>;
  done(): void;
}

interface Conn {
  ws?: WebSocketLike;
  pending: Map<number, Pending>;
  /**
   * The id of the first request refused with `token_expired`: the server refuses every
   * later frame too, so none of them was carried out and all may be sent again.
   */
  expired?: number;
}

interface RoomState {
  /** Acked and not left: rejoined after a reconnect. */
  joined: boolean;
  offset?: number | undefined;
  epoch?: string | undefined;
  /** Offsets delivered recently, to drop events seen twice (recovery, overlapping connections). */
  seen: Set<number>;
}

const SEEN = 512;
const OVERLAP_KEYS = 4096;
const closedError = () => new RoomcastError("closed", "the client is closed");

let wsModule: Promise<WebSocketConstructor> | undefined;
function platformWebSocket(): Promise<WebSocketConstructor> {
  const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (g) return Promise.resolve(g);
  // A variable specifier keeps bundlers from pulling `ws` into browser builds.
  const name = "ws";
  return (wsModule ??= import(name).then(
    (m: { WebSocket?: WebSocketConstructor; default: WebSocketConstructor }) => m.WebSocket ?? m.default,
    () => {
      throw new RoomcastError("invalid", "this runtime has no WebSocket: install the ws package");
    },
  ));
}

// Cheap fingerprint of a frame's text (FNV-1a plus length), for overlap deduplication.
function fingerprint(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return s.length + ":" + (h >>> 0);
}

/** Opens a client; it connects at once and reconnects by itself until `close()`. */
export function connect(url: string, options?: ClientOptions): Roomcast {
  return new Roomcast(url, options);
}

export class Roomcast {
  /** The connection state; see `onState`. */
  state: State = "connecting";
  private readonly o: Required<Omit<ClientOptions, "token" | "WebSocket" | "reconnect" | "tokenTransport">> & {
    initialDelayMs: number;
    maxDelayMs: number;
    maxAttempts: number;
  };
  private readonly token: TokenSource;
  private conn?: Conn | undefined;
  private next?: Conn | undefined;
  private readonly conns = new Set<Conn>();
  private readonly queue: Req[] = [];
  private readonly rooms = new Map<string, RoomState>();
  private readonly ls = new Map<string, Set<Handler>>();
  private seq = 0;
  private attempts = 0;
  private flushing = false;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  /** The primary connection's ping and rotation timers. */
  private readonly connTimers = new Set<ReturnType<typeof setTimeout>>();
  /** Fingerprints of events seen while two connections overlap. */
  private dup?: Set<string> | undefined;

  constructor(
    private readonly url: string,
    private readonly options: ClientOptions = {},
  ) {
    const r = options.reconnect;
    this.token = options.token;
    this.o = {
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      pingIntervalMs: options.pingIntervalMs ?? 300_000,
      maxConnectionMs: options.maxConnectionMs ?? 6_600_000,
      maxQueue: options.maxQueue ?? 1000,
      maxMessageBytes: options.maxMessageBytes ?? 32_768,
      initialDelayMs: (r || {}).initialDelayMs ?? 500,
      maxDelayMs: (r || {}).maxDelayMs ?? 30_000,
      maxAttempts: r === false ? 0 : (r?.maxAttempts ?? Infinity),
    };
    void this.open();
  }

  // ---- public API ----

  /** Joins a room; resolves with the ack. Rejoined after every reconnect until `leave`. */
  join(room: string, opts: JoinOptions = {}): Promise<Ack> {
    return this.guard(() => {
      checkRoom(room);
      const since = opts.since;
      if (since) {
        checkCount(since.offset, "since.offset", 0);
        if (typeof since.epoch !== "string") throw new RoomcastError("invalid", "since.epoch must be a string");
      }
      let st = this.rooms.get(room);
      if (!st) this.rooms.set(room, (st = { joined: false, seen: new Set() }));
      if (since) Object.assign(st, { offset: since.offset, epoch: since.epoch, seen: new Set() });
      const s = st;
      return this.request(this.joinFrame(room, s), true, true).then(
        (ack) => {
          this.joined(s, ack as Ack);
          return ack as Ack;
        },
        (e: RoomcastError) => {
          if (!s.joined && this.rooms.get(room) === s) this.rooms.delete(room);
          throw e;
        },
      );
    });
  }

  /** Leaves a room: its events stop and it is not rejoined. */
  leave(room: string): Promise<Ack> {
    return this.guard(() => {
      checkRoom(room);
      this.rooms.delete(room);
      return this.request({ action: "leave", room }, true, true) as Promise<Ack>;
    });
  }

  /** Sends an event to the room's other members; resolves with the ack (after the fan-out). */
  send(room: string, event: string, data?: unknown): Promise<Ack> {
    return this.guard(() => {
      checkRoom(room);
      checkEvent(event);
      const f = { action: "send", room, event, data };
      let text: string;
      try {
        text = JSON.stringify(f);
      } catch {
        throw new RoomcastError("invalid", "data is not JSON-serializable", room);
      }
      // The id adds at most 24 bytes.
      if (byteLength(text) + 24 > this.o.maxMessageBytes) {
        throw new RoomcastError("too_large", `the frame is over ${this.o.maxMessageBytes} bytes`, room);
      }
      return this.request(f, false, false).then((ack) => {
        const st = this.rooms.get(room);
        // The sender gets no copy of its own event, but recovery would replay it.
        if (st?.epoch !== undefined && typeof ack.offset === "number" && (ack.epoch ?? st.epoch) === st.epoch) {
          // Seen, but not a position to recover from: others' earlier events may be in flight.
          this.mark(st, ack.offset, false);
        }
        return ack as Ack;
      });
    });
  }

  /** The room's stored events (rooms with history), oldest first. */
  history(room: string, opts: HistoryOptions): Promise<History> {
    return this.guard(() => {
      checkRoom(room);
      checkCount(opts.limit, "limit", 1);
      if (opts.before !== undefined) checkCount(opts.before, "before", 0);
      return this.request({ action: "history", room, limit: opts.limit, before: opts.before }, true, false) as Promise<History>;
    });
  }

  /** The room's members (rooms with presence). */
  presence(room: string): Promise<Presence> {
    return this.guard(() => {
      checkRoom(room);
      return this.request({ action: "presence", room }, true, false) as Promise<Presence>;
    });
  }

  /**
   * Calls `handler(data, frame)` for each `event` in `room` (`null`: backend broadcasts
   * that name no room). Returns a function that removes the handler.
   */
  on<T = unknown>(room: string | null, event: string, handler: (data: T, frame: RoomEvent<T>) => void): () => void {
    return this.listen(`m\n${room ?? ""}\n${event}`, handler);
  }

  /** Removes one handler, or every handler of the room and event. */
  off(room: string | null, event: string, handler?: (data: never, frame: never) => void): void {
    const k = `m\n${room ?? ""}\n${event}`;
    if (handler) this.ls.get(k)?.delete(handler);
    else this.ls.delete(k);
  }

  /** Every event frame, whatever its room and name. */
  onAny(handler: (frame: RoomEvent) => void): () => void {
    return this.listen("a", handler);
  }

  onState(handler: (state: State) => void): () => void {
    return this.listen("s", handler);
  }

  /**
   * Errors that answer no request: `token_expired` (the client reconnects with a fresh
   * token), `refused` handshakes, a room that could not be rejoined, API Gateway error
   * frames, giving up.
   */
  onError(handler: (err: RoomcastError) => void): () => void {
    return this.listen("e", handler);
  }

  /** After every rejoin of a room on a new connection: whether missed events were recovered. */
  onRejoin(handler: (room: string, info: RejoinInfo) => void): () => void {
    return this.listen("r", handler);
  }

  /** Members joining and leaving the room (rooms with `presenceEvents`). */
  onPresence(room: string, handler: (change: PresenceChange) => void): () => void {
    return this.listen(`p\n${room}`, handler);
  }

  /** The last position seen in a room with history, for `join(room, { since })` elsewhere. */
  position(room: string): Since | undefined {
    const st = this.rooms.get(room);
    return st?.epoch !== undefined && st.offset !== undefined ? { offset: st.offset, epoch: st.epoch } : undefined;
  }

  /** Closes every connection; waiting and unanswered requests fail with `closed`. */
  close(): void {
    if (this.state === "closed") return;
    this.setState("closed");
    for (const t of [...this.timers, ...this.connTimers]) clearTimeout(t);
    for (const c of [...this.conns]) {
      this.abandon(c);
      c.ws?.close(1000);
    }
    this.conns.clear();
    this.conn = this.next = undefined;
    for (const r of this.queue.splice(0)) r.ko(closedError());
  }

  // ---- requests ----

  private guard<T>(f: () => Promise<T>): Promise<T> {
    try {
      return f();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private request(f: Frame, retry: boolean, gate: boolean): Promise<Reply> {
    return new Promise<Reply>((ok, ko) => {
      if (this.state === "closed") return ko(closedError());
      if (this.queue.length >= this.o.maxQueue) {
        return ko(new RoomcastError("queue_full", `over ${this.o.maxQueue} requests waiting for a connection`));
      }
      this.queue.push({ f, n: ++this.seq, ok, ko, retry, gate });
      void this.flush();
    });
  }

  /** Sends waiting requests in order; a gate (join, leave) holds the rest until its reply. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      let c: Conn | undefined;
      // A connection whose token expired refuses every frame: wait for the next one.
      while (this.queue.length && this.state === "open" && (c = this.conn) && c.expired === undefined) {
        const r = this.queue.shift()!;
        const sent = this.transmit(c, r);
        if (r.gate) await sent;
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Sends one request on `c`; resolves once it is answered, timed out or put back. */
  private transmit(c: Conn, r: Req): Promise<void> {
    return new Promise((done) => {
      const id = ++this.seq;
      const timer = setTimeout(
        () => this.settle(c, id, new RoomcastError("timeout", `no reply within ${this.o.ackTimeoutMs} ms`)),
        this.o.ackTimeoutMs,
      );
      c.pending.set(id, { r, timer, done });
      try {
        c.ws!.send(JSON.stringify({ ...r.f, id }));
      } catch {
        // The socket is closing: its close event puts the request back or fails it.
      }
    });
  }

  private settle(c: Conn, id: number, reply: Reply | RoomcastError): void {
    const p = c.pending.get(id);
    if (!p) return;
    c.pending.delete(id);
    clearTimeout(p.timer);
    p.done();
    if (reply instanceof RoomcastError) p.r.ko(reply);
    else if (reply.type !== "error") p.r.ok(reply);
    else if (reply.code === "token_expired" && p.r.n) this.requeue([p.r]);
    else p.r.ko(new RoomcastError(String(reply.code), String(reply.message ?? reply.code), p.r.f.room as string));
  }

  private requeue(rs: Req[]): void {
    this.queue.push(...rs);
    this.queue.sort((a, b) => a.n - b.n);
  }

  /** A connection is gone: requests safe to repeat wait for the next one, sends fail. */
  private abandon(c: Conn): void {
    const again: Req[] = [];
    for (const [id, p] of c.pending) {
      clearTimeout(p.timer);
      p.done();
      if (p.r.n && this.state !== "closed" && (p.r.retry || (c.expired !== undefined && id >= c.expired))) again.push(p.r);
      else
        p.r.ko(
          this.state === "closed"
            ? closedError()
            : new RoomcastError("closed", "the connection dropped before the reply; the send may or may not have been delivered"),
        );
    }
    c.pending.clear();
    this.requeue(again);
  }

  // ---- connections ----

  private async open(): Promise<void> {
    const c: Conn = { pending: new Map() };
    if (this.conns.size) this.dup ??= new Set();
    this.conns.add(c);
    this.next = c;
    let token: string | null | undefined;
    let Ctor: WebSocketConstructor;
    try {
      try {
        token = typeof this.token === "function" ? await this.token() : this.token;
      } catch {
        throw new RoomcastError("token", "the token function failed");
      }
      Ctor = this.options.WebSocket ?? (await platformWebSocket());
    } catch (e) {
      return this.fail(c, e as RoomcastError);
    }
    if (this.next !== c) return;
    let url = this.url;
    let protocols: string[] | undefined;
    if (token && this.options.tokenTransport === "query") {
      url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    } else if (token) protocols = ["bearer", token];
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url, protocols);
    } catch {
      // The platform's message may quote the subprotocols, and so the token.
      return this.fail(c, new RoomcastError("invalid", "the URL or the token cannot open a WebSocket"));
    }
    c.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      void this.rejoin(c);
    };
    ws.onmessage = (ev) => this.receive(c, ev.data);
    // ws throws an error event nobody listens to; the close event follows it.
    ws.onerror = () => {};
    ws.onclose = () => {
      // A handshake refused with 401/403 shows in browsers only as a close before
      // open; the token function is asked again on the next attempt anyway.
      if (!opened) this.emitError(new RoomcastError("refused", "the connection closed before it opened"));
      this.lost(c);
    };
  }

  /** An attempt failed before a socket existed: retried, unless no attempt can succeed. */
  private fail(c: Conn, e: RoomcastError): void {
    this.emitError(e);
    if (e.code !== "invalid") return this.lost(c);
    this.conns.delete(c);
    this.close();
  }

  /** Joins every room again on a new connection, then makes it the one requests use. */
  private async rejoin(c: Conn): Promise<void> {
    const done = new Set<string>();
    // Rooms joined on the old connection while this one was rejoining are joined too.
    for (;;) {
      const rooms = [...this.rooms].filter(([room, st]) => st.joined && !done.has(room));
      if (!rooms.length) break;
      const results = await Promise.all(
        rooms.map(([room, st]) => {
          done.add(room);
          return this.internal(c, this.joinFrame(room, st));
        }),
      );
      if (!this.conns.has(c) || this.state === "closed") return;
      for (const [i, res] of results.entries()) {
        const [room, st] = rooms[i]!;
        if (!(res instanceof RoomcastError)) {
          if (this.rooms.get(room) === st) this.emit("r", room, this.joined(st, res as Ack));
        } else if (res.code === "timeout" || res.code === "closed" || res.code === "token_expired") {
          // The connection is unusable; its close event starts another attempt.
          return c.ws?.close(4000);
        } else {
          // Refused now (policy changed, roles gone): the app must know the room is lost.
          if (this.rooms.get(room) === st) this.rooms.delete(room);
          this.emitError(res);
        }
      }
    }
    // Rooms left on the old connection meanwhile.
    for (const room of done) if (!this.rooms.has(room)) void this.internal(c, { action: "leave", room });
    const old = this.conn;
    this.conn = c;
    this.next = undefined;
    this.attempts = 0;
    // The old connection stays open for one ack timeout: replies to its requests and
    // events of fan-outs that read the member list before this connection joined are
    // still on their way to it. Copies that reach both are dropped (`dup`, offsets).
    if (old) this.later(() => old.ws?.close(1000), this.o.ackTimeoutMs);
    for (const t of this.connTimers) clearTimeout(t);
    this.connTimers.clear();
    this.ping(c);
    this.later(() => this.rotate(), this.o.maxConnectionMs, this.connTimers);
    this.setState("open");
    void this.flush();
  }

  /** A request of the client's own on `c`: resolves with the reply or the error. */
  private internal(c: Conn, f: Frame): Promise<Reply | RoomcastError> {
    return new Promise((ok) => void this.transmit(c, { f, n: 0, ok, ko: ok, retry: false, gate: false }));
  }

  private ping(c: Conn): void {
    this.later(
      () =>
        this.conn === c &&
        void this.internal(c, { action: "ping" }).then((r) =>
          // No pong: the connection is dead without having said so.
          r instanceof RoomcastError ? c.ws?.close(4000) : this.ping(c),
        ),
      this.o.pingIntervalMs,
      this.connTimers,
    );
  }

  /** Make-before-break: a new connection is opened and rejoined before this one closes. */
  private rotate(): void {
    if (this.state === "open" && !this.next) void this.open();
  }

  private lost(c: Conn): void {
    this.conns.delete(c);
    this.abandon(c);
    if (this.state === "closed") return;
    if (this.conns.size < 2) {
      // Copies of one event reach both connections at about the same time.
      this.later(() => {
        if (this.conns.size < 2) this.dup = undefined;
      }, this.o.ackTimeoutMs);
    }
    const wait = () => {
      // A failed rotation is retried as long as the old connection lives.
      if (!this.conn && this.attempts >= this.o.maxAttempts) {
        this.emitError(new RoomcastError("closed", `gave up after ${this.attempts} failed connection attempts`));
        return this.close();
      }
      const bound = Math.min(this.o.maxDelayMs, this.o.initialDelayMs * 2 ** this.attempts++);
      this.later(() => this.next || (this.conn ? this.rotate() : void this.open()), Math.random() * bound);
    };
    if (c === this.next) {
      this.next = undefined;
      wait();
    } else if (c === this.conn) {
      this.conn = undefined;
      for (const t of this.connTimers) clearTimeout(t);
      this.setState(this.state === "connecting" ? "connecting" : "reconnecting");
      if (!this.next) wait();
    }
  }

  private later(f: () => void, ms: number, set = this.timers): void {
    const t = setTimeout(() => {
      set.delete(t);
      f();
    }, ms);
    set.add(t);
  }

  // ---- frames ----

  private receive(c: Conn, data: unknown): void {
    if (typeof data !== "string") return;
    let m: Reply;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (!m || typeof m !== "object") return;
    const id = typeof m.id === "number" && c.pending.has(m.id) ? m.id : undefined;
    if (m.type === "error" && m.code === "token_expired") {
      c.expired ??= id ?? 0;
      this.emitError(new RoomcastError("token_expired", "the token expired; reconnecting with a fresh one"));
      // The server closes the connection too; closing first saves a round trip.
      c.ws?.close(4001);
    }
    if (id !== undefined) return this.settle(c, id, m);
    if (m.type === "event") return this.event(m as unknown as RoomEvent, data);
    if (m.type === "presence") return this.emit(`p\n${m.room}`, m);
    if (m.type === "error") {
      if (m.code !== "token_expired") this.emitError(new RoomcastError(String(m.code), String(m.message ?? m.code)));
    } else if (typeof m.message === "string") {
      this.emitError(new RoomcastError("gateway", m.message));
    }
  }

  private event(m: RoomEvent, raw: string): void {
    if (this.dup) {
      const k = fingerprint(raw);
      if (this.dup.has(k)) return;
      if (this.dup.size >= OVERLAP_KEYS) this.dup.delete(this.dup.values().next().value!);
      this.dup.add(k);
    }
    const st = m.room === null ? undefined : this.rooms.get(m.room);
    // A left room's events still in flight (or on a connection not yet told to leave).
    if (m.room !== null && !st) return;
    const o = m.offset;
    if (st && typeof o === "number" && typeof m.epoch === "string") {
      if (st.epoch !== m.epoch) Object.assign(st, { epoch: m.epoch, offset: undefined, seen: new Set() });
      else if (st.seen.has(o) || (st.offset !== undefined && o <= st.offset - SEEN)) return;
      this.mark(st, o);
    }
    this.emit("a", m);
    this.emit(`m\n${m.room ?? ""}\n${m.event}`, m.data, m);
  }

  private mark(st: RoomState, offset: number, advance = true): void {
    st.seen.add(offset);
    if (st.seen.size > SEEN) st.seen.delete(st.seen.values().next().value!);
    if (advance) st.offset = Math.max(st.offset ?? offset, offset);
  }

  private joinFrame(room: string, st: RoomState): Frame {
    const since = st.epoch !== undefined && st.offset !== undefined ? { offset: st.offset, epoch: st.epoch } : undefined;
    return since ? { action: "join", room, since } : { action: "join", room };
  }

  /** Records a join ack; returns what it says about recovery. */
  private joined(st: RoomState, ack: Ack): RejoinInfo {
    st.joined = true;
    if (typeof ack.epoch !== "string") return { history: false, recovered: false };
    const recovered = ack.recovered === true && st.epoch === ack.epoch;
    if (st.epoch !== ack.epoch) st.seen = new Set();
    st.epoch = ack.epoch;
    st.offset = recovered && st.offset !== undefined ? Math.max(st.offset, ack.offset ?? 0) : ack.offset;
    return { history: true, recovered, offset: st.offset ?? 0, epoch: ack.epoch };
  }

  // ---- listeners ----

  private listen(k: string, h: Handler): () => void {
    let set = this.ls.get(k);
    if (!set) this.ls.set(k, (set = new Set()));
    set.add(h);
    return () => set.delete(h);
  }

  private emit(k: string, ...args: unknown[]): void {
    for (const h of this.ls.get(k) ?? []) {
      try {
        (h as (...a: unknown[]) => void)(...args);
      } catch (e) {
        // An app handler's exception must not break the client's state; report it as uncaught.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  private emitError(e: RoomcastError): void {
    this.emit("e", e);
  }

  private setState(s: State): void {
    if (this.state === s) return;
    this.state = s;
    this.emit("s", s);
  }
}
