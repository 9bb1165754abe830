// history() and presence() follow the pages of replies the server cut to its size
// bound (128,000 bytes), against a real `roomcast dev`.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { AUTH_FLAGS, room, serverPerFile, token } from "./support.js";

const POLICIES = JSON.stringify({
  default: { join: "anyone", send: "anyone" },
  namespaces: { hist: { history: { size: 100, ttlSecs: 600 }, presence: true } },
});

const fx = serverPerFile([...AUTH_FLAGS, "--policies", POLICIES]);
const client = (sub) => fx.client({ token: token({ sub }) });

test("history returns every event asked for, across replies the server cut", async () => {
  const r = room("hist");
  const a = client("alice");
  await a.join(r);
  const sent = [];
  // Five events of 30 KB: 150 KB, more than one reply holds.
  for (let i = 0; i < 5; i++) sent.push((await a.send(r, "m", `${i}`.repeat(30_000))).offset);
  const all = await a.history(r, { limit: 100 });
  assert.deepEqual(
    all.events.map((e) => [e.offset, e.data[0]]),
    sent.map((o, i) => [o, `${i}`]),
  );
  assert.equal(all.truncated, undefined);
  assert.equal(all.before, undefined);
  const newest = await a.history(r, { limit: 2 });
  assert.deepEqual(
    newest.events.map((e) => e.offset),
    sent.slice(3),
  );
});

/** A bare connection of user `sub`, joined to `r`. */
async function member(r, sub) {
  const ws = new WebSocket(`${fx.server.url}?token=${token({ sub })}`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  ws.send(JSON.stringify({ action: "join", room: r, id: 1 }));
  const ack = await new Promise((resolve) => ws.once("message", (m) => resolve(JSON.parse(m.toString()))));
  assert.equal(ack.type, "ack", JSON.stringify(ack));
  return ws;
}

test("presence lists every member, across replies the server cut", async () => {
  const r = room("hist");
  const a = client("alice");
  await a.join(r);
  // 460 users with 256-byte ids: about 132 KB of members.
  const subs = Array.from({ length: 460 }, (_, i) => `${i}`.padStart(4, "0").padEnd(256, "u"));
  const sockets = [];
  try {
    for (let i = 0; i < subs.length; i += 20) {
      sockets.push(...(await Promise.all(subs.slice(i, i + 20).map((s) => member(r, s)))));
    }
    const p = await a.presence(r);
    assert.equal(p.count, subs.length + 1);
    assert.equal(p.members.length, subs.length + 1);
    assert.deepEqual(
      p.members.map((m) => m.userId).sort(),
      [...subs, "alice"].sort(),
    );
    assert.ok(p.members.every((m) => m.connections === 1));
    assert.equal(p.truncated, undefined);
  } finally {
    sockets.forEach((ws) => ws.close());
  }
});
