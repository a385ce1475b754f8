//! Sinks, group commit and rotation.
//!
//! One thread, `berth-audit`, owns every sink. Callers serialize their
//! records into lines, queue them and wait. The thread takes everything
//! queued, writes it with one `write(2)` per file (split only where the file
//! rotates), fdatasyncs once, and then wakes every waiter with the result.
//! Being the only writer, it never interleaves lines, and rotation (a rename
//! between two writes of the same thread) cannot lose a record.
//!
//! The file stays whole lines. A failed write is cut back to the last whole
//! line; a torn line left by a crash is cut off when the file is next
//! opened (it was never acknowledged). A crash can therefore leave at most
//! one torn final line, which readers skip with a warning.

use super::AuditError;
use crate::config::audit::AuditSpec;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The result each waiter gets.
pub(crate) type Ack = oneshot::Receiver<Result<(), AuditError>>;

/// After a failed rotation, write on past maxSize for this long before
/// trying again, instead of retrying (and warning) on every line.
const ROTATE_BACKOFF: Duration = Duration::from_secs(10);

/// The handle callers queue lines on. Dropping it stops the thread once the
/// queue is empty.
pub(crate) struct Writer {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    closed: bool,
}

struct Job {
    lines: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<(), AuditError>>,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    pub(crate) fn start(file: Option<FileSink>, stream: Option<Box<dyn Write + Send>>) -> Result<Self, AuditError> {
        let shared = Arc::new(Shared::default());
        let sinks = Sinks { file, stream };
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("berth-audit".into())
            .spawn(move || run(thread_shared, sinks))
            .map_err(|err| AuditError::Spawn(err.to_string()))?;
        Ok(Self { shared })
    }

    /// Queue whole lines (each ending in `\n`) for the next group commit.
    pub(crate) fn submit(&self, lines: Vec<Vec<u8>>) -> Result<Ack, AuditError> {
        let (done, ack) = oneshot::channel();
        {
            let mut queue = lock(&self.shared.queue);
            if queue.closed {
                return Err(AuditError::Stopped);
            }
            queue.jobs.push(Job { lines, done });
        }
        self.shared.wake.notify_one();
        Ok(ack)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_all();
    }
}

/// Closes the queue when the thread ends, even by a panic, so that no
/// caller waits forever: their senders are dropped and they get `Stopped`.
struct CloseOnExit(Arc<Shared>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        let mut queue = lock(&self.0.queue);
        queue.closed = true;
        queue.jobs.clear();
    }
}

fn run(shared: Arc<Shared>, mut sinks: Sinks) {
    let _close = CloseOnExit(shared.clone());
    loop {
        let jobs = {
            let mut queue = lock(&shared.queue);
            loop {
                if !queue.jobs.is_empty() {
                    break std::mem::take(&mut queue.jobs);
                }
                if queue.closed {
                    return;
                }
                queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let result = sinks.commit(&jobs);
        for job in jobs {
            // The caller may have given up waiting; its record is written anyway.
            let _ = job.done.send(result.clone());
        }
    }
}

struct Sinks {
    file: Option<FileSink>,
    stream: Option<Box<dyn Write + Send>>,
}

impl Sinks {
    /// Write one group. A record is acknowledged only if every sink took it.
    fn commit(&mut self, jobs: &[Job]) -> Result<(), AuditError> {
        let lines = || jobs.iter().flat_map(|job| job.lines.iter());
        let mut result = Ok(());
        if let Some(file) = &mut self.file {
            result = file.append(lines());
        }
        if let Some(stream) = &mut self.stream {
            let mut buf = Vec::with_capacity(lines().map(Vec::len).sum());
            lines().for_each(|line| buf.extend_from_slice(line));
            // Stdout's write_all holds its lock throughout: no interleaving.
            if let Err(err) = stream.write_all(&buf).and_then(|()| stream.flush())
                && result.is_ok()
            {
                result = Err(AuditError::Stdout { kind: err.kind(), message: err.to_string() });
            }
        }
        result
    }
}

/// The file sink: `path`, rotated to `path.1` … `path.{max_files-1}`.
pub(crate) struct FileSink {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    fsync: bool,
    open: Option<OpenFile>,
    rotate_after: Option<Instant>,
}

struct OpenFile {
    file: File,
    /// Bytes in the file; rotation happens before this would pass max_size.
    size: u64,
    /// Only regular files are rotated, synced and repaired (not /dev/full,
    /// /dev/stdout, a FIFO).
    regular: bool,
    /// (dev, inode), to notice the file being moved or deleted under us.
    id: (u64, u64),
}

impl FileSink {
    pub(crate) fn new(spec: &AuditSpec) -> Self {
        Self {
            path: spec.path.clone(),
            max_size: spec.max_size,
            max_files: spec.max_files,
            fsync: spec.fsync,
            open: None,
            rotate_after: None,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Open now, to report a bad destination at startup. Writes retry.
    pub(crate) fn open_now(&mut self) -> Result<(), AuditError> {
        self.ensure_open().map(|_| ())
    }

    fn append<'a>(&mut self, lines: impl Iterator<Item = &'a Vec<u8>>) -> Result<(), AuditError> {
        self.check_identity();
        self.ensure_open()?;
        let mut buf = Vec::new();
        for line in lines {
            let rotate = match &self.open {
                Some(open) => {
                    let pending = open.size + buf.len() as u64;
                    open.regular
                        && pending > 0
                        && pending + line.len() as u64 > self.max_size
                        && self.rotate_after.is_none_or(|after| Instant::now() >= after)
                }
                None => false,
            };
            if rotate {
                self.flush(&mut buf)?;
                self.rotate()?;
            }
            buf.extend_from_slice(line);
        }
        self.flush(&mut buf)
    }

    /// Write and sync `buf`, then clear it. On failure the file is cut back
    /// to what it was, and reopened (and repaired) next time.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), AuditError> {
        if buf.is_empty() {
            return Ok(());
        }
        let fsync = self.fsync;
        let open = self.ensure_open()?;
        let before = open.size;
        let written = open.file.write_all(buf).map_err(|err| ("writing", err));
        let synced = written.and_then(|()| match fsync && open.regular {
            true => open.file.sync_data().map_err(|err| ("syncing", err)),
            false => Ok(()),
        });
        match synced {
            Ok(()) => {
                open.size += buf.len() as u64;
                buf.clear();
                Ok(())
            }
            Err((action, err)) => {
                if open.regular {
                    // Best effort; if this fails too, the next open cuts
                    // the torn tail.
                    let _ = open.file.set_len(before);
                }
                self.open = None;
                Err(io_error(action, &self.path, &err))
            }
        }
    }

    fn ensure_open(&mut self) -> Result<&mut OpenFile, AuditError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => self.open_file()?,
        };
        Ok(self.open.insert(open))
    }

    fn open_file(&self) -> Result<OpenFile, AuditError> {
        let path = &self.path;
        let dir = parent_dir(path);
        ensure_dir(dir)?;
        let existed = fs::symlink_metadata(path).is_ok();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|err| io_error("opening", path, &err))?;
        let meta = file.metadata().map_err(|err| io_error("opening", path, &err))?;
        let regular = meta.is_file();
        let mut size = if regular { meta.len() } else { 0 };
        if regular && size > 0 {
            size = repair_torn_tail(&file, path, size).map_err(|err| io_error("repairing", path, &err))?;
        }
        if !existed && self.fsync {
            sync_dir(dir).map_err(|err| io_error("syncing the directory", dir, &err))?;
        }
        Ok(OpenFile { file, size, regular, id: (meta.dev(), meta.ino()) })
    }

    /// Reopen if someone moved or deleted the file; follow outside changes
    /// of its size.
    fn check_identity(&mut self) {
        let Some(open) = &mut self.open else { return };
        if !open.regular {
            return;
        }
        match fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == open.id => open.size = meta.len(),
            _ => {
                tracing::info!(path = %self.path.display(), "the audit log was moved or deleted; reopening it");
                self.open = None;
            }
        }
    }

    /// `path.{n-2}` → `path.{n-1}` … `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.open = None;
        match self.shift() {
            Ok(()) => self.rotate_after = None,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), "could not rotate the audit log ({err}); writing on past maxSize");
                self.rotate_after = Some(Instant::now() + ROTATE_BACKOFF);
            }
        }
        self.ensure_open().map(|_| ())
    }

    fn shift(&self) -> io::Result<()> {
        if self.max_files <= 1 {
            fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.max_files - 1).rev() {
                match fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1)) {
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))?;
        }
        if self.fsync {
            sync_dir(parent_dir(&self.path))?;
        }
        Ok(())
    }
}

/// `path.n`: the n-th most recent rotated file.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn ensure_dir(dir: &Path) -> Result<(), AuditError> {
    fs::create_dir_all(dir).map_err(|err| {
        // Name the culprit when a file stands where a directory should.
        let blocker = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists() && !a.is_dir());
        let message = match blocker {
            Some(file) => format!("{} is not a directory", file.display()),
            None => err.to_string(),
        };
        AuditError::Io { action: "creating the directory", path: dir.to_owned(), kind: err.kind(), message }
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Cut a final line without its `\n` (a write a crash interrupted; it was
/// never acknowledged). Returns the new size.
fn repair_torn_tail(file: &File, path: &Path, size: u64) -> io::Result<u64> {
    let mut last = [0u8];
    file.read_exact_at(&mut last, size - 1)?;
    if last[0] == b'\n' {
        return Ok(size);
    }
    let mut chunk = vec![0u8; 64 << 10];
    let mut end = size;
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(at) = buf.iter().rposition(|&b| b == b'\n') {
            keep = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    let torn = size - keep;
    match file.set_len(keep) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), bytes = torn, "cut a torn final line from the audit log: a record a crash interrupted, never acknowledged");
            Ok(keep)
        }
        Err(err) => {
            // End the fragment instead; readers skip it with a warning.
            tracing::warn!(path = %path.display(), "could not cut a torn final line ({err}); ending it instead");
            let mut writer = file;
            writer.write_all(b"\n")?;
            Ok(size + 1)
        }
    }
}

fn io_error(action: &'static str, path: &Path, err: &io::Error) -> AuditError {
    AuditError::Io { action, path: path.to_owned(), kind: err.kind(), message: err.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn spec(path: &Path, max_size: u64, max_files: u32) -> AuditSpec {
        AuditSpec { path: path.to_owned(), max_size, max_files, ..AuditSpec::default() }
    }

    fn line(n: usize) -> Vec<u8> {
        format!("{{\"n\":{n}}}\n").into_bytes()
    }

    fn read(path: &Path) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(path) {
            file.read_to_string(&mut text).unwrap();
        }
        text
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/audit.log");
        let mut sink = FileSink::new(&spec(&path, 30, 3));
        // Lines are 8 bytes (n < 10) or 9: three fit in 30. The last three
        // files hold 12-14, 15-17 and 18-19.
        for n in 0..20 {
            sink.append([line(n)].iter()).unwrap();
        }
        let files = [rotated_path(&path, 2), rotated_path(&path, 1), path.clone()];
        let text: String = files.iter().map(|p| read(p)).collect();
        let numbers: Vec<usize> = text.lines().map(|l| l[5..l.len() - 1].parse().unwrap()).collect();
        assert_eq!(numbers, (12..20).collect::<Vec<_>>(), "{text}");
        assert!(files.iter().all(|p| fs::metadata(p).unwrap().len() <= 30));
        assert!(!rotated_path(&path, 3).exists());
    }

    #[test]
    fn one_file_starts_afresh_and_big_lines_fit_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::new(&spec(&path, 15, 1));
        sink.append([line(1), line(2)].iter()).unwrap();
        assert_eq!(read(&path), "{\"n\":2}\n");
        let big = format!("{{\"n\":\"{}\"}}\n", "x".repeat(40)).into_bytes();
        sink.append([big.clone()].iter()).unwrap();
        assert_eq!(read(&path).as_bytes(), &big[..]);
    }

    #[test]
    fn a_torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        fs::write(&path, "{\"n\":1}\n{\"n\":2}\n{\"n\":3,\"tr").unwrap();
        let mut sink = FileSink::new(&spec(&path, 1 << 20, 2));
        sink.append([line(4)].iter()).unwrap();
        assert_eq!(read(&path), "{\"n\":1}\n{\"n\":2}\n{\"n\":4}\n");
        fs::write(&path, "no newline at all").unwrap();
        let mut sink = FileSink::new(&spec(&path, 1 << 20, 2));
        sink.append([line(5)].iter()).unwrap();
        assert_eq!(read(&path), "{\"n\":5}\n");
    }

    #[test]
    fn a_moved_file_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::new(&spec(&path, 1 << 20, 2));
        sink.append([line(1)].iter()).unwrap();
        fs::rename(&path, dir.path().join("elsewhere")).unwrap();
        sink.append([line(2)].iter()).unwrap();
        assert_eq!(read(&path), "{\"n\":2}\n");
    }

    #[test]
    fn failures_are_reported_clearly() {
        let mut full = FileSink::new(&spec(Path::new("/dev/full"), 1 << 20, 2));
        let err = full.append([line(1)].iter()).unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::StorageFull));
        assert!(err.to_string().starts_with("writing /dev/full: "), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let mut sink = FileSink::new(&spec(&blocker.join("audit.log"), 1 << 20, 2));
        let err = sink.open_now().unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        // It recovers once the way is clear.
        fs::remove_file(&blocker).unwrap();
        sink.append([line(1)].iter()).unwrap();
    }

    /// A sink whose first write waits for the test, recording each write.
    struct Gate {
        entered: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
        writes: Arc<Mutex<Vec<usize>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let first = self.writes.lock().unwrap().is_empty();
            if first {
                self.entered.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.writes.lock().unwrap().push(buf.iter().filter(|&&b| b == b'\n').count());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn what_queues_during_a_commit_goes_in_the_next_one() {
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate { entered: entered_tx, release: release_rx, writes: writes.clone() };
        let writer = Writer::start(None, Some(Box::new(gate))).unwrap();
        let first = writer.submit(vec![line(0)]).unwrap();
        entered.recv().unwrap();
        let rest: Vec<_> = (1..10).map(|n| writer.submit(vec![line(n), line(n)]).unwrap()).collect();
        release.send(()).unwrap();
        first.blocking_recv().unwrap().unwrap();
        for ack in rest {
            ack.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(*writes.lock().unwrap(), [1, 18]);
    }

    #[test]
    fn group_commit_through_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let writer = Writer::start(Some(FileSink::new(&spec(&path, 1 << 20, 2))), None).unwrap();
        let acks: Vec<_> = (0..50).map(|n| writer.submit(vec![line(n)]).unwrap()).collect();
        for ack in acks {
            ack.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(read(&path).lines().count(), 50);
        drop(writer);
    }
}
