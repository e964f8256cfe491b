//! `[[channels]]` and `[broker]`: which channels exist, who may subscribe and publish, how
//! much history each keeps, and where events travel between nodes. The hub compiles the
//! rules once (`hub::rules`); this file only reads and checks them.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::units::{ByteSize, ConfigDuration};
use super::BackendUrl;

/// History kept when a rule says only `size`: long enough for a reconnect after a network blip.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(600);
/// How long an authorize answer is reused for one user and channel.
pub const DEFAULT_AUTHORIZE_TTL: Duration = Duration::from_secs(60);
/// Longest channel name: names travel in every push frame.
pub const MAX_CHANNEL_NAME: usize = 255;

/// One `[[channels]]` entry. The first rule whose pattern matches a channel decides for it;
/// a channel no rule matches cannot be subscribed or published to.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// "news" matches exactly; "model:*" is a prefix; "user:{user_id}" matches "user:42"
    /// for user 42 only. Required.
    pub pattern: ChannelPattern,
    /// Who may subscribe: "nobody", "anyone", "authenticated", "staff", "superuser", or
    /// "backend" (ask `authorize`). Default: "authenticated".
    #[serde(default = "default_subscribe")]
    pub subscribe: Permission,
    /// Django URL asked when a permission is "backend", in the hook format (command
    /// `$authorize`, args `{"channel", "action"}`); it answers `{"result": {"allow": true}}`.
    /// Required when a permission is "backend". Default: none.
    pub authorize: Option<BackendUrl>,
    /// How long an `authorize` answer is reused for the same user and channel. Default: "60s".
    #[serde(default = "default_authorize_ttl")]
    pub authorize_ttl: ConfigDuration,
    /// Who may publish from a socket with the `publish` command; same words as `subscribe`.
    /// Django publishes through the admin API whatever this says. Default: "nobody".
    #[serde(default)]
    pub publish: Permission,
    /// Events kept for recovery: `{ size = 100, ttl = "10m" }`. Default: none kept
    /// (a resubscribe recovers only when nothing was missed).
    #[serde(default)]
    pub history: HistoryConfig,
    /// Send `join`/`leave` frames to subscribers and answer `presence`. Default: false.
    #[serde(default)]
    pub presence: bool,
    /// What happens when a subscriber's queue is full: "disconnect" (close 4008, the client
    /// recovers on reconnect), "drop_oldest" (drop queued events of this channel and send a
    /// `lost` frame with the range), "latest" (keep only the newest event of this channel).
    /// Default: "disconnect".
    #[serde(default)]
    pub slow_reader: SlowReader,
    /// Most events of this channel queued for one socket, below `[websocket] outbox_messages`.
    /// Default: the socket's bound.
    pub outbox_messages: Option<usize>,
    /// Most bytes of this channel queued for one socket, below `[websocket] outbox_bytes`.
    /// Default: the socket's bound.
    pub outbox_bytes: Option<ByteSize>,
}

/// `history = { size, ttl }`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Most events kept. Default: 0 (none).
    #[serde(default)]
    pub size: usize,
    /// Events older than this are forgotten. Default: "10m".
    #[serde(default = "default_history_ttl")]
    pub ttl: ConfigDuration,
}

/// The `[broker]` section: how events reach every node.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// "local": in this process only (one node). Default: "local".
    #[serde(default)]
    pub kind: BrokerKind,
}

/// Which broker carries events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// In-process: one node, offsets assigned here, history in memory.
    #[default]
    Local,
}

/// Who may subscribe or publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// No socket.
    #[default]
    Nobody,
    /// Any socket, logged in or not.
    Anyone,
    /// Any logged-in user.
    Authenticated,
    /// Users with `is_staff` (or `is_superuser`).
    Staff,
    /// Users with `is_superuser`.
    Superuser,
    /// Ask the rule's `authorize` URL.
    Backend,
}

/// What a full queue does to a subscriber of this channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowReader {
    /// Close the socket with 4008; the client reconnects and recovers from history.
    #[default]
    Disconnect,
    /// Drop this channel's oldest queued events and tell the client the range (`lost`).
    DropOldest,
    /// Keep only the newest queued event of this channel.
    Latest,
}

impl SlowReader {
    /// The name used in config and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::DropOldest => "drop_oldest",
            Self::Latest => "latest",
        }
    }
}

/// A channel pattern: a literal, optionally with one `{user_id}` and a trailing `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPattern {
    /// Text before `{user_id}` (or all of it).
    pub head: String,
    /// Text after `{user_id}`, when the pattern has it.
    pub tail: Option<String>,
    /// A trailing `*`: anything may follow.
    pub prefix: bool,
}

fn default_subscribe() -> Permission {
    Permission::Authenticated
}
fn default_authorize_ttl() -> ConfigDuration {
    ConfigDuration(DEFAULT_AUTHORIZE_TTL)
}
fn default_history_ttl() -> ConfigDuration {
    ConfigDuration(DEFAULT_HISTORY_TTL)
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self { size: 0, ttl: default_history_ttl() }
    }
}

impl ChannelConfig {
    /// Checks what serde cannot: `backend` needs `authorize`, `authorize` needs a `backend`.
    pub fn check(&self) -> Result<(), &'static str> {
        let asks = self.subscribe == Permission::Backend || self.publish == Permission::Backend;
        match (asks, &self.authorize) {
            (true, None) => Err("a permission is \"backend\": add authorize = \"http://127.0.0.1:8000/ws/authorize/\""),
            (false, Some(_)) => Err("authorize is set but no permission is \"backend\": set subscribe = \"backend\""),
            _ if self.outbox_messages == Some(0) => Err("outbox_messages must be at least 1"),
            _ => Ok(()),
        }
    }
}

/// True for a name a channel may have: printable, no spaces, at most 255 bytes.
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_CHANNEL_NAME && name.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

// === impl ChannelPattern ===

impl ChannelPattern {
    /// Parses "news", "model:*", "user:{user_id}", "user:{user_id}:*".
    pub fn parse(text: &str) -> Option<Self> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains('*') || (body.is_empty() && !prefix) {
            return None;
        }
        let (head, tail) = match body.split_once("{user_id}") {
            Some((head, tail)) => (head, Some(tail)),
            None => (body, None),
        };
        let literal_ok = |s: &str| !s.contains(['{', '}']) && (s.is_empty() || is_channel_name(s));
        if !literal_ok(head) || !tail.is_none_or(literal_ok) {
            return None;
        }
        Some(Self { head: head.into(), tail: tail.map(Into::into), prefix })
    }

    /// True when `channel` is covered for a subscriber whose user id is `user` (None:
    /// anonymous, who never matches a `{user_id}` pattern).
    pub fn matches(&self, channel: &str, user: Option<&str>) -> bool {
        let Some(rest) = channel.strip_prefix(self.head.as_str()) else { return false };
        let rest = match &self.tail {
            None => rest,
            Some(tail) => {
                let Some(user) = user else { return false };
                let Some(after) = rest.strip_prefix(user) else { return false };
                let Some(after) = after.strip_prefix(tail.as_str()) else { return false };
                after
            }
        };
        self.prefix || rest.is_empty()
    }

    /// True when `channel` has this pattern's shape for some user (Django's publishes to
    /// `user:42` need no subscriber to match them).
    pub fn matches_any_user(&self, channel: &str) -> bool {
        let Some(rest) = channel.strip_prefix(self.head.as_str()) else { return false };
        let Some(tail) = &self.tail else { return self.prefix || rest.is_empty() };
        // The user id is the shortest non-empty run before the tail (ids have no ':').
        let id_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
        if id_end == 0 {
            return false;
        }
        match rest[id_end..].strip_prefix(tail.as_str()) {
            Some(after) => self.prefix || after.is_empty(),
            None => false,
        }
    }
}

impl std::fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.head)?;
        if let Some(tail) = &self.tail {
            write!(f, "{{user_id}}{tail}")?;
        }
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ChannelPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "`{text}` is not a channel pattern: write \"news\" (exact), \"model:*\" (prefix) or \"user:{{user_id}}\" (personal)"
            ))
        })
    }
}

impl Serialize for ChannelPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> ChannelPattern {
        ChannelPattern::parse(text).unwrap()
    }

    #[test]
    fn exact_and_prefix_patterns() {
        assert!(pattern("news").matches("news", None));
        assert!(!pattern("news").matches("news2", None));
        assert!(pattern("model:*").matches("model:blog.post:3", None));
        assert!(!pattern("model:*").matches("mode", None));
    }

    #[test]
    fn user_id_binds_to_the_subscriber() {
        let p = pattern("user:{user_id}");
        assert!(p.matches("user:42", Some("42")));
        assert!(!p.matches("user:42", Some("4")));
        assert!(!p.matches("user:421", Some("42")));
        assert!(!p.matches("user:42", None));
        assert!(pattern("user:{user_id}:*").matches("user:42:inbox", Some("42")));
        assert!(p.matches_any_user("user:42"));
        assert!(!p.matches_any_user("user:"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "a*b", "a b", "{user_id}{user_id}", "x{y}"] {
            assert!(ChannelPattern::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(pattern("user:{user_id}:*").to_string(), "user:{user_id}:*");
    }
}
