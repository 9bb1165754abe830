/** What the client reads from a JWT's payload, without verifying it (only the server can). */
export interface TokenInfo {
  /** When it stops being valid, on this machine's clock, if the token says. */
  expiresAt?: number | undefined;
  /** Its `sub`: the `userId` the server gives the connection (`null` without a token). */
  user: string | null;
}

/**
 * Reads a token's payload. The expiry is its `exp`, and with `iat` no later than its
 * lifetime `exp - iat` counted from `obtainedAt`; a local clock so far ahead that the
 * token looks expired when it was obtained falls back to the lifetime alone. No
 * expiry for anything that is not a JWT with a numeric `exp`.
 */
export function readToken(token: string | null | undefined, obtainedAt: number): TokenInfo {
  const payload = token?.split(".")[1];
  let claims: { exp?: unknown; iat?: unknown; sub?: unknown } = {};
  try {
    const base64 = payload!.replace(/-/g, "+").replace(/_/g, "/");
    claims = JSON.parse(atob(base64 + "===".slice((base64.length + 3) % 4))) ?? {};
  } catch {
    // Not a JWT (or no token): nothing to read.
  }
  const { exp, iat, sub } = claims;
  const user = token && typeof sub === "string" ? sub : null;
  if (typeof exp !== "number") return { user };
  const byClock = exp * 1000;
  if (typeof iat !== "number" || iat > exp) return { user, expiresAt: byClock };
  const byLifetime = obtainedAt + (exp - iat) * 1000;
  return { user, expiresAt: byClock <= obtainedAt ? byLifetime : Math.min(byClock, byLifetime) };
}
