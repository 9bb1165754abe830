import { RoomcastError } from "./errors.js";

// The server's rules (crates/core/src/protocol.rs: validate_room, event_field), checked
// here so a bad name fails before it costs a frame against the rate limit.
const ROOM = /^[A-Za-z0-9_.:@-]{1,128}$/;
// Rust's char::is_control: the C0 and C1 control characters.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const encoder = /* @__PURE__ */ new TextEncoder();

export const byteLength = (s: string): number => encoder.encode(s).length;

export function checkRoom(room: unknown): asserts room is string {
  if (typeof room !== "string" || !ROOM.test(room)) {
    throw new RoomcastError("invalid", "a room name is 1 to 128 characters of A-Z a-z 0-9 _ . : @ -");
  }
}

export function checkEvent(event: unknown): asserts event is string {
  if (typeof event !== "string" || !event || byteLength(event) > 128 || CONTROL.test(event)) {
    throw new RoomcastError("invalid", "an event name is 1 to 128 bytes of UTF-8 without control characters");
  }
}

export function checkCount(value: unknown, what: string, min: number): asserts value is number {
  if (!Number.isSafeInteger(value) || (value as number) < min) {
    throw new RoomcastError("invalid", `${what} must be an integer of at least ${min}`);
  }
}
