// Dropped connections against a real `roomcast dev`: DELETE @connections, the
// connection-duration cap (make-before-break rotation ahead of it), giving up.
import assert from "node:assert/strict";
import { test } from "node:test";
import { collect, connectionIdOf, deadUrl, drop, rejectsWith, room, serverPerFile, sleep, startServer, state, waitFor } from "./support.js";

const fx = serverPerFile();
const client = (opts, url) => fx.client(opts, url);

test("after DELETE @connections the client reconnects, rejoins and sends what was queued", async () => {
  const r = room();
  const a = client();
  const b = client({ reconnect: { initialDelayMs: 50 } });
  await Promise.all([a.join(r), b.join(r)]);
  const states = [];
  b.onState((s) => states.push(s));
  const rejoins = [];
  b.onRejoin((rm, info) => rejoins.push([rm, info]));
  const id = await connectionIdOf(a, b, r);
  await drop(fx.server, id);
  await waitFor(() => states.includes("reconnecting"), "state reconnecting");
  // Sent while disconnected: queued, then sent after the rejoin.
  const toA = collect(a, r, "queued");
  const queued = b.send(r, "queued", 1);
  await state(b, "open");
  assert.equal((await queued).recipients, 1);
  await waitFor(() => toA.length === 1, "the queued event at a");
  assert.deepEqual(rejoins, [[r, { history: false, recovered: false }]]);
  // Events flow to the new connection again.
  const toB = collect(b, r, "again");
  await a.send(r, "again", 2);
  await waitFor(() => toB.length === 1, "a's event at b's new connection");
  assert.notEqual(await connectionIdOf(a, b, r), id);
  assert.deepEqual(states, ["reconnecting", "open"]);
});

test("a send in flight when the connection drops rejects with closed; a join is repeated", async () => {
  const r = room();
  const a = client();
  const b = client({ reconnect: { initialDelayMs: 50 } });
  await Promise.all([a.join(r), b.join(r)]);
  const id = await connectionIdOf(a, b, r);
  // The DELETE and the frames race: whichever way it goes, no promise is left hanging
  // and each outcome is a typed one.
  const other = room();
  const [join, send] = [b.join(other), b.send(r, "racing", 1).catch((e) => e)];
  await drop(fx.server, id);
  assert.equal((await join).room, other);
  const s = await send;
  assert.ok(s.action === "send" || s.code === "closed", `send: ${s.code ?? s.action}`);
  if (s.code) assert.match(s.message, /may or may not/);
  await state(b, "open");
});

test("make-before-break: rotating ahead of the duration cap loses and repeats no event", async () => {
  // The server cuts connections at 8 s; both clients replace theirs every 1.5 s.
  const policies = { default: { join: "anyone", send: "anyone", rateLimit: { limit: 5000, windowSecs: 10 } } };
  const capped = await startServer(["--max-connection-secs", "8", "--policies", JSON.stringify(policies)]);
  // Each old connection stays open for an ack timeout (3 s) after its replacement is
  // ready, so events during those 3 s reach b twice.
  const opts = { maxConnectionMs: 1500, ackTimeoutMs: 3000 };
  const a = client(opts, capped.url);
  const b = client(opts, capped.url);
  try {
    const r = room();
    await Promise.all([a.join(r), b.join(r)]);
    const states = [];
    b.onState((s) => states.push(s));
    const got = collect(b, r, "n");
    const own = collect(b, r, "whoami");
    const ids = new Set();
    a.on(r, "whoami", (_, f) => ids.add(f.from.connectionId));
    let n = 0;
    // Until b has used three connections (two rotations), a sends a numbered event
    // and b says who it is.
    while (ids.size < 3) {
      await a.send(r, "n", ++n);
      if (n % 5 === 0) await b.send(r, "whoami", null);
      await sleep(5);
      if (n > 100_000) throw new Error("b never rotated");
    }
    await a.send(r, "n", ++n);
    await waitFor(() => got.some((g) => g.data === n), "the last event");
    const seen = got.map((g) => g.data).sort((x, y) => x - y);
    assert.deepEqual(
      seen,
      Array.from({ length: n }, (_, i) => i + 1),
    );
    assert.deepEqual(states, [], "b never left the open state");
    // b's other connection receives b's own whoami during a handover; b does not show it.
    assert.deepEqual(own, [], "b never heard its own events");
  } finally {
    a.close();
    b.close();
    await capped.stop();
  }
});

test("maxAttempts: the client gives up, reports it once per outage, and fails what waited", async () => {
  const rc = client({ reconnect: { initialDelayMs: 10, maxAttempts: 2 } }, await deadUrl());
  const errors = [];
  rc.onError((e) => errors.push(e.code));
  const r = room();
  const waiting = rc.join(r);
  assert.equal((await rejectsWith(waiting, "closed")).room, r);
  assert.equal(rc.state, "closed");
  // Three failed attempts: the first is reported, then giving up.
  assert.deepEqual(errors, ["refused", "closed"]);
});

test("reconnect() after close: same listeners, rooms rejoined, no new registration", async () => {
  const r = room();
  const a = client({ reconnect: { initialDelayMs: 10 } });
  const b = client();
  await Promise.all([a.join(r), b.join(r)]);
  const got = collect(a, r, "back");
  const states = [];
  a.onState((s) => states.push(s));
  a.close();
  a.reconnect();
  await state(a, "open");
  assert.deepEqual(states, ["closed", "connecting", "open"]);
  // a is in the room again without joining it: b's event reaches the old listener.
  await b.send(r, "back", 1);
  await waitFor(() => got.length === 1, "b's event at a after reconnect()");
  // When open, reconnect() replaces the connection make-before-break.
  const before = await connectionIdOf(b, a, r);
  a.reconnect();
  await waitFor(async () => (await connectionIdOf(b, a, r)) !== before, "a new connection");
  assert.deepEqual(states, ["closed", "connecting", "open"], "the rotation stayed open");
});

test("pings keep a connection from the idle timeout that cuts a silent one", async () => {
  const idle = await startServer(["--idle-timeout-secs", "3"]);
  const pinger = client({ pingIntervalMs: 300 }, idle.url);
  const silent = client({ reconnect: { initialDelayMs: 10 } }, idle.url);
  try {
    const r = room();
    await Promise.all([pinger.join(r), silent.join(r)]);
    const pingerStates = [];
    pinger.onState((s) => pingerStates.push(s));
    const silentStates = [];
    silent.onState((s) => silentStates.push(s));
    // The silent client is cut once it has been idle for 3 s, and reconnects.
    await waitFor(() => silentStates.includes("reconnecting"), "the silent client's idle cut");
    await state(silent, "open");
    assert.deepEqual(pingerStates, []);
    const got = collect(pinger, r, "still");
    await silent.send(r, "still", "here");
    await waitFor(() => got.length === 1, "an event at the pinging client");
  } finally {
    pinger.close();
    silent.close();
    await idle.stop();
  }
});
