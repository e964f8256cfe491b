//! `[log]`: how much Switchyard says and in which shape.

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::ConfigError;

/// `info` shows start-up, one access line per request and warnings; `debug` adds client mistakes.
pub const DEFAULT_LEVEL: &str = "info";

/// The validated `[log]` section.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A tracing filter that parses (`RUST_LOG` still overrides it).
    pub level: String,
    /// Log line format.
    pub format: LogFormat,
    /// One access line per request.
    pub access: bool,
}

/// The `[log]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    /// A tracing filter ("info", "debug", "switchyard=debug,info"); `RUST_LOG` overrides it.
    /// Default: "info".
    #[serde(default = "default_level")]
    pub level: String,
    /// Log format: "text" for people, "json" for log collectors. Default: "text".
    #[serde(default)]
    pub format: LogFormat,
    /// Write one access line per request (target `switchyard::access`): method, path,
    /// status, bytes, total_ms, upstream_ms, peer and request_id (the X-Request-Id sent to
    /// Django, to command backends and back to the browser). Default: true.
    #[serde(default = "default_access")]
    pub access: bool,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { level: default_level(), format: LogFormat::Text, access: true }
    }
}

impl LogSection {
    pub(super) fn validate(&self, check: &Check) -> Result<LogConfig, ConfigError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            return Err(check.reject(
                "log.level",
                format!(
                    "`{}` is not a log filter ({e}): write \"info\", \"debug\" or \"switchyard=debug,info\"",
                    self.level
                ),
            ));
        }
        Ok(LogConfig { level: self.level.clone(), format: self.format, access: self.access })
    }
}

fn default_level() -> String {
    DEFAULT_LEVEL.to_string()
}

fn default_access() -> bool {
    true
}
