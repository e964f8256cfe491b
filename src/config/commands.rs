//! `[commands."PATTERN"]` and `[backends]`: where commands go in Django, and what every
//! call to a Django view shares (the signing secret, the timeout, the reply bound).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::check::{Check, MIN_TIMER};
use super::env::{read_secret, Env, Secret};
use super::units::{ByteSize, ConfigDuration};
use super::websocket::AuthRule;
use super::ConfigError;

/// A Django view that takes longer than this is stuck.
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
/// A backend reply is a result and a few pushes.
pub const DEFAULT_MAX_REPLY_SIZE: u64 = 1 << 20;
/// The smallest reply that can be a JSON object: `{}`.
const MIN_REPLY_SIZE: u64 = 2;

/// The validated `[commands."PATTERN"]` entry, its defaults taken from `[backends]`.
#[derive(Clone, Debug)]
pub struct CommandConfig {
    /// The kind of backend.
    pub backend: BackendKind,
    /// The view's URL, with "{command}" where the name goes.
    pub url: BackendUrl,
    /// How long the view may take.
    pub timeout: Duration,
    /// Who may run these commands.
    pub auth: AuthRule,
    /// Whether the browser's `Cookie` goes along.
    pub forward_cookie: bool,
}

/// The validated `[backends]` section.
#[derive(Clone, Debug)]
pub struct BackendsConfig {
    /// The secret that signs calls; `None` when none is configured (then nothing calls Django).
    pub secret: Option<Secret>,
    /// How long a view may take when its command says nothing.
    pub timeout: Duration,
    /// Whether the browser's `Cookie` goes along when a command says nothing.
    pub forward_cookie: bool,
    /// Largest reply body accepted from a view.
    pub max_reply_size: usize,
}

/// One `[commands."PATTERN"]` entry as written: where commands matching PATTERN run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandSection {
    /// "http": POST to a Django view. Required.
    pub backend: BackendKind,
    /// The view's URL; "{command}" is replaced by the command's name, percent-encoded (a
    /// client's names are letters, digits and `_ . : -` in non-empty `.`-separated parts,
    /// else the frame is a `bad_frame`). Required.
    pub url: BackendUrl,
    /// How long the view may take before the command fails with `backend_timeout`.
    /// Default: `[backends] timeout`.
    pub timeout: Option<ConfigDuration>,
    /// Who may run these commands: "anyone", "authenticated", "staff", "superuser".
    /// Default: "anyone".
    #[serde(default)]
    pub auth: AuthRule,
    /// Send the browser's `Cookie` header so `request.user` works in the view.
    /// Default: `[backends] forward_cookie`.
    pub forward_cookie: Option<bool>,
}

/// The `[backends]` section as written: what every call to Django shares.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendsSection {
    /// Environment variable holding the HMAC secret that signs calls to Django
    /// (`SWITCHYARD_BACKEND_SECRET` on the Django side). Required when commands or hooks exist.
    pub secret_env: Option<String>,
    /// File holding that secret, instead of `secret_env`.
    pub secret_file: Option<PathBuf>,
    /// How long a view may take. Default: "5s".
    #[serde(default = "default_backend_timeout")]
    pub timeout: ConfigDuration,
    /// Send the browser's `Cookie` header with every call. Default: true.
    #[serde(default = "default_true")]
    pub forward_cookie: bool,
    /// Largest reply body accepted from a view. Default: "1MiB".
    #[serde(default = "default_max_reply_size")]
    pub max_reply_size: ByteSize,
}

/// The kind of command backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// POST to a Django view.
    Http,
}

/// A command name ("chat.send"), a prefix pattern ("chat.*"), or "*".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommandPattern(pub String);

/// An `http://` URL of a Django view (Django runs beside Switchyard; no TLS to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUrl(pub String);

fn default_backend_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_BACKEND_TIMEOUT)
}
fn default_max_reply_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_REPLY_SIZE)
}
fn default_true() -> bool {
    true
}

impl Default for BackendsSection {
    fn default() -> Self {
        toml::from_str("").expect("every [backends] key has a default")
    }
}

// === validation ===

impl CommandSection {
    /// `key` names the entry (`commands."chat.*"`); unset values come from `backends`.
    pub(super) fn validate(
        &self,
        check: &Check,
        key: &str,
        backends: &BackendsConfig,
    ) -> Result<CommandConfig, ConfigError> {
        let timeout = match self.timeout {
            Some(t) => check.duration(&format!("{key}.timeout"), t, MIN_TIMER)?,
            None => backends.timeout,
        };
        Ok(CommandConfig {
            backend: self.backend,
            url: self.url.clone(),
            timeout,
            auth: self.auth,
            forward_cookie: self.forward_cookie.unwrap_or(backends.forward_cookie),
        })
    }
}

impl BackendsSection {
    pub(super) fn anchor_paths(&mut self, base: &Path) {
        if let Some(file) = &mut self.secret_file {
            *file = super::anchored(base, file);
        }
    }

    pub(super) fn validate(&self, check: &Check, env: &dyn Env) -> Result<BackendsConfig, ConfigError> {
        if self.secret_env.is_some() && self.secret_file.is_some() {
            return Err(check.reject("backends.secret_file", "write secret_env or secret_file, not both"));
        }
        let secret = read_secret(env, self.secret_env.as_deref(), self.secret_file.as_deref())
            .map_err(|e| check.reject("backends.secret_env", e.to_string()))?;
        let max_reply_size = check.size("backends.max_reply_size", self.max_reply_size, MIN_REPLY_SIZE..=u64::MAX)?;
        Ok(BackendsConfig {
            secret,
            timeout: check.duration("backends.timeout", self.timeout, MIN_TIMER)?,
            forward_cookie: self.forward_cookie,
            max_reply_size: usize::try_from(max_reply_size).unwrap_or(usize::MAX),
        })
    }
}

// === impl CommandPattern ===

/// Longest command name: names go into URLs and log lines.
pub const MAX_COMMAND_NAME: usize = 64;

/// Whether `name` may be a command: at most [`MAX_COMMAND_NAME`] bytes of letters, digits
/// and `_ . : -`, in `.`-separated segments none of which is empty (so never `.` or `..`,
/// which a backend URL would read as a path step). Clients' frames are held to this
/// (`bad_frame`), and so are the names in config patterns.
pub fn is_command_name(name: &str) -> bool {
    name.len() <= MAX_COMMAND_NAME
        && name.split('.').all(|segment| {
            !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
        })
}

impl CommandPattern {
    /// True when `name` is covered: exact, or a prefix pattern ending in `*`.
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

impl<'de> Deserialize<'de> for CommandPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let name = text.strip_suffix('*').unwrap_or(&text);
        if name.is_empty() || is_command_name(name.strip_suffix('.').unwrap_or(name)) {
            return Ok(Self(text));
        }
        Err(de::Error::custom(format!(
            "`{text}` is not a command pattern: write a name like \"chat.send\", a prefix like \"chat.*\", or \"*\""
        )))
    }
}

impl Serialize for CommandPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

// === impl BackendUrl ===

impl<'de> Deserialize<'de> for BackendUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let probe = text.replace("{command}", "x").replace("{path}", "/x");
        match probe.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => Ok(Self(text)),
            _ => Err(de::Error::custom(format!(
                "`{text}` is not a backend URL: write \"http://127.0.0.1:8000/ws/commands/{{command}}/\""
            ))),
        }
    }
}

impl Serialize for BackendUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_patterns_match_names_and_prefixes() {
        assert!(CommandPattern("chat.*".into()).matches("chat.send"));
        assert!(!CommandPattern("chat.*".into()).matches("chatter"));
        assert!(CommandPattern("*".into()).matches("anything"));
        assert!(CommandPattern("ping".into()).matches("ping"));
        assert!(!CommandPattern("ping".into()).matches("pings"));
    }

    #[test]
    fn command_names_are_letters_digits_and_a_few_marks_in_nonempty_segments() {
        assert!(is_command_name("chat.send_now-2"));
        assert!(is_command_name("model:post.update"));
        for bad in ["", ".", "..", "../admin", "a/b", "chat..send", ".chat", "chat.", "a b", "é", "a%2e"] {
            assert!(!is_command_name(bad), "{bad:?} passed");
        }
        assert!(!is_command_name(&"a".repeat(MAX_COMMAND_NAME + 1)));
    }

    #[test]
    fn a_prefix_pattern_takes_one_trailing_dot() {
        assert!(toml::from_str::<std::collections::HashMap<String, CommandPattern>>("p = \"chat.*\"").is_ok());
        assert!(toml::from_str::<std::collections::HashMap<String, CommandPattern>>("p = \"chat..*\"").is_err());
    }
}
