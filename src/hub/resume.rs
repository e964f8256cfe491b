//! Resume tokens: the `welcome` hands each json socket an unguessable token; when the
//! socket closes (for any reason but a revocation), its subscriptions are parked under the
//! token for `resume_ttl`, each with the position of the last event written to it. A
//! reconnect with `?resume=<token>`, as the same user, takes them back once: each channel
//! is rejoined from that position (replaying what was missed, or `recovered: false`).
//!
//! Per node (DESIGN.md, "Publishing"): a token parked on one node is unknown to another,
//! which answers as for an expired token. Bounded: at most [`MAX_PARKED`] tokens, each
//! forgotten after its TTL.
//!
//! What this cannot know: an event written to the kernel just before the connection died
//! may never have reached the browser. A client that sees an offset jump on a resumed
//! channel resubscribes with `since` (the pushes carry offsets for exactly that).

use std::sync::Arc;
use std::time::Duration;

use super::Filter;
use crate::broker::Position;

/// Most parked tokens kept at once; past it the oldest go first.
pub const MAX_PARKED: u64 = 100_000;

/// One parked subscription.
#[derive(Clone, Debug)]
pub struct Parked {
    /// The channel.
    pub channel: Arc<str>,
    /// The last position the socket was sent (or joined at).
    pub position: Position,
    /// Its filter, kept as it was.
    pub filter: Option<Filter>,
}

/// A closed socket's subscriptions, waiting for its reconnect.
#[derive(Clone, Debug)]
pub struct Session {
    /// The user the socket had (None: anonymous); only the same may resume.
    pub user: Option<Arc<str>>,
    /// What it was subscribed to.
    pub channels: Vec<Parked>,
}

/// Why a resume did not happen.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Unknown, already used, or expired.
    #[error("the resume token is unknown, used or expired")]
    Unknown,
    /// Another user (or anonymous) parked it.
    #[error("the resume token belongs to another user")]
    OtherUser,
}

/// The parked sessions of this node.
#[derive(Clone, Debug)]
pub struct Tokens {
    parked: moka::sync::Cache<String, Arc<Session>>,
    ttl: Duration,
}

impl Tokens {
    /// Tokens usable for `ttl` after their socket closes.
    pub fn new(ttl: Duration) -> Self {
        Self { parked: moka::sync::Cache::builder().max_capacity(MAX_PARKED).time_to_live(ttl).build(), ttl }
    }

    /// How long a parked token stays usable.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Parks `session` under `token`.
    pub fn park(&self, token: &str, session: Session) {
        self.parked.insert(token.to_owned(), Arc::new(session));
    }

    /// Takes the session parked under `token` for `user`; a token works once, for its user.
    pub fn take(&self, token: &str, user: Option<&str>) -> Result<Arc<Session>, ResumeError> {
        let session = self.parked.remove(token).ok_or(ResumeError::Unknown)?;
        if session.user.as_deref() == user {
            Ok(session)
        } else {
            Err(ResumeError::OtherUser)
        }
    }
}

/// A fresh token: 64 hex digits from two random UUIDs (244 random bits).
pub fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// True for something [`new_token`] could have made (checked before any lookup).
pub fn token_shape_ok(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: Option<&str>) -> Session {
        Session { user: user.map(Arc::from), channels: Vec::new() }
    }

    #[test]
    fn a_token_works_once_and_only_for_its_user() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let token = new_token();
        assert!(token_shape_ok(&token));
        tokens.park(&token, session(Some("7")));
        assert_eq!(tokens.take(&token, Some("8")).unwrap_err(), ResumeError::OtherUser);
        tokens.park(&token, session(Some("7")));
        assert!(tokens.take(&token, Some("7")).is_ok());
        assert_eq!(tokens.take(&token, Some("7")).unwrap_err(), ResumeError::Unknown);
    }

    #[test]
    fn an_anonymous_token_is_not_a_users() {
        let tokens = Tokens::new(Duration::from_secs(60));
        tokens.park("t", session(None));
        assert_eq!(tokens.take("t", Some("1")).unwrap_err(), ResumeError::OtherUser);
    }
}
