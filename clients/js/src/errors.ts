/**
 * Codes the server sends in `error` frames (docs/protocol.md), plus the client's own:
 * `timeout` (no reply within the request's `timeout` from the call, or within
 * `ackTimeoutMs` of sending), `aborted` (the request's `signal` was aborted), `closed`
 * (the client was closed, gave up reconnecting, or the connection dropped before a
 * send's ack), `unauthorized` (the handshake was refused for the token twice in a row:
 * the client stopped), `queue_full` (more than `maxQueue` requests waiting for a
 * connection), `invalid` (refused before sending: a bad room or event name, data that
 * is not JSON, bad options), `token` (the token function threw; `cause` is what it
 * threw), `refused` (a handshake closed before it opened), `gateway` (an API Gateway
 * error frame that names no request).
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
  | "aborted"
  | "closed"
  | "unauthorized"
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
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
