// What the client reads from a token's payload (unverified): its expiry on this
// machine's clock, and its `sub`, the user id the server gives the connection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { readToken } from "../dist/token.js";
import { token } from "./support.js";

const now = 1_800_000_000_000;
const secs = now / 1000;

test("exp gives the expiry; iat bounds it by the lifetime counted from when the token arrived", () => {
  assert.deepEqual(readToken(token({ sub: "ann", iat: secs, exp: secs + 60 }), now), { user: "ann", expiresAt: now + 60_000 });
  // A clock 30 s behind the issuer's: exp alone would leave 90 s; the lifetime says 60.
  assert.equal(readToken(token({ iat: secs + 30, exp: secs + 90 }), now).expiresAt, now + 60_000);
  // A clock 10 minutes ahead: the token looks expired by exp; its lifetime counts.
  assert.equal(readToken(token({ iat: secs - 600, exp: secs - 540 }), now).expiresAt, now + 60_000);
  // Without iat (or with a nonsensical one), exp as it is.
  assert.equal(readToken(token({ iat: undefined, exp: secs + 5 }), now).expiresAt, now + 5000);
  assert.equal(readToken(token({ iat: secs + 99, exp: secs + 5 }), now).expiresAt, now + 5000);
});

test("no expiry without a numeric exp, or without a JWT; no user without a token or sub", () => {
  assert.deepEqual(readToken(token({ exp: "soon" }), now), { user: "alice" });
  assert.deepEqual(readToken(token({ sub: undefined }), now).user, null);
  for (const t of [null, undefined, "", "opaque", "a.!!!.c", "a.bnVsbA.c"]) assert.deepEqual(readToken(t, now), { user: null });
});
