/**
 * Codes the server sends in `error` frames (docs/protocol.md), plus the client's own:
 * `timeout` (no ack within `ackTimeoutMs`), `closed` (the client was closed, gave up
 * reconnecting, or the connection dropped before a send's ack), `queue_full` (more than
 * `maxQueue` requests waiting for a connection), `invalid` (refused before sending:
 * a bad room or event name, data that is not JSON, bad options), `token` (the token
 * function threw), `refused` (a handshake closed before it opened), `gateway` (an API
 * Gateway error frame that names no request).
 */
export type ErrorCode =
  | "bad_request"
  | "unknown_action"
  | "not_member"
  | "too_large"
  | "forbidden"
  | "rate_limited"
  | "token_expired"
  | "internal"
  | "timeout"
  | "closed"
  | "queue_full"
  | "invalid"
  | "token"
  | "refused"
  | "gateway"
  | (string & {});

/** Every failure the client reports: match on `code`, `message` is for humans. */
export class RoomcastError extends Error {
  override name = "RoomcastError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The room the failed request named, when it named one. */
    readonly room?: string,
  ) {
    super(message);
  }
}
