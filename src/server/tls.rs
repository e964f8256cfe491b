//! TLS for downstream listeners: rustls with the ring provider, ALPN h2 and http/1.1
//! (RFC 7301) so HTTP/2 browsers get HTTP/2, and the certificate from a PEM chain and key
//! or from ACME ([`super::acme`]).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::acme::Acme;
use crate::config::{Certificate, TlsConfig};

/// The application protocols offered, most preferred first.
pub(super) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why the TLS listener cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    /// rustls refused the pair (key does not match, unsupported algorithm).
    #[error("certificate {cert} and key {key} cannot be used: {source}")]
    Rejected { cert: PathBuf, key: PathBuf, source: rustls::Error },
    /// A root certificate in `directory_ca` is unusable.
    #[error("{path}: a root certificate cannot be used: {source}")]
    BadRoot { path: PathBuf, source: rustls::Error },
    /// The crypto provider offers no safe protocol version (a build problem).
    #[error("the TLS provider cannot be used: {0}")]
    Provider(rustls::Error),
}

/// How a TLS listener's connections are accepted: with the certificate from files, or from
/// ACME (which also answers the ACME server's TLS-ALPN-01 probes).
#[derive(Clone)]
pub(super) enum Terminator {
    Files(TlsAcceptor),
    Acme(Arc<Acme>),
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Files(_) => f.write_str("Terminator::Files"),
            Self::Acme(acme) => f.debug_tuple("Terminator::Acme").field(acme).finish(),
        }
    }
}

impl Terminator {
    /// The terminator for `config`: the files read now, or the process's ACME state
    /// (`acme`, made once at start).
    pub fn new(config: &TlsConfig, acme: Option<&Arc<Acme>>) -> Result<Self, TlsError> {
        match (&config.certificate, acme) {
            (Certificate::Files { cert, key }, _) => acceptor(cert, key).map(Self::Files),
            (Certificate::Acme(_), Some(acme)) => Ok(Self::Acme(acme.clone())),
            (Certificate::Acme(settings), None) => Acme::new(settings).map(|a| Self::Acme(Arc::new(a))),
        }
    }

    /// The handshake; `None` when the connection was an ACME validation, already answered.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<Option<TlsStream<TcpStream>>> {
        match self {
            Self::Files(acceptor) => acceptor.accept(stream).await.map(Some),
            Self::Acme(acme) => acme.accept(stream).await,
        }
    }
}

/// Builds the acceptor for a PEM chain and key.
fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let (cert, key) = (&cert.to_path_buf(), &key.to_path_buf());
    let certs = read_certs(cert)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|source| TlsError::Rejected { cert: cert.clone(), key: key.clone(), source })?;
    server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, TlsError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Unreadable { path: path.to_path_buf(), source })
}

pub(super) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Unreadable { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Unreadable { path: path.to_path_buf(), source })?
        .ok_or_else(|| TlsError::NoKey(path.to_path_buf()))
}
