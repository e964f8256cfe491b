//! `switchyard whois`: resolve one session the way an upgrade would, for an operator.
//!
//! The argument is a session key, a signed-cookie value, or a whole `Cookie` header
//! (anything with a `=` or `;`, which neither keys nor signed cookies contain). A database that cannot answer is an
//! error here whatever `on_store_error` says: the operator asked about the store.

use super::{BridgeBuildError, Identity, SessionBridge, StoreErrorPolicy, StoreUnavailable};
use crate::config::Config;

/// Why `whois` could not give an answer (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum WhoisError {
    #[error("the config has no [django] section")]
    NoDjangoSection,
    #[error(transparent)]
    Build(#[from] BridgeBuildError),
    #[error(transparent)]
    StoreUnavailable(#[from] StoreUnavailable),
}

/// Resolve `value` under `config`'s `[django]` section.
pub async fn whois(config: &Config, value: &str) -> Result<Identity, WhoisError> {
    let mut settings = config.django.clone().ok_or(WhoisError::NoDjangoSection)?;
    settings.on_store_error = StoreErrorPolicy::Refuse;
    let bridge = SessionBridge::new(settings)?;
    let value = value.trim();
    let identity = if value.contains(['=', ';']) {
        bridge.resolve(value.as_bytes()).await?
    } else {
        bridge.resolve_value(value).await?
    };
    Ok(identity)
}
