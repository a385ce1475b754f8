//! Shared support for the end-to-end suites: the fixtures, and an RFC 6902
//! applier written independently of the server's, as kube-apiserver has its
//! own.

pub mod fixtures;
pub mod jsonpatch;
