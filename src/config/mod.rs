//! Configuration: the TOML schema, its defaults, and validation with file, line and column.
//!
//! One path: read the file → deserialize into the section structs (`*Section`: exactly
//! what the user writes; unknown keys are errors) → validate → the typed [`Config`], whose
//! parts (`ServerConfig`, `UpstreamConfig`, `WebsocketConfig`, `RouteConfig`,
//! [`BridgeSettings`], …) are what each module receives: durations as `Duration`, sizes as
//! numbers, secrets read, every bound checked once in [`check`]. Nothing downstream
//! re-checks strings. [`parse`] takes `&str` so tests never touch the filesystem.
//!
//! `config` depends on no other module of the crate; the modules depend on it.

mod admin;
mod bridge;
mod buffering;
mod channels;
mod check;
mod commands;
mod django;
mod env;
mod log;
mod server;
mod statics;
mod units;
mod upstream;
mod websocket;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

pub use self::admin::AdminConfig;
pub use self::bridge::{
    BadIdent, BridgeSettings, CacheSettings, Database, Engine, Ident, PkType, StoreErrorPolicy, StoreSettings,
    UnknownDatabaseScheme, UserTable, DEFAULT_AUTHENTICATION_BACKEND, DEFAULT_CACHE_NEGATIVE_TTL, DEFAULT_CACHE_SIZE,
    DEFAULT_CACHE_TTL, DEFAULT_POOL_SIZE, DEFAULT_QUERY_TIMEOUT, DEFAULT_SESSION_COOKIE_AGE,
    DEFAULT_SESSION_COOKIE_NAME, DEFAULT_SESSION_STORE_CLASS, DEFAULT_SESSION_TABLE, DEFAULT_USER_TABLE,
};
pub use self::buffering::BufferingConfig;
pub use self::channels::{
    is_channel_name, BrokerConfig, BrokerKind, ChannelConfig, ChannelPattern, Permission, SlowReader,
    MIN_OUTBOX_RETENTION,
};
pub use self::check::{MAX_DURATION, MIN_TIMER};
pub use self::commands::{
    is_command_name, BackendKind, BackendUrl, BackendsConfig, CommandConfig, CommandPattern, MAX_COMMAND_NAME,
};
pub use self::env::{read_secret, Env, ProcessEnv, Secret, SecretError};
pub use self::log::{LogConfig, LogFormat};
pub use self::server::{AcmeConfig, Certificate, ServerConfig, TlsConfig, TrustedProxy};
pub use self::statics::{StaticConfig, DEFAULT_STATIC_MAX_AGE};
pub use self::units::{Addrs, ByteSize, ConfigDuration};
pub use self::upstream::{UpstreamConfig, UpstreamUrl};
pub use self::websocket::{AuthRule, Origin, Protocol, RouteConfig, RoutePath, WebsocketConfig, WebsocketMode};

use self::check::Check;

/// The validated configuration: one typed slice per module.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners, TLS, timeouts of the downstream side.
    pub server: ServerConfig,
    /// The Django server plain HTTP goes to.
    pub upstream: UpstreamConfig,
    /// How bodies are held between a browser and Django.
    pub buffering: BufferingConfig,
    /// Logging.
    pub log: LogConfig,
    /// Rules every WebSocket shares.
    pub websocket: WebsocketConfig,
    /// Per-URL WebSocket rules, first match wins.
    pub routes: Vec<RouteConfig>,
    /// Folders served without Django, first matching prefix wins.
    pub statics: Vec<StaticConfig>,
    /// Where commands run, keyed by pattern.
    pub commands: BTreeMap<CommandPattern, CommandConfig>,
    /// What every call to Django shares, the signing secret included.
    pub backends: BackendsConfig,
    /// The session bridge's settings; `None` without a `[django]` section (all anonymous).
    pub django: Option<BridgeSettings>,
    /// Channel rules, first match wins.
    pub channels: Vec<ChannelConfig>,
    /// How events reach every node.
    pub broker: BrokerConfig,
    /// The admin listener; `None` without an `[admin]` section.
    pub admin: Option<AdminConfig>,
    /// The file as read, defaults filled in, for `switchyard check`.
    effective: ConfigFile,
}

/// The whole file, as written (plus defaults). Only `config` sees it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Listeners and shutdown (`[server]`).
    server: server::ServerSection,
    /// The Django server plain HTTP goes to (`[upstream]`).
    upstream: upstream::UpstreamSection,
    /// How bodies are held between a browser and Django (`[buffering]`).
    #[serde(default)]
    buffering: buffering::BufferingSection,
    /// Logging (`[log]`).
    #[serde(default)]
    log: log::LogSection,
    /// Rules every WebSocket shares (`[websocket]`).
    #[serde(default)]
    websocket: websocket::WebsocketSection,
    /// Per-URL WebSocket rules (`[[routes]]`), first match wins.
    #[serde(default)]
    routes: Vec<websocket::RouteSection>,
    /// Folders served without Django (`[[static]]`), first matching prefix wins.
    #[serde(default, rename = "static")]
    statics: Vec<statics::StaticSection>,
    /// Where commands run (`[commands."PATTERN"]`).
    #[serde(default)]
    commands: BTreeMap<CommandPattern, commands::CommandSection>,
    /// What every call to Django shares (`[backends]`).
    #[serde(default)]
    backends: commands::BackendsSection,
    /// Reading Django's sessions and users (`[django]`); without it every socket is anonymous.
    django: Option<django::DjangoSection>,
    /// Channel rules (`[[channels]]`), first match wins; a channel no rule matches is refused.
    #[serde(default)]
    channels: Vec<channels::ChannelSection>,
    /// How events reach every node (`[broker]`).
    #[serde(default)]
    broker: channels::BrokerSection,
    /// The admin listener (`[admin]`); without it Django cannot publish.
    admin: Option<admin::AdminSection>,
}

/// A config that cannot be used; `Display` is the message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    /// The TOML is malformed, a key is unknown or a value is of the wrong form.
    #[error("{origin}:{line}:{column}: {message}{}", hint_suffix(.hint))]
    Invalid { origin: String, line: usize, column: usize, message: String, hint: Option<String> },
    /// A value is out of its bounds, a setting is missing or contradicts another; `at` is
    /// the line and column of the value when the file spells it out.
    #[error("{origin}{}: {key}: {message}", at_suffix(.at))]
    Rejected { origin: String, at: Option<(usize, usize)>, key: String, message: String },
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default()
}

fn at_suffix(at: &Option<(usize, usize)>) -> String {
    at.map(|(line, column)| format!(":{line}:{column}")).unwrap_or_default()
}

/// Reads and validates the config file at `path`; relative paths inside it start at its folder.
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Unreadable { path: path.display().to_string(), source })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &path.display().to_string(), &base, env)
}

/// Parses and validates config text; `origin` names it in errors, `base` anchors relative paths.
pub fn parse(text: &str, origin: &str, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut file: ConfigFile = toml::from_str(text).map_err(|e| invalid(text, origin, &e))?;
    file.anchor_paths(base);
    let check = Check::new(origin, text);
    file.validate(&check, env)
}

impl Config {
    /// The effective config as TOML (the file with every default filled in, relative paths
    /// anchored, secrets and passwords masked), for `switchyard check`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.effective).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

// The options a reload cannot put in force: listeners are bound (or handed over) once, the
// worker threads started once, and the session bridge, broker, admin listener, resume
// tokens, temp-file budget and log format are built once at start.
impl Config {
    /// The names of the options that differ between `self` (in force) and `new` but only
    /// take effect at a restart; empty when a reload applies all of `new`.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        fn same<T: Serialize>(a: &T, b: &T) -> bool {
            toml::Value::try_from(a).ok() == toml::Value::try_from(b).ok()
        }
        let (old, new_file) = (&self.effective, &new.effective);
        let tls_listen = |c: &Config| c.server.tls.as_ref().map(|t| t.listen.clone());
        let acme = |c: &Config| match c.server.tls.as_ref().map(|t| &t.certificate) {
            Some(Certificate::Acme(acme)) => Some(acme.clone()),
            _ => None,
        };
        let checks = [
            ("[server] listen", self.server.listen == new.server.listen),
            ("[server.tls] listen", tls_listen(self) == tls_listen(new)),
            ("[server.tls] acme", acme(self) == acme(new)),
            ("[server] workers", self.server.workers == new.server.workers),
            ("[buffering] temp_dir", self.buffering.temp_dir == new.buffering.temp_dir),
            ("[buffering] max_temp_disk", self.buffering.max_temp_disk == new.buffering.max_temp_disk),
            ("[log] format", self.log.format == new.log.format),
            ("[websocket] resume_ttl", self.websocket.resume_ttl == new.websocket.resume_ttl),
            ("[django]", same(&old.django, &new_file.django)),
            ("[broker]", same(&old.broker, &new_file.broker)),
            ("[admin]", same(&old.admin, &new_file.admin)),
        ];
        checks.into_iter().filter(|(_, same)| !same).map(|(name, _)| name).collect()
    }
}

impl ConfigFile {
    fn anchor_paths(&mut self, base: &Path) {
        self.server.anchor_paths(base);
        self.buffering.anchor_paths(base);
        self.backends.anchor_paths(base);
        for entry in &mut self.statics {
            entry.anchor_paths(base);
        }
        if let Some(django) = &mut self.django {
            django.anchor_paths(base);
        }
        if let Some(admin) = &mut self.admin {
            admin.anchor_paths(base);
        }
    }

    /// Each section into its typed config, then the rules that span sections.
    fn validate(mut self, check: &Check, env: &dyn Env) -> Result<Config, ConfigError> {
        let server = self.server.validate(check)?;
        let routes = (self.routes.iter().enumerate())
            .map(|(i, route)| route.validate(check, &format!("routes[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let statics = (self.statics.iter().enumerate())
            .map(|(i, entry)| entry.validate(check, &format!("static[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        statics::check_prefixes(&statics, check)?;
        let backends = self.backends.validate(check, env)?;
        let commands = (self.commands.iter())
            .map(|(pattern, c)| {
                Ok((pattern.clone(), c.validate(check, &format!("commands.\"{}\"", pattern.0), &backends)?))
            })
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
        let channels = (self.channels.iter().enumerate())
            .map(|(i, rule)| rule.validate(check, &format!("channels[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let calls_backends = !commands.is_empty()
            || routes.iter().any(|r| r.on_connect.is_some() || r.on_disconnect.is_some() || r.view.is_some())
            || channels.iter().any(|c| c.authorize.is_some());
        if backends.secret.is_none() && calls_backends {
            return Err(check.reject(
                "backends.secret_env",
                "calls to Django are signed: add secret_env = \"SWITCHYARD_BACKEND_SECRET\" (or secret_file) to [backends]",
            ));
        }
        let django = self.django.as_ref().map(|d| d.validate(check, env)).transpose()?;
        let django_pg = django.as_ref().and_then(|d| match &d.database {
            Database::Postgres(url) => Some(url.as_str()),
            Database::Sqlite(_) => None,
        });
        let broker = self.broker.validate(check, env, django_pg, &channels)?;
        Ok(Config {
            server,
            upstream: self.upstream.validate(check)?,
            buffering: self.buffering.validate(check)?,
            log: self.log.validate(check)?,
            websocket: self.websocket.validate(check)?,
            routes,
            statics,
            commands,
            backends,
            django,
            channels,
            broker,
            admin: self.admin.as_ref().map(|a| a.validate(check, env)).transpose()?,
            effective: self,
        })
    }
}

fn anchored(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Turns toml's error into one with file, line, column and, for unknown keys, the table
/// they were found in and a suggestion.
fn invalid(text: &str, origin: &str, err: &toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |s| s.start);
    let (line, column) = line_column(text, offset);
    let mut message = err.message().trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        message = match enclosing_table(text, offset) {
            Some(table) if !table.is_empty() => format!("unknown key in [{table}]: {rest}"),
            _ => format!("unknown table or top-level key: {rest}"),
        };
    }
    ConfigError::Invalid { origin: origin.to_string(), line, column, hint: suggestion(err.message()), message }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted name of the table holding the key that starts at `offset` ("" for the top
/// level): found in the parsed document, so `[a.b]`, `[[routes]]`, inline tables and dotted
/// keys are all named by where they really are.
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    let tree = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    key_path(tree.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// True when a key of `table` (at any depth) starts at `offset`; `path` then names its table.
fn key_path(table: &DeTable, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        if key.span().start == offset {
            return true;
        }
        let tables: Vec<&DeTable> = match value.get_ref() {
            DeValue::Table(inner) => vec![inner],
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(inner) => Some(inner),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        path.push(key.get_ref().to_string());
        if tables.into_iter().any(|inner| key_path(inner, offset, path)) {
            return true;
        }
        path.pop();
    }
    false
}

/// "did you mean `listen`?" for serde's "unknown field `listn`, expected one of `listen`, …"
/// (and the same for enum variants). serde's wording is the only carrier of the names; the
/// test below pins it.
fn suggestion(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (unknown, expected) = rest.split_once('`')?;
    let best = expected.split('`').skip(1).step_by(2).map(|known| (edit_distance(unknown, known), known)).min()?;
    (best.0 <= 2 || best.1.starts_with(unknown) || unknown.starts_with(best.1))
        .then(|| format!("did you mean `{}`?", best.1))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = if ca == *cb { prev } else { prev + 1 };
            prev = row[j + 1];
            row[j + 1] = cost.min(row[j] + 1).min(prev + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
