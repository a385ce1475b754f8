//! # berth-reference
//!
//! Container image references, parsed the way Docker, containerd and
//! kubelet parse them (github.com/distribution/reference,
//! `ParseNormalizedNamed`), written by hand so that a plugin carries no
//! regex engine:
//!
//! ```
//! use berth_reference::Reference;
//!
//! let r = Reference::parse("busybox:1.36").unwrap();
//! assert_eq!(r.domain(), "docker.io");
//! assert_eq!(r.path(), "library/busybox");
//! assert_eq!(r.tag(), Some("1.36"));
//! assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
//! ```
//!
//! and registry prefixes (`docker.io`, `quay.io/prometheus`), matched on
//! path-segment boundaries against a normalised reference:
//!
//! ```
//! use berth_reference::{Reference, RepositoryPrefix};
//!
//! let quay = RepositoryPrefix::parse("quay.io/prometheus").unwrap();
//! let r = Reference::parse("quay.io/prometheus/node-exporter:v1.9.1").unwrap();
//! assert_eq!(quay.strip(&r), Some("node-exporter"));
//! let other = Reference::parse("quay.io/prometheus-community/x").unwrap();
//! assert_eq!(quay.strip(&other), None);
//! ```
//!
//! This is a library for plugins, not a plugin: its package name does not
//! start with `berth-plugin-`, so webhook/build.rs does not build it alone.

mod reference;

pub use reference::{
    DEFAULT_DOMAIN, ErrorKind, LEGACY_DEFAULT_DOMAIN, NAME_TOTAL_LENGTH_MAX, OFFICIAL_REPO_PREFIX, ParseError,
    Reference, RepositoryPrefix, TAG_LENGTH_MAX,
};
