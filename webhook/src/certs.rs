//! Serving certificates: a self-signed CA and a serving certificate, for
//! development and for `berth serve` without `--tls-cert`. Clusters give
//! berth a certificate, from cert-manager say (certs/README.md).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CertError {
    #[error("generating a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// Paths of a generated CA and serving certificate.
#[derive(Debug, Clone)]
pub struct GeneratedCerts {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Write `ca.crt`, `tls.crt` and `tls.key` into `dir`, the serving
/// certificate valid for every name in `names` (DNS names or IP addresses).
pub fn generate(dir: &Path, names: &[String]) -> Result<GeneratedCerts, CertError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(DnType::CommonName, "berth webhook CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("berth"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    std::fs::create_dir_all(dir).map_err(|error| CertError::Write { path: dir.to_owned(), error })?;
    let write = |name: &str, contents: String| {
        let path = dir.join(name);
        write_private(&path, contents.as_bytes()).map_err(|error| CertError::Write { path: path.clone(), error })?;
        Ok::<_, CertError>(path)
    };
    Ok(GeneratedCerts {
        ca_cert: write("ca.crt", ca.pem())?,
        // Key first, then certificate: a watcher that sees the new
        // certificate finds its key already in place.
        key: write("tls.key", key.serialize_pem())?,
        cert: write("tls.crt", cert.pem())?,
    })
}

/// Write through a temporary file and rename, so readers never see half a
/// file; keys are readable by their owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(tmp, path)
}
