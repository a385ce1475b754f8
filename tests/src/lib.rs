//! Shared support for the end-to-end suites: the fixtures, berth as a
//! process, a client that behaves like kube-apiserver, and an RFC 6902
//! applier written independently of the server's.

pub mod admission;
pub mod client;
pub mod control_plane;
pub mod fixtures;
pub mod jsonpatch;
pub mod kube;
pub mod machine;
pub mod server;
pub mod slow;
