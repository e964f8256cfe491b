//! `subscribe = "backend"` / `publish = "backend"`: ask the rule's `authorize` view, in the
//! hook format (command `$authorize`, args `{"channel", "action"}`), signed like every
//! backend call. It answers `{"result": {"allow": true|false}}` (or `{"allow": ...}`;
//! anything else is no); answers are cached per user (per
//! connection when anonymous), channel and action for the rule's `authorize_ttl`, in a
//! bounded cache, so a page of many tabs asks Django once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde_json::{json, Value};

use super::backend::Backend;
use super::Caller;
use crate::hub::{Action, Rule};
use crate::protocol::{CommandError, ErrorCode};

/// Most cached answers: a user × a few channels, for many users.
const CACHE_CAPACITY: u64 = 100_000;

/// The authorize client and its answer cache; cheap to clone.
#[derive(Clone, Debug)]
pub struct Authorizer {
    backend: Option<Backend>,
    answers: Cache<(Arc<str>, String, Action), Answer>,
}

#[derive(Clone, Debug)]
struct Answer {
    allow: bool,
    ttl: Duration,
}

struct AnswerExpiry;

impl moka::Expiry<(Arc<str>, String, Action), Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &(Arc<str>, String, Action), value: &Answer, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl Authorizer {
    /// An authorizer calling Django through `backend` (None: no secret, so no calls).
    pub fn new(backend: Option<Backend>) -> Self {
        let answers = Cache::builder().max_capacity(CACHE_CAPACITY).expire_after(AnswerExpiry).build();
        Self { backend, answers }
    }

    /// Whether `caller` may do `action` on `channel` under `rule`, asking Django on a miss.
    /// A failed call is the command's error (and is not cached).
    pub async fn ask(&self, rule: &Rule, channel: &str, action: Action, caller: &Caller) -> Result<bool, CommandError> {
        let (Some(backend), Some(url)) = (&self.backend, &rule.authorize) else {
            return Err(CommandError::new(ErrorCode::BackendUnavailable, "no backend is configured"));
        };
        let who: Arc<str> = caller.user.as_ref().map_or_else(|| caller.id.clone(), |u| Arc::from(u.id.as_str()));
        let key = (who, channel.to_string(), action);
        let ask = async {
            let body = caller.call_body("$authorize", json!({"channel": channel, "action": action.as_str()}));
            let reply =
                backend.call(url, &body, &caller.call_headers(backend.forward_cookie), backend.default_timeout).await;
            let reply = reply.map_err(|e| {
                tracing::debug!(channel, error = %e, "authorize call failed");
                e.to_command_error()
            })?;
            let answer = reply.get("result").filter(|r| r.is_object()).unwrap_or(&reply);
            let allow = answer.get("allow").and_then(Value::as_bool).unwrap_or(false);
            Ok::<_, CommandError>(Answer { allow, ttl: rule.authorize_ttl })
        };
        match self.answers.try_get_with(key, ask).await {
            Ok(answer) => Ok(answer.allow),
            Err(e) => Err((*e).clone()),
        }
    }
}
