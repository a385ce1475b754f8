//! Reading audit logs: a log's rotated files oldest first, several logs
//! (files or directories) merged by time, filters, and following.
//!
//! Readers never fail on a bad line. A final line without its newline (a
//! write a crash interrupted) and any line that is not a record are skipped
//! with a warning; every complete record is still read.

use super::record::{AuditRecord, Decision};
use super::writer::rotated_path;
use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("no audit log at {} (nor rotated files {}.1, …)", .0.display(), .0.display())]
    NotFound(PathBuf),
    #[error("reading {}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
}

/// Which records to read. Empty lists match everything; each list matches
/// any of its values. A value ending in `*` matches by prefix.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// Records before this time.
    pub until: Option<SystemTime>,
    pub namespaces: Vec<String>,
    pub policies: Vec<String>,
    /// The kind (`Pod`) or the resource (`pods`), in any case.
    pub kinds: Vec<String>,
    /// The user name (`system:serviceaccount:ci:*`).
    pub users: Vec<String>,
    pub decisions: Vec<Decision>,
}

impl Filter {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let any =
            |patterns: &[String], value: &str| patterns.is_empty() || patterns.iter().any(|p| glob(p, value, false));
        self.since.is_none_or(|since| record.time >= since)
            && self.until.is_none_or(|until| record.time < until)
            && any(&self.namespaces, record.namespace.as_deref().unwrap_or_default())
            && any(&self.policies, &record.policy)
            && any(&self.users, &record.user)
            && (self.decisions.is_empty() || self.decisions.contains(&record.decision))
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .iter()
                    .any(|p| glob(p, &record.kind.kind, true) || glob(p, &record.resource.resource, true)))
    }
}

fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (pattern, prefix) = match pattern.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (pattern, false),
    };
    let (pattern, value) = match ignore_case {
        true => (pattern.to_lowercase(), value.to_lowercase()),
        false => (pattern.to_owned(), value.to_owned()),
    };
    if prefix { value.starts_with(&pattern) } else { value == pattern }
}

/// `--since`: an RFC 3339 time, or a duration back from `now` (`90m`, `1h`, `2d`).
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(text.trim()) {
        return Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    super::record::parse_rfc3339(text)
        .map_err(|_| format!("{text:?} is neither a time (2024-05-01T12:00:00Z) nor a duration (1h, 30m, 2d)"))
}

/// One record read, with its line as written (for `--output json`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: AuditRecord,
    pub line: String,
    pub file: Arc<Path>,
}

/// The logs at `paths`: a file path names one log (the file and its rotated
/// files); a directory holds logs, found recursively. Returns each log's
/// active path.
pub fn discover(paths: &[PathBuf], must_exist: bool, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>, ReadError> {
    let mut logs = BTreeSet::new();
    for path in paths {
        if path.is_dir() {
            let before = logs.len();
            walk(path, &mut logs).map_err(|error| ReadError::Io { path: path.clone(), error })?;
            if logs.len() == before {
                warnings.push(format!("{}: no audit logs in this directory", path.display()));
            }
        } else if !must_exist || path.exists() || !rotated_files(path).is_empty() {
            logs.insert(path.clone());
        } else {
            return Err(ReadError::NotFound(path.clone()));
        }
    }
    Ok(logs.into_iter().collect())
}

fn walk(dir: &Path, logs: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // fsck's lost+found, at the root of every ext4 volume (the chart's
        // audit claims), is root's alone and holds no log of berth's.
        if name.starts_with('.') || name == "lost+found" {
            continue;
        }
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, logs)?;
        } else if kind.is_file() {
            let active = match rotation_number(name) {
                Some((stem, _)) => dir.join(stem),
                None => path,
            };
            logs.insert(active);
        }
    }
    Ok(())
}

/// `audit.log.3` → (`audit.log`, 3).
fn rotation_number(name: &str) -> Option<(&str, u32)> {
    let (stem, number) = name.rsplit_once('.')?;
    if stem.is_empty() || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem, number.parse().ok()?))
}

/// `path.N` files that exist, oldest (highest N) first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut numbers: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name();
            match rotation_number(file.to_str()?) {
                Some((stem, n)) if stem == name => Some(n),
                _ => None,
            }
        })
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.into_iter().map(|n| rotated_path(path, n)).collect()
}

/// A line read from a log.
struct RawLine {
    file: Arc<Path>,
    number: u64,
    bytes: Vec<u8>,
    /// Ended by `\n`. A final line without one is a torn write.
    complete: bool,
}

/// One log: its files oldest first, read one after another.
struct Chain {
    active: PathBuf,
    /// Files opened and still to read, oldest first. Opened early, so that a
    /// rotation renaming them meanwhile does not matter.
    pending: VecDeque<Cursor>,
    current: Option<Cursor>,
    /// (dev, inode) of the file read last: what is newer comes after it.
    last: Option<(u64, u64)>,
    /// Keep the active file open at its end, for more.
    follow: bool,
    /// Skip rotated files last written before this.
    since: Option<SystemTime>,
    /// Every file opened, in the order read.
    opened: Vec<Arc<Path>>,
}

struct Cursor {
    file: Arc<Path>,
    reader: BufReader<File>,
    /// Lines read so far.
    number: u64,
    /// Bytes consumed, the partial line included.
    position: u64,
    partial: Vec<u8>,
    id: (u64, u64),
    active: bool,
}

impl Chain {
    fn new(active: PathBuf, follow: bool, since: Option<SystemTime>, warnings: &mut Vec<String>) -> Self {
        let mut chain =
            Self { active, pending: VecDeque::new(), current: None, last: None, follow, since, opened: Vec::new() };
        chain.queue_after(None, warnings);
        chain
    }

    /// Open the log's files newer than the file `after` (all of them when
    /// `None`, or when that file is gone: rotation deletes the oldest).
    fn queue_after(&mut self, after: Option<(u64, u64)>, warnings: &mut Vec<String>) {
        let mut paths = rotated_files(&self.active);
        paths.push(self.active.clone());
        let mut opened: Vec<Cursor> = paths
            .into_iter()
            .filter_map(|path| {
                self.open(path).unwrap_or_else(|warning| {
                    warnings.push(warning);
                    None
                })
            })
            .collect();
        if let Some(at) = after.and_then(|after| opened.iter().position(|c| c.id == after)) {
            opened.drain(..=at);
        }
        self.opened.extend(opened.iter().map(|c| c.file.clone()));
        self.pending.extend(opened);
    }

    fn open(&self, path: PathBuf) -> Result<Option<Cursor>, String> {
        let active = path == self.active;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("{}: {err}", path.display())),
        };
        let meta = file.metadata().map_err(|err| format!("{}: {err}", path.display()))?;
        if !active && let (Some(since), Ok(modified)) = (self.since, meta.modified()) {
            // Every record in it is older than its last write.
            if modified < since {
                return Ok(None);
            }
        }
        Ok(Some(Cursor {
            file: Arc::from(path),
            reader: BufReader::with_capacity(256 << 10, file),
            number: 0,
            position: 0,
            partial: Vec::new(),
            id: (meta.dev(), meta.ino()),
            active,
        }))
    }

    /// The next line; `None` at the end (for now, when following).
    fn next_line(&mut self, warnings: &mut Vec<String>) -> Option<RawLine> {
        loop {
            if self.current.is_none() {
                let cursor = self.pending.pop_front()?;
                self.last = Some(cursor.id);
                self.current = Some(cursor);
            }
            let cursor = self.current.as_mut()?;
            match cursor.reader.read_until(b'\n', &mut cursor.partial) {
                Ok(read) => cursor.position += read as u64,
                Err(err) => {
                    warnings.push(format!("{}: {err}", cursor.file.display()));
                    self.current = None;
                    continue;
                }
            }
            if cursor.partial.last() == Some(&b'\n') {
                cursor.number += 1;
                let mut bytes = std::mem::take(&mut cursor.partial);
                bytes.pop();
                return Some(RawLine { file: cursor.file.clone(), number: cursor.number, bytes, complete: true });
            }
            if self.follow && cursor.active {
                // Wait for the rest of the line, or for the next one.
                return None;
            }
            let cursor = self.current.take()?;
            if !cursor.partial.is_empty() {
                return Some(RawLine {
                    file: cursor.file,
                    number: cursor.number + 1,
                    bytes: cursor.partial,
                    complete: false,
                });
            }
        }
    }

    /// When following: notice rotation (the active path names another
    /// file) and truncation; look again for a log that did not exist.
    fn check(&mut self, warnings: &mut Vec<String>) {
        let Some(cursor) = &mut self.current else {
            if self.pending.is_empty() {
                self.queue_after(self.last, warnings);
            }
            return;
        };
        if !cursor.active {
            // Draining a rotated file; what follows it is queued.
            return;
        }
        match fs::metadata(&self.active) {
            Ok(meta) if (meta.dev(), meta.ino()) == cursor.id => {
                if meta.len() < cursor.position {
                    warnings.push(format!("{}: truncated; reading it again from the start", self.active.display()));
                    let restart = cursor.reader.seek(SeekFrom::Start(0));
                    cursor.partial.clear();
                    cursor.position = 0;
                    cursor.number = 0;
                    if restart.is_err() {
                        self.current = None;
                    }
                }
            }
            _ => {
                // Rotated: finish the file we hold, then every newer one
                // (it may have rotated more than once since we looked).
                cursor.active = false;
                let id = cursor.id;
                self.queue_after(Some(id), warnings);
            }
        }
    }
}

/// Records from several logs, merged by time.
pub struct LogReader {
    chains: Vec<Chain>,
    heads: Vec<Option<Entry>>,
    exhausted: Vec<bool>,
    filter: Filter,
    follow: bool,
    /// Directories named on the command line, searched again for new logs
    /// when following.
    dirs: Vec<PathBuf>,
    warnings: Vec<String>,
}

impl LogReader {
    /// Read the logs at `paths` (files, with their rotated files, or
    /// directories). A file path with no log at all is an error.
    pub fn open(paths: &[PathBuf], filter: Filter) -> Result<Self, ReadError> {
        Self::new(paths, filter, false)
    }

    /// As `open`, then keep reading what is appended (see [`poll`](Self::poll)).
    /// A log that does not exist yet is waited for.
    pub fn follow(paths: &[PathBuf], filter: Filter) -> Result<Self, ReadError> {
        Self::new(paths, filter, true)
    }

    fn new(paths: &[PathBuf], filter: Filter, follow: bool) -> Result<Self, ReadError> {
        let mut warnings = Vec::new();
        let logs = discover(paths, !follow, &mut warnings)?;
        let chains: Vec<Chain> =
            logs.into_iter().map(|log| Chain::new(log, follow, filter.since, &mut warnings)).collect();
        let n = chains.len();
        Ok(Self {
            chains,
            heads: (0..n).map(|_| None).collect(),
            exhausted: vec![false; n],
            filter,
            follow,
            dirs: paths.iter().filter(|p| p.is_dir()).cloned().collect(),
            warnings,
        })
    }

    /// The logs being read (their active paths).
    pub fn logs(&self) -> Vec<&Path> {
        self.chains.iter().map(|c| c.active.as_path()).collect()
    }

    /// Each log read, with the files of it opened so far, oldest first.
    pub fn files(&self) -> Vec<(PathBuf, Vec<PathBuf>)> {
        self.chains.iter().map(|c| (c.active.clone(), c.opened.iter().map(|f| f.to_path_buf()).collect())).collect()
    }

    /// Warnings since the last call: skipped lines, unreadable files.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The next matching record of the logs as they are now, the earliest
    /// of every log's next one.
    pub fn next_entry(&mut self) -> Option<Entry> {
        for i in 0..self.chains.len() {
            if self.heads[i].is_none() && !self.exhausted[i] {
                self.heads[i] = self.pull(i);
                self.exhausted[i] = self.heads[i].is_none();
            }
        }
        let earliest = (0..self.heads.len())
            .filter(|&i| self.heads[i].is_some())
            .min_by_key(|&i| self.heads[i].as_ref().map(|e| e.record.time))?;
        self.heads[earliest].take()
    }

    /// When following: wait up to `wait` for records appended since, and
    /// return them by time. Call after reading the backlog with
    /// `next_entry`.
    pub fn poll(&mut self, wait: Duration) -> Vec<Entry> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            self.find_new_logs();
            let mut found = Vec::new();
            for i in 0..self.chains.len() {
                let mut warnings = std::mem::take(&mut self.warnings);
                self.chains[i].check(&mut warnings);
                self.warnings = warnings;
                while let Some(entry) = self.pull(i) {
                    found.push(entry);
                }
            }
            if !found.is_empty() || std::time::Instant::now() >= deadline {
                found.sort_by_key(|e| e.record.time);
                return found;
            }
            std::thread::sleep(Duration::from_millis(100).min(wait));
        }
    }

    fn find_new_logs(&mut self) {
        if !self.follow || self.dirs.is_empty() {
            return;
        }
        let known: BTreeSet<PathBuf> = self.chains.iter().map(|c| c.active.clone()).collect();
        let mut found = BTreeSet::new();
        for dir in &self.dirs {
            let _ = walk(dir, &mut found);
        }
        for log in found.difference(&known) {
            self.chains.push(Chain::new(log.clone(), true, self.filter.since, &mut self.warnings));
            self.heads.push(None);
            self.exhausted.push(false);
        }
    }

    /// The next matching record of chain `i`.
    fn pull(&mut self, i: usize) -> Option<Entry> {
        loop {
            let raw = self.chains[i].next_line(&mut self.warnings)?;
            if let Some(entry) = self.parse(raw)
                && self.filter.matches(&entry.record)
            {
                return Some(entry);
            }
        }
    }

    fn parse(&mut self, raw: RawLine) -> Option<Entry> {
        if raw.bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match serde_json::from_slice::<AuditRecord>(&raw.bytes) {
            Ok(record) => {
                Some(Entry { record, line: String::from_utf8_lossy(&raw.bytes).into_owned(), file: raw.file })
            }
            Err(_) if !raw.complete => {
                self.warnings.push(format!(
                    "{}: skipped a torn final line ({} bytes): a record a crash or a full disk cut short, never acknowledged",
                    raw.file.display(),
                    raw.bytes.len()
                ));
                None
            }
            Err(err) => {
                self.warnings.push(format!(
                    "{}:{}: skipped a line that is not an audit record ({err})",
                    raw.file.display(),
                    raw.number
                ));
                None
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.next_entry()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(time: &str, policy: &str, namespace: &str) -> String {
        format!(
            r#"{{"time":"{time}","uid":"u-{policy}-{time}","operation":"CREATE","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"{namespace}","user":"system:serviceaccount:ci:deployer","endpoint":"validate","policy":"{policy}","decision":"denied","code":403,"message":"no","allowed":false}}"#
        )
    }

    fn times(reader: LogReader) -> Vec<String> {
        reader.map(|e| humantime::format_rfc3339_seconds(e.record.time).to_string()).collect()
    }

    #[test]
    fn rotated_files_are_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        fs::write(rotated_path(&path, 2), record("2024-01-01T00:00:01Z", "a", "n") + "\n").unwrap();
        fs::write(rotated_path(&path, 1), record("2024-01-01T00:00:02Z", "a", "n") + "\n").unwrap();
        fs::write(&path, record("2024-01-01T00:00:03Z", "a", "n") + "\n").unwrap();
        fs::write(dir.path().join("audit.log.old"), "not ours").unwrap();
        assert_eq!(rotated_files(&path), vec![rotated_path(&path, 2), rotated_path(&path, 1)]);
        let reader = LogReader::open(std::slice::from_ref(&path), Filter::default()).unwrap();
        assert_eq!(times(reader), ["2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z", "2024-01-01T00:00:03Z"]);
        // Only rotated files left: still a log.
        fs::remove_file(&path).unwrap();
        assert_eq!(LogReader::open(std::slice::from_ref(&path), Filter::default()).unwrap().count(), 2);
        let missing = dir.path().join("nothing.log");
        assert!(matches!(LogReader::open(&[missing], Filter::default()), Err(ReadError::NotFound(_))));
    }

    #[test]
    fn directories_are_searched_and_merged_by_time() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("replica-b")).unwrap();
        fs::write(
            dir.path().join("a.log"),
            [record("2024-01-01T00:00:01Z", "p", "n"), record("2024-01-01T00:00:04Z", "p", "n"), String::new()]
                .join("\n"),
        )
        .unwrap();
        fs::write(dir.path().join("a.log.1"), record("2024-01-01T00:00:00Z", "p", "n") + "\n").unwrap();
        fs::write(
            dir.path().join("replica-b/b.log"),
            [record("2024-01-01T00:00:02Z", "p", "n"), record("2024-01-01T00:00:03Z", "p", "n"), String::new()]
                .join("\n"),
        )
        .unwrap();
        // A volume's lost+found is not searched (berth could not read it).
        fs::create_dir(dir.path().join("lost+found")).unwrap();
        fs::write(dir.path().join("lost+found/#1234"), record("2024-01-01T00:00:05Z", "p", "n") + "\n").unwrap();
        let mut warnings = Vec::new();
        let logs = discover(&[dir.path().to_owned()], true, &mut warnings).unwrap();
        assert_eq!(logs, [dir.path().join("a.log"), dir.path().join("replica-b/b.log")]);
        let reader = LogReader::open(&[dir.path().to_owned()], Filter::default()).unwrap();
        assert_eq!(
            times(reader),
            [
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:00:01Z",
                "2024-01-01T00:00:02Z",
                "2024-01-01T00:00:03Z",
                "2024-01-01T00:00:04Z"
            ]
        );
    }

    #[test]
    fn bad_lines_are_skipped_with_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let torn = record("2024-01-01T00:00:03Z", "p", "n");
        let text = [
            record("2024-01-01T00:00:01Z", "p", "n"),
            "garbage".to_owned(),
            String::new(),
            record("2024-01-01T00:00:02Z", "p", "n"),
            torn[..torn.len() / 2].to_owned(),
        ]
        .join("\n");
        fs::write(&path, text).unwrap();
        let mut reader = LogReader::open(std::slice::from_ref(&path), Filter::default()).unwrap();
        assert_eq!(reader.by_ref().count(), 2);
        let warnings = reader.take_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("audit.log:2: skipped a line"), "{warnings:?}");
        assert!(warnings[1].contains("skipped a torn final line"), "{warnings:?}");
    }

    #[test]
    fn filters() {
        let record: AuditRecord = serde_json::from_str(&record("2024-01-01T00:00:01Z", "no-latest", "team-a")).unwrap();
        let at = |text: &str| super::super::record::parse_rfc3339(text).unwrap();
        let check = |filter: Filter| filter.matches(&record);
        assert!(check(Filter::default()));
        assert!(check(Filter { since: Some(at("2024-01-01T00:00:01Z")), ..Filter::default() }));
        assert!(!check(Filter { since: Some(at("2024-01-01T00:00:02Z")), ..Filter::default() }));
        assert!(!check(Filter { until: Some(at("2024-01-01T00:00:01Z")), ..Filter::default() }));
        assert!(check(Filter { namespaces: vec!["x".into(), "team-a".into()], ..Filter::default() }));
        assert!(check(Filter { namespaces: vec!["team-*".into()], ..Filter::default() }));
        assert!(!check(Filter { namespaces: vec!["team".into()], ..Filter::default() }));
        assert!(check(Filter { policies: vec!["no-latest".into()], ..Filter::default() }));
        assert!(check(Filter { kinds: vec!["pod".into()], ..Filter::default() }));
        assert!(check(Filter { kinds: vec!["pods".into()], ..Filter::default() }));
        assert!(!check(Filter { kinds: vec!["Deployment".into()], ..Filter::default() }));
        assert!(check(Filter { users: vec!["system:serviceaccount:ci:*".into()], ..Filter::default() }));
        assert!(!check(Filter { users: vec!["alice".into()], ..Filter::default() }));
        assert!(check(Filter { decisions: vec![Decision::Denied], ..Filter::default() }));
        assert!(!check(Filter { decisions: vec![Decision::Mutated], ..Filter::default() }));
    }

    #[test]
    fn since_parses_times_and_durations() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_since("1h", now).unwrap(), now - Duration::from_secs(3600));
        assert_eq!(parse_since("1970-01-01T00:00:10Z", now).unwrap(), SystemTime::UNIX_EPOCH + Duration::from_secs(10));
        assert!(parse_since("soon", now).unwrap_err().contains("neither"));
    }

    #[test]
    fn following_sees_appends_rotation_and_completed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut reader = LogReader::follow(std::slice::from_ref(&path), Filter::default()).unwrap();
        assert_eq!(reader.by_ref().count(), 0);
        assert!(reader.poll(Duration::ZERO).is_empty());

        fs::write(&path, record("2024-01-01T00:00:01Z", "p", "n") + "\n").unwrap();
        assert_eq!(reader.poll(Duration::from_secs(5)).len(), 1);

        // Half a line now, the rest later: read once whole, no warning.
        let line = record("2024-01-01T00:00:02Z", "p", "n") + "\n";
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&line.as_bytes()[..20]).unwrap();
        assert!(reader.poll(Duration::ZERO).is_empty());
        file.write_all(&line.as_bytes()[20..]).unwrap();
        assert_eq!(reader.poll(Duration::from_secs(5)).len(), 1);

        // Rotation: the rest of the old file, then the new one.
        file.write_all((record("2024-01-01T00:00:03Z", "p", "n") + "\n").as_bytes()).unwrap();
        fs::rename(&path, rotated_path(&path, 1)).unwrap();
        fs::write(&path, record("2024-01-01T00:00:04Z", "p", "n") + "\n").unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(reader.poll(Duration::from_millis(200)));
        }
        let seen: Vec<String> =
            seen.iter().map(|e| humantime::format_rfc3339_seconds(e.record.time).to_string()).collect();
        assert_eq!(seen, ["2024-01-01T00:00:03Z", "2024-01-01T00:00:04Z"]);

        // Two rotations between polls: the file in between is read too.
        let rotate = |line: String| {
            fs::rename(rotated_path(&path, 2), rotated_path(&path, 3)).ok();
            fs::rename(rotated_path(&path, 1), rotated_path(&path, 2)).unwrap();
            fs::rename(&path, rotated_path(&path, 1)).unwrap();
            fs::write(&path, line + "\n").unwrap();
        };
        rotate(record("2024-01-01T00:00:05Z", "p", "n"));
        rotate(record("2024-01-01T00:00:06Z", "p", "n"));
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(reader.poll(Duration::from_millis(100)));
        }
        let seen: Vec<String> =
            seen.iter().map(|e| humantime::format_rfc3339_seconds(e.record.time).to_string()).collect();
        assert_eq!(seen, ["2024-01-01T00:00:05Z", "2024-01-01T00:00:06Z"]);
        assert!(reader.take_warnings().is_empty());
    }
}
