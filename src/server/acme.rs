//! `[server.tls] acme`: the TLS listeners' certificate obtained and renewed over ACME by
//! `rustls-acme`, proved with TLS-ALPN-01 on those same listeners.
//!
//! rustls-acme owns the protocol: the account, orders, the challenge certificate, renewal
//! at two thirds of the certificate's lifetime, and retries after a failed order (1 s,
//! 2 s, 4 s ... up to 2^16 s) during which the certificate in use keeps being served. Here
//! are what Switchyard adds: the cache on disk (owner-only files, written whole by rename,
//! so a crash never leaves half a key), the directory's trusted roots, the log lines, the
//! expiry shown by `/metrics`, and the split of each TLS connection into a challenge (answered
//! with the challenge certificate, then closed) or a browser (served as usual).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_acme::{AccountCache, AcmeState, CertCache, EventOk, ResolvesServerCertAcme};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::TlsError;
use crate::config::AcmeConfig;

/// rustls-acme's longest pause between two failed orders is 2^16 s.
const MAX_BACKOFF_EXPONENT: u32 = 16;

/// The ACME certificate of this process: what TLS connections are accepted with, and the
/// state that obtains and renews it (run once by [`Acme::drive`]).
pub struct Acme {
    serve: Arc<ServerConfig>,
    challenge: Arc<ServerConfig>,
    status: Arc<AcmeStatus>,
    state: Mutex<Option<AcmeState<std::io::Error>>>,
    settings: AcmeConfig,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").field("domains", &self.settings.domains).finish_non_exhaustive()
    }
}

/// What `/metrics` shows of the ACME certificate.
#[derive(Debug, Default)]
pub struct AcmeStatus {
    /// The certificate's notAfter, Unix seconds; 0 until there is one.
    not_after: AtomicI64,
    /// Orders that failed in a row (0 after a success).
    failures: AtomicU64,
    /// TLS-ALPN-01 probes answered (anyone may send one: counted, logged at debug only).
    validations: AtomicU64,
}

impl AcmeStatus {
    /// The served certificate's notAfter in Unix seconds, if there is one yet.
    pub fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Orders that failed in a row.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// TLS-ALPN-01 validation connections answered.
    pub fn validations(&self) -> u64 {
        self.validations.load(Ordering::Relaxed)
    }
}

impl Acme {
    /// Sets up the state (nothing is fetched yet) and the two rustls configs.
    pub fn new(settings: &AcmeConfig) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = client_config(settings, provider.clone())?;
        let status = Arc::new(AcmeStatus::default());
        let cache = DiskCache { dir: settings.cache.clone(), status: status.clone() };
        let state = rustls_acme::AcmeConfig::new_with_client_config(&settings.domains, client)
            .contact_push(&settings.contact)
            .directory(&settings.directory)
            .cache(cache)
            .state();
        let resolver: Arc<ResolvesServerCertAcme> = state.resolver();
        let mut serve = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        serve.alpn_protocols = super::tls::ALPN.iter().map(|p| p.to_vec()).collect();
        let challenge = state.challenge_rustls_config_with_provider(provider);
        Ok(Self {
            serve: Arc::new(serve),
            challenge,
            status,
            state: Mutex::new(Some(state)),
            settings: settings.clone(),
        })
    }

    /// What `/metrics` reads.
    pub fn status(&self) -> Arc<AcmeStatus> {
        self.status.clone()
    }

    /// A TLS handshake on `stream`: `None` for an ACME server's TLS-ALPN-01 probe, which is
    /// answered with the challenge certificate and closed.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<Option<TlsStream<TcpStream>>> {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        if rustls_acme::is_tls_alpn_challenge(&start.client_hello()) {
            self.status.validations.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(sni = start.client_hello().server_name(), "ACME TLS-ALPN-01 validation connection");
            let mut tls = start.into_stream(self.challenge.clone()).await?;
            let _ = tls.shutdown().await;
            return Ok(None);
        }
        start.into_stream(self.serve.clone()).await.map(Some)
    }

    /// Obtains, deploys and renews the certificate until `stop`; logs each step. The first
    /// call runs it; later calls return at once.
    pub async fn drive(&self, stop: CancellationToken) {
        let Some(mut state) = self.state.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let (domains, directory) = (&self.settings.domains, &self.settings.directory);
        tracing::info!(?domains, %directory, cache = %self.settings.cache.display(), "ACME: looking for a certificate");
        loop {
            let event = tokio::select! {
                event = state.next() => event,
                () = stop.cancelled() => return,
            };
            let not_after = self.status.not_after().map(unix_to_rfc3339);
            match event {
                None => return,
                Some(Ok(EventOk::DeployedCachedCert)) => {
                    tracing::info!(?domains, ?not_after, "ACME: serving the cached certificate (no new order)")
                }
                Some(Ok(EventOk::DeployedNewCert)) => {
                    self.status.failures.store(0, Ordering::Relaxed);
                    tracing::info!(?domains, %directory, "ACME: obtained a new certificate")
                }
                Some(Ok(EventOk::CertCacheStore)) => {
                    tracing::info!(?domains, ?not_after, "ACME: certificate stored in the cache")
                }
                Some(Ok(EventOk::AccountCacheStore)) => tracing::debug!("ACME: account key stored in the cache"),
                Some(Err(rustls_acme::EventError::Order(error))) => {
                    let failures = self.status.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    let exponent = (failures - 1).min(u64::from(MAX_BACKOFF_EXPONENT)) as u32;
                    let retry_in = Duration::from_secs(1 << exponent);
                    let serving = if not_after.is_some() { "the certificate in use" } else { "no certificate yet" };
                    tracing::warn!(
                        %directory, error = %error, failures, ?retry_in, ?not_after,
                        "ACME order failed; serving {serving}, retrying after backoff"
                    );
                }
                Some(Err(error)) => tracing::warn!(error = %error, "ACME: certificate cache or certificate problem"),
            }
        }
    }
}

/// The HTTPS client config for the ACME server: the Web PKI roots and `directory_ca`'s.
fn client_config(
    settings: &AcmeConfig,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = &settings.directory_ca {
        for cert in super::tls::read_certs(path)? {
            roots.add(cert).map_err(|source| TlsError::BadRoot { path: path.clone(), source })?;
        }
    }
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(client))
}

/// The cache folder: `account-HASH.key` (the account's key) and `cert-HASH.pem` (the
/// certificate's key, then its chain), HASH naming the directory with the contact or the
/// domains, so another server or another set of names never takes the wrong file.
struct DiskCache {
    dir: PathBuf,
    status: Arc<AcmeStatus>,
}

impl DiskCache {
    fn path(&self, kind: &str, names: &[String], directory: &str, ext: &str) -> PathBuf {
        let mut hash = Sha256::new();
        for name in names {
            hash.update(name.as_bytes());
            hash.update([0]);
        }
        hash.update(directory.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{kind}-{hex}.{ext}"))
    }

    /// Records the certificate's expiry for `/metrics`.
    fn note(&self, pem: &[u8]) {
        if let Some(not_after) = leaf_not_after(pem) {
            self.status.not_after.store(not_after, Ordering::Relaxed);
        }
    }
}

async fn read(path: PathBuf) -> std::io::Result<Option<Vec<u8>>> {
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
    }
}

/// Writes `bytes` to `path` owner-only and whole: a temp file beside it, then a rename.
async fn write(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    let shown = path.display().to_string();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut file = tempfile::Builder::new().prefix(".tmp-").permissions(owner_only()).tempfile_in(dir)?;
        file.write_all(&bytes)?;
        file.as_file().sync_all()?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    });
    let result = written.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    result.map_err(|e| std::io::Error::new(e.kind(), format!("cannot write {shown}: {e}")))
}

fn owner_only() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o600)
}

#[async_trait::async_trait]
impl CertCache for DiskCache {
    type EC = std::io::Error;

    async fn load_cert(&self, domains: &[String], directory: &str) -> Result<Option<Vec<u8>>, Self::EC> {
        let pem = read(self.path("cert", domains, directory, "pem")).await?;
        if let Some(pem) = &pem {
            self.note(pem);
        }
        Ok(pem)
    }

    async fn store_cert(&self, domains: &[String], directory: &str, cert: &[u8]) -> Result<(), Self::EC> {
        self.note(cert);
        write(self.path("cert", domains, directory, "pem"), cert.to_vec()).await
    }
}

#[async_trait::async_trait]
impl AccountCache for DiskCache {
    type EA = std::io::Error;

    async fn load_account(&self, contact: &[String], directory: &str) -> Result<Option<Vec<u8>>, Self::EA> {
        read(self.path("account", contact, directory, "key")).await
    }

    async fn store_account(&self, contact: &[String], directory: &str, account: &[u8]) -> Result<(), Self::EA> {
        write(self.path("account", contact, directory, "key"), account.to_vec()).await
    }
}

/// The first certificate's notAfter (Unix seconds) in a PEM bundle (a key may come first).
fn leaf_not_after(pem: &[u8]) -> Option<i64> {
    let leaf = rustls_pemfile::certs(&mut BufReader::new(pem)).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn unix_to_rfc3339(seconds: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_expiry_is_read_past_a_leading_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 6);
        let cert = params.self_signed(&key).unwrap();
        let bundle = format!("{}\n{}", key.serialize_pem(), cert.pem());
        assert_eq!(leaf_not_after(bundle.as_bytes()), Some(1_935_792_000));
        assert_eq!(leaf_not_after(key.serialize_pem().as_bytes()), None);
    }
}
