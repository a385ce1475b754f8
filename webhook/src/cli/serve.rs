//! `berth serve`.

use super::RuntimeArgs;
use crate::cluster::{ApiConfig, OwnerCacheOptions};
use crate::server::{ServeOptions, TlsSource};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Policy configuration (berth.yaml); repeat to combine. Watched, and
    /// reloaded on change or SIGHUP. Default: the embedded Pulsar/Kafka policy.
    #[arg(long, short)]
    config: Vec<PathBuf>,
    /// HTTPS listener for /mutate, /validate, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Plain-HTTP listener for /metrics.
    #[arg(long, default_value = "127.0.0.1:9090")]
    metrics_listen: SocketAddr,
    /// Serving certificate (PEM), reloaded when it changes on disk.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Without --tls-cert: where to write the generated CA and certificate.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_dir: Option<PathBuf>,
    /// Require clients of /mutate and /validate to present a certificate
    /// signed by a CA in this PEM bundle (mutual TLS; certs/README.md).
    /// Reloaded when it changes. /healthz and /readyz stay open to
    /// clients without one (the kubelet's probes).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Connections open at once; past it berth stops accepting, and new
    /// connections wait in the kernel's queue until one closes. The
    /// apiserver keeps one HTTP/2 connection per apiserver (a few more when
    /// its streams run out; up to 25 kept-alive ones over HTTP/1.1), plus
    /// the kubelet's probes: a few dozen. 512 leaves room for bursts and
    /// stays below the 1024 open files some runtimes still allow.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// HTTP/2 streams open at once per connection. 100 is the least RFC
    /// 9113 recommends, far above --workers (streams beyond it only wait),
    /// and the apiserver's Go client opens another connection when it
    /// reaches it rather than failing requests.
    #[arg(long, default_value_t = 100)]
    max_streams: u32,
    /// How long a request body may take to arrive once its headers have;
    /// then 408. The apiserver sends a review at once; by 10 s (its
    /// default webhook timeout) it has given up on the call anyway.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Largest request body accepted: 3 MiB (the apiserver's own limit)
    /// plus room for the AdmissionReview envelope.
    #[arg(long, default_value = "3584Ki", value_parser = parse_size)]
    max_body_size: usize,
    /// Evaluations running at once; default: twice the CPUs.
    #[arg(long)]
    workers: Option<usize>,
    /// How long a request waits for a free worker before a 503.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    queue_timeout: Duration,
    /// How long SIGTERM waits for requests in flight.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Where the audit log goes; overrides `audit.path` in berth.yaml.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// The Kubernetes API, for what policies read of the cluster: namespace
    /// labels, owners, the default StorageClass (docs/CONFIG.md lists the
    /// RBAC each needs). Default: the in-cluster API when berth runs in a pod.
    #[arg(long, requires = "kube_ca")]
    kube_api: Option<String>,
    /// CA bundle of the Kubernetes API (with --kube-api).
    #[arg(long)]
    kube_ca: Option<PathBuf>,
    /// Bearer token file for the Kubernetes API (with --kube-api); read
    /// again as it rotates (projected service-account tokens do).
    #[arg(long)]
    kube_token_file: Option<PathBuf>,
    /// Memory the owner cache (for `match.owner` and `match.helmRelease`)
    /// may hold; about 250 bytes per owner object (docs/ARCHITECTURE.md).
    /// Past it, owners it cannot hold are looked up by GET when a review
    /// needs them (metric berth_owner_cache_at_limit).
    #[arg(long, default_value = "64Mi", value_parser = parse_size)]
    owner_cache_limit: usize,
    /// How long /readyz waits for the owners' first list; then berth is
    /// ready anyway, and looks up by GET the owners not listed yet.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    owner_sync_deadline: Duration,
    /// Objects per page of the owners' initial lists.
    #[arg(long, default_value_t = 500)]
    owner_list_page_size: u32,
    /// List owners with one streaming watch (Kubernetes WatchList,
    /// `sendInitialEvents`; served by apiservers from 1.27 with the
    /// WatchList feature) instead of pages.
    #[arg(long)]
    owner_streaming_list: bool,
    /// Record no Kubernetes Event for denials. By default each denial of a
    /// real request (not a dry run) is recorded as an `events.k8s.io/v1`
    /// Event on the object, or on its owner when the object was never
    /// stored (RBAC: create and patch on events; docs/AUDIT.md).
    #[arg(long)]
    no_events: bool,
    /// How often certificate and configuration files are checked.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    watch_interval: Duration,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn parse_size(text: &str) -> Result<usize, String> {
    crate::config::parse_byte_size(text)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{text:?} is not a size; write 3584Ki, 4Mi or bytes"))
}

impl ServeArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let workers = self.workers.unwrap_or(cpus * 2).max(1);
        let mut runtime = self.runtime.options();
        // One pooled instance per running evaluation, with headroom for
        // settings validation during a reload.
        runtime.max_instances = runtime.max_instances.max(workers as u32 + 8);
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::Generate { dir: self.tls_dir.unwrap_or_else(|| std::env::temp_dir().join("berth-tls")) },
        };
        let kube = match (self.kube_api, self.kube_ca) {
            (Some(url), Some(ca)) => Some(ApiConfig::Explicit { url, ca, token_file: self.kube_token_file }),
            _ => ApiConfig::from_environment(),
        };
        let options = ServeOptions {
            config: self.config,
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            tls,
            max_body: self.max_body_size,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections,
            max_streams: self.max_streams,
            client_ca: self.client_ca,
            workers,
            queue_timeout: self.queue_timeout,
            drain_timeout: self.drain_timeout,
            watch_interval: self.watch_interval,
            runtime,
            audit_log: self.audit_log,
            require_pinned: self.runtime.require_pinned,
            kube,
            owner_cache: OwnerCacheOptions {
                limit: self.owner_cache_limit,
                sync_deadline: self.owner_sync_deadline,
                page_size: self.owner_list_page_size,
                streaming: self.owner_streaming_list,
            },
            events: !self.no_events,
        };
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(workers + 4)
            .build()
            .context("starting the async runtime")?;
        tokio.block_on(crate::server::run(options))?;
        Ok(ExitCode::SUCCESS)
    }
}
