//! Every reason Switchyard closes a socket, and the one place each becomes a close code and
//! a reason text (RFC 6455 §7.4: 1000–1011 from the protocol, 4000–4999 ours).
//!
//! Our application codes: 4401 (log in: no user, or the session ended), 4403 (this user may
//! not be here), 4008 (the socket could not keep up; the client reconnects and recovers).
//! A hook may ask for any code in 1000 or 3000–4999 with its own reason.

use std::borrow::Cow;

use crate::protocol;

/// Why a socket is being closed by us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The route needs a user and there is none (4401).
    LoginRequired,
    /// The user lacks the flag the route needs (4403).
    NotAllowed,
    /// Revalidation found the session no longer gives the same user (4401).
    SessionEnded,
    /// Django (through the admin API, the broker or a response seen on the wire) revoked
    /// the session or the user (4401).
    Revoked,
    /// The outgoing queue reached its bound under the `disconnect` policy (4008).
    SlowReader,
    /// The server is shutting down (1001).
    ShuttingDown,
    /// A reload removed the socket's route or one of its channels (1012, service restart:
    /// the client reconnects under the new rules).
    Reloaded,
    /// Nothing was heard from the peer, not even a pong, for `idle_timeout` (1001).
    IdleTimeout,
    /// A binary frame on a json route (1003).
    BinaryFrame,
    /// Invalid UTF-8 in a text message (1007).
    InvalidUtf8,
    /// A message over the route's `max_message_size` (1009).
    MessageTooBig,
    /// The peer broke the framing rules (1002).
    ProtocolError,
    /// `on_connect` could not be run (1011).
    HookFailed,
    /// A `view` route socket has `max_in_flight` messages waiting for its view (1013).
    Overloaded,
    /// `on_connect` refused the socket with its own code and reason.
    Refused { code: u16, reason: String },
}

impl CloseReason {
    /// The close code sent on the wire.
    pub fn code(&self) -> u16 {
        match self {
            Self::LoginRequired | Self::SessionEnded | Self::Revoked => 4401,
            Self::NotAllowed => 4403,
            Self::SlowReader => 4008,
            Self::ShuttingDown | Self::IdleTimeout => 1001,
            Self::Reloaded => 1012,
            Self::BinaryFrame => 1003,
            Self::InvalidUtf8 => 1007,
            Self::MessageTooBig => 1009,
            Self::ProtocolError => 1002,
            Self::HookFailed => 1011,
            Self::Overloaded => 1013,
            Self::Refused { code, .. } => *code,
        }
    }

    /// True for the closes a peer's protocol error causes (1002, 1003, 1007, 1009): its
    /// further frames are not read, only drained (see `connection::linger`).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Self::ProtocolError | Self::BinaryFrame | Self::InvalidUtf8 | Self::MessageTooBig)
    }

    /// The reason text sent on the wire (at most 123 bytes, RFC 6455 §5.5).
    pub fn reason(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            Self::LoginRequired => "login required",
            Self::NotAllowed => "not allowed",
            Self::SessionEnded => "session ended",
            Self::Revoked => "logged out",
            Self::SlowReader => "slow reader: too much queued",
            Self::ShuttingDown => "server shutting down",
            Self::Reloaded => "reloaded: this route or channel is gone",
            Self::IdleTimeout => "idle timeout",
            Self::BinaryFrame => "binary frames are not accepted here",
            Self::InvalidUtf8 => "invalid UTF-8 in a text message",
            Self::MessageTooBig => "message too big",
            Self::ProtocolError => "protocol error",
            Self::HookFailed => "on_connect failed",
            Self::Overloaded => "too many messages waiting for the view",
            Self::Refused { reason, .. } => return Cow::Borrowed(protocol::truncated(reason, 123)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_codes_tell_login_from_forbidden_from_slow() {
        assert_eq!(CloseReason::LoginRequired.code(), 4401);
        assert_eq!(CloseReason::Revoked.code(), 4401);
        assert_eq!(CloseReason::NotAllowed.code(), 4403);
        assert_eq!(CloseReason::SlowReader.code(), 4008);
    }

    #[test]
    fn a_hook_reason_is_cut_to_the_frame_limit() {
        let long = "é".repeat(100);
        let reason = CloseReason::Refused { code: 4000, reason: long };
        assert!(reason.reason().len() <= 123);
        assert_eq!(reason.code(), 4000);
    }
}
