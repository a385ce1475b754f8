//! The control plane's certificates, made fresh for each run: a CA, the
//! apiserver's serving certificate, an administrator's client certificate
//! (group system:masters, for the harness, kubectl, helm and the
//! controllers), and the service-account token signing key.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub struct Pki {
    pub ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

impl Pki {
    /// `host` is the apiserver's address; the first address of the service
    /// range (10.96.0.1, the `kubernetes` Service) is named too.
    pub fn new(dir: &Path, host: Ipv4Addr) -> Result<Pki, rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "berth-e2e-kubernetes-ca");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut serving = CertificateParams::new(
            [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ]
            .map(String::from)
            .to_vec(),
        )?;
        for address in [IpAddr::V4(host), IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))] {
            serving.subject_alt_names.push(SanType::IpAddress(address));
        }
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        let serving = serving.signed_by(&serving_key, &ca)?;

        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin.distinguished_name.push(DnType::CommonName, "kubernetes-admin");
        admin.distinguished_name.push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin = admin.signed_by(&admin_key, &ca)?;

        let sa = KeyPair::generate()?;
        Ok(Pki {
            ca: write(dir, "ca.crt", &ca.pem()),
            serving_cert: write(dir, "apiserver.crt", &serving.pem()),
            serving_key: write(dir, "apiserver.key", &serving_key.serialize_pem()),
            admin_cert: write(dir, "admin.crt", &admin.pem()),
            admin_key: write(dir, "admin.key", &admin_key.serialize_pem()),
            sa_key: write(dir, "sa.key", &sa.serialize_pem()),
            sa_pub: write(dir, "sa.pub", &sa.public_key_pem()),
        })
    }
}
