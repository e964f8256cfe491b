//! `[[channels]]` and `[broker]`: which channels exist, who may subscribe and publish, how
//! much history each keeps, and where events travel between nodes. The hub compiles the
//! rules once (`hub::rules`); this file only reads and checks them.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::check::{Check, MIN_TIMER};
use super::env::{Env, Secret};
use super::units::{ByteSize, ConfigDuration};
use super::{BackendUrl, ConfigError};

/// History kept when a rule says only `size`: long enough for a reconnect after a network blip.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(600);
/// How long an authorize answer is reused for one user and channel.
pub const DEFAULT_AUTHORIZE_TTL: Duration = Duration::from_secs(60);
/// Most events one channel keeps: history lives in memory, per channel.
pub const MAX_HISTORY_SIZE: usize = 100_000;
/// Longest channel name: names travel in every push frame.
pub const MAX_CHANNEL_NAME: usize = 255;

/// One validated `[[channels]]` rule, as the hub compiles it.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// The pattern.
    pub pattern: ChannelPattern,
    /// Who may subscribe.
    pub subscribe: Permission,
    /// The Django view asked for "backend" permissions.
    pub authorize: Option<BackendUrl>,
    /// How long its answers are reused.
    pub authorize_ttl: Duration,
    /// Who may publish from a socket.
    pub publish: Permission,
    /// Events kept (0: none).
    pub history_size: usize,
    /// How long they are kept.
    pub history_ttl: Duration,
    /// Whether join/leave frames are sent.
    pub presence: bool,
    /// What a full queue does.
    pub slow_reader: SlowReader,
    /// This channel's own bound on frames in one socket's queue.
    pub outbox_messages: Option<usize>,
    /// This channel's own bound on bytes in one socket's queue.
    pub outbox_bytes: Option<usize>,
}

/// One `[[channels]]` entry as written. The first rule whose pattern matches a channel
/// decides for it; a channel no rule matches cannot be subscribed or published to.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelSection {
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
    pub history: HistorySection,
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
pub(super) struct HistorySection {
    /// Most events kept, up to 100000. Default: 0 (none).
    #[serde(default)]
    pub size: usize,
    /// Events older than this are forgotten. Default: "10m".
    #[serde(default = "default_history_ttl")]
    pub ttl: ConfigDuration,
}

/// The `[broker]` section as written: how events reach every node.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BrokerSection {
    /// "local": in this process only (one node). "postgres": every event is a row in an
    /// outbox table of a PostgreSQL database that every node LISTENs to (docs/outbox.md), so
    /// several nodes behind a load balancer deliver the same events with the same offsets.
    /// Default: "postgres" when `[django] database` (or `database` here) is PostgreSQL, else "local".
    pub kind: Option<BrokerKind>,
    /// The PostgreSQL database holding the outbox (kind = "postgres"): "postgres://user@host/dbname".
    /// Default: `[django] database`.
    #[serde(serialize_with = "super::django::mask_url")]
    pub database: Option<String>,
    /// Environment variable holding that URL (when it carries a password), instead of `database`.
    pub database_env: Option<String>,
}

/// The validated `[broker]` section, what `broker::build` receives.
#[derive(Clone, Debug, Default)]
pub struct BrokerConfig {
    /// Which broker carries events.
    pub kind: BrokerKind,
    /// The outbox's PostgreSQL URL (kind = postgres; it may hold a password: never printed).
    pub database: Option<Secret>,
    /// How long outbox rows are kept: the longest `history.ttl` of any `[[channels]]` rule,
    /// and at least [`MIN_OUTBOX_RETENTION`].
    pub retention: Duration,
}

/// Outbox rows are kept at least this long whatever the channels' TTLs, so a node that lost
/// its database connection for a few minutes still finds every push and revocation it
/// missed when it catches up.
pub const MIN_OUTBOX_RETENTION: Duration = Duration::from_secs(300);

/// Which broker carries events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// In-process: one node, offsets assigned here, history in memory.
    #[default]
    Local,
    /// PostgreSQL: a transactional outbox table and LISTEN/NOTIFY, for several nodes.
    Postgres,
}

impl BrokerKind {
    /// The name used in config, health and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Postgres => "postgres",
        }
    }
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

impl Default for HistorySection {
    fn default() -> Self {
        Self { size: 0, ttl: default_history_ttl() }
    }
}

impl ChannelSection {
    /// `key` names the entry in messages (`channels[2]`).
    pub(super) fn validate(&self, check: &Check, key: &str) -> Result<ChannelConfig, ConfigError> {
        let asks = self.subscribe == Permission::Backend || self.publish == Permission::Backend;
        match (asks, &self.authorize) {
            (true, None) => {
                return Err(check.reject(
                    &format!("{key}.authorize"),
                    "a permission is \"backend\": add authorize = \"http://127.0.0.1:8000/ws/authorize/\"",
                ))
            }
            (false, Some(_)) => {
                return Err(check.reject(
                    &format!("{key}.authorize"),
                    "authorize is set but no permission is \"backend\": set subscribe = \"backend\"",
                ))
            }
            _ => {}
        }
        let count = |name: &str, value: Option<usize>| {
            value.map(|v| check.count(&format!("{key}.{name}"), v, 1..=usize::MAX)).transpose()
        };
        let bytes = self
            .outbox_bytes
            .map(|b| check.size(&format!("{key}.outbox_bytes"), b, 1..=u64::MAX))
            .transpose()?
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX));
        Ok(ChannelConfig {
            pattern: self.pattern.clone(),
            subscribe: self.subscribe,
            authorize: self.authorize.clone(),
            authorize_ttl: check.duration(&format!("{key}.authorize_ttl"), self.authorize_ttl, MIN_TIMER)?,
            publish: self.publish,
            history_size: check.count(&format!("{key}.history.size"), self.history.size, 0..=MAX_HISTORY_SIZE)?,
            history_ttl: check.duration(&format!("{key}.history.ttl"), self.history.ttl, MIN_TIMER)?,
            presence: self.presence,
            slow_reader: self.slow_reader,
            outbox_messages: count("outbox_messages", self.outbox_messages)?,
            outbox_bytes: bytes,
        })
    }
}

impl BrokerSection {
    /// `django_database` is `[django]`'s PostgreSQL URL, if it has one; `channels` decide
    /// how long outbox rows are kept. Fills in the kind it chose, for the effective config.
    pub(super) fn validate(
        &mut self,
        check: &Check,
        env: &dyn Env,
        django_database: Option<&str>,
        channels: &[ChannelConfig],
    ) -> Result<BrokerConfig, ConfigError> {
        let own = match (&self.database, &self.database_env) {
            (Some(_), Some(_)) => {
                return Err(check.reject("broker.database_env", "write database or database_env, not both"))
            }
            (Some(url), None) => Some(url.clone()),
            (None, Some(var)) => Some(env.var(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                check.reject("broker.database_env", format!("environment variable `{var}` is not set"))
            })?),
            (None, None) => None,
        };
        if let Some(url) = &own {
            let key = if self.database.is_some() { "broker.database" } else { "broker.database_env" };
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(check.reject(key, "the outbox lives in PostgreSQL: write \"postgres://user@host/dbname\""));
            }
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| check.reject(key, format!("not a PostgreSQL URL: {e}")))?;
        }
        let database = own.or_else(|| django_database.map(str::to_owned));
        let kind = self.kind.unwrap_or(if database.is_some() { BrokerKind::Postgres } else { BrokerKind::Local });
        self.kind = Some(kind);
        let database = match kind {
            BrokerKind::Local if self.database.is_some() || self.database_env.is_some() => {
                return Err(
                    check.reject("broker.database", "a database is for kind = \"postgres\": remove it or set kind")
                )
            }
            BrokerKind::Local => None,
            BrokerKind::Postgres => Some(Secret::new(database.ok_or_else(|| {
                check.reject(
                    "broker.kind",
                    "the postgres broker needs a database: add database = \"postgres://user@host/dbname\" to [broker] \
                     (or use a PostgreSQL [django] database)",
                )
            })?)),
        };
        let longest = channels.iter().map(|c| c.history_ttl).max().unwrap_or(DEFAULT_HISTORY_TTL);
        Ok(BrokerConfig { kind, database, retention: longest.max(MIN_OUTBOX_RETENTION) })
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
