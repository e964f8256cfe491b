//! `switchyard dev-cert`: a local certificate authority and a localhost certificate it signed,
//! for the demo and the tests. Trust `localhost-ca.pem` in a client; serve `localhost.pem`
//! with `localhost-key.pem`. Never for production.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// Files written by [`write`].
#[derive(Debug)]
pub struct DevCert {
    /// The CA certificate clients should trust.
    pub ca: PathBuf,
    /// The server certificate chain (leaf then CA).
    pub cert: PathBuf,
    /// The server private key.
    pub key: PathBuf,
}

/// Why the development certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// rcgen failed to build or sign.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Names the certificate covers: what a developer types in a browser.
const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes `localhost-ca.pem`, `localhost.pem` and `localhost-key.pem` into `dir`.
pub fn write(dir: &Path) -> Result<DevCert, DevCertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Switchyard development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = params.signed_by(&key, &issuer)?;

    let out = DevCert {
        ca: dir.join("localhost-ca.pem"),
        cert: dir.join("localhost.pem"),
        key: dir.join("localhost-key.pem"),
    };
    let mkdir = std::fs::create_dir_all(dir);
    mkdir.map_err(|source| DevCertError::Write { path: dir.to_path_buf(), source })?;
    write_file(&out.ca, &ca.pem())?;
    write_file(&out.cert, &(leaf.pem() + &ca.pem()))?;
    write_file(&out.key, &key.serialize_pem())?;
    Ok(out)
}

fn write_file(path: &Path, text: &str) -> Result<(), DevCertError> {
    std::fs::write(path, text).map_err(|source| DevCertError::Write { path: path.to_path_buf(), source })
}
