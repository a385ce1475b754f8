//! `berth certs`: a CA and a serving certificate for the webhook's Service.

use crate::certs::{self, IssueRequest};
use anyhow::Context;
use base64::Engine as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// The webhook's Service name: the certificate is for
    /// <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local.
    #[arg(long)]
    service: String,
    /// The namespace berth runs in.
    #[arg(long)]
    namespace: String,
    /// Where to write ca.crt, ca.key, tls.crt and tls.key.
    #[arg(long)]
    out: PathBuf,
    /// Another DNS name or IP address for the serving certificate; repeat.
    #[arg(long)]
    san: Vec<String>,
    /// Issue a new serving certificate under the CA already in --out (the
    /// caBundle stays the same).
    #[arg(long)]
    renew: bool,
    /// Also write client.crt and client.key: a client certificate with this
    /// common name, signed by the same CA, for kube-apiserver to present
    /// when berth serve runs with --client-ca ca.crt (certs/README.md).
    #[arg(long, value_name = "NAME")]
    client_cert: Option<String>,
    /// Validity of the serving certificate, in days (the CA gets ten years).
    #[arg(long, default_value_t = 365)]
    days: u32,
}

impl CertsArgs {
    /// Writes the files, then prints the caBundle (base64 of ca.crt) alone
    /// on stdout, so `CA_BUNDLE=$(berth certs ...)` works; the rest goes to
    /// stderr.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut names = certs::service_names(&self.service, &self.namespace)?;
        names.extend(self.san.iter().filter(|san| !names.contains(san)).cloned().collect::<Vec<_>>());
        let request =
            IssueRequest { names: names.clone(), days: self.days, renew: self.renew, client: self.client_cert.clone() };
        let issued = certs::issue(&self.out, &request)
            .with_context(|| format!("issuing a serving certificate in {}", self.out.display()))?;
        eprintln!(
            "{} a serving certificate for {} (valid {} days): {}, {}; CA {}{}",
            if self.renew { "renewed" } else { "issued" },
            names.join(", "),
            self.days,
            issued.files.cert.display(),
            issued.files.key.display(),
            issued.files.ca_cert.display(),
            if self.renew { "" } else { " (keep ca.key private: it signs renewals)" },
        );
        if let (Some(name), Some((cert, key))) = (&self.client_cert, &issued.client) {
            eprintln!(
                "a client certificate for {name:?} (valid {} days): {}, {}; berth serve --client-ca {} accepts it",
                self.days,
                cert.display(),
                key.display(),
                issued.files.ca_cert.display(),
            );
        }
        eprintln!("caBundle for the webhook configurations (base64 of ca.crt):");
        println!("{}", base64::engine::general_purpose::STANDARD.encode(issued.ca_pem.as_bytes()));
        Ok(ExitCode::SUCCESS)
    }
}
