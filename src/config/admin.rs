//! `[admin]`: the private listener Django publishes through (`/api/*`, with a bearer key)
//! and monitoring reads (`/healthz`, `/metrics`, no key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::env::{read_secret, Env, Secret};
use super::ConfigError;

/// The validated `[admin]` section.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where the admin listener binds.
    pub listen: SocketAddr,
    /// The bearer key `/api/*` requires.
    pub key: Secret,
}

/// The `[admin]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSection {
    /// Address of the admin listener, like "127.0.0.1:9090". Bind it to a private address:
    /// `/healthz` and `/metrics` answer anyone who reaches it. Required.
    pub listen: SocketAddr,
    /// Environment variable holding the bearer key of `/api/*` (`SWITCHYARD_ADMIN_KEY` on
    /// the Django side). This or `key_file` is required.
    pub key_env: Option<String>,
    /// File holding the bearer key, instead of `key_env`.
    pub key_file: Option<PathBuf>,
}

impl AdminSection {
    pub(super) fn anchor_paths(&mut self, base: &Path) {
        if let Some(file) = &mut self.key_file {
            *file = super::anchored(base, file);
        }
    }

    pub(super) fn validate(&self, check: &Check, env: &dyn Env) -> Result<AdminConfig, ConfigError> {
        if self.key_env.is_some() && self.key_file.is_some() {
            return Err(check.reject("admin.key_file", "write key_env or key_file, not both"));
        }
        let key = read_secret(env, self.key_env.as_deref(), self.key_file.as_deref())
            .map_err(|e| check.reject("admin.key_env", e.to_string()))?
            .ok_or_else(|| {
                check.reject(
                    "admin.key_env",
                    "the admin API needs a key: add key_env = \"SWITCHYARD_ADMIN_KEY\" (or key_file)",
                )
            })?;
        Ok(AdminConfig { listen: self.listen, key })
    }
}
