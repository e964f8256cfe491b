//! A TLS client for tests: rustls (ring) trusting exactly the roots a test names.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};

/// A client config trusting the certificates in each PEM text, and nothing else.
pub fn client_config(pems: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS connection to `addr` for `name` (the SNI, and the name the certificate must hold).
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The chain the server sent (leaf first) on a finished handshake.
pub fn peer_chain(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<CertificateDer<'static>> {
    tls.get_ref().1.peer_certificates().unwrap().iter().map(|c| c.clone().into_owned()).collect()
}

/// A connector trusting the certificates in the PEM files `cas`, offering `alpn`.
pub fn connector(cas: &[&Path], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let pems: Vec<Vec<u8>> = cas.iter().map(|ca| std::fs::read(ca).unwrap()).collect();
    let mut config = Arc::unwrap_or_clone(client_config(&pems.iter().map(Vec::as_slice).collect::<Vec<_>>()));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
