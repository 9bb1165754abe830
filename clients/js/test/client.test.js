// Requests, acks, typed errors, validation, the queue and ack timeouts against a real
// `roomcast dev` (anonymous, with a policy document that forbids some namespaces).
import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, RoomcastError } from "../dist/index.js";
import { collect, deadUrl, rejectsWith, room, serverPerFile, startServer, state, waitFor } from "./support.js";

const POLICIES = JSON.stringify({
  default: { join: "anyone", send: "anyone" },
  namespaces: {
    news: { join: "anyone", send: "nobody" },
    locked: { join: "nobody", send: "nobody" },
  },
});

const fx = serverPerFile(["--policies", POLICIES]);
const client = (opts, url) => fx.client(opts, url);

test("join, send and leave resolve with the server's acks; the other member gets the event", async () => {
  const r = room();
  const a = client();
  const b = client();
  const got = collect(b, r, "message");
  const joinAck = await a.join(r);
  assert.equal(joinAck.action, "join");
  assert.equal(joinAck.room, r);
  await b.join(r);
  assert.equal(a.state, "open");
  const ack = await a.send(r, "message", { text: "hello", n: [1, 2] });
  assert.equal(ack.action, "send");
  assert.equal(ack.recipients, 1);
  assert.equal(ack.delivered, 1);
  await waitFor(() => got.length === 1, "the event at b");
  assert.deepEqual(got[0].data, { text: "hello", n: [1, 2] });
  assert.equal(got[0].frame.room, r);
  assert.equal(got[0].frame.from.userId, null);
  assert.equal(typeof got[0].frame.from.connectionId, "string");
  const leave = await b.leave(r);
  assert.equal(leave.action, "leave");
  const after = await a.send(r, "message", "again");
  assert.equal(after.recipients, 0);
});

test("onAny sees every event; off and the returned function remove handlers", async () => {
  const r = room();
  const a = client();
  const b = client();
  await Promise.all([a.join(r), b.join(r)]);
  const any = [];
  const stopAny = b.onAny((f) => any.push(f.event));
  const named = [];
  const h = (d) => named.push(d);
  b.on(r, "x", h);
  await a.send(r, "x", 1);
  await a.send(r, "y", 2);
  await waitFor(() => any.length === 2, "two events");
  assert.deepEqual(any, ["x", "y"]);
  assert.deepEqual(named, [1]);
  b.off(r, "x", h);
  stopAny();
  await a.send(r, "x", 3);
  // An event sent after the handlers were removed, then one that is still listened to.
  const last = collect(b, r, "z");
  await a.send(r, "z", 4);
  await waitFor(() => last.length === 1, "the last event");
  assert.deepEqual(named, [1]);
  assert.deepEqual(any, ["x", "y"]);
});

test("send to a room not joined rejects with not_member", async () => {
  const a = client();
  const e = await rejectsWith(a.send(room(), "message", 1), "not_member");
  assert.ok(e instanceof RoomcastError);
  assert.match(e.message, /join/);
});

test("a namespace policy's refusals reject with forbidden", async () => {
  const a = client();
  const news = room("news");
  await a.join(news);
  await rejectsWith(a.send(news, "message", 1), "forbidden");
  await rejectsWith(a.join(room("locked")), "forbidden");
});

test("bad names and data are refused before anything is sent", async () => {
  // maxQueue 0: anything that got as far as the queue would fail with queue_full instead.
  const a = client({ maxQueue: 0, maxMessageBytes: 1000 });
  for (const bad of ["", "a b", "x".repeat(129), "caf\u00e9", "a/b", null, 7]) {
    await rejectsWith(a.join(bad), "invalid");
    await rejectsWith(a.send(bad, "e", 1), "invalid");
  }
  await rejectsWith(a.leave("no#hash"), "invalid");
  for (const bad of ["", "\u00e9".repeat(65), "tab\there", "nul\u0000", "c1\u0085", 5]) {
    await rejectsWith(a.send("ok", bad, 1), "invalid");
  }
  await rejectsWith(a.send("ok", "e", { big: 1n }), "invalid");
  const cyclic = {};
  cyclic.self = cyclic;
  await rejectsWith(a.send("ok", "e", cyclic), "invalid");
  await rejectsWith(a.send("ok", "e", "x".repeat(1000)), "too_large");
  await rejectsWith(a.history("ok", { limit: 0 }), "invalid");
  await rejectsWith(a.join("ok", { since: { offset: -1, epoch: "e" } }), "invalid");
  // Valid names at the limits pass validation and reach the (full) queue.
  await rejectsWith(a.join("A-z_0.9:@".padEnd(128, "x")), "queue_full");
  await rejectsWith(a.send("ok", "\u00e9".repeat(64), null), "queue_full");
});

test("requests made before the connection opens are queued, in order, up to maxQueue", async () => {
  const r = room();
  const b = client();
  await b.join(r);
  const got = collect(b, r, "q");
  const a = client({ maxQueue: 3 });
  assert.equal(a.state, "connecting");
  const join = a.join(r);
  const first = a.send(r, "q", 1);
  const second = a.send(r, "q", 2);
  const e = await rejectsWith(a.send(r, "q", 3), "queue_full");
  assert.match(e.message, /3/);
  // The join is acked before the queued sends go out, so neither gets not_member.
  await join;
  assert.equal((await first).recipients, 1);
  assert.equal((await second).recipients, 1);
  await waitFor(() => got.length === 2, "both queued events");
  assert.deepEqual(
    got.map((g) => g.data),
    [1, 2],
  );
});

test("close rejects waiting requests with closed and stops the client", async () => {
  const log = [];
  const a = client({ debug: (line) => log.push(line) });
  const states = [];
  a.onState((s) => states.push(s));
  const r = room();
  const waiting = a.join(r);
  a.close();
  assert.equal((await rejectsWith(waiting, "closed")).room, r);
  assert.equal((await rejectsWith(a.send(r, "e", 1), "closed")).room, r);
  assert.equal(a.state, "closed");
  assert.deepEqual(states, ["closed"]);
  // Closed before its first attempt (which waits for the caller's synchronous code): none is made.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(log, ["state closed"]);
});

test("an ack that does not come in time rejects with timeout", async () => {
  // Every @connections answer takes 20 s, so a send's ack (after its fan-out) cannot
  // come before the client's 200 ms deadline.
  const slow = await startServer(["--management-latency-ms", "20000"]);
  const a = connect(slow.url, { ackTimeoutMs: 200 });
  const b = connect(slow.url);
  try {
    const r = room();
    await Promise.all([a.join(r), b.join(r)]);
    const e = await rejectsWith(a.send(r, "e", 1), "timeout");
    assert.match(e.message, /200 ms/);
    assert.equal(e.room, r);
    // A per-call timeout counts from the call, whatever ackTimeoutMs says.
    const patient = connect(slow.url, { ackTimeoutMs: 60_000 });
    try {
      await patient.join(r);
      const t = await rejectsWith(patient.send(r, "e", 2, { timeout: 300 }), "timeout");
      assert.match(t.message, /300 ms of the call/);
      assert.equal(t.room, r);
    } finally {
      patient.close();
    }
  } finally {
    a.close();
    b.close();
    await slow.stop();
  }
});

test("a URL no WebSocket can open closes the client with invalid", async () => {
  const a = connect("not a url");
  const errors = [];
  a.onError((e) => errors.push(e.code));
  await state(a, "closed");
  assert.deepEqual(errors, ["invalid"]);
  await rejectsWith(a.join(room()), "closed");
});

test("a request queued while no server answers rejects with timeout, counted from the call", async () => {
  const url = await deadUrl();
  const a = client({ reconnect: { initialDelayMs: 10, maxDelayMs: 50 }, timeoutMs: 250 }, url);
  const r = room();
  // The client's default (timeoutMs) and a per-call timeout.
  const [byDefault, perCall] = await Promise.all([
    rejectsWith(a.join(r), "timeout"),
    rejectsWith(a.send(r, "e", 1, { timeout: 100 }), "timeout"),
  ]);
  assert.match(byDefault.message, /250 ms of the call/);
  assert.equal(byDefault.room, r);
  assert.match(perCall.message, /100 ms of the call/);
  assert.equal(a.state, "connecting", "still trying to connect");
});

test("an AbortSignal takes a request out of the queue and rejects it with aborted", async () => {
  const url = await deadUrl();
  const a = client({ reconnect: { initialDelayMs: 10, maxDelayMs: 50 }, maxQueue: 1 }, url);
  const r = room();
  const controller = new AbortController();
  const queued = a.send(r, "e", 1, { signal: controller.signal });
  const reason = new Error("the user navigated away");
  controller.abort(reason);
  const e = await rejectsWith(queued, "aborted");
  assert.equal(e.cause, reason);
  assert.equal(e.room, r);
  // It left the queue (maxQueue 1): another request fits, and an aborted signal fails at once.
  const again = new AbortController();
  const next = a.presence(r, { signal: again.signal });
  await rejectsWith(a.history(r, { limit: 1, signal: AbortSignal.abort() }), "aborted");
  again.abort();
  await rejectsWith(next, "aborted");
});

test("once hears one event; fire-and-forget sends need no ack, and their refusals reach onError", async () => {
  const r = room();
  const a = client();
  const b = client();
  await Promise.all([a.join(r), b.join(r)]);
  const first = [];
  b.once(r, "x", (data) => first.push(data));
  const all = collect(b, r, "x");
  assert.equal(await a.send(r, "x", 1, { ack: false }), undefined);
  await a.send(r, "x", 2, { ack: false });
  await waitFor(() => all.length === 2, "both fire-and-forget events at b");
  assert.deepEqual(first, [1]);
  assert.deepEqual(all.map((g) => g.data), [1, 2]);
  const errors = [];
  a.onError((e) => errors.push(e));
  const news = room("news");
  await a.join(news);
  await a.send(news, "x", 1, { ack: false });
  await waitFor(() => errors.length === 1, "the refusal");
  assert.equal(errors[0].code, "forbidden");
});
