//! `[websocket]` and `[[routes]]`: the rules every socket shares, and which URLs take
//! WebSockets under which rules.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::check::{Check, MIN_TIMER};
use super::commands::{BackendUrl, CommandPattern};
use super::units::{ByteSize, ConfigDuration};
use super::ConfigError;

/// Browsers and load balancers drop idle sockets after about a minute; 25 s keeps them open.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Three missed pings: the peer is gone.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// A person has a few tabs open; fifty sockets is a script.
pub const DEFAULT_MAX_PER_USER: usize = 50;
/// An office behind one NAT address can be many people.
pub const DEFAULT_MAX_PER_IP: usize = 500;
/// Messages queued for one socket before its slow-reader policy applies.
pub const DEFAULT_OUTBOX_MESSAGES: usize = 256;
/// Bytes queued for one socket before its slow-reader policy applies.
pub const DEFAULT_OUTBOX_BYTES: u64 = 1 << 20;
/// Commands one socket may have in flight; a page needs a handful.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// Connection state is a few ids and flags, not a document.
pub const DEFAULT_MAX_STATE_SIZE: u64 = 64 << 10;
/// Pushed revocation closes sockets at once; this is only the fallback.
pub const DEFAULT_REVALIDATE: Duration = Duration::from_secs(60);
/// An idle socket holds its read buffer, zero-filled: tungstenite's default (128 KiB) made one
/// cost ~134 KiB, 4 KiB ~10.5 KiB, 1 KiB ~7.8 KiB. Large messages are read ahead in bigger
/// pieces (`ws::read_ahead`), so a small buffer costs them nothing measurable.
pub const DEFAULT_READ_BUFFER_SIZE: u64 = 1 << 10;
/// About 60 fan-out frames of ~150 bytes a write: with no buffer every frame was a write(2)
/// of its own, and the kernel's cost per write bounded deliveries per second.
pub const DEFAULT_WRITE_BUFFER_SIZE: u64 = 8 << 10;
/// A chat message or a form, with room to spare; raise it per route for uploads.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;
/// A reconnect after a network change or a laptop lid takes seconds; five minutes is generous.
pub const DEFAULT_RESUME_TTL: Duration = Duration::from_secs(300);
/// A page subscribes to a handful of channels; hundreds is a script.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 256;
/// tungstenite reads in chunks of the read buffer's size: below this every frame costs
/// many reads; above the largest, every idle socket holds memory nobody uses.
const READ_BUFFER_SIZES: std::ops::RangeInclusive<u64> = 256..=1 << 20;
/// 0 writes every frame at once; past 1 MiB a burst's buffer outweighs the writes it saves.
const WRITE_BUFFER_SIZES: std::ops::RangeInclusive<u64> = 0..=1 << 20;
/// The smallest state a backend can set is `{}`.
const MIN_STATE_SIZE: u64 = 2;

/// The validated `[websocket]` section: what every socket receives.
#[derive(Clone, Debug)]
pub struct WebsocketConfig {
    /// Accept upgrades on paths no route matches.
    pub accept_all: bool,
    /// How often an open socket is pinged.
    pub ping_interval: Duration,
    /// How long a socket may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Most sockets per user on this node (at least 1).
    pub max_per_user: usize,
    /// Most sockets per client address on this node (at least 1).
    pub max_per_ip: usize,
    /// Messages queued per socket before it is a slow reader (at least 1).
    pub outbox_messages: usize,
    /// Bytes queued per socket before it is a slow reader.
    pub outbox_bytes: usize,
    /// Commands in flight per socket (at least 1).
    pub max_in_flight: usize,
    /// Largest connection state, as JSON.
    pub max_state_size: usize,
    /// How often an open socket re-checks its session.
    pub revalidate: Duration,
    /// Read buffer per socket.
    pub read_buffer_size: usize,
    /// Bytes of frames gathered per socket before one write.
    pub write_buffer_size: usize,
    /// How long a closed socket's resume token stays usable.
    pub resume_ttl: Duration,
    /// Most channels per socket (at least 1).
    pub max_subscriptions: usize,
}

/// The validated `[[routes]]` entry, shared by every socket on the route.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// The path it matches.
    pub path: RoutePath,
    /// How it treats upgrades and plain HTTP.
    pub websocket: WebsocketMode,
    /// What it does with messages.
    pub protocol: Protocol,
    /// Who may connect.
    pub auth: AuthRule,
    /// Allowed origins; `None` means the request's own.
    pub origins: Option<Vec<Origin>>,
    /// Commands that may run here.
    pub commands: Vec<CommandPattern>,
    /// Largest message (and frame) accepted.
    pub max_message_size: usize,
    /// Subprotocols it speaks (each a valid header token).
    pub subprotocols: Vec<String>,
    /// Hook called when a socket opens.
    pub on_connect: Option<BackendUrl>,
    /// Hook called once when a socket closes.
    pub on_disconnect: Option<BackendUrl>,
    /// The Django view a `view` route posts each message to (set exactly when the
    /// protocol is `view`).
    pub view: Option<BackendUrl>,
    /// Plain HTTP on this path is buffered (`Some(true)`), streamed (`Some(false)`), or as
    /// `[buffering]` says (`None`).
    pub buffering: Option<bool>,
}

/// The `[websocket]` section as written: rules every socket shares.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebsocketSection {
    /// Accept upgrades on paths no `[[routes]]` entry matches, under the default rule
    /// (protocol "json", auth "anyone", same-origin only). Default: false (404).
    #[serde(default)]
    pub accept_all: bool,
    /// How often Switchyard pings an open socket. Default: "25s".
    #[serde(default = "default_ping_interval")]
    pub ping_interval: ConfigDuration,
    /// Close a socket that sent nothing, not even a pong, for this long. Default: "75s".
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
    /// Most sockets one user may hold on this node (at least 1; 429 past it). Default: 50.
    #[serde(default = "default_max_per_user")]
    pub max_per_user: usize,
    /// Most sockets one client address may hold on this node (at least 1; 429 past it).
    /// Default: 500.
    #[serde(default = "default_max_per_ip")]
    pub max_per_ip: usize,
    /// Messages queued for one socket before it counts as a slow reader (at least 1).
    /// Default: 256.
    #[serde(default = "default_outbox_messages")]
    pub outbox_messages: usize,
    /// Bytes queued for one socket before it counts as a slow reader. Default: "1MiB".
    #[serde(default = "default_outbox_bytes")]
    pub outbox_bytes: ByteSize,
    /// Commands one socket may have in flight (at least 1); more get `too_many_requests`.
    /// Default: 16.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Largest connection `state` a backend may set, as JSON. Default: "64KiB".
    #[serde(default = "default_max_state_size")]
    pub max_state_size: ByteSize,
    /// How often an open socket re-checks its session (the fallback to pushed revocation).
    /// Default: "60s".
    #[serde(default = "default_revalidate")]
    pub revalidate: ConfigDuration,
    /// Read buffer per socket, from "256B" to "1MiB": what an idle socket holds; larger
    /// messages are read ahead in 64 KiB pieces whatever its size. Default: "1KiB".
    #[serde(default = "default_read_buffer_size")]
    pub read_buffer_size: ByteSize,
    /// Bytes of frames a socket gathers before one write to the network, from "0B" (every
    /// frame written at once) to "1MiB"; what is queued is written at the end of each batch
    /// anyway. A socket that was sent a burst keeps a buffer this large. Default: "8KiB".
    #[serde(default = "default_write_buffer_size")]
    pub write_buffer_size: ByteSize,
    /// How long after a socket closes its `resume` token restores its subscriptions.
    /// Default: "5m".
    #[serde(default = "default_resume_ttl")]
    pub resume_ttl: ConfigDuration,
    /// Most channels one socket may be subscribed to (at least 1); more get
    /// `too_many_requests`. Default: 256.
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: usize,
}

/// One `[[routes]]` entry as written: the rules for WebSocket upgrades on a path.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteSection {
    /// "/ws/chat/" matches exactly; "/ws/*" is a prefix. The first matching route wins.
    pub path: RoutePath,
    /// "require": WebSocket only (plain HTTP gets 400); "accept": WebSocket here, plain HTTP
    /// goes to Django; "deny": no WebSocket (403), plain HTTP to Django. Default: "require".
    #[serde(default)]
    pub websocket: WebsocketMode,
    /// "json" runs commands; "echo" sends every message back; "broadcast" sends every
    /// message to every socket on this route; "view" posts every text message to the
    /// Django view `view` names and sends what it answers back. Default: "json".
    #[serde(default)]
    pub protocol: Protocol,
    /// Who may connect: "anyone", "authenticated", "staff", "superuser". Default: "anyone".
    #[serde(default)]
    pub auth: AuthRule,
    /// Origins allowed to open sockets here, like "https://example.com".
    /// Default: the request's own scheme://host.
    pub origins: Option<Vec<Origin>>,
    /// Commands that may run here: names or patterns like "chat.*". Default: ["*"] (all).
    #[serde(default = "default_commands")]
    pub commands: Vec<CommandPattern>,
    /// Largest message accepted (at least "1B"); a larger one closes the socket with 1009.
    /// Default: "1MiB".
    #[serde(default = "default_max_message_size")]
    pub max_message_size: ByteSize,
    /// Subprotocols this route speaks; one is chosen only if the browser offered it.
    /// Default: none.
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// Django URL called when a socket opens; it may refuse or set the state. Default: none.
    pub on_connect: Option<BackendUrl>,
    /// Django URL called once when a socket closes, shutdown included. Default: none.
    pub on_disconnect: Option<BackendUrl>,
    /// (protocol "view", where it is required) the Django view each text message is
    /// posted to, signed, like a command; "{path}" is replaced by the socket's path, and
    /// the socket's query string is appended. Default: none.
    pub view: Option<BackendUrl>,
    /// Plain HTTP on this path (`websocket = "accept"` or `"deny"`): false streams request
    /// and response bodies between the browser and Django instead of buffering them (for
    /// long uploads Django reads as they come, or event streams). Default: `[buffering]`.
    pub buffering: Option<bool>,
}

/// How a path treats WebSocket upgrades and plain HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebsocketMode {
    /// WebSocket only; plain HTTP gets 400.
    #[default]
    Require,
    /// WebSocket here; plain HTTP goes to Django.
    Accept,
    /// No WebSocket (403); plain HTTP goes to Django.
    Deny,
}

/// What a route does with messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The JSON command protocol.
    #[default]
    Json,
    /// Every message straight back to its sender.
    Echo,
    /// Every message to every socket on the route.
    Broadcast,
    /// Every text message to a Django view (signed POST); its answer goes back.
    View,
}

/// Who may do something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthRule {
    /// Anyone, logged in or not.
    #[default]
    Anyone,
    /// Any logged-in user.
    Authenticated,
    /// Users with `is_staff`.
    Staff,
    /// Users with `is_superuser`.
    Superuser,
}

/// A route path: exact, or a prefix when it ends in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutePath {
    /// Matches this path only.
    Exact(String),
    /// Matches every path that starts with this.
    Prefix(String),
}

/// An allowed origin, normalised to lowercase `scheme://host[:port]` without default ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(pub String);

// === defaults ===

fn default_ping_interval() -> ConfigDuration {
    ConfigDuration(DEFAULT_PING_INTERVAL)
}
fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_IDLE_TIMEOUT)
}
fn default_max_per_user() -> usize {
    DEFAULT_MAX_PER_USER
}
fn default_max_per_ip() -> usize {
    DEFAULT_MAX_PER_IP
}
fn default_outbox_messages() -> usize {
    DEFAULT_OUTBOX_MESSAGES
}
fn default_outbox_bytes() -> ByteSize {
    ByteSize(DEFAULT_OUTBOX_BYTES)
}
fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn default_max_state_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_STATE_SIZE)
}
fn default_revalidate() -> ConfigDuration {
    ConfigDuration(DEFAULT_REVALIDATE)
}
fn default_read_buffer_size() -> ByteSize {
    ByteSize(DEFAULT_READ_BUFFER_SIZE)
}
fn default_write_buffer_size() -> ByteSize {
    ByteSize(DEFAULT_WRITE_BUFFER_SIZE)
}
fn default_resume_ttl() -> ConfigDuration {
    ConfigDuration(DEFAULT_RESUME_TTL)
}
fn default_max_subscriptions() -> usize {
    DEFAULT_MAX_SUBSCRIPTIONS
}
fn default_max_message_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_MESSAGE_SIZE)
}
fn default_commands() -> Vec<CommandPattern> {
    vec![CommandPattern("*".into())]
}
impl Default for WebsocketSection {
    fn default() -> Self {
        toml::from_str("").expect("every [websocket] key has a default")
    }
}

// === validation ===

impl WebsocketSection {
    pub(super) fn validate(&self, check: &Check) -> Result<WebsocketConfig, ConfigError> {
        let count = |key: &str, value: usize| check.count(&format!("websocket.{key}"), value, 1..=usize::MAX);
        let size = |key: &str, value: ByteSize, range| {
            check.size(&format!("websocket.{key}"), value, range).map(|s| usize::try_from(s).unwrap_or(usize::MAX))
        };
        let timer = |key: &str, value| check.duration(&format!("websocket.{key}"), value, MIN_TIMER);
        Ok(WebsocketConfig {
            accept_all: self.accept_all,
            ping_interval: timer("ping_interval", self.ping_interval)?,
            idle_timeout: timer("idle_timeout", self.idle_timeout)?,
            max_per_user: count("max_per_user", self.max_per_user)?,
            max_per_ip: count("max_per_ip", self.max_per_ip)?,
            outbox_messages: count("outbox_messages", self.outbox_messages)?,
            outbox_bytes: size("outbox_bytes", self.outbox_bytes, 1..=u64::MAX)?,
            max_in_flight: count("max_in_flight", self.max_in_flight)?,
            max_state_size: size("max_state_size", self.max_state_size, MIN_STATE_SIZE..=u64::MAX)?,
            revalidate: timer("revalidate", self.revalidate)?,
            read_buffer_size: size("read_buffer_size", self.read_buffer_size, READ_BUFFER_SIZES)?,
            write_buffer_size: size("write_buffer_size", self.write_buffer_size, WRITE_BUFFER_SIZES)?,
            resume_ttl: timer("resume_ttl", self.resume_ttl)?,
            max_subscriptions: count("max_subscriptions", self.max_subscriptions)?,
        })
    }
}

impl RouteSection {
    /// `key` names the entry in messages (`routes[2]`).
    pub(super) fn validate(&self, check: &Check, key: &str) -> Result<RouteConfig, ConfigError> {
        let max = check.size(&format!("{key}.max_message_size"), self.max_message_size, 1..=u64::MAX)?;
        match (self.protocol, &self.view) {
            (Protocol::View, None) => {
                return Err(check.reject(
                    &format!("{key}.view"),
                    "a \"view\" route posts messages to a Django view: add view = \"http://127.0.0.1:8000{path}\"",
                ));
            }
            (protocol, Some(_)) if protocol != Protocol::View => {
                return Err(check.reject(
                    &format!("{key}.view"),
                    "only protocol = \"view\" routes post to a view: remove `view` or set protocol = \"view\"",
                ));
            }
            _ => {}
        }
        if let Some(bad) = self.subprotocols.iter().find(|p| !is_token(p)) {
            return Err(check.reject(
                &format!("{key}.subprotocols"),
                format!("`{bad}` is not a subprotocol name: write letters, digits and `.-_+`, like \"graphql-ws\""),
            ));
        }
        Ok(RouteConfig {
            path: self.path.clone(),
            websocket: self.websocket,
            protocol: self.protocol,
            auth: self.auth,
            origins: self.origins.clone(),
            commands: self.commands.clone(),
            max_message_size: usize::try_from(max).unwrap_or(usize::MAX),
            subprotocols: self.subprotocols.clone(),
            on_connect: self.on_connect.clone(),
            on_disconnect: self.on_disconnect.clone(),
            view: self.view.clone(),
            buffering: self.buffering,
        })
    }
}

/// An HTTP token (RFC 9110 §5.6.2), as `Sec-WebSocket-Protocol` values must be.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RouteConfig {
    /// The rule used for paths without a route when `accept_all` is on.
    pub fn accept_all(path: &str) -> Self {
        Self {
            path: RoutePath::Exact(path.to_string()),
            websocket: WebsocketMode::Accept,
            protocol: Protocol::Json,
            auth: AuthRule::Anyone,
            origins: None,
            commands: default_commands(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE as usize,
            subprotocols: Vec::new(),
            on_connect: None,
            on_disconnect: None,
            view: None,
            buffering: None,
        }
    }
}

// === impl RoutePath ===

impl RoutePath {
    /// The path as written in the file (`"/ws/*"` for a prefix): the name a route's
    /// sockets are grouped under, and how a reload tells a route kept from one removed.
    pub fn key(&self) -> String {
        match self {
            Self::Exact(p) => p.clone(),
            Self::Prefix(p) => format!("{p}*"),
        }
    }

    /// True when `path` is covered by this route.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for RoutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if !text.starts_with('/') || text[..text.len() - 1].contains('*') {
            return Err(de::Error::custom(format!(
                "`{text}` is not a route path: write \"/ws/chat/\" (exact) or \"/ws/*\" (prefix)"
            )));
        }
        Ok(match text.strip_suffix('*') {
            Some(prefix) => Self::Prefix(prefix.to_string()),
            None => Self::Exact(text),
        })
    }
}

impl Serialize for RoutePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Exact(p) => s.serialize_str(p),
            Self::Prefix(p) => s.collect_str(&format_args!("{p}*")),
        }
    }
}

// === impl Origin ===

impl Origin {
    /// Normalises "HTTPS://Example.com:443" to "https://example.com"; None if not an origin.
    pub fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => ":80",
            "https" => ":443",
            _ => return None,
        };
        let authority: http::uri::Authority = rest.parse().ok()?;
        if rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let host = authority.as_str().to_ascii_lowercase();
        let host = host.strip_suffix(default_port).unwrap_or(&host);
        Some(Self(format!("{scheme}://{host}")))
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "`{text}` is not an origin: write \"https://example.com\" (scheme and host, no path)"
            ))
        })
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        assert_eq!(Origin::parse("HTTPS://Example.com:443").unwrap().0, "https://example.com");
        assert_eq!(Origin::parse("http://localhost:8080").unwrap().0, "http://localhost:8080");
        assert!(Origin::parse("https://example.com/path").is_none());
        assert!(Origin::parse("ftp://example.com").is_none());
        assert!(Origin::parse("null").is_none());
    }

    #[test]
    fn route_paths_are_exact_or_prefix() {
        let exact: RoutePath = serde_json::from_str("\"/ws/chat/\"").unwrap();
        assert!(exact.matches("/ws/chat/") && !exact.matches("/ws/chat/x"));
        let prefix: RoutePath = serde_json::from_str("\"/ws/*\"").unwrap();
        assert!(prefix.matches("/ws/anything") && !prefix.matches("/other"));
        assert!(serde_json::from_str::<RoutePath>("\"ws/\"").is_err());
        assert!(serde_json::from_str::<RoutePath>("\"/a*b/\"").is_err());
    }
}
