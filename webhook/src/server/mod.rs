//! `berth serve`: the HTTPS admission server kube-apiserver calls.
//!
//! The listener accepts TLS, hyper serves h2 or http/1.1 as ALPN chose, and
//! axum routes `/mutate` and `/validate` to `routes.rs`, which hands the
//! synchronous Wasm work to the blocking pool, bounded by a semaphore.

mod first_byte;
mod metrics;
mod peer;
mod reload;
mod routes;
mod tls;

pub use metrics::Metrics;
pub use tls::{ReloadingCert, Tls, TlsError};

use crate::audit::AuditLog;
use crate::cluster::{ApiConfig, OwnerCacheOptions, Watches};
use crate::config::{Config, ConfigError, Source};
use crate::events::{EventTask, Events, Reporter};
use crate::policy::{PolicySet, PolicySetError};
use crate::runtime::{Runtime, RuntimeError, RuntimeOptions};
use arc_swap::ArcSwapOption;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A TLS handshake must finish within this, so idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client's first bytes, and then each HTTP/1.1 request's headers, must
/// arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// With --client-ca, connections without a client certificate (the
/// kubelet's probes, a scraper) get their own few slots and a short life:
/// a client library answers HTTP/2 pings itself, so anyone who can reach
/// the port could otherwise hold every --max-connections slot idle.
const UNCERTIFIED_CONNECTIONS: usize = 32;
const UNCERTIFIED_LIFETIME: Duration = Duration::from_secs(10);
/// At shutdown, how long the Events not yet written may take to be.
const EVENT_FLUSH: Duration = Duration::from_secs(3);
/// An idle HTTP/2 connection is pinged this often, and closed if a ping
/// goes unanswered this long.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policies(#[from] PolicySetError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
    #[error("opening the audit log")]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Kube(#[from] crate::cluster::KubeError),
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("loading the policies was interrupted")]
    LoadTask,
    #[error("the server task failed")]
    ServeTask,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generate a CA and a certificate for localhost/127.0.0.1 here.
    Generate {
        dir: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Configuration files; empty means the embedded default.
    pub config: Vec<PathBuf>,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: TlsSource,
    pub max_body: usize,
    /// How long a request's body may take to arrive, once its headers have.
    pub body_timeout: Duration,
    /// Connections open at once; past it, new ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// HTTP/2 streams open at once on one connection.
    pub max_streams: u32,
    /// CA bundle client certificates must chain to (`--client-ca`): the
    /// admission routes then refuse clients without one.
    pub client_ca: Option<PathBuf>,
    /// Evaluations running at once (each holds one instance).
    pub workers: usize,
    /// How long a request may wait for a worker before it is refused.
    pub queue_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// How often certificate and configuration files are checked.
    pub watch_interval: Duration,
    pub runtime: RuntimeOptions,
    /// Overrides the configuration's `audit.path`.
    pub audit_log: Option<PathBuf>,
    /// Refuse unpinned plugin files, at start-up and on every reload.
    pub require_pinned: bool,
    /// The Kubernetes API, for what policies read of the cluster (namespace
    /// labels, owners, the default StorageClass).
    pub kube: Option<ApiConfig>,
    /// The owner cache's ceiling and sync deadline.
    pub owner_cache: OwnerCacheOptions,
    /// Record a Kubernetes Event for every denial (`--no-events` turns it off).
    pub events: bool,
}

/// What every request handler shares.
pub struct App {
    /// `None` until the first load completes: /readyz says 503 till then.
    policies: ArcSwapOption<PolicySet>,
    metrics: Metrics,
    workers: Arc<Semaphore>,
    queue_timeout: Duration,
    max_body: usize,
    body_timeout: Duration,
    /// Whether /mutate and /validate require a verified client certificate.
    verifies_clients: bool,
    /// Slots for connections without one, when they are required.
    uncertified: Arc<Semaphore>,
    audit: AuditLog,
    /// Denials' Kubernetes Events, written in the background.
    events: Events,
    /// The configuration's `audit:` section as berth started with it: a
    /// reload that changes it is told that it takes a restart.
    audit_section: Option<crate::config::AuditSpec>,
    /// `--require-pinned`, which reloads honour too.
    require_pinned: bool,
}

/// Run until SIGTERM or SIGINT, then drain and return.
pub async fn run(options: ServeOptions) -> Result<(), ServeError> {
    let runtime = Arc::new(Runtime::new(options.runtime.clone())?);

    let listener =
        TcpListener::bind(options.listen).await.map_err(|error| ServeError::Listen { addr: options.listen, error })?;
    let metrics_listener = TcpListener::bind(options.metrics_listen)
        .await
        .map_err(|error| ServeError::Listen { addr: options.metrics_listen, error })?;
    let listen = listener.local_addr().map_err(|error| ServeError::Listen { addr: options.listen, error })?;
    let metrics_addr =
        metrics_listener.local_addr().map_err(|error| ServeError::Listen { addr: options.metrics_listen, error })?;

    // Certificates after the listeners: a second berth that cannot bind must
    // not overwrite the generated certificate of the one already serving.
    let (cert_path, key_path) = match &options.tls {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::Generate { dir } => {
            let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
            let generated = crate::certs::generate(dir, &names)?;
            tracing::info!(dir = %dir.display(), ca = %generated.ca_cert.display(), "generated a self-signed CA and serving certificate");
            (generated.cert, generated.key)
        }
    };
    let tls = Arc::new(Tls::load(&cert_path, &key_path, options.client_ca.as_deref())?);
    if let Some(ca) = &options.client_ca {
        tracing::info!(client_ca = %ca.display(), "client certificates required on /mutate and /validate");
    }

    // The audit log is opened once; a reload changes policies, not where
    // records go (two writers on one file would tear each other's lines).
    let sources = sources(&options.config)?;
    if options.require_pinned {
        crate::policy::require_pinned(&sources)?;
    }
    let audit_section = audit_section(&sources);
    let mut audit_spec = audit_section.clone().unwrap_or_default();
    if let Some(path) = &options.audit_log {
        audit_spec.path = path.clone();
    }
    let audit = AuditLog::open(&audit_spec)?;
    if let Some(path) = audit.path() {
        tracing::info!(path = %path.display(), on_error = ?audit.on_error(), "audit log");
    }

    let needs = crate::policy::needs(&sources);
    let client = kube_client(options.kube.as_ref(), needs.any())?;
    let metrics = Metrics::default();
    let (events, event_task) = events(options.events, client.as_ref(), &metrics);
    let app = Arc::new(App {
        policies: ArcSwapOption::empty(),
        metrics,
        workers: Arc::new(Semaphore::new(options.workers)),
        queue_timeout: options.queue_timeout,
        max_body: options.max_body,
        body_timeout: options.body_timeout,
        verifies_clients: tls.verifies_clients(),
        uncertified: Arc::new(Semaphore::new(UNCERTIFIED_CONNECTIONS)),
        audit,
        events,
        audit_section,
        require_pinned: options.require_pinned,
    });
    routes::serve_metrics(metrics_listener, app.clone());
    // Serve while loading: /healthz answers at once; /readyz, /mutate and
    // /validate answer 503 until the policies are in.
    let signals = Signals::install()?;
    let limits = Limits {
        max_connections: options.max_connections.max(1),
        max_streams: options.max_streams.max(1),
        fair_share: options.workers.max(1),
    };
    let mut server =
        tokio::spawn(serve(listener, tls.clone(), app.clone(), limits, options.drain_timeout, signals.terminate));
    tracing::info!(%listen, metrics = %metrics_addr, "listening");

    let watches = Arc::new(Watches::new(client, options.owner_cache, app.metrics.owner_cache.clone()));
    let served = async {
        let load = async {
            let keep = crate::policy::owner_label_keys(&sources);
            let (runtime, cluster) = (runtime.clone(), watches.cluster(needs, keep));
            tokio::task::spawn_blocking(move || PolicySet::load(&runtime, &sources, cluster))
                .await
                .map_err(|_| ServeError::LoadTask)?
                .map_err(ServeError::from)
        };
        // SIGTERM while still loading (a Kubernetes API that does not answer,
        // say) ends the server task; it must end berth too.
        let loaded = tokio::select! {
            loaded = load => loaded?,
            ended = &mut server => return ended.map_err(|_| ServeError::ServeTask),
        };
        let count = loaded.policies().len();
        app.metrics.policies_loaded.set(count as i64);
        let loaded = Arc::new(loaded);
        app.policies.store(Some(loaded.clone()));
        // Certificates and configuration are watched from here on, so that a
        // fix (a configuration that needs less of the cluster, say) is picked
        // up even while the caches have not synced.
        tls.watch(options.watch_interval);
        reload::spawn(app.clone(), runtime, watches, options.config.clone(), options.watch_interval, signals.hangup);
        // "ready" means what /readyz says: the caches these policies read have
        // synced too. Requests are served meanwhile.
        let pending = loaded.unsynced();
        if !pending.is_empty() {
            tracing::info!(waiting_for = pending.join(","), "policies loaded; waiting for the Kubernetes API");
            // Whichever set is in force: a reload may have replaced this one.
            let synced = async {
                while app.policies.load().as_ref().is_none_or(|set| !set.unsynced().is_empty()) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::select! {
                () = synced => {}
                ended = &mut server => return ended.map_err(|_| ServeError::ServeTask),
            }
        }
        drop(loaded);
        tracing::info!(%listen, metrics = %metrics_addr, policies = count, "ready");
        server.await.map_err(|_| ServeError::ServeTask)
    }
    .await;
    // Drained (or failed): the Events still waiting get a last chance.
    if let Some(task) = event_task {
        task.finish(EVENT_FLUSH).await;
    }
    served
}

/// The Events writer, unless `--no-events` or there is no API to write to.
fn events(enabled: bool, client: Option<&kube::Client>, metrics: &Metrics) -> (Events, Option<EventTask>) {
    match (enabled, client) {
        (false, _) => (Events::disabled(), None),
        (true, None) => {
            tracing::warn!("no Kubernetes API: denials are not recorded as Events (the audit log has them)");
            (Events::disabled(), None)
        }
        (true, Some(client)) => {
            let reporter = Reporter::this_host();
            tracing::info!(controller = %reporter.controller, instance = %reporter.instance, "recording an Event for every denial");
            let (events, task) =
                Events::start(client.clone(), reporter, crate::events::Limits::default(), metrics.events.clone());
            (events, Some(task))
        }
    }
}

/// A client for the Kubernetes API. An address given on the command line
/// must work, and so must the in-cluster one when the policies read the
/// cluster: in a pod, answering without it would be wrong, not degraded.
/// Outside a cluster with no address (a laptop), berth runs without one.
fn kube_client(config: Option<&ApiConfig>, needed: bool) -> Result<Option<kube::Client>, ServeError> {
    match config {
        None => {
            if needed {
                tracing::warn!(
                    "no Kubernetes API (not in a cluster, no --kube-api): requests that need an owner fail their policies, and the default StorageClass is taken to be none"
                );
            }
            Ok(None)
        }
        Some(config @ ApiConfig::Explicit { .. }) => Ok(Some(config.client()?)),
        Some(config @ ApiConfig::InCluster) => match config.client() {
            Ok(client) => Ok(Some(client)),
            Err(err) if needed => Err(err.into()),
            Err(err) => {
                tracing::warn!("the in-cluster Kubernetes API is not usable: {}", crate::error_chain(&err));
                Ok(None)
            }
        },
    }
}

/// The audit section that counts: the first source's that has one.
fn audit_section(sources: &[Source]) -> Option<crate::config::AuditSpec> {
    sources.iter().find_map(|s| s.config.audit.clone())
}

/// The configuration sources: the files given (with what they include),
/// or the embedded default.
pub fn sources(paths: &[PathBuf]) -> Result<Vec<Source>, ConfigError> {
    Config::read_all(paths)
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    max_streams: u32,
    /// Reviews one connection may have evaluating or queued for a worker.
    fair_share: usize,
}

async fn serve(
    listener: TcpListener,
    tls: Arc<Tls>,
    app: Arc<App>,
    limits: Limits,
    drain_timeout: Duration,
    mut terminate: tokio::sync::mpsc::Receiver<()>,
) {
    let router = routes::router(app.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no timeouts at all. HTTP/1.1 must send
    // its headers in time; HTTP/2 connections (the apiserver keeps them
    // open) are pinged when idle. Before either, FirstByteDeadline.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE)
        .max_concurrent_streams(limits.max_streams);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's
        // queue (as Go's netutil.LimitListener does) rather than being
        // dropped, so a burst is served late instead of failed.
        let slot = match connections.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                app.metrics.connections_waited.inc();
                tracing::debug!(
                    max = limits.max_connections,
                    "at --max-connections: waiting for a connection to close"
                );
                tokio::select! {
                    _ = terminate.recv() => break,
                    slot = connections.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let (tcp, _peer) = tokio::select! {
            _ = terminate.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // Subscribe before the handshake, so a shutdown that starts during
        // it still reaches this connection.
        let watcher = graceful.watcher();
        let (acceptor, router, builder, app) = (tls.acceptor(), router.clone(), builder.clone(), app.clone());
        tokio::spawn(async move {
            let _open = OpenConnection::new(slot, &app.metrics);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    app.metrics.refused("handshake_failed");
                    return tracing::debug!("TLS handshake failed: {err}");
                }
                Err(_) => {
                    app.metrics.refused("handshake_timeout");
                    return tracing::debug!("TLS handshake timed out");
                }
            };
            // rustls verified any certificate presented; whether there was one.
            let certified = tls.get_ref().1.peer_certificates().is_some_and(|chain| !chain.is_empty());
            let uncertified = match app.verifies_clients && !certified {
                false => None,
                true => match app.uncertified.clone().try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        app.metrics.refused("uncertified_cap");
                        return tracing::debug!("too many connections without a client certificate");
                    }
                },
            };
            let peer = peer::Peer::new(certified, limits.fair_share);
            let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                router,
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    request
                },
            ));
            let io = TokioIo::new(first_byte::FirstByteDeadline::new(tls, HEADER_READ_TIMEOUT));
            let connection = watcher.watch(builder.serve_connection(io, service));
            let ended = match uncertified {
                None => connection.await,
                Some(_slot) => match tokio::time::timeout(UNCERTIFIED_LIFETIME, connection).await {
                    Ok(ended) => ended,
                    Err(_) => return tracing::debug!("closed a connection without a client certificate"),
                },
            };
            if let Err(err) = ended {
                tracing::debug!("connection ended: {err}");
            }
        });
    }
    drop(listener);
    tracing::info!(?drain_timeout, "shutting down: no new connections; draining requests in flight");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained; exiting"),
        _ = tokio::time::sleep(drain_timeout) => tracing::warn!("drain timeout reached; exiting with requests in flight"),
    }
}

/// A connection's slot under `--max-connections`, counted in
/// `berth_connections_open` while it is held.
struct OpenConnection {
    _slot: tokio::sync::OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl OpenConnection {
    fn new(slot: tokio::sync::OwnedSemaphorePermit, metrics: &Metrics) -> Self {
        metrics.connections_open.inc();
        Self { _slot: slot, open: metrics.connections_open.clone() }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// SIGTERM/SIGINT end the server; SIGHUP reloads the configuration.
struct Signals {
    terminate: tokio::sync::mpsc::Receiver<()>,
    hangup: tokio::sync::mpsc::Receiver<()>,
}

impl Signals {
    fn install() -> Result<Self, ServeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
        let (term_tx, terminate) = tokio::sync::mpsc::channel(1);
        let (hup_tx, hangup) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
            let _ = term_tx.send(()).await;
        });
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = hup_tx.try_send(());
            }
        });
        Ok(Self { terminate, hangup })
    }
}
