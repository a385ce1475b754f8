//! Serving certificates: a CA and a serving certificate it signs.
//!
//! Two users: `berth serve` without `--tls-cert` (a throwaway CA for
//! development, [`generate`]), and `berth certs` (a CA kept in a directory,
//! and serving certificates for the webhook's Service issued and renewed
//! under it, [`issue`]). Clusters can also use cert-manager or their own
//! PKI (certs/README.md).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// File names inside a certificate directory, as Kubernetes TLS Secrets and
/// cert-manager name them, so the directory can become a Secret as is.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// A client certificate for kube-apiserver, for `berth serve --client-ca`.
pub const CLIENT_CERT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";

const CA_NAME: &str = "berth webhook CA";
/// Issued certificates start an hour back, for clocks a little behind ours.
const BACKDATE: Duration = Duration::from_secs(3600);

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
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path} is not a PEM certificate")]
    NotACertificate { path: PathBuf },
    #[error("{path} is not a PEM private key")]
    NotAKey {
        path: PathBuf,
        #[source]
        error: rcgen::Error,
    },
    #[error("{dir} already holds a CA ({CA_CERT}, {CA_KEY}): renew under it, or remove them to start a new CA")]
    CaExists { dir: PathBuf },
    #[error("{dir} holds no CA to renew under ({CA_CERT} and {CA_KEY} are both needed)")]
    NoCa { dir: PathBuf },
    #[error("a certificate signed with {key} does not verify against {cert} for {name}: is {key} that CA's key?")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        name: String,
        // Boxed: rustls's error is large, and this one is rare.
        #[source]
        error: Box<rustls::Error>,
    },
    #[error("{name:?} is not a DNS label (lowercase letters, digits and '-', at most 63)")]
    NotALabel { name: String },
    #[error("a serving certificate needs at least one name")]
    NoNames,
    #[error("validity {days} days is out of range (1 to 3650)")]
    Validity { days: u32 },
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
/// The CA's key is not kept: nothing else can ever be signed by it.
pub fn generate(dir: &Path, names: &[String]) -> Result<GeneratedCerts, CertError> {
    let ca = new_ca(None)?;
    let (cert, key) = leaf(names, &ca, None)?;
    create_dir(dir)?;
    Ok(GeneratedCerts {
        ca_cert: write(dir, CA_CERT, &ca.pem())?,
        // Key first, then certificate: a watcher that sees the new
        // certificate finds its key already in place.
        key: write(dir, TLS_KEY, &key)?,
        cert: write(dir, TLS_CERT, &cert)?,
    })
}

/// The names kube-apiserver uses for a webhook Service: it connects to
/// `<service>.<namespace>.svc`; the fully qualified form is for clients
/// inside the cluster that resolve it (`helm test`, monitoring).
pub fn service_names(service: &str, namespace: &str) -> Result<Vec<String>, CertError> {
    for label in [service, namespace] {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(CertError::NotALabel { name: label.to_owned() });
        }
    }
    Ok(vec![format!("{service}.{namespace}.svc"), format!("{service}.{namespace}.svc.cluster.local")])
}

/// What `berth certs` asks for.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// DNS names and IP addresses of the serving certificate; the first is
    /// its common name.
    pub names: Vec<String>,
    /// How long the serving certificate is valid.
    pub days: u32,
    /// Issue under the CA already in the directory instead of creating one.
    pub renew: bool,
    /// Also issue a client certificate with this common name (the user
    /// kube-apiserver presents under `--client-ca`).
    pub client: Option<String>,
}

/// What `berth certs` wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    pub files: GeneratedCerts,
    pub ca_key: PathBuf,
    /// `ca.crt` as it is on disk: the webhook configurations' `caBundle`
    /// is its base64.
    pub ca_pem: String,
    /// `client.crt` and `client.key`, if a client certificate was asked for.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Create a CA in `dir` (or, with `renew`, load the one there) and issue a
/// serving certificate for `request.names` under it: `ca.crt`, `ca.key`,
/// `tls.crt`, `tls.key`. A new CA never replaces one that exists: its
/// certificate is in the webhook configurations' caBundle.
pub fn issue(dir: &Path, request: &IssueRequest) -> Result<Issued, CertError> {
    if !(1..=3650).contains(&request.days) {
        return Err(CertError::Validity { days: request.days });
    }
    if request.names.is_empty() {
        return Err(CertError::NoNames);
    }
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let now = std::time::SystemTime::now();
    let validity = Some((now - BACKDATE, now + Duration::from_secs(u64::from(request.days) * 86_400)));
    let (ca_pem, leaf_cert, leaf_key, client) = if request.renew {
        if !ca_cert.exists() || !ca_key.exists() {
            return Err(CertError::NoCa { dir: dir.to_owned() });
        }
        let ca_pem = read(&ca_cert)?;
        if CertificateDer::from_pem_slice(ca_pem.as_bytes()).is_err() {
            return Err(CertError::NotACertificate { path: ca_cert.clone() });
        }
        let key =
            KeyPair::from_pem(&read(&ca_key)?).map_err(|error| CertError::NotAKey { path: ca_key.clone(), error })?;
        // The issuer as `berth certs` made it: its name and key are all a
        // leaf takes from it. A CA of other origin fails the check below.
        let issuer = Issuer::new(ca_params(None)?, key);
        let (cert, key) = leaf(&request.names, &issuer, validity)?;
        let client = request.client.as_deref().map(|name| client_leaf(name, &issuer, validity)).transpose()?;
        (ca_pem, cert, key, client)
    } else {
        if ca_cert.exists() || ca_key.exists() {
            return Err(CertError::CaExists { dir: dir.to_owned() });
        }
        let ca = new_ca(Some((now - BACKDATE, now + Duration::from_secs(10 * 365 * 86_400))))?;
        let (cert, key) = leaf(&request.names, &ca, validity)?;
        let client = request.client.as_deref().map(|name| client_leaf(name, &ca, validity)).transpose()?;
        create_dir(dir)?;
        write(dir, CA_KEY, &ca.key().serialize_pem())?;
        write(dir, CA_CERT, &ca.pem())?;
        (ca.pem(), cert, key, client)
    };
    // A renewal under a ca.key that does not belong to ca.crt would write a
    // certificate nobody trusts; check the chain as a TLS client would
    // before replacing the one in use.
    verify(&ca_pem, &leaf_cert, &request.names[0]).map_err(|error| CertError::Mismatch {
        cert: ca_cert.clone(),
        key: ca_key.clone(),
        name: request.names[0].clone(),
        error: Box::new(error),
    })?;
    let key = write(dir, TLS_KEY, &leaf_key)?;
    let cert = write(dir, TLS_CERT, &leaf_cert)?;
    let client = match client {
        Some((client_cert, client_key)) => {
            let key = write(dir, CLIENT_KEY, &client_key)?;
            Some((write(dir, CLIENT_CERT, &client_cert)?, key))
        }
        None => None,
    };
    Ok(Issued { files: GeneratedCerts { ca_cert, cert, key }, ca_key, ca_pem, client })
}

type Validity = Option<(std::time::SystemTime, std::time::SystemTime)>;

struct NewCa(CertifiedIssuer<'static, KeyPair>);

impl NewCa {
    fn pem(&self) -> String {
        self.0.pem()
    }

    fn key(&self) -> &KeyPair {
        self.0.key()
    }
}

impl std::ops::Deref for NewCa {
    type Target = Issuer<'static, KeyPair>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn ca_params(validity: Validity) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, validity);
    Ok(params)
}

fn new_ca(validity: Validity) -> Result<NewCa, CertError> {
    Ok(NewCa(CertifiedIssuer::self_signed(ca_params(validity)?, KeyPair::generate()?)?))
}

/// A serving certificate for `names` and its key, both PEM.
fn leaf(names: &[String], issuer: &Issuer<'_, KeyPair>, validity: Validity) -> Result<(String, String), CertError> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("berth"));
    signed(params, ExtendedKeyUsagePurpose::ServerAuth, issuer, validity)
}

/// A client certificate for `name` (its common name, as kube-apiserver's
/// kubeconfig user presents it) and its key, both PEM.
fn client_leaf(name: &str, issuer: &Issuer<'_, KeyPair>, validity: Validity) -> Result<(String, String), CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    signed(params, ExtendedKeyUsagePurpose::ClientAuth, issuer, validity)
}

/// A leaf certificate for one `usage`, with a new key, signed by `issuer`.
fn signed(
    mut params: CertificateParams,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
    validity: Validity,
) -> Result<(String, String), CertError> {
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    if let Some((from, until)) = validity {
        params.not_before = from.into();
        params.not_after = until.into();
    }
}

/// Verify `cert_pem` for `name` with `ca_pem` as the only trust anchor.
fn verify(ca_pem: &str, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let bad = |what: &str| rustls::Error::General(format!("{what} is not a PEM certificate"));
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| bad("the CA"))?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| bad("the certificate"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|err| rustls::Error::General(err.to_string()))?;
    let name = ServerName::try_from(name.to_owned()).map_err(|err| rustls::Error::General(err.to_string()))?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(&*verifier, &cert, &[], &name, &[], UnixTime::now())
        .map(drop)
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|error| CertError::Write { path: dir.to_owned(), error })
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|error| CertError::Read { path: path.to_owned(), error })
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, CertError> {
    let path = dir.join(name);
    write_private(&path, contents.as_bytes()).map_err(|error| CertError::Write { path: path.clone(), error })?;
    Ok(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(names: &[&str], renew: bool) -> IssueRequest {
        IssueRequest { names: names.iter().map(|n| n.to_string()).collect(), days: 30, renew, client: None }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("readable")
    }

    #[test]
    fn service_names_are_the_two_the_apiserver_and_the_cluster_use() {
        assert_eq!(
            service_names("berth", "berth-system").expect("valid"),
            ["berth.berth-system.svc", "berth.berth-system.svc.cluster.local"]
        );
        for (service, namespace) in [("Berth", "ns"), ("berth", ""), ("a.b", "ns"), ("berth", "-ns")] {
            assert!(
                matches!(service_names(service, namespace), Err(CertError::NotALabel { .. })),
                "{service}.{namespace}"
            );
        }
    }

    #[test]
    fn a_new_ca_signs_a_certificate_that_verifies_for_every_name_and_no_other() {
        let dir = tempfile::tempdir().expect("tmp");
        let issued = issue(dir.path(), &request(&["berth.ns.svc", "berth.ns.svc.cluster.local", "10.0.0.7"], false))
            .expect("issued");
        let (ca, cert) = (read(&issued.files.ca_cert), read(&issued.files.cert));
        assert_eq!(ca, issued.ca_pem);
        for name in ["berth.ns.svc", "berth.ns.svc.cluster.local", "10.0.0.7"] {
            verify(&ca, &cert, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify(&ca, &cert, "berth.other.svc").is_err());
        for file in [CA_KEY, TLS_KEY] {
            let key = read(&dir.path().join(file));
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{file}: {key}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.path().join(file)).expect("meta").permissions().mode();
                assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
            }
        }
    }

    #[test]
    fn renew_issues_a_new_leaf_under_the_same_ca_and_never_replaces_a_ca() {
        let dir = tempfile::tempdir().expect("tmp");
        issue(dir.path(), &request(&["berth.ns.svc"], false)).expect("first");
        let (ca_before, ca_key_before, cert_before, key_before) = (
            read(&dir.path().join(CA_CERT)),
            read(&dir.path().join(CA_KEY)),
            read(&dir.path().join(TLS_CERT)),
            read(&dir.path().join(TLS_KEY)),
        );
        let again = issue(dir.path(), &request(&["berth.ns.svc"], false)).expect_err("a second CA");
        assert!(matches!(again, CertError::CaExists { .. }), "{again}");

        let renewed = issue(dir.path(), &request(&["berth.ns.svc", "extra.example.com"], true)).expect("renewed");
        assert_eq!(read(&renewed.files.ca_cert), ca_before);
        assert_eq!(read(&dir.path().join(CA_KEY)), ca_key_before);
        let (cert, key) = (read(&renewed.files.cert), read(&renewed.files.key));
        assert_ne!(cert, cert_before);
        assert_ne!(key, key_before);
        verify(&ca_before, &cert, "berth.ns.svc").expect("the new leaf chains to the old CA");
        verify(&ca_before, &cert, "extra.example.com").expect("with the new SAN");
    }

    #[test]
    fn renew_refuses_a_missing_ca_or_a_key_of_another_ca() {
        let (one, other) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let err = issue(one.path(), &request(&["berth.ns.svc"], true)).expect_err("nothing to renew");
        assert!(matches!(err, CertError::NoCa { .. }), "{err}");

        issue(one.path(), &request(&["berth.ns.svc"], false)).expect("one");
        issue(other.path(), &request(&["berth.ns.svc"], false)).expect("other");
        let cert_before = read(&one.path().join(TLS_CERT));
        std::fs::copy(other.path().join(CA_KEY), one.path().join(CA_KEY)).expect("swap key");
        let err = issue(one.path(), &request(&["berth.ns.svc"], true)).expect_err("mismatched CA");
        assert!(matches!(err, CertError::Mismatch { .. }), "{err}");
        assert_eq!(read(&one.path().join(TLS_CERT)), cert_before, "the certificate in use is kept");
    }

    /// Verify a client certificate as `berth serve --client-ca` does.
    fn verify_client(ca_pem: &str, cert_pem: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("certificate PEM");
        rustls::server::danger::ClientCertVerifier::verify_client_cert(&*verifier, &cert, &[], UnixTime::now())
            .map(drop)
    }

    #[test]
    fn a_client_certificate_verifies_as_a_client_of_its_ca_only() {
        let (one, other) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let mut with_client = request(&["berth.ns.svc"], false);
        with_client.client = Some("berth.ns.svc".to_owned());
        let issued = issue(one.path(), &with_client).expect("issued");
        let (cert, key) = issued.client.expect("a client certificate");
        assert_eq!(cert, one.path().join(CLIENT_CERT));
        assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----"));
        let (ca, client) = (read(&issued.files.ca_cert), read(&cert));
        verify_client(&ca, &client).expect("the client certificate chains to its CA");
        // Not a serving certificate, and no client of another CA.
        assert!(verify(&ca, &client, "berth.ns.svc").is_err());
        let other_ca = issue(other.path(), &request(&["berth.ns.svc"], false)).expect("other").ca_pem;
        assert!(verify_client(&other_ca, &client).is_err());
        // The serving certificate is no client certificate either.
        assert!(verify_client(&ca, &read(&issued.files.cert)).is_err());

        let mut renew = request(&["berth.ns.svc"], true);
        renew.client = Some("berth.ns.svc".to_owned());
        let renewed = issue(one.path(), &renew).expect("renewed");
        let (cert, _) = renewed.client.expect("a renewed client certificate");
        let renewed_client = read(&cert);
        assert_ne!(renewed_client, client);
        verify_client(&ca, &renewed_client).expect("renewed under the same CA");
    }

    #[test]
    fn generate_still_writes_a_throwaway_ca_without_its_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let generated = generate(dir.path(), &["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("generated");
        verify(&read(&generated.ca_cert), &read(&generated.cert), "localhost").expect("verifies");
        assert!(!dir.path().join(CA_KEY).exists());
    }
}
