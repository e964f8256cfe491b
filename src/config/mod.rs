//! Configuration: the TOML schema, its defaults, and validation with file, line and column.
//!
//! One path: read the file → deserialize (unknown keys are errors) → validate → a typed
//! [`Config`]. Nothing downstream re-checks strings. [`parse`] takes `&str` so tests never
//! touch the filesystem. Each module gets its own section struct.

mod channels;
mod django;
mod env;
mod log;
mod server;
mod units;
mod upstream;
mod websocket;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::channels::{
    is_channel_name, BrokerConfig, BrokerKind, ChannelConfig, ChannelPattern, HistoryConfig, Permission, SlowReader,
};
pub use self::django::DjangoConfig;
pub use self::env::{read_secret, Env, ProcessEnv, Secret, SecretError};
pub use self::log::{LogConfig, LogFormat};
pub use self::server::{ServerConfig, TlsConfig, TrustedProxy};
pub use self::units::{Addrs, ByteSize, ConfigDuration};
pub use self::upstream::{UpstreamConfig, UpstreamUrl};
pub use self::websocket::{
    is_command_name, AuthRule, BackendKind, BackendUrl, BackendsConfig, CommandConfig, CommandPattern, Commands,
    Origin, Protocol, RouteConfig, RoutePath, WebsocketConfig, WebsocketMode,
};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and shutdown (`[server]`).
    pub server: ServerConfig,
    /// The Django server plain HTTP goes to (`[upstream]`).
    pub upstream: UpstreamConfig,
    /// Logging (`[log]`).
    #[serde(default)]
    pub log: LogConfig,
    /// Rules every WebSocket shares (`[websocket]`).
    #[serde(default)]
    pub websocket: WebsocketConfig,
    /// Per-URL WebSocket rules (`[[routes]]`), first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where commands run (`[commands."PATTERN"]`).
    #[serde(default)]
    pub commands: Commands,
    /// What every call to Django shares (`[backends]`).
    #[serde(default)]
    pub backends: BackendsConfig,
    /// Reading Django's sessions and users (`[django]`); without it every socket is anonymous.
    pub django: Option<DjangoConfig>,
    /// Channel rules (`[[channels]]`), first match wins; a channel no rule matches is refused.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// How events reach every node (`[broker]`).
    #[serde(default)]
    pub broker: BrokerConfig,
}

/// A config that cannot be used; `Display` is the message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    /// The TOML is malformed, a key is unknown or a value is wrong.
    #[error("{origin}:{line}:{column}: {message}{}", hint_suffix(.hint))]
    Invalid { origin: String, line: usize, column: usize, message: String, hint: Option<String> },
    /// The file is well-formed but a setting is missing or contradicts another.
    #[error("{origin}: {key}: {message}")]
    Rejected { origin: String, key: &'static str, message: String },
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default()
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
    let mut config: Config = toml::from_str(text).map_err(|e| invalid(text, origin, &e))?;
    config.anchor_paths(base);
    config.validate(origin)?;
    config.read_secrets(origin, env)?;
    Ok(config)
}

impl Config {
    /// The effective config as TOML, secrets masked, for `switchyard check`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    fn anchor_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.server.tls {
            tls.cert = anchored(base, &tls.cert);
            tls.key = anchored(base, &tls.key);
        }
        if let Some(file) = &mut self.backends.secret_file {
            *file = anchored(base, file);
        }
        if let Some(django) = &mut self.django {
            django.anchor_paths(base);
        }
    }

    /// True when something calls Django views (commands or hooks), so calls must be signed.
    fn calls_backends(&self) -> bool {
        !self.commands.is_empty()
            || self.routes.iter().any(|r| r.on_connect.is_some() || r.on_disconnect.is_some())
            || self.channels.iter().any(|c| c.authorize.is_some())
    }

    fn read_secrets(&mut self, origin: &str, env: &dyn Env) -> Result<(), ConfigError> {
        if let Some(django) = &mut self.django {
            django.resolve(origin, env)?;
        }
        let backends = &mut self.backends;
        let secret = read_secret(env, backends.secret_env.as_deref(), backends.secret_file.as_deref());
        backends.secret = secret.map_err(|e| ConfigError::Rejected {
            origin: origin.to_string(),
            key: "backends.secret_env",
            message: e.to_string(),
        })?;
        if backends.secret.is_none() && self.calls_backends() {
            return Err(ConfigError::Rejected {
                origin: origin.to_string(),
                key: "backends.secret_env",
                message: "calls to Django are signed: add secret_env = \"SWITCHYARD_BACKEND_SECRET\" (or secret_file) to [backends]".into(),
            });
        }
        Ok(())
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let rejected = |key, message: &str| ConfigError::Rejected {
            origin: origin.to_string(),
            key,
            message: message.to_string(),
        };
        let tls_listeners = self.server.tls.as_ref().map_or(0, |t| t.listen.0.len());
        if self.server.listen.0.is_empty() && tls_listeners == 0 {
            return Err(rejected(
                "server.listen",
                "no listener: write listen = [\"127.0.0.1:8080\"] in [server] or add [server.tls]",
            ));
        }
        if self.backends.secret_env.is_some() && self.backends.secret_file.is_some() {
            return Err(rejected("backends.secret_file", "write secret_env or secret_file, not both"));
        }
        if self.server.redirect_to_https && tls_listeners == 0 {
            return Err(rejected(
                "server.redirect_to_https",
                "there is no TLS listener to redirect to: add [server.tls] or set it to false",
            ));
        }
        for rule in &self.channels {
            if let Err(message) = rule.check() {
                return Err(ConfigError::Rejected {
                    origin: origin.to_string(),
                    key: "channels",
                    message: format!("pattern \"{}\": {message}", rule.pattern),
                });
            }
        }
        Ok(())
    }
}

fn anchored(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Turns toml's error into one with file, line, column and, for unknown keys, a suggestion.
fn invalid(text: &str, origin: &str, err: &toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |s| s.start);
    let (line, column) = line_column(text, offset);
    let mut message = err.message().trim().to_string();
    if let Some(table) = enclosing_table(text, offset) {
        message = message.replacen("unknown field", &format!("unknown key in [{table}]:"), 1);
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

/// The `[table]` header above `offset`, if any.
fn enclosing_table(text: &str, offset: usize) -> Option<&str> {
    text[..offset.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim())
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
