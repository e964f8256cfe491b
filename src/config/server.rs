//! `[server]` and `[server.tls]`: where Switchyard listens and whom it believes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::check::{Check, MIN_TIMER};
use super::units::{Addrs, ConfigDuration};
use super::ConfigError;

/// Grace period after SIGTERM: long enough for a slow Django page, short enough for a deploy.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A browser sends its request head at once; 30 s only lets slow-loris clients hold sockets.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// nginx's client_body_timeout: a pause this long in an upload means the browser is gone.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A TLS handshake is a few round trips; 10 s is generous even on a bad mobile link.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// nginx's keepalive_timeout: long enough for a page's follow-up requests.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Often enough that load balancers and NATs keep an idle HTTP/2 connection's mapping.
pub const DEFAULT_HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// hyper's default: a peer that does not answer a ping for this long is gone.
pub const DEFAULT_HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Worker threads are runtimes with their own pools; more than this is a typo.
pub const MAX_WORKERS: usize = 1024;

/// The validated `[server]` section: what the listeners receive.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Plain-HTTP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// TLS listeners, when configured.
    pub tls: Option<TlsConfig>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Plain HTTP gets a 308 to the first TLS listener.
    pub redirect_to_https: bool,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// How long a downstream may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a downstream may pause between two reads of a request body.
    pub body_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long a connection with no request in flight stays open.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub http2_ping_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered.
    pub http2_ping_timeout: Duration,
    /// Worker threads to run (0 in the file is resolved to one per core).
    pub workers: usize,
}

/// The validated `[server.tls]` section.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// TLS listen addresses.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain, anchored at the config's folder.
    pub cert: PathBuf,
    /// PEM private key, anchored at the config's folder.
    pub key: PathBuf,
}

/// The `[server]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSection {
    /// Plain-HTTP listen addresses: one "IP:PORT" or a list. Default: none.
    #[serde(default)]
    pub listen: Addrs,
    /// TLS listeners, certificate and key (see `[server.tls]`). Default: no TLS.
    pub tls: Option<TlsSection>,
    /// Peers (addresses or CIDR ranges) whose X-Forwarded-For/-Proto/-Host headers are
    /// believed, e.g. a TLS-terminating load balancer, and whose X-Request-Id is kept when
    /// it is 1 to 128 of `A-Z a-z 0-9 - _ . : + / = @`. From anyone else they are replaced.
    /// Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Answer every plain-HTTP request with a 308 redirect to the first TLS listener.
    /// Default: false.
    #[serde(default)]
    pub redirect_to_https: bool,
    /// How long in-flight requests may run after SIGTERM/SIGINT before they are cut.
    /// Default: "30s".
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: ConfigDuration,
    /// How long a downstream may take to send a request head; also how long a new
    /// connection may take to send its first one (protocol detection, an HTTP/2 preface,
    /// a TLS connection after its handshake). Default: "30s".
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: ConfigDuration,
    /// How long a downstream may pause between two reads of a request body before the
    /// request fails with 408 (nginx's client_body_timeout). Default: "60s".
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: ConfigDuration,
    /// How long a TLS handshake may take before the connection is closed. Default: "10s".
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout: ConfigDuration,
    /// How long an HTTP/1.1 keep-alive or HTTP/2 connection with no request in flight
    /// stays open (nginx's keepalive_timeout). An idle HTTP/1.1 connection also ends at
    /// `header_read_timeout`, which counts the wait for its next request head.
    /// Default: "75s".
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
    /// How often an HTTP/2 connection is pinged, so a peer that vanished is noticed.
    /// Default: "30s".
    #[serde(default = "default_http2_ping_interval")]
    pub http2_ping_interval: ConfigDuration,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    /// Default: "20s".
    #[serde(default = "default_http2_ping_timeout")]
    pub http2_ping_timeout: ConfigDuration,
    /// Worker threads, each with its own listeners and upstream pool; 0 means one per CPU
    /// core, at most 1024. Default: 0.
    #[serde(default)]
    pub workers: usize,
}

/// The `[server.tls]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    /// TLS listen addresses: one "IP:PORT" or a list. Required.
    pub listen: Addrs,
    /// PEM certificate chain, leaf first. Relative paths start at the config file's folder.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Relative paths as for `cert`.
    pub key: PathBuf,
}

/// One `trusted_proxies` entry: an address ("10.0.0.5") or a range ("10.0.0.0/8").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(pub IpNet);

fn default_shutdown_grace() -> ConfigDuration {
    ConfigDuration(DEFAULT_SHUTDOWN_GRACE)
}

fn default_header_read_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_HEADER_READ_TIMEOUT)
}

fn default_body_read_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_BODY_READ_TIMEOUT)
}

fn default_tls_handshake_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_TLS_HANDSHAKE_TIMEOUT)
}

fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_IDLE_TIMEOUT)
}

fn default_http2_ping_interval() -> ConfigDuration {
    ConfigDuration(DEFAULT_HTTP2_PING_INTERVAL)
}

fn default_http2_ping_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_HTTP2_PING_TIMEOUT)
}

impl ServerSection {
    pub(super) fn anchor_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            tls.cert = super::anchored(base, &tls.cert);
            tls.key = super::anchored(base, &tls.key);
        }
    }

    pub(super) fn validate(&self, check: &Check) -> Result<ServerConfig, ConfigError> {
        let tls = self.tls.as_ref().map(|t| TlsConfig {
            listen: t.listen.0.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        });
        let tls_listeners = tls.as_ref().map_or(0, |t| t.listen.len());
        if self.listen.0.is_empty() && tls_listeners == 0 {
            return Err(check.reject(
                "server.listen",
                "no listener: write listen = [\"127.0.0.1:8080\"] in [server] or add [server.tls]",
            ));
        }
        if self.redirect_to_https && tls_listeners == 0 {
            return Err(check.reject(
                "server.redirect_to_https",
                "there is no TLS listener to redirect to: add [server.tls] or set it to false",
            ));
        }
        let workers = match check.count("server.workers", self.workers, 0..=MAX_WORKERS)? {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(ServerConfig {
            listen: self.listen.0.clone(),
            tls,
            trusted_proxies: self.trusted_proxies.clone(),
            redirect_to_https: self.redirect_to_https,
            shutdown_grace: check.duration("server.shutdown_grace", self.shutdown_grace, Duration::ZERO)?,
            header_read_timeout: check.duration("server.header_read_timeout", self.header_read_timeout, MIN_TIMER)?,
            body_read_timeout: check.duration("server.body_read_timeout", self.body_read_timeout, MIN_TIMER)?,
            tls_handshake_timeout: check.duration(
                "server.tls_handshake_timeout",
                self.tls_handshake_timeout,
                MIN_TIMER,
            )?,
            idle_timeout: check.duration("server.idle_timeout", self.idle_timeout, MIN_TIMER)?,
            http2_ping_interval: check.duration("server.http2_ping_interval", self.http2_ping_interval, MIN_TIMER)?,
            http2_ping_timeout: check.duration("server.http2_ping_timeout", self.http2_ping_timeout, MIN_TIMER)?,
            workers,
        })
    }
}

impl ServerConfig {
    /// True when `peer`'s forwarding headers are to be believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|p| p.0.contains(&peer))
    }
}

impl<'de> Deserialize<'de> for TrustedProxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self(net));
        }
        text.parse::<IpAddr>().map(|ip| Self(IpNet::from(ip))).map_err(|_| {
            de::Error::custom(format!("`{text}` is not an address or range: write \"10.0.0.5\" or \"10.0.0.0/8\""))
        })
    }
}

impl Serialize for TrustedProxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}
