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
    /// Where the certificate comes from.
    pub certificate: Certificate,
}

/// Where the TLS listeners' certificate comes from: files, or an ACME server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Certificate {
    /// A PEM chain and key, anchored at the config's folder (reloaded on SIGHUP).
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// Obtained and renewed over ACME (TLS-ALPN-01 on the TLS listeners).
    Acme(AcmeConfig),
}

/// The validated `[server.tls] acme` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeConfig {
    /// DNS names the certificate covers, as written (lower-cased).
    pub domains: Vec<String>,
    /// The account's contact, a `mailto:` URL.
    pub contact: String,
    /// The ACME server's directory URL (https).
    pub directory: String,
    /// Folder for the account key and certificates (made if missing, owner-only).
    pub cache: PathBuf,
    /// Extra PEM roots trusted for the directory's HTTPS, besides the Web PKI's.
    pub directory_ca: Option<PathBuf>,
}

/// Let's Encrypt's production directory: the default ACME server.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// More names than Let's Encrypt puts in one certificate is a mistake.
pub const MAX_ACME_DOMAINS: usize = 100;

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
    /// Required unless `acme` is set; reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Relative paths as for `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Obtain and renew the certificate over ACME instead of `cert` and `key` (see
    /// `[server.tls] acme`). Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSection>,
}

/// `[server.tls] acme = { ... }` as written: a certificate from an ACME server (Let's
/// Encrypt by default), proved with TLS-ALPN-01 on the TLS listeners, so one of them must
/// be what the domains' port 443 reaches. The certificate and account key are kept in
/// `cache` and reused at the next start; a certificate is renewed when two thirds of its
/// lifetime have passed. A failed order is logged with the ACME server's error and retried
/// after 1 s, 2 s, 4 s ... (at most about 18 h), while the certificate in use, if any,
/// keeps being served. A change here takes effect at the next restart, not on reload.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcmeSection {
    /// DNS names the certificate covers, e.g. ["example.com", "www.example.com"]; no
    /// wildcards and no IP addresses (TLS-ALPN-01 proves neither). Required.
    pub domains: Vec<String>,
    /// Who the ACME server may write to about the account, e.g. "mailto:ops@example.com".
    /// Required.
    pub contact: String,
    /// The ACME server's directory URL, https only.
    /// Default: "https://acme-v02.api.letsencrypt.org/directory" (Let's Encrypt).
    #[serde(default = "default_directory")]
    pub directory: String,
    /// Folder for the account key and the certificates, made (owner-only) if missing; it
    /// must be writable and survive restarts, e.g. "/var/lib/switchyard/acme" with the
    /// unit's StateDirectory. Relative paths start at the config file's folder. Required.
    pub cache: PathBuf,
    /// A PEM file of extra root certificates trusted for the directory's HTTPS, for a
    /// private ACME server (step-ca, pebble); the Web PKI roots are trusted as well.
    /// Relative paths as for `cache`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_ca: Option<PathBuf>,
}

fn default_directory() -> String {
    LETS_ENCRYPT_DIRECTORY.to_string()
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
            for path in [&mut tls.cert, &mut tls.key].into_iter().flatten() {
                *path = super::anchored(base, path);
            }
            if let Some(acme) = &mut tls.acme {
                acme.cache = super::anchored(base, &acme.cache);
                if let Some(ca) = &mut acme.directory_ca {
                    *ca = super::anchored(base, ca);
                }
            }
        }
    }

    pub(super) fn validate(&self, check: &Check) -> Result<ServerConfig, ConfigError> {
        let tls = self.tls.as_ref().map(|t| t.validate(check)).transpose()?;
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

impl TlsSection {
    fn validate(&self, check: &Check) -> Result<TlsConfig, ConfigError> {
        let certificate = match (&self.cert, &self.key, &self.acme) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(check.reject(
                    "server.tls.acme",
                    "`acme` and `cert`/`key` are two sources for one certificate: keep `acme` and remove \
                     `cert` and `key`, or the other way round",
                ))
            }
            (Some(cert), Some(key), None) => Certificate::Files { cert: cert.clone(), key: key.clone() },
            (Some(_), None, None) => {
                return Err(check.reject("server.tls.cert", "a certificate needs its key: add key = \"PATH.pem\""))
            }
            (None, Some(_), None) => {
                return Err(check.reject("server.tls.key", "a key needs its certificate: add cert = \"PATH.pem\""))
            }
            (None, None, Some(acme)) => Certificate::Acme(acme.validate(check)?),
            (None, None, None) => {
                return Err(check.reject(
                    "server.tls",
                    "no certificate: write cert = \"certs/localhost.pem\" and key = \"certs/localhost-key.pem\", \
                     or acme = { domains = [\"example.com\"], contact = \"mailto:ops@example.com\", \
                     cache = \"/var/lib/switchyard/acme\" }",
                ))
            }
        };
        Ok(TlsConfig { listen: self.listen.0.clone(), certificate })
    }
}

impl AcmeSection {
    fn validate(&self, check: &Check) -> Result<AcmeConfig, ConfigError> {
        if self.domains.is_empty() || self.domains.len() > MAX_ACME_DOMAINS {
            return Err(check.reject(
                "server.tls.acme.domains",
                format!("name 1 to {MAX_ACME_DOMAINS} domains the certificate covers: domains = [\"example.com\"]"),
            ));
        }
        let mut domains = Vec::with_capacity(self.domains.len());
        for (i, domain) in self.domains.iter().enumerate() {
            let key = format!("server.tls.acme.domains[{i}]");
            let domain = acme_domain(domain).map_err(|why| check.reject(&key, why))?;
            if domains.contains(&domain) {
                return Err(check.reject(&key, format!("`{domain}` is listed twice: list each name once")));
            }
            domains.push(domain);
        }
        let mailbox = self.contact.strip_prefix("mailto:").unwrap_or_default();
        if !mailbox.contains('@') || mailbox.starts_with('@') || mailbox.ends_with('@') || mailbox.contains(',') {
            return Err(check.reject(
                "server.tls.acme.contact",
                format!("`{}` is not one mailto: address: write contact = \"mailto:ops@example.com\"", self.contact),
            ));
        }
        let uri = self.directory.parse::<http::Uri>().ok();
        if !uri.as_ref().is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some_and(|h| !h.is_empty())) {
            return Err(check.reject(
                "server.tls.acme.directory",
                format!(
                    "`{}` is not an https URL: write the ACME server's directory, e.g. directory = \"{LETS_ENCRYPT_DIRECTORY}\"",
                    self.directory
                ),
            ));
        }
        writable_dir(&self.cache).map_err(|e| {
            check.reject(
                "server.tls.acme.cache",
                format!(
                    "cannot write in {}: {e}: make it a folder the user Switchyard runs as may write, e.g. \
                     cache = \"/var/lib/switchyard/acme\" with StateDirectory=switchyard in the unit",
                    self.cache.display()
                ),
            )
        })?;
        Ok(AcmeConfig {
            domains,
            contact: self.contact.clone(),
            directory: self.directory.clone(),
            cache: self.cache.clone(),
            directory_ca: self.directory_ca.clone(),
        })
    }
}

/// `domain` as an ACME DNS identifier TLS-ALPN-01 can prove, lower-cased; else why not.
fn acme_domain(domain: &str) -> Result<String, String> {
    let lower = domain.trim_end_matches('.').to_ascii_lowercase();
    if lower.starts_with("*.") {
        return Err(format!("`{domain}` is a wildcard, which TLS-ALPN-01 cannot prove: list each name"));
    }
    if lower.parse::<IpAddr>().is_ok() {
        return Err(format!("`{domain}` is an IP address: ACME certificates here are for DNS names"));
    }
    let labels_ok = lower.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if lower.len() > 253 || !labels_ok {
        return Err(format!("`{domain}` is not a DNS name: write it like \"example.com\" (IDNs in punycode)"));
    }
    Ok(lower)
}

/// Makes `dir` (owner-only) if missing and proves a file can be made in it.
fn writable_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    tempfile::tempfile_in(dir).map(drop)
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
