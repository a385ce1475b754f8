//! `audit:` in berth.yaml. docs/AUDIT.md documents every field.

use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

/// Where the log goes when berth.yaml says nothing: relative to the working
/// directory of the process.
pub const DEFAULT_PATH: &str = "berth-audit.log";
/// `maxSize` when unset: 100Mi.
pub const DEFAULT_MAX_SIZE: u64 = 100 << 20;
/// `maxFiles` when unset: the active file and four rotated ones.
pub const DEFAULT_MAX_FILES: u32 = 5;

/// The audit log's configuration. Validated when parsed (so a bad value is
/// reported with its line) and again by [`crate::audit::AuditLog::open`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuditSpec {
    /// The log file. Relative paths are from the working directory; parent
    /// directories are created.
    pub path: PathBuf,
    /// Write the file sink (default true).
    pub file: bool,
    /// Also write every record to stdout, one JSON object per line.
    pub stdout: bool,
    /// Rotate the file before it would grow past this many bytes.
    #[serde(deserialize_with = "super::byte_size")]
    pub max_size: u64,
    /// Files kept, the active one included: `path`, `path.1` … `path.{maxFiles-1}`.
    pub max_files: u32,
    /// fdatasync once per group commit before acknowledging (default true).
    pub fsync: bool,
    /// What to answer when a record cannot be written.
    pub on_error: OnError,
    /// Record every mutation too, not only denials and errors.
    pub record_mutations: bool,
    #[serde(deserialize_with = "super::empty_as_default")]
    pub redact: RedactSpec,
}

impl Default for AuditSpec {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_PATH),
            file: true,
            stdout: false,
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
            fsync: true,
            on_error: OnError::Deny,
            record_mutations: false,
            redact: RedactSpec::default(),
        }
    }
}

impl<'de> Deserialize<'de> for AuditSpec {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        // The derive above (remote = "Self") generates this inherent fn.
        let spec = AuditSpec::deserialize(de)?;
        spec.validate().map_err(serde::de::Error::custom)?;
        Ok(spec)
    }
}

impl AuditSpec {
    /// Whether any sink is on.
    pub fn enabled(&self) -> bool {
        self.file || self.stdout
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.file && self.path.as_os_str().is_empty() {
            return Err("audit.path must not be empty (set audit.file: false to turn the file off)".into());
        }
        if self.max_size == 0 {
            return Err("audit.maxSize must be at least 1 byte".into());
        }
        if self.max_files == 0 {
            return Err("audit.maxFiles must be at least 1 (the active file)".into());
        }
        for path in &self.redact.paths {
            if !path.starts_with('/') {
                return Err(format!(
                    "audit.redact.paths: {path:?} is not a JSON Pointer; write /spec/containers/*/args"
                ));
            }
        }
        Ok(())
    }
}

/// `audit.onError`: what the server answers when a record cannot be
/// written. Either way it logs the failure and counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: the request is denied, saying the audit log failed.
    #[default]
    Deny,
    /// Fail open: the request gets the policies' answer, unrecorded.
    Allow,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Allow => "allow",
        }
    }
}

/// `audit.redact`: what is replaced by `"<redacted>"` in the recorded object
/// and patch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RedactSpec {
    /// `env[].value` of every container, init container and ephemeral
    /// container, at any depth (pod templates included).
    pub env_values: bool,
    /// Everything under a `data` or `stringData` field, at any depth.
    pub data: bool,
    /// More JSON Pointers to redact; `*` matches any one segment.
    #[serde(deserialize_with = "super::empty_as_default")]
    pub paths: Vec<String>,
    /// Record the object at all (false leaves `object` out of records).
    pub object: bool,
}

impl Default for RedactSpec {
    fn default() -> Self {
        Self { env_values: true, data: true, paths: Vec::new(), object: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuditSpec, String> {
        crate::yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let spec = parse("{}").unwrap();
        assert_eq!(spec, AuditSpec::default());
        assert_eq!(spec.path, PathBuf::from("berth-audit.log"));
        assert_eq!(spec.max_size, 100 << 20);
        assert_eq!(spec.max_files, 5);
        assert_eq!(spec.on_error, OnError::Deny);
        assert!(spec.fsync && spec.file && !spec.stdout && !spec.record_mutations);
        assert!(spec.redact.env_values && spec.redact.data && spec.redact.object);
    }

    #[test]
    fn fields_and_units() {
        let spec = parse(
            "path: /var/log/berth/audit.log\nmaxSize: 10Mi\nmaxFiles: 3\nstdout: true\nfsync: false\nonError: allow\nrecordMutations: true\nredact:\n  data: false\n  paths: [/spec/containers/*/args]\n",
        )
        .unwrap();
        assert_eq!(spec.max_size, 10 << 20);
        assert_eq!(spec.max_files, 3);
        assert_eq!(spec.on_error, OnError::Allow);
        assert!(!spec.redact.data && spec.redact.env_values);
        assert_eq!(spec.redact.paths, vec!["/spec/containers/*/args".to_owned()]);
        assert_eq!(parse("maxSize: 4096").unwrap().max_size, 4096);
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(parse("onEror: allow").unwrap_err().contains("onEror"));
        assert!(parse("redact:\n  envValue: false").unwrap_err().contains("envValue"));
        assert!(parse("onError: maybe").unwrap_err().contains("maybe"));
        assert!(parse("maxFiles: 0").unwrap_err().contains("maxFiles"));
        assert!(parse("maxSize: 3Qi").unwrap_err().contains("not a size"));
        assert!(parse("redact:\n  paths: [spec/x]").unwrap_err().contains("JSON Pointer"));
    }

    #[test]
    fn inside_berth_yaml() {
        let config = crate::config::Config::parse("audit:\n  path: a.log\n", "berth.yaml").unwrap();
        assert_eq!(config.audit.unwrap().path, PathBuf::from("a.log"));
        let err =
            crate::error_chain(&crate::config::Config::parse("audit:\n  maxFiles: 0\n", "berth.yaml").unwrap_err());
        assert!(err.contains("maxFiles"), "{err}");
        let spec = parse("redact:\n").unwrap();
        assert_eq!(spec.redact, RedactSpec::default());
        assert!(parse("redact:\n  paths:\n").unwrap().redact.paths.is_empty());
    }
}
