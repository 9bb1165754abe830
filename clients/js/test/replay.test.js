// Recovery over packed `replay` frames, and recovery beyond the server's replay bound
// (4 MiB per join: the ack says `recovered: false` with `replayedTo` and the client
// joins again from there), against a real `roomcast dev`. The client's WebSocket is
// `ws` with a counting wrapper: what the tests count are the frames that really
// crossed the socket.
import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocket } from "ws";
import { collect, outage, serverPerFile, state, waitFor } from "./support.js";

const POLICIES = JSON.stringify({
  default: { join: "anyone", send: "anyone", rateLimit: { limit: 5000, windowSecs: 10 } },
  namespaces: { hist: { history: { size: 1000, ttlSecs: 600 } } },
});

const fx = serverPerFile(["--policies", POLICIES]);

/** A `ws` WebSocket that records the type and room of every frame sent and received. */
function counting() {
  const sent = [];
  const received = [];
  class Counting extends WebSocket {
    set onmessage(handler) {
      super.onmessage = (ev) => {
        const frame = JSON.parse(ev.data);
        received.push({ type: frame.type, room: frame.room, events: Array.isArray(frame.events) ? frame.events.length : 0 });
        handler(ev);
      };
    }
    get onmessage() {
      return super.onmessage;
    }
    send(data) {
      const frame = JSON.parse(data);
      sent.push({ action: frame.action, room: frame.room, since: frame.since, pack: frame.pack });
      super.send(data);
    }
  }
  return { WebSocket: Counting, sent, received };
}

/** An outage (support.js) whose `b` counts its frames from its second connection on. */
async function counted() {
  const socket = counting();
  const o = await outage(fx, { WebSocket: socket.WebSocket });
  assert.equal(typeof o.first.epoch, "string", "a history room's join ack carries an epoch");
  socket.sent.length = socket.received.length = 0;
  return { ...o, socket };
}

/** The frames `b` received in room `r` that carried events, and how many events they held. */
function eventFrames(socket, r) {
  const frames = socket.received.filter((f) => f.room === r && (f.type === "event" || f.type === "replay"));
  return { frames: frames.length, replays: frames.filter((f) => f.type === "replay").length };
}

const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

test("a recovery asks for packed replay and delivers every missed event once, in order, in fewer frames", async () => {
  const { r, a, b, got, rejoins, socket, release } = await counted();
  const missed = 60;
  for (const i of range(missed)) await a.send(r, "m", i);
  release();
  await state(b, "open");
  await waitFor(() => got.length >= missed, "the missed events");
  const joins = socket.sent.filter((f) => f.action === "join" && f.room === r);
  assert.equal(joins.length, 1);
  assert.equal(joins[0].pack, true);
  assert.equal(typeof joins[0].since?.offset, "number");
  const { frames, replays } = eventFrames(socket, r);
  assert.ok(replays >= 1, "the missed events came in replay frames");
  assert.ok(frames < missed, `${missed} events came in ${frames} frames`);
  assert.equal(rejoins.length, 1);
  assert.equal(rejoins[0].recovered, true);
  // A live event after the recovery: everything before it arrived exactly once.
  await a.send(r, "m", missed + 1);
  await waitFor(() => got.length >= missed + 1, "the live event");
  assert.deepEqual(
    got.map((g) => g.data),
    range(missed + 1),
  );
  assert.deepEqual(
    got.map((g) => g.frame.offset),
    got.map((_, i) => got[0].frame.offset + i),
  );
});

test("a recovery over the server's replay bound continues from replayedTo until every event is delivered once", async () => {
  const { r, a, b, got, rejoins, socket, release } = await counted();
  // 200 events of about 30 KB: some 6 MB, over the 4 MiB one join replays.
  const missed = 200;
  const pad = "x".repeat(30_000);
  for (const i of range(missed)) await a.send(r, "m", { i, pad });
  release();
  await state(b, "open");
  await waitFor(() => got.length >= missed, "the missed events", 120_000);
  const joins = socket.sent.filter((f) => f.action === "join" && f.room === r);
  assert.ok(joins.length >= 2, `the replay was cut short and the client joined again (${joins.length} joins)`);
  for (const [i, join] of joins.entries()) {
    assert.equal(join.pack, true);
    if (i) assert.ok(join.since.offset > joins[i - 1].since.offset, "each join continues further on");
  }
  assert.equal(rejoins.length, 1);
  assert.equal(rejoins[0].recovered, true);
  await a.send(r, "m", { i: missed + 1 });
  await waitFor(() => got.length >= missed + 1, "the live event");
  assert.deepEqual(
    got.map((g) => g.data.i),
    range(missed + 1),
  );
  assert.ok(eventFrames(socket, r).frames < missed, "the replay was packed");

  // join(room, {since}) from the app continues the same way before it resolves.
  const c = fx.client();
  const gotC = collect(c, r, "m");
  const ack = await c.join(r, { since: { offset: got[0].frame.offset - 1, epoch: got[0].frame.epoch } });
  assert.equal(ack.recovered, true);
  assert.equal(ack.replayedTo, undefined);
  assert.deepEqual(
    gotC.map((g) => g.data.i),
    range(missed + 1),
  );
});
