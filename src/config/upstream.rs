//! `[upstream]`: the Django server that plain HTTP goes to, over TCP or a unix socket.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::check::{Check, MIN_TIMER};
use super::units::{ByteSize, ConfigDuration};
use super::ConfigError;

/// Connecting to a local gunicorn takes microseconds; 5 s means it is down or overloaded.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than gunicorn's default worker timeout (30 s), so gunicorn reports its own timeouts.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle pooled connections are dropped after this; gunicorn's keep-alive is usually shorter.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Enough idle connections for a busy site; each one is a socket, not a worker.
pub const DEFAULT_POOL_MAX_IDLE: usize = 64;
/// Large enough for ordinary uploads; raise it for sites that take big files.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 100 << 20;

/// The validated `[upstream]` section: what the proxy receives.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Where Django listens.
    pub url: UpstreamUrl,
    /// Bound on connecting (502 past it).
    pub connect_timeout: Duration,
    /// Bound on the upstream's response head (504 past it).
    pub response_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// How many idle pooled connections are kept (0: none).
    pub pool_max_idle: usize,
    /// Largest request body forwarded (413 past it).
    pub max_request_body: u64,
}

/// The `[upstream]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamSection {
    /// Where Django listens: "http://127.0.0.1:8000" or "unix:/run/gunicorn.sock". Required.
    pub url: UpstreamUrl,
    /// How long connecting to the upstream may take before the request fails with 502.
    /// Default: "5s".
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: ConfigDuration,
    /// How long the upstream may take to send its response head, counted from when the
    /// request (body included) has been sent, before the request fails with 504; and, while
    /// a response is buffered, how long it may pause between two writes before the
    /// response is cut (nginx's proxy_read_timeout). Default: "60s".
    #[serde(default = "default_response_timeout")]
    pub response_timeout: ConfigDuration,
    /// How long an idle keep-alive connection to the upstream is kept. Default: "30s".
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: ConfigDuration,
    /// How many idle keep-alive connections to the upstream are kept. Default: 64.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Largest request body forwarded; a larger one is refused with 413. Default: "100MiB".
    #[serde(default = "default_max_request_body")]
    pub max_request_body: ByteSize,
}

/// Where the upstream listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamUrl {
    /// `http://host:port` (the authority as written, resolved at connect time).
    Tcp { authority: String },
    /// `unix:/path/to.sock`.
    Unix { path: PathBuf },
}

fn default_connect_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_CONNECT_TIMEOUT)
}
fn default_response_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_RESPONSE_TIMEOUT)
}
fn default_pool_idle_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_POOL_IDLE_TIMEOUT)
}
fn default_pool_max_idle() -> usize {
    DEFAULT_POOL_MAX_IDLE
}
fn default_max_request_body() -> ByteSize {
    ByteSize(DEFAULT_MAX_REQUEST_BODY)
}

impl UpstreamSection {
    pub(super) fn validate(&self, check: &Check) -> Result<UpstreamConfig, ConfigError> {
        Ok(UpstreamConfig {
            url: self.url.clone(),
            connect_timeout: check.duration("upstream.connect_timeout", self.connect_timeout, MIN_TIMER)?,
            response_timeout: check.duration("upstream.response_timeout", self.response_timeout, MIN_TIMER)?,
            pool_idle_timeout: check.duration("upstream.pool_idle_timeout", self.pool_idle_timeout, MIN_TIMER)?,
            pool_max_idle: self.pool_max_idle,
            max_request_body: self.max_request_body.0,
        })
    }
}

// === impl UpstreamUrl ===

impl UpstreamUrl {
    /// Parses "http://host:port[/]" or "unix:/path"; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(format!(
                    "`{text}`: a unix socket needs an absolute path, like \"unix:/run/gunicorn.sock\""
                ));
            }
            return Ok(Self::Unix { path: PathBuf::from(path) });
        }
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(format!(
                "`{text}` is not an upstream: write \"http://127.0.0.1:8000\" or \"unix:/run/gunicorn.sock\""
            ));
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("`{text}`: write only scheme, host and port, like \"http://127.0.0.1:8000\""));
        }
        authority
            .parse::<http::uri::Authority>()
            .map_err(|_| format!("`{text}`: `{authority}` is not a host and port"))?;
        Ok(Self::Tcp { authority: authority.to_string() })
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { authority } => write!(f, "http://{authority}"),
            Self::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for UpstreamUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_url_takes_http_and_unix() {
        assert_eq!(
            UpstreamUrl::parse("http://127.0.0.1:8000/").unwrap(),
            UpstreamUrl::Tcp { authority: "127.0.0.1:8000".into() }
        );
        assert_eq!(
            UpstreamUrl::parse("unix:/run/gunicorn.sock").unwrap(),
            UpstreamUrl::Unix { path: "/run/gunicorn.sock".into() }
        );
        assert!(UpstreamUrl::parse("https://x:1").is_err());
        assert!(UpstreamUrl::parse("unix:relative.sock").is_err());
        assert!(UpstreamUrl::parse("http://host:1/path").is_err());
    }
}
