// Tokens against a real `roomcast dev` that verifies HS256 tokens: the bearer
// subprotocol and the query parameter, the token function called on every attempt,
// a refused handshake retried with a fresh token, and token_expired mid-connection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AUTH_FLAGS, collect, rejectsWith, room, serverPerFile, sleep, startServer, state, token, waitFor } from "./support.js";

const fx = serverPerFile(AUTH_FLAGS);
const client = (opts, url) => fx.client(opts, url);

test("an async token function's token, in the bearer subprotocol, identifies the sender", async () => {
  const r = room();
  let calls = 0;
  const alice = client({
    token: async () => {
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return token({ sub: "alice" });
    },
  });
  const bob = client({ token: token({ sub: "bob" }), tokenTransport: "query" });
  const got = collect(bob, r, "hi");
  await Promise.all([alice.join(r), bob.join(r)]);
  await alice.send(r, "hi", "from alice");
  await waitFor(() => got.length === 1, "alice's event at bob");
  assert.equal(got[0].frame.from.userId, "alice");
  assert.equal(calls, 1);
});

test("a handshake refused for the token twice in a row stops the client as unauthorized; reconnect() resumes", async () => {
  let signedIn = false;
  const anon = client({
    token: () => (signedIn ? token({ sub: "frank" }) : null),
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
  });
  const errors = [];
  anon.onError((e) => errors.push(e.code));
  const states = [];
  anon.onState((s) => states.push(s));
  const r = room();
  const waiting = rejectsWith(anon.join(r), "unauthorized");
  await state(anon, "unauthorized");
  // One error for the outage, one for stopping; not one per attempt.
  assert.deepEqual(errors, ["refused", "unauthorized"]);
  assert.equal((await waiting).room, r);
  await rejectsWith(anon.send(r, "e", 1), "unauthorized");
  // Signed in: reconnect() starts again with the same listeners.
  signedIn = true;
  anon.reconnect();
  await anon.join(r);
  assert.deepEqual(states, ["unauthorized", "connecting", "open"]);
});

test("the token function's exception is the cause of the one token error of the outage", async () => {
  const down = new Error("the login service is down");
  let calls = 0;
  const c = client({
    token: () => {
      if (calls++ < 3) throw down;
      return token({ sub: "gina" });
    },
    reconnect: { initialDelayMs: 10, maxDelayMs: 20 },
  });
  const errors = [];
  c.onError((e) => errors.push(e));
  await c.join(room());
  assert.deepEqual(errors.map((e) => e.code), ["token"]);
  assert.equal(errors[0].cause, down);
});

test("the debug log tells attempts, states and frames, never tokens or data", async () => {
  const lines = [];
  const t = token({ sub: "hank" });
  const c = client({ token: t, debug: (line) => lines.push(line) });
  const r = room();
  await c.join(r);
  await c.send(r, "e", { secret: "body-text-never-logged" });
  c.close();
  const log = lines.join("\n");
  for (const want of ["connecting (attempt 1)", "state open", `send join ${r}`, `send send ${r}`, "received ack", "state closed"]) {
    assert.ok(log.includes(want), `"${want}" in the log:\n${log}`);
  }
  for (const secret of [t, t.split(".")[1], "body-text-never-logged", "hank"]) assert.ok(!log.includes(secret));
});

test("a refused token is replaced by calling the token function again", async () => {
  const tokens = [token({ sub: "carol" }, "a-different-secret-of-at-least-32-bytes!"), token({ sub: "carol" })];
  let calls = 0;
  const carol = client({ token: () => tokens[Math.min(calls++, 1)], reconnect: { initialDelayMs: 10 } });
  const errors = [];
  carol.onError((e) => errors.push(e));
  await carol.join(room());
  assert.equal(calls, 2);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["refused"],
  );
  // The token never appears in what the client reports.
  for (const e of errors) assert.ok(!e.message.includes(tokens[0]) && !e.message.includes("eyJ"));
});

test("token_expired: when the refresh could not get a token, the server refuses the expired one; the client reconnects and the send goes through", async () => {
  const r = room();
  const short = Math.floor(Date.now() / 1000) + 3;
  // The token service is down from the first token until the test says otherwise, so
  // the refresh ahead of exp fails and the connection outlives its token.
  let up = false;
  let calls = 0;
  const dave = client({
    token: () => {
      if (calls++ === 0) return token({ sub: "dave", exp: short });
      if (!up) throw new Error("the token service is down");
      return token({ sub: "dave" });
    },
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
  });
  const erin = client({ token: token({ sub: "erin" }) });
  const got = collect(erin, r, "late");
  const errors = [];
  dave.onError((e) => errors.push(e.code));
  await Promise.all([dave.join(r), erin.join(r)]);
  // The server allows no leeway: wait until the first token is past its exp.
  await waitFor(() => Date.now() / 1000 > short + 1, "the first token's expiry");
  assert.equal(dave.state, "open", "the refresh failed: the old connection is still the one in use");
  const sending = dave.send(r, "late", "after expiry");
  await waitFor(() => errors.includes("token_expired"), "the server's token_expired");
  up = true;
  const ack = await sending;
  assert.equal(ack.recipients, 1);
  assert.deepEqual(errors, ["token", "token_expired"], "the failed refresh once, then the server's refusal");
  await waitFor(() => got.length === 1, "the event at erin");
  assert.equal(got[0].frame.from.userId, "dave");
  assert.equal(dave.state, "open");
});

test("a static token is not refreshed: once it expires the server refuses it, and the client stops as unauthorized", async () => {
  const short = Math.floor(Date.now() / 1000) + 2;
  const frank = client({ token: token({ sub: "frank", exp: short }), reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
  const errors = [];
  frank.onError((e) => errors.push(e.code));
  const r = room();
  await frank.join(r);
  await waitFor(() => Date.now() / 1000 > short + 1, "the token's expiry");
  const e = await rejectsWith(frank.send(r, "e", 1), "unauthorized");
  assert.equal(e.room, r);
  assert.equal(frank.state, "unauthorized");
  assert.deepEqual(errors, ["token_expired", "refused", "unauthorized"]);
});

test("tokens of 3 s: refreshed ahead of exp, make-before-break; 10 s of sending loses no event", async () => {
  // No history in this room: an event missed while a connection is expired is lost.
  const policies = { default: { join: "anyone", send: "anyone", rateLimit: { limit: 5000, windowSecs: 10 } } };
  const server = await startServer([...AUTH_FLAGS, "--policies", JSON.stringify(policies)]);
  const calls = { ivy: 0, jack: 0 };
  const short = (sub) => () => {
    calls[sub]++;
    return token({ sub, exp: Math.floor(Date.now() / 1000) + 3 });
  };
  const opts = { tokenRefreshMarginMs: 1000, reconnect: { initialDelayMs: 10 } };
  const ivy = client({ ...opts, token: short("ivy") }, server.url);
  const jack = client({ ...opts, token: short("jack") }, server.url);
  try {
    const r = room();
    await Promise.all([ivy.join(r), jack.join(r)]);
    const errors = [];
    const states = [];
    for (const c of [ivy, jack]) {
      c.onError((e) => errors.push(e.code));
      c.onState((s) => states.push(s));
    }
    const atIvy = collect(ivy, r, "n");
    const atJack = collect(jack, r, "n");
    const sent = { ivy: 0, jack: 0 };
    const sender = async (c, who) => {
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        await c.send(r, "n", ++sent[who]);
        await sleep(10);
      }
    };
    await Promise.all([sender(ivy, "ivy"), sender(jack, "jack")]);
    await waitFor(() => atJack.length >= sent.ivy && atIvy.length >= sent.jack, "every event at the other member");
    // Each of the sender's events exactly once, and none of the receiver's own (its
    // other connection receives them during a handover).
    const tally = (got, from, count) => {
      const times = new Map();
      for (const g of got) if (g.frame.from.userId === from) times.set(g.data, (times.get(g.data) ?? 0) + 1);
      const all = Array.from({ length: count }, (_, i) => i + 1);
      return {
        missed: all.filter((n) => !times.has(n)),
        twice: all.filter((n) => times.get(n) > 1),
        own: got.filter((g) => g.frame.from.userId !== from).map((g) => g.data),
      };
    };
    const none = { missed: [], twice: [], own: [] };
    assert.deepEqual(tally(atJack, "ivy", sent.ivy), none, `jack, of ivy's ${sent.ivy} events`);
    assert.deepEqual(tally(atIvy, "jack", sent.jack), none, `ivy, of jack's ${sent.jack} events`);
    // Ten seconds of 3-second tokens: at least four fresh tokens each, never expired.
    assert.ok(calls.ivy >= 5 && calls.jack >= 5, `token calls: ${JSON.stringify(calls)}`);
    assert.deepEqual(errors, [], "no token_expired, no refusal");
    assert.deepEqual(states, [], "both stayed open");
  } finally {
    ivy.close();
    jack.close();
    await server.stop();
  }
});
