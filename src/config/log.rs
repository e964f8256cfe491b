//! `[log]`: how much Switchyard says and in which shape.

use serde::{Deserialize, Serialize};

/// `info` shows start-up, one access line per request and warnings; `debug` adds client mistakes.
pub const DEFAULT_LEVEL: &str = "info";

/// The `[log]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter ("info", "debug", "switchyard=debug,info"); `RUST_LOG` overrides it.
    /// Default: "info".
    #[serde(default = "default_level")]
    pub level: String,
    /// Log format: "text" for people, "json" for log collectors. Default: "text".
    #[serde(default)]
    pub format: LogFormat,
    /// Write one access line per request (target `switchyard::access`). Default: true.
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

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: default_level(), format: LogFormat::Text, access: true }
    }
}

fn default_level() -> String {
    DEFAULT_LEVEL.to_string()
}

fn default_access() -> bool {
    true
}
