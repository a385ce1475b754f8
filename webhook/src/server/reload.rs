//! Hot reload of berth.yaml, on a file change or SIGHUP. The new policy set
//! is loaded aside and swapped in atomically; requests in flight finish on
//! the set they started with. A configuration that fails to load is
//! refused, logged, and the old one keeps serving.

use super::App;
use crate::cluster::Watches;
use crate::policy::PolicySet;
use crate::runtime::Runtime;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

pub fn spawn(
    app: Arc<App>,
    runtime: Arc<Runtime>,
    watches: Arc<Watches>,
    paths: Vec<PathBuf>,
    interval: Duration,
    mut hangup: Receiver<()>,
) {
    tokio::spawn(async move {
        let mut seen = contents(&paths);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            let why = tokio::select! {
                _ = ticker.tick() => {
                    let now = contents(&paths);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "file changed"
                }
                Some(()) = hangup.recv() => {
                    seen = contents(&paths);
                    "SIGHUP"
                }
            };
            reload(&app, &runtime, &watches, &paths, why).await;
        }
    });
}

async fn reload(app: &App, runtime: &Arc<Runtime>, watches: &Watches, paths: &[PathBuf], why: &'static str) {
    let sources = match super::sources(paths) {
        Ok(sources) => sources,
        Err(err) => return refused(app, why, &err),
    };
    if app.require_pinned
        && let Err(err) = crate::policy::require_pinned(&sources)
    {
        return refused(app, why, &err);
    }
    let audit = super::audit_section(&sources);
    // A configuration that newly needs a kind of the cluster starts its
    // watch now, and is swapped in once it has synced (below).
    let cluster = watches.cluster(crate::policy::needs(&sources), crate::policy::owner_label_keys(&sources));
    let runtime = runtime.clone();
    match tokio::task::spawn_blocking(move || PolicySet::load(&runtime, &sources, cluster)).await {
        Ok(Ok(set)) => {
            // A serving (synced) set is replaced only by a synced one: every
            // replica reloads the same ConfigMap at once, and a set that
            // cannot sync (no RBAC for a new kind) would make them all
            // unready. Before berth is ready, there is nothing to keep.
            let serving = app.policies.load().as_ref().is_some_and(|old| old.unsynced().is_empty());
            if serving && !synced_within(&set, RELOAD_SYNC_TIMEOUT).await {
                let pending = set.unlisted().join(", ");
                app.metrics.reloads.get_or_create(&super::metrics::ReloadLabels { result: "refused" }).inc();
                return tracing::error!(
                    why,
                    waiting_for = pending,
                    "new configuration refused, the previous one keeps serving: the Kubernetes API caches it needs did not sync within {RELOAD_SYNC_TIMEOUT:?} (RBAC for them? docs/CONFIG.md)"
                );
            }
            if audit != app.audit_section {
                tracing::warn!(
                    why,
                    "the audit section changed; it takes effect when berth restarts (the policies reload now)"
                );
            }
            app.metrics.policies_loaded.set(set.policies().len() as i64);
            app.policies.store(Some(Arc::new(set)));
            app.metrics.reloads.get_or_create(&super::metrics::ReloadLabels { result: "ok" }).inc();
            tracing::info!(why, "configuration reloaded");
        }
        Ok(Err(err)) => refused(app, why, &err),
        Err(err) => tracing::error!(why, "configuration reload task failed: {err}"),
    }
}

/// How long a reload waits for the caches a new configuration needs.
const RELOAD_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether every cache `set` reads completes a full list within `limit`.
/// The owner caches' sync deadline, which lets a starting replica serve by
/// GET, does not count here: a serving set is not replaced by one that
/// could not list (no RBAC for a new kind, say).
async fn synced_within(set: &PolicySet, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !set.unlisted().is_empty() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn refused(app: &App, why: &'static str, err: &dyn std::error::Error) {
    app.metrics.reloads.get_or_create(&super::metrics::ReloadLabels { result: "refused" }).inc();
    tracing::error!(why, "new configuration refused, the previous one keeps serving: {}", crate::error_chain(err));
}

/// What a configuration depends on: its files' bytes (compared whole, so a
/// ConfigMap's symlink swap counts), and the size and modification time of
/// every plugin file it names, so that a new `.wasm` is picked up, and a
/// reload refused for want of one is tried again when it arrives.
fn contents(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    let mut seen: Vec<Option<Vec<u8>>> = paths.iter().map(|path| std::fs::read(path).ok()).collect();
    for source in paths.iter().filter_map(|path| crate::config::Config::read(path).ok()) {
        for policy in source.config.policies.iter().filter(|p| !p.plugin.starts_with(crate::builtin::PREFIX)) {
            let stat = std::fs::metadata(source.base_dir.join(&policy.plugin)).ok().map(|meta| {
                let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!("{}:{}:{:?}", policy.plugin, meta.len(), modified).into_bytes()
            });
            seen.push(stat);
        }
    }
    seen
}
