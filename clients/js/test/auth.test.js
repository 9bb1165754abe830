// Tokens against a real `roomcast dev` that verifies HS256 tokens: the bearer
// subprotocol and the query parameter, the token function called on every attempt,
// a refused handshake retried with a fresh token, and token_expired mid-connection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AUTH_FLAGS, collect, room, serverPerFile, state, token, waitFor } from "./support.js";

const fx = serverPerFile(AUTH_FLAGS);
const client = (opts, url) => fx.client(opts, url);

test("an async token function's token, in the bearer subprotocol, identifies the sender", async () => {
  const r = room();
  let calls = 0;
  const alice = client({
    token: async () => {
      calls++;
      await new Promise((ok) => setTimeout(ok, 5));
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

test("without a token the handshake is refused and the client keeps trying", async () => {
  const anon = client({ reconnect: { initialDelayMs: 10, maxDelayMs: 50, maxAttempts: 3 } });
  const errors = [];
  anon.onError((e) => errors.push(e.code));
  await state(anon, "closed");
  assert.equal(errors.filter((c) => c === "refused").length, 4, `errors: ${errors}`);
  assert.ok(errors.includes("closed"));
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

test("token_expired: the client reconnects with a fresh token and the send goes through", async () => {
  const r = room();
  const short = Math.floor(Date.now() / 1000) + 3;
  let calls = 0;
  const dave = client({
    token: () => (calls++ === 0 ? token({ sub: "dave", exp: short }) : token({ sub: "dave" })),
    reconnect: { initialDelayMs: 10 },
  });
  const erin = client({ token: token({ sub: "erin" }) });
  const got = collect(erin, r, "late");
  const errors = [];
  dave.onError((e) => errors.push(e.code));
  await Promise.all([dave.join(r), erin.join(r)]);
  // The server allows no leeway: wait until the first token is past its exp.
  await waitFor(() => Date.now() / 1000 > short + 1, "the first token's expiry");
  const ack = await dave.send(r, "late", "after expiry");
  assert.equal(ack.recipients, 1);
  assert.ok(errors.includes("token_expired"), `errors: ${errors}`);
  assert.ok(calls >= 2, `token function called ${calls} times`);
  await waitFor(() => got.length === 1, "the event at erin");
  assert.equal(got[0].frame.from.userId, "dave");
  assert.equal(dave.state, "open");
});
