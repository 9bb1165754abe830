// Test support: a real `roomcast dev` on a free loopback port, HS256 tokens made with
// node's crypto, and waits on conditions (generous deadlines, never timed assertions).
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { connect } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.ROOMCAST_BIN
  ? resolve(process.env.ROOMCAST_BIN)
  : resolve(here, "../../../target/debug/roomcast");

export const SECRET = "roomcast-client-tests-secret-0123456789abcdef";
export const ISSUER = "https://issuer.test";
export const AUDIENCE = "roomcast";
/** Flags for a server that verifies HS256 tokens with no clock-skew leeway. */
export const AUTH_FLAGS = [
  "--jwt-secret", SECRET, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwt-leeway-secs", "0",
];

/**
 * Starts `roomcast dev --port 0 ...args` and resolves once it prints its URLs.
 * Returns { url, management, stop, output }.
 */
export async function startServer(args = []) {
  if (!existsSync(BIN)) {
    throw new Error(`no roomcast binary at ${BIN}: run cargo build --workspace --bins or set ROOMCAST_BIN`);
  }
  const child = spawn(BIN, ["dev", "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", RUST_BACKTRACE: "0" },
  });
  const output = [];
  createInterface({ input: child.stderr }).on("line", (l) => output.push(l));
  const lines = createInterface({ input: child.stdout });
  const exited = new Promise((r) => child.once("exit", r));
  const ready = new Promise((resolve, reject) => {
    let url;
    lines.on("line", (line) => {
      output.push(line);
      const m = /^\s*(WebSocket URL|@connections endpoint):\s*(\S+)/.exec(line);
      if (m && m[1] === "WebSocket URL") url = m[2];
      else if (m) resolve({ url, management: m[2] });
    });
    exited.then((code) => reject(new Error(`roomcast dev exited (${code}) before it listened:\n${output.join("\n")}`)));
    setTimeout(() => reject(new Error(`roomcast dev did not start within 60 s:\n${output.join("\n")}`)), 60_000).unref();
  });
  let info;
  try {
    info = await ready;
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  lines.on("line", () => {}); // keep draining stdout
  return {
    ...info,
    output,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** An HS256 JWT for the test issuer and audience; `claims` override the defaults. */
export function token(claims = {}, secret = SECRET) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ sub: "alice", iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 3600, ...claims });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Polls `cond` until it is truthy; fails with `what` after a generous deadline. */
export async function waitFor(cond, what, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when the client's state is `state`. */
export function state(rc, want) {
  return waitFor(() => rc.state === want, `state ${want}`);
}

/** Collects a room event's data in arrival order. */
export function collect(rc, room, event) {
  const got = [];
  rc.on(room, event, (data, frame) => got.push({ data, frame }));
  return got;
}

/** A unique room name per call, so tests sharing a server do not see each other. */
let rooms = 0;
export const room = (ns = "t") => `${ns}:r${process.pid}-${++rooms}`;

/** Asserts `promise` rejects with a RoomcastError of `code`; returns the error. */
export async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (e) {
    if (e?.name !== "RoomcastError" || e.code !== code) {
      throw new Error(`expected a RoomcastError ${code}, got ${e?.name} ${e?.code}: ${e?.message}`);
    }
    return e;
  }
  throw new Error(`expected a RoomcastError ${code}, but it resolved`);
}

/**
 * One `roomcast dev` for a test file: started before its tests, stopped after them,
 * with every client made by `client()` closed. A server that fails to start is kept
 * as `startError`, for tests that must explain what the server lacks.
 */
export function serverPerFile(args = []) {
  const clients = [];
  const fx = {
    server: undefined,
    startError: undefined,
    client(opts, url = fx.server.url) {
      const rc = connect(url, opts);
      clients.push(rc);
      return rc;
    },
  };
  before(async () => {
    try {
      fx.server = await startServer(args);
    } catch (e) {
      fx.startError = e;
    }
  });
  after(async () => {
    clients.forEach((c) => c.close());
    await fx.server?.stop();
  });
  return fx;
}

/** `b`'s connection id, as `a`'s copy of an event from `b` in room `r` names it. */
export async function connectionIdOf(a, b, r) {
  const got = [];
  const stop = a.on(r, "whoami", (_, frame) => got.push(frame.from.connectionId));
  await b.send(r, "whoami", null);
  await waitFor(() => got.length, "b's whoami event");
  stop();
  return got[0];
}

/** Drops a connection the way a backend does: DELETE @connections/{id}. */
export async function drop(server, connectionId) {
  const res = await fetch(`${server.management}/@connections/${encodeURIComponent(connectionId)}`, { method: "DELETE" });
  if (res.status !== 204) throw new Error(`DELETE @connections answered ${res.status}`);
}

/** A WebSocket URL on a loopback port nobody listens on. */
export async function deadUrl() {
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  return `ws://127.0.0.1:${port}/local`;
}

/**
 * Two clients of `fx` in a new history room; `b` (made with `opts`) is dropped and
 * reconnects only when the returned `release` is called. `got` collects `b`'s "m"
 * events, `rejoins` its rejoin reports.
 */
export async function outage(fx, opts = {}) {
  const r = room("hist");
  let calls = 0;
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const a = fx.client();
  const b = fx.client({ ...opts, token: async () => (calls++ ? gate.then(() => null) : null), reconnect: { initialDelayMs: 10 } });
  const first = await a.join(r);
  await b.join(r);
  const got = collect(b, r, "m");
  const rejoins = [];
  b.onRejoin((rm, info) => rejoins.push(info));
  await drop(fx.server, await connectionIdOf(a, b, r));
  await state(b, "reconnecting");
  return { r, a, b, first, got, rejoins, release };
}
