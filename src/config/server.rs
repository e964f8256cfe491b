//! `[server]` and `[server.tls]`: where Switchyard listens and whom it believes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::units::{Addrs, ConfigDuration};

/// Grace period after SIGTERM: long enough for a slow Django page, short enough for a deploy.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A browser sends its request head at once; 30 s only lets slow-loris clients hold sockets.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The `[server]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Plain-HTTP listen addresses: one "IP:PORT" or a list. Default: none.
    #[serde(default)]
    pub listen: Addrs,
    /// TLS listeners, certificate and key (see `[server.tls]`). Default: no TLS.
    pub tls: Option<TlsConfig>,
    /// Peers (addresses or CIDR ranges) whose X-Forwarded-For/-Proto/-Host headers are
    /// believed, e.g. a TLS-terminating load balancer. From anyone else they are replaced.
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
    /// How long a downstream may take to send a request head. Default: "30s".
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: ConfigDuration,
    /// Worker threads, each with its own listeners and upstream pool; 0 means one per CPU
    /// core. Default: 0.
    #[serde(default)]
    pub workers: usize,
}

/// The `[server.tls]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
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

impl ServerConfig {
    /// The number of worker threads to run: `workers`, or one per core when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

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
