//! Close codes (RFC 6455) the gateway reports.

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
/// Sent for a binary frame, which API Gateway does not accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Reported for a client close frame without a code.
pub const NO_STATUS: u16 = 1005;
/// Reported when the client vanished without a close frame.
pub const ABNORMAL: u16 = 1006;
pub const INVALID_PAYLOAD: u16 = 1007;
/// Sent to a connection that stopped reading: its unsent frames went over the
/// outbound byte budget, or a write made no progress within the write timeout.
pub const POLICY_VIOLATION: u16 = 1008;
pub const MESSAGE_TOO_BIG: u16 = 1009;
