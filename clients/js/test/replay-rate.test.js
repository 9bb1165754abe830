// A long recovery under a tight rate limit: the server charges a replay to the rate
// limit (up to one window's budget), so the join that continues from `replayedTo`
// can be refused with `rate_limited`; the client waits for the window to turn and
// carries on, and every missed event still arrives once, in order. Against a real
// `roomcast dev`; the missed events come from the broadcast function (Invoke API),
// which no connection's rate limit counts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { outage, serverPerFile, waitFor } from "./support.js";

// Windows of 4 s: the continuation lands in the window its replay was charged to.
const POLICIES = JSON.stringify({
  default: { join: "anyone", send: "anyone", rateLimit: { limit: 40, windowSecs: 4 } },
  namespaces: { hist: { history: { size: 1000, ttlSecs: 600 } } },
  connection: { limit: 40, closeAfter: 3 },
});

const fx = serverPerFile(["--policies", POLICIES]);

async function broadcast(r, data) {
  const url = new URL(fx.server.url);
  const res = await fetch(`http://${url.host}/2015-03-31/functions/broadcast/invocations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ room: r, event: "m", data }),
  });
  assert.equal(res.status, 200, await res.text());
}

test("a recovery continued under a spent rate limit waits for the window and delivers every event once", async () => {
  const { r, b, got, rejoins, release } = await outage(fx);
  // 200 events of about 30 KB: some 6 MB, more than one join replays (4 MiB), whose
  // charge (capped at the limit, 40) spends the window.
  const missed = 200;
  const pad = "x".repeat(30_000);
  for (let i = 1; i <= missed; i++) await broadcast(r, { i, pad });
  release();
  const errors = [];
  b.onError((e) => errors.push(`${e.code}: ${e.message}`));
  await waitFor(() => got.length >= missed, "the missed events", 90_000).catch((e) => {
    throw new Error(`${e.message}; got ${got.length}, rejoins ${JSON.stringify(rejoins)}, errors ${JSON.stringify(errors)}, state ${b.state}`);
  });
  assert.deepEqual(
    got.map((g) => g.data.i),
    Array.from({ length: missed }, (_, i) => i + 1),
  );
  assert.equal(rejoins.length, 1);
  assert.equal(rejoins[0].recovered, true);
  assert.equal(b.state, "open");
});
