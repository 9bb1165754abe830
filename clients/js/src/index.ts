//! @roomcast/client: a client for roomcast rooms, for browsers and Node 20+.
//!
//! Layout:
//! - client.ts: `connect` and `Roomcast`: connections (reconnect with backoff,
//!   make-before-break rotation, pings), the request queue and ack matching, room
//!   rejoin and recovery (deduplication by offset), listeners.
//! - token.ts: when a JWT expires and whose it is, read from its payload (not verified).
//! - validate.ts: the server's room and event name rules, checked before sending.
//! - errors.ts: `RoomcastError` and its codes.
//! - types.ts: options, frames and listener payloads.
export { connect, Roomcast } from "./client.js";
export { RoomcastError } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export type * from "./types.js";
