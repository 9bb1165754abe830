// History, recovery and presence (rooms whose namespace policy sets `history`,
// `presence` and `presenceEvents`) against a real `roomcast dev`. A server without
// that support fails these tests with a message saying so; they are never skipped.
import assert from "node:assert/strict";
import { test } from "node:test";
import { collect, connectionIdOf, drop, room, serverPerFile, state, waitFor } from "./support.js";

const POLICIES = JSON.stringify({
  default: { join: "anyone", send: "anyone" },
  namespaces: {
    hist: { history: { size: 100, ttlSecs: 600 }, presence: true, presenceEvents: true },
  },
});

const fx = serverPerFile(["--policies", POLICIES]);
const client = (opts, url) => fx.client(opts, url);

function requireServer() {
  if (fx.startError) {
    assert.fail(`roomcast dev refused a policy with history/presence, so it lacks that support: ${fx.startError.message}`);
  }
}

function requireHistory(ack) {
  if (typeof ack.epoch !== "string" || typeof ack.offset !== "number") {
    assert.fail(`the server does not support history yet: a join ack in a history room has no epoch/offset: ${JSON.stringify(ack)}`);
  }
}

test("history rooms: join acks carry offset and epoch; events and send acks carry offsets", async () => {
  requireServer();
  const r = room("hist");
  const a = client();
  const b = client();
  const first = await a.join(r);
  requireHistory(first);
  await b.join(r);
  const got = collect(b, r, "m");
  const s1 = await a.send(r, "m", 1);
  const s2 = await a.send(r, "m", 2);
  assert.equal(s2.offset, s1.offset + 1);
  await waitFor(() => got.length === 2, "two events");
  assert.deepEqual(
    got.map((g) => [g.frame.offset, g.frame.epoch]),
    [
      [s1.offset, first.epoch],
      [s2.offset, first.epoch],
    ],
  );
  assert.deepEqual(b.position(r), { offset: s2.offset, epoch: first.epoch });
});

test("after a drop the rejoin recovers the missed events, in order, once each", async () => {
  requireServer();
  const r = room("hist");
  const a = client();
  // b's second connection attempt waits until a has sent the events b misses.
  let calls = 0;
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const b = client({ token: async () => (calls++ ? gate.then(() => null) : null), reconnect: { initialDelayMs: 10 } });
  requireHistory(await a.join(r));
  await b.join(r);
  const got = collect(b, r, "m");
  const rejoins = [];
  b.onRejoin((rm, info) => rejoins.push([rm, info]));
  await a.send(r, "m", 1);
  await waitFor(() => got.length === 1, "event 1");
  await drop(fx.server, await connectionIdOf(a, b, r));
  await state(b, "reconnecting");
  await a.send(r, "m", 2);
  const last = await a.send(r, "m", 3);
  release();
  await state(b, "open");
  await waitFor(() => got.length >= 3, "the missed events");
  assert.deepEqual(
    got.map((g) => g.data),
    [1, 2, 3],
  );
  assert.equal(rejoins.length, 1);
  assert.deepEqual(rejoins[0], [r, { history: true, recovered: true, offset: last.offset, epoch: last.epoch ?? got[2].frame.epoch }]);
  // Events flow live again after the recovery.
  await a.send(r, "m", 4);
  await waitFor(() => got.length === 4, "event 4");
  assert.deepEqual(
    got.map((g) => g.data),
    [1, 2, 3, 4],
  );
});

test("a since the server cannot serve gives recovered: false", async () => {
  requireServer();
  const r = room("hist");
  const a = client();
  requireHistory(await a.join(r));
  await a.send(r, "m", 1).catch(() => {});
  const b = client();
  const ack = await b.join(r, { since: { offset: 0, epoch: "an-epoch-that-never-was" } });
  requireHistory(ack);
  assert.equal(ack.recovered, false);
  assert.deepEqual(b.position(r), { offset: ack.offset, epoch: ack.epoch });
});

test("history returns stored events oldest first; before pages back", async () => {
  requireServer();
  const r = room("hist");
  const a = client();
  const b = client();
  requireHistory(await a.join(r));
  await b.join(r);
  const offsets = [];
  for (let i = 1; i <= 5; i++) offsets.push((await a.send(r, "m", i)).offset);
  const all = await b.history(r, { limit: 10 });
  assert.equal(all.room, r);
  assert.equal(typeof all.epoch, "string");
  assert.deepEqual(
    all.events.map((e) => [e.offset, e.data]),
    offsets.map((o, i) => [o, i + 1]),
  );
  const page = await b.history(r, { limit: 2, before: offsets[3] });
  assert.deepEqual(
    page.events.map((e) => e.data),
    [2, 3],
  );
});

test("presence lists members; presence events tell joins and leaves", async () => {
  requireServer();
  const r = room("hist");
  const a = client();
  requireHistory(await a.join(r));
  const changes = [];
  a.onPresence(r, (c) => changes.push([c.change, c.member.connectionId !== undefined]));
  const b = client();
  await b.join(r);
  const p = await a.presence(r);
  assert.equal(p.room, r);
  assert.equal(p.count, 2);
  assert.equal(p.members.reduce((n, m) => n + m.connections, 0), 2);
  await waitFor(() => changes.length >= 1, "a presence join");
  await b.leave(r);
  await waitFor(() => changes.length >= 2, "a presence leave");
  assert.deepEqual(changes.slice(0, 2), [
    ["join", true],
    ["leave", true],
  ]);
});
