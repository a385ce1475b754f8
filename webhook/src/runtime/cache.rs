//! Compiled plugins kept on disk, keyed by the plugin's sha256 and the
//! engine's configuration, so a restart deserializes (about 1 ms) instead of
//! compiling (55 ms to over a second per plugin).
//!
//! The directory has a size limit (`--cache-size-limit`): in a pod it is an
//! `emptyDir` with a `sizeLimit`, and kubelet evicts a pod whose volume
//! passes it. Room is made before an entry is written, so the directory,
//! the entry being written included, never holds more than the limit.
//! Entries no loaded plugin uses go first, then the least recently used.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The chart's default `emptyDir` size (`serve.cacheSizeLimit`), which the
/// chart also passes as `--cache-size-limit`.
pub const DEFAULT_SIZE_LIMIT: u64 = 256 << 20;

/// The block size sizes are rounded up to (ext4's and tmpfs's).
const BLOCK: u64 = 4096;

/// A temporary file older than this was left by a writer that died.
const ABANDONED: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    limit: u64,
    /// The entries that loaded plugins use, each with the number of plugins
    /// using it; shared by the clones of one cache, so that every policy set
    /// a server holds (the serving one and one loading aside) counts.
    in_use: Arc<Mutex<HashMap<PathBuf, usize>>>,
    /// One writer at a time makes room and writes, so that two plugins
    /// compiled at once cannot both count on the same free space.
    writing: Arc<Mutex<()>>,
}

impl Default for ArtifactCache {
    fn default() -> Self {
        Self::disabled()
    }
}

/// Keeps a cache entry counted as in use while the plugin compiled from it
/// is loaded.
#[derive(Debug)]
pub struct InUse {
    path: PathBuf,
    in_use: Arc<Mutex<HashMap<PathBuf, usize>>>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = in_use.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.path);
            }
        }
    }
}

impl ArtifactCache {
    pub fn disabled() -> Self {
        Self { dir: None, limit: DEFAULT_SIZE_LIMIT, in_use: Arc::default(), writing: Arc::default() }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: Some(dir.into()), ..Self::disabled() }
    }

    /// `$BERTH_CACHE_DIR`, else `$XDG_CACHE_HOME/berth`, else `~/.cache/berth`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("BERTH_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("berth")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/berth")));
        Self { dir, ..Self::disabled() }
    }

    /// The most bytes the directory may hold (default [`DEFAULT_SIZE_LIMIT`]).
    pub fn with_size_limit(self, limit: u64) -> Self {
        Self { limit, ..self }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn size_limit(&self) -> u64 {
        self.limit
    }

    /// The compiled component for `wasm`, from the cache when possible, and
    /// what keeps its entry counted as in use: hold it as long as the
    /// component is loaded.
    pub fn component(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, Option<InUse>)> {
        let Some(path) = self.path(engine, sha256) else {
            return Ok((Component::new(engine, wasm)?, None));
        };
        let in_use = self.use_entry(&path);
        // Read into memory rather than `deserialize_file`: that one maps the
        // file, and a file truncated under a running berth (by hand, or by a
        // tool cleaning caches) would then kill it with SIGBUS.
        if let Ok(bytes) = std::fs::read(&path) {
            // SAFETY: wasmtime requires that deserialized bytes come from
            // `Component::serialize` of a trusted engine. We only read files
            // this function wrote, named by the wasm's sha256 and the engine's
            // compatibility hash, in a directory that must be writable only by
            // berth (documented in ARCHITECTURE.md). wasmtime still checks the
            // header and configuration and fails cleanly on a mismatch.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(engine, &bytes) };
            match loaded {
                Ok(component) => {
                    // Recency for eviction: access times are often not kept
                    // (noatime, relatime), so a hit sets the modified time.
                    let touched = std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|file| file.set_modified(SystemTime::now()));
                    if let Err(err) = touched {
                        tracing::debug!(path = %path.display(), "could not mark cached plugin as used: {err}");
                    }
                    return Ok((component, Some(in_use)));
                }
                Err(err) => tracing::warn!(path = %path.display(), "ignoring unusable cached plugin: {err}"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(err) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "could not cache compiled plugin: {err}");
        }
        Ok((component, Some(in_use)))
    }

    fn use_entry(&self, path: &Path) -> InUse {
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        *in_use.entry(path.to_owned()).or_default() += 1;
        InUse { path: path.to_owned(), in_use: self.in_use.clone() }
    }

    fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let key = hex::encode(Sha256::digest(format!("{sha256}-{engine_key}-{}", env!("CARGO_PKG_VERSION"))));
        Some(dir.join(format!("{}.cwasm", &key[..32])))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), StoreError> {
        let bytes = component.serialize().map_err(StoreError::Serialize)?;
        let dir = path.parent().ok_or(StoreError::NoParent)?;
        std::fs::create_dir_all(dir).map_err(StoreError::Io)?;
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        // As kubelet will count it: whole blocks, and the directory's own
        // block, which a new name may take.
        let size = (bytes.len() as u64).div_ceil(BLOCK) * BLOCK + BLOCK;
        if size > self.limit {
            return Err(StoreError::TooLarge { size, limit: self.limit });
        }
        self.make_room(dir, size)?;
        // Write then rename, so a reader never sees half a file.
        let tmp = tempfile_in(dir);
        let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(StoreError::Io)
    }

    /// Evict entries until `incoming` more bytes fit under the limit; if
    /// files berth may not remove leave no room even then, evict nothing
    /// and cache nothing.
    fn make_room(&self, dir: &Path, incoming: u64) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(StoreError::Io)? {
            let entry = entry.map_err(StoreError::Io)?;
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = entry.file_name();
            let tmp = name.to_string_lossy().starts_with(".tmp-");
            if tmp && now.duration_since(used).is_ok_and(|age| age > ABANDONED) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            // Only berth's own entries are ever removed: the directory may
            // be shared (`--cache-dir /tmp`), and another program's file
            // counts toward the limit but is never deleted.
            files.push(Entry {
                path,
                bytes: disk_usage(&meta),
                used,
                evictable: !tmp && is_entry(&name.to_string_lossy()),
            });
        }
        let in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let kept: u64 = files.iter().filter(|file| !file.evictable).map(|file| file.bytes).sum();
        if kept + incoming > self.limit {
            return Err(StoreError::NoRoom { others: kept, limit: self.limit });
        }
        let evicted = choose_evictions(files, |path| in_use.contains_key(path), self.limit - incoming);
        for path in evicted {
            tracing::info!(path = %path.display(), "evicting a compiled plugin from the cache to stay under its size limit");
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StoreError::Io(err));
            }
        }
        Ok(())
    }
}

/// A compiled plugin's file name: 32 hex digits and `.cwasm`.
fn is_entry(name: &str) -> bool {
    name.strip_suffix(".cwasm").is_some_and(|key| key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("serializing the compiled plugin")]
    Serialize(#[source] wasmtime::Error),
    #[error("the cache path has no parent directory")]
    NoParent,
    #[error("the compiled plugin ({size} bytes) is larger than the cache's size limit ({limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("files that are not berth's entries take {others} of the cache's {limit} bytes")]
    NoRoom { others: u64, limit: u64 },
    #[error(transparent)]
    Io(std::io::Error),
}

/// A file in the cache directory.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
    /// A temporary file another writer is still writing is counted, never
    /// removed.
    evictable: bool,
}

/// The files to remove so that the rest hold at most `budget` bytes:
/// entries not in use first, then those in use, least recently used first
/// within each.
fn choose_evictions(mut files: Vec<Entry>, in_use: impl Fn(&Path) -> bool, budget: u64) -> Vec<PathBuf> {
    let mut total: u64 = files.iter().map(|file| file.bytes).sum();
    files.retain(|file| file.evictable);
    files.sort_by_key(|file| (in_use(&file.path), file.used));
    let mut evicted = Vec::new();
    for file in files {
        if total <= budget {
            break;
        }
        total -= file.bytes;
        evicted.push(file.path);
    }
    evicted
}

/// What a file takes on disk, as kubelet counts an `emptyDir` (blocks, not
/// length).
fn disk_usage(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        (meta.blocks() * 512).max(meta.len())
    }
    #[cfg(not(unix))]
    {
        meta.len()
    }
}

fn tempfile_in(dir: &Path) -> PathBuf {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    dir.join(format!(".tmp-{}-{nanos}", std::process::id()))
}

/// The bytes the cache directory holds, as [`ArtifactCache`] counts them.
pub fn dir_usage(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += disk_usage(&meta);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, bytes: u64, age_secs: u64) -> Entry {
        let used = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age_secs);
        Entry { path: PathBuf::from(name), bytes, used, evictable: !name.starts_with(".tmp-") }
    }

    #[test]
    fn unused_entries_go_first_then_the_least_recently_used() {
        let files = vec![
            entry("used-old", 30, 500),
            entry("unused-new", 30, 10),
            entry("used-new", 30, 5),
            entry("unused-old", 30, 400),
        ];
        let in_use = |path: &Path| path.to_string_lossy().starts_with("used");
        // 120 bytes, room for 90: the oldest unused goes.
        assert_eq!(choose_evictions(files, in_use, 90), [PathBuf::from("unused-old")]);
        let files = vec![
            entry("used-old", 30, 500),
            entry("unused-new", 30, 10),
            entry("used-new", 30, 5),
            entry("unused-old", 30, 400),
        ];
        // Room for 30: both unused, then the older of those in use.
        assert_eq!(choose_evictions(files, in_use, 30), ["unused-old", "unused-new", "used-old"].map(PathBuf::from));
    }

    #[test]
    fn a_file_being_written_counts_but_stays() {
        let files = vec![entry(".tmp-1-2", 50, 1), entry("a", 30, 100)];
        assert_eq!(choose_evictions(files, |_| false, 40), [PathBuf::from("a")]);
        assert!(choose_evictions(vec![entry("a", 30, 1)], |_| false, 30).is_empty());
    }

    #[test]
    fn others_files_that_leave_no_room_mean_nothing_is_evicted_or_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let entry = dir.join("0123456789abcdef0123456789abcdef.cwasm");
        std::fs::write(dir.join("notes.txt"), vec![0_u8; 8 * BLOCK as usize]).unwrap();
        std::fs::write(&entry, vec![0_u8; BLOCK as usize]).unwrap();
        let cache = ArtifactCache::at(&dir).with_size_limit(12 * BLOCK);
        let full = cache.make_room(&dir, 8 * BLOCK);
        assert!(matches!(full, Err(StoreError::NoRoom { .. })), "{full:?}");
        assert!(entry.exists(), "nothing is evicted for an entry that cannot fit");
        cache.make_room(&dir, 4 * BLOCK).expect("room once the entry goes");
        assert!(!entry.exists());
    }

    #[test]
    fn only_berths_own_files_are_entries() {
        assert!(is_entry("0123456789abcdef0123456789abcdef.cwasm"));
        for other in ["notes.txt", "0123456789abcdef.cwasm", "0123456789abcdef0123456789abcdeg.cwasm", ".tmp-1-2"] {
            assert!(!is_entry(other), "{other}");
        }
    }
}
