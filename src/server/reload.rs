//! Reload: a new config put in force while every socket and request carries on.
//!
//! What changes at once: routes, commands, channel rules, limits, origins, the upstream,
//! the access log switch, `[server]` timeouts and trusted proxies, and the TLS certificate
//! (new connections get the new one). Each worker builds its new router (and upstream pool)
//! on its own runtime and swaps it in; the next request, even on a kept-alive connection,
//! uses it, while a request in flight finishes with what it started with. Open WebSockets
//! keep the route rules, commands and limits they were admitted under, except that a socket
//! whose route is gone, or that is subscribed to a channel no rule covers any more, is
//! closed with 1012 so its client reconnects under the new rules.
//!
//! What does not change: the listeners, the worker count, the session bridge, the broker,
//! the admin listener, resume tokens, the temp-file budget and the log format
//! ([`Config::restart_only_changes`]
//! names them, and the caller logs them). The log level is the binary's to apply.
//! An unusable certificate refuses the whole reload and the old config stays in force.
//! `[server.tls] acme` is set up once at start: a reload keeps the ACME certificate (and
//! names `[server.tls] acme` when the file changed it); a reload from ACME to `cert`/`key`
//! files serves the files.

use std::collections::HashSet;
use std::sync::Arc;

use super::tls::Terminator;
use super::{Running, TlsError};
use crate::config::{Certificate, Config};
use crate::hub::{HubSettings, Rules};

/// Why a reload was refused; the config in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A worker did not take the new config (its runtime is gone: shutdown began).
    #[error("a worker did not take the new config: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// Options that differ in the new file but wait for a restart (see the module doc).
    pub restart_only: Vec<&'static str>,
    /// Sockets closed with 1012 because their route or one of their channels is gone.
    pub closed: usize,
}

impl Running {
    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.plan.config.load_full()
    }

    /// Puts `config` in force (see the module doc for what that covers). On an error
    /// nothing changed.
    pub async fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let config = Arc::new(config);
        let restart_only = self.config().restart_only_changes(&config);
        // TLS listeners exist only when the config at start had them; a config that drops
        // `[server.tls]` leaves them serving the old certificate until a restart.
        // An ACME certificate is the one state made at start ([`Plan::acme`]); a reload that
        // turns ACME on (or changes it) waits for a restart, and says so in `restart_only`.
        let in_force = || self.workers.first().and_then(|w| w.current.load().tls.clone());
        let acceptor = match &config.server.tls {
            Some(settings) if !self.tls_addrs.is_empty() => match (&settings.certificate, &self.plan.acme) {
                (Certificate::Acme(_), None) => in_force(),
                _ => Some(Terminator::new(settings, self.plan.acme.as_ref())?),
            },
            _ => in_force(),
        };
        for worker in &self.workers {
            let (plan, config, acceptor) = (self.plan.clone(), config.clone(), acceptor.clone());
            let shared = worker.runtime.spawn(async move { plan.shared(config, acceptor) }).await?;
            worker.current.store(shared);
        }
        self.plan.config.store(config.clone());
        let routes: HashSet<String> = config.routes.iter().map(|r| r.path.key()).collect();
        let closed = self.plan.hub.reload(HubSettings::new(&config), Rules::new(&config.channels), &routes);
        Ok(Reloaded { restart_only, closed })
    }
}
