//! `switchyard dev-cert`: a local certificate authority and a localhost certificate it signed,
//! for the demo and the tests. Trust `localhost-ca.pem` in a client; serve `localhost.pem`
//! with `localhost-key.pem`. Never for production. `certs/README.md` tells how to trust
//! and rotate it.
//!
//! The CA's private key is never written: it signs the one certificate and is dropped, so
//! a trusted development CA cannot be used to mint certificates for other names. The
//! server key is written readable by its owner only, and existing files are replaced only
//! when asked to ([`Overwrite::Replace`]), because replacing the CA undoes its trust.

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
    /// A development certificate is there already and replacing it was not asked for.
    #[error(
        "{0} exists: a new certificate comes with a new CA that must be trusted again; to rotate, run \
         `switchyard dev-cert --force` (see certs/README.md)"
    )]
    Exists(PathBuf),
}

/// What [`write`] does with files that are there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with [`DevCertError::Exists`].
    Refuse,
    /// Replace them (rotation).
    Replace,
}

/// Names the certificate covers: what a developer types in a browser.
const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes `localhost-ca.pem`, `localhost.pem` and `localhost-key.pem` into `dir`, which is
/// made if missing. With [`Overwrite::Refuse`] nothing is written when any of them exists.
pub fn write(dir: &Path, overwrite: Overwrite) -> Result<DevCert, DevCertError> {
    let out = DevCert {
        ca: dir.join("localhost-ca.pem"),
        cert: dir.join("localhost.pem"),
        key: dir.join("localhost-key.pem"),
    };
    if overwrite == Overwrite::Refuse {
        if let Some(existing) = [&out.ca, &out.cert, &out.key].into_iter().find(|p| p.exists()) {
            return Err(DevCertError::Exists(existing.clone()));
        }
    }
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

    let mkdir = std::fs::create_dir_all(dir);
    mkdir.map_err(|source| DevCertError::Write { path: dir.to_path_buf(), source })?;
    write_file(&out.key, &key.serialize_pem(), 0o600)?;
    write_file(&out.cert, &(leaf.pem() + &ca.pem()), 0o644)?;
    write_file(&out.ca, &ca.pem(), 0o644)?;
    Ok(out)
}

/// Writes `text` to `path` with exactly `mode` (also when the file was there with another).
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), DevCertError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let written = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).and_then(
        |mut file| {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(text.as_bytes())
        },
    );
    written.map_err(|source| DevCertError::Write { path: path.to_path_buf(), source })
}
