//! Hot reload of berth.yaml, on a file change or SIGHUP. The new policy set
//! is loaded aside and swapped in atomically; requests in flight finish on
//! the set they started with. A configuration that fails to load is
//! refused, logged, and the old one keeps serving.

use super::App;
use crate::namespaces::Namespaces;
use crate::policy::PolicySet;
use crate::runtime::Runtime;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

pub fn spawn(
    app: Arc<App>,
    runtime: Arc<Runtime>,
    namespaces: Option<Namespaces>,
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
            reload(&app, &runtime, &namespaces, &paths, why).await;
        }
    });
}

async fn reload(
    app: &App,
    runtime: &Arc<Runtime>,
    namespaces: &Option<Namespaces>,
    paths: &[PathBuf],
    why: &'static str,
) {
    let (runtime, namespaces, owned) = (runtime.clone(), namespaces.clone(), paths.to_vec());
    let loaded = tokio::task::spawn_blocking(move || {
        let sources = super::sources(&owned)?;
        let audit = super::audit_section(&sources);
        Ok::<_, super::ServeError>((PolicySet::load(&runtime, &sources, namespaces)?, audit))
    })
    .await;
    match loaded {
        Ok(Ok((set, audit))) => {
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
        Ok(Err(err)) => {
            app.metrics.reloads.get_or_create(&super::metrics::ReloadLabels { result: "refused" }).inc();
            tracing::error!(
                why,
                "new configuration refused, the previous one keeps serving: {}",
                crate::error_chain(&err)
            );
        }
        Err(err) => tracing::error!(why, "configuration reload task failed: {err}"),
    }
}

/// The files' bytes: compared whole, so a ConfigMap's symlink swap counts.
fn contents(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|path| std::fs::read(path).ok()).collect()
}
