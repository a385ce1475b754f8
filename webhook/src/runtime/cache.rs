//! Compiled plugins kept on disk, keyed by the plugin's sha256 and the
//! engine's configuration, so a restart deserializes (about 1 ms) instead of
//! compiling (55 ms to over a second per plugin).

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, Clone, Default)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: Some(dir.into()) }
    }

    /// `$BERTH_CACHE_DIR`, else `$XDG_CACHE_HOME/berth`, else `~/.cache/berth`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("BERTH_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("berth")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/berth")));
        Self { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The compiled component for `wasm`, from the cache when possible.
    pub fn component(&self, engine: &Engine, sha256: &str, wasm: &[u8]) -> wasmtime::Result<Component> {
        let Some(path) = self.path(engine, sha256) else {
            return Component::new(engine, wasm);
        };
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
                Ok(component) => return Ok(component),
                Err(err) => tracing::warn!(path = %path.display(), "ignoring unusable cached plugin: {err}"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(err) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "could not cache compiled plugin: {err}");
        }
        Ok(component)
    }

    fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let key = hex::encode(Sha256::digest(format!("{sha256}-{engine_key}-{}", env!("CARGO_PKG_VERSION"))));
        Some(dir.join(format!("{}.cwasm", &key[..32])))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), Box<dyn std::error::Error>> {
        let bytes = component.serialize()?;
        let dir = path.parent().ok_or("cache path has no parent")?;
        std::fs::create_dir_all(dir)?;
        // Write then rename, so a reader never sees half a file.
        let tmp = tempfile_in(dir)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    Ok(dir.join(format!(".tmp-{}-{nanos}", std::process::id())))
}
