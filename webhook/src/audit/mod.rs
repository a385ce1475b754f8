//! The audit log: a durable, queryable record of every denial, every policy
//! error and (optionally) every mutation. docs/AUDIT.md is the user's side.
//!
//! - [`spec`]: `audit:` in berth.yaml.
//! - [`record`]: the record type, and building an admission's records.
//! - [`redact`]: what never reaches the log.
//! - [`writer`]: the sinks, group commit, rotation.
//! - [`reader`]: reading rotated files, files and directories, merged by time.
//! - [`summary`]: counts by policy, namespace and reason.
//! - [`report`]: the HTML report, its charts aggregated here.
//!
//! The server's use, per request:
//! ```ignore
//! let admitted = admit(&policies, endpoint, review);
//! if audit.wants(&admitted) {
//!     let records = audit.records(endpoint, &admitted.request, &admitted);
//!     if let Err(err) = audit.write(records).await {
//!         match audit.on_error() {
//!             OnError::Deny => response.deny(500, format!("berth could not write its audit log: {err}")),
//!             OnError::Allow => tracing::error!("berth could not write its audit log: {err}"),
//!         }
//!     }
//! }
//! ```

pub mod reader;
pub mod record;
pub mod redact;
pub mod report;
pub mod summary;
pub mod writer;

pub use crate::config::audit::{AuditSpec, OnError, RedactSpec};
pub use reader::{Entry, Filter, LogReader, ReadError};
pub use record::{AuditRecord, Decision};
pub use summary::Summary;

use crate::admission::{Admitted, Endpoint};
use crate::review::AdmissionRequest;
use redact::Redactor;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;
use writer::{FileSink, Writer};

/// Why records could not be written. Cloneable: one failed group commit
/// answers every waiter in it.
#[derive(Debug, Clone, Error)]
pub enum AuditError {
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// The file sink failed: `writing /var/log/berth/audit.log: No space left on device (os error 28)`.
    #[error("{action} {}: {message}", path.display())]
    Io { action: &'static str, path: PathBuf, kind: std::io::ErrorKind, message: String },
    #[error("writing audit records to stdout: {message}")]
    Stdout { kind: std::io::ErrorKind, message: String },
    #[error("encoding an audit record: {0}")]
    Encode(String),
    #[error("starting the audit writer thread: {0}")]
    Spawn(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

impl AuditError {
    /// The I/O error kind, when a sink failed (StorageFull, PermissionDenied …).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Self::Io { kind, .. } | Self::Stdout { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// The audit log of one berth process. Cheap to clone; `Send + Sync`.
#[derive(Clone, Default)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    on_error: OnError,
    record_mutations: bool,
    with_object: bool,
    redactor: Redactor,
    path: Option<PathBuf>,
    writer: Writer,
    written: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("AuditLog(disabled)"),
            Some(inner) => f
                .debug_struct("AuditLog")
                .field("path", &inner.path)
                .field("on_error", &inner.on_error)
                .field("written", &inner.written.load(Ordering::Relaxed))
                .field("failures", &inner.failures.load(Ordering::Relaxed))
                .finish(),
        }
    }
}

impl AuditLog {
    /// Start the writer for `spec` (already merged with any command-line
    /// override of the path). Fails only on an invalid spec: a destination
    /// that cannot be opened now is logged, retried on every write, and
    /// reported by `write` (so `onError` decides).
    pub fn open(spec: &AuditSpec) -> Result<Self, AuditError> {
        let stdout = spec.stdout.then(|| Box::new(std::io::stdout()) as Box<dyn Write + Send>);
        Self::open_with_stream(spec, stdout)
    }

    /// As `open`, with `stream` standing in for stdout (when `spec.stdout`).
    pub fn open_with_stream(spec: &AuditSpec, stream: Option<Box<dyn Write + Send>>) -> Result<Self, AuditError> {
        spec.validate().map_err(AuditError::Config)?;
        if !spec.enabled() {
            return Ok(Self::disabled());
        }
        let file = spec.file.then(|| {
            let mut sink = FileSink::new(spec);
            if let Err(err) = sink.open_now() {
                tracing::error!(
                    on_error = spec.on_error.as_str(),
                    "the audit log cannot be written ({err}); every write will retry, and audit.onError decides meanwhile"
                );
            }
            sink
        });
        let path = file.as_ref().map(|sink| sink.path().to_owned());
        let writer = Writer::start(file, spec.stdout.then_some(stream).flatten())?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                on_error: spec.on_error,
                record_mutations: spec.record_mutations,
                with_object: spec.redact.object,
                redactor: Redactor::new(&spec.redact),
                path,
                writer,
                written: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            })),
        })
    }

    /// Records nothing; every write succeeds.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The file sink's path, if there is one.
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref()?.path.as_deref()
    }

    /// Whether `admitted` produces any record. Cheap: lets the caller skip
    /// keeping (or re-parsing) the request for the many allowed requests.
    pub fn wants(&self, admitted: &Admitted) -> bool {
        self.inner.as_ref().is_some_and(|inner| record::wanted(admitted, inner.record_mutations))
    }

    /// The records this admission produces: one per denying or failing
    /// policy (ignored failures included), one per mutating policy with
    /// `recordMutations`, and one for a denial no policy accounts for.
    /// `request` is the request as received, before any mutation.
    pub fn records(&self, endpoint: Endpoint, request: &AdmissionRequest, admitted: &Admitted) -> Vec<AuditRecord> {
        match &self.inner {
            None => Vec::new(),
            Some(inner) => {
                record::build(endpoint, request, admitted, inner.record_mutations, &inner.redactor, inner.with_object)
            }
        }
    }

    /// Write `records` and wait until every sink has them (written, and
    /// fdatasynced unless `fsync: false`). Concurrent calls share one group
    /// commit. An error means the records may not be stored: the caller
    /// acts on [`on_error`](Self::on_error).
    pub async fn write(&self, records: Vec<AuditRecord>) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        if records.is_empty() {
            return Ok(());
        }
        let result = match inner.submit(&records) {
            Ok(ack) => ack.await.unwrap_or(Err(AuditError::Stopped)),
            Err(err) => Err(err),
        };
        inner.settle(records.len(), &result);
        result
    }

    /// `write` for threads outside an async runtime (panics inside one).
    pub fn write_blocking(&self, records: Vec<AuditRecord>) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        if records.is_empty() {
            return Ok(());
        }
        let result = match inner.submit(&records) {
            Ok(ack) => ack.blocking_recv().unwrap_or(Err(AuditError::Stopped)),
            Err(err) => Err(err),
        };
        inner.settle(records.len(), &result);
        result
    }

    /// What the server answers when `write` fails.
    pub fn on_error(&self) -> OnError {
        self.inner.as_ref().map_or_else(OnError::default, |inner| inner.on_error)
    }

    /// Records that could not be written (their `write` failed), since
    /// start: for the failure metric.
    pub fn failures(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.failures.load(Ordering::Relaxed))
    }

    /// Records written, since start.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.written.load(Ordering::Relaxed))
    }
}

impl Inner {
    fn submit(&self, records: &[AuditRecord]) -> Result<writer::Ack, AuditError> {
        let lines = records
            .iter()
            .map(|record| {
                // serde_json escapes newlines in strings: one record, one line.
                let mut line = serde_json::to_vec(record).map_err(|err| AuditError::Encode(err.to_string()))?;
                line.push(b'\n');
                Ok(line)
            })
            .collect::<Result<Vec<_>, AuditError>>()?;
        self.writer.submit(lines)
    }

    fn settle(&self, records: usize, result: &Result<(), AuditError>) {
        match result {
            Ok(()) => self.written.fetch_add(records as u64, Ordering::Relaxed),
            Err(_) => self.failures.fetch_add(records as u64, Ordering::Relaxed),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_cheap_to_share() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<AuditLog>();
        shareable::<AuditError>();
    }

    #[test]
    fn disabled_writes_nothing_and_never_fails() {
        let log = AuditLog::disabled();
        assert!(!log.is_enabled());
        assert!(log.path().is_none());
        let spec = AuditSpec { file: false, stdout: false, ..AuditSpec::default() };
        assert!(!AuditLog::open(&spec).unwrap().is_enabled());
        let bad = AuditSpec { max_files: 0, ..AuditSpec::default() };
        assert!(matches!(AuditLog::open(&bad), Err(AuditError::Config(_))));
    }

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_stdout_sink_gets_json_lines_too() {
        let dir = tempfile::tempdir().unwrap();
        let spec = AuditSpec { path: dir.path().join("a.log"), stdout: true, ..AuditSpec::default() };
        let out = Shared::default();
        let log = AuditLog::open_with_stream(&spec, Some(Box::new(out.clone()))).unwrap();
        let record: AuditRecord = serde_json::from_str(
            r#"{"time":"2024-05-01T12:00:00Z","uid":"u","operation":"CREATE","kind":{"kind":"Pod"},"resource":{"resource":"pods"},"endpoint":"validate","decision":"denied","allowed":false}"#,
        )
        .unwrap();
        log.write_blocking(vec![record.clone(), record]).unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(std::fs::read_to_string(dir.path().join("a.log")).unwrap(), text);
        assert_eq!(log.written(), 2);

        let stdout_only = AuditSpec { file: false, stdout: true, ..AuditSpec::default() };
        let log = AuditLog::open_with_stream(&stdout_only, Some(Box::new(Shared::default()))).unwrap();
        assert!(log.is_enabled() && log.path().is_none());
    }
}
