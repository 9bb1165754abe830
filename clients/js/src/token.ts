/**
 * When a JWT stops being valid, on this machine's clock, read from the token's payload
 * without verifying it (only the server can): its `exp`, and with `iat` no later than
 * its lifetime `exp - iat` counted from `obtainedAt`. A local clock so far ahead that
 * the token looks expired when it was obtained falls back to the lifetime alone.
 * `undefined` for anything that is not a JWT with a numeric `exp`.
 */
export function tokenExpiry(token: string | null | undefined, obtainedAt: number): number | undefined {
  const payload = token?.split(".")[1];
  if (!payload) return undefined;
  let claims: { exp?: unknown; iat?: unknown };
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    claims = JSON.parse(atob(base64 + "===".slice((base64.length + 3) % 4)));
  } catch {
    return undefined;
  }
  const { exp, iat } = claims ?? {};
  if (typeof exp !== "number") return undefined;
  const byClock = exp * 1000;
  if (typeof iat !== "number" || iat > exp) return byClock;
  const byLifetime = obtainedAt + (exp - iat) * 1000;
  return byClock <= obtainedAt ? byLifetime : Math.min(byClock, byLifetime);
}
