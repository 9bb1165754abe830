// The client learns its connection id from the server's pong: the id other members
// see as `from.connectionId`, and a new one after a reconnect.
import assert from "node:assert/strict";
import { test } from "node:test";
import { connectionIdOf, drop, room, serverPerFile, state, waitFor } from "./support.js";

const fx = serverPerFile();
const client = (opts) => fx.client(opts);

test("connectionId is the id other members see, and changes with the connection", async () => {
  const r = room();
  const a = client({ reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
  const b = client();
  await Promise.all([a.join(r), b.join(r)]);
  await waitFor(() => a.connectionId !== undefined, "a's connection id");
  const seen = await connectionIdOf(b, a, r);
  assert.equal(a.connectionId, seen);

  const first = a.connectionId;
  await drop(fx.server, first);
  await waitFor(() => a.connectionId !== undefined && a.connectionId !== first, "a new connection id");
  await state(a, "open");
  assert.equal(await connectionIdOf(b, a, r), a.connectionId);
});
