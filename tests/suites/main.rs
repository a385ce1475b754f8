//! The end-to-end suites: berth over real TLS, driven as kube-apiserver
//! drives it. One module per suite, all in one test binary, because every
//! test binary links wasmtime.

mod audit;
mod authors;
mod authors_feedback;
mod clients;
mod cluster;
mod control_plane;
mod dashboard;
mod default_policy;
mod deploy;
mod eval;
mod events;
mod isolation;
mod kube_standin;
mod lifecycle;
mod load;
mod namespaces;
mod pinned;
mod plugin_images;
mod releases;
mod report;
mod server;
mod soak;
mod updates;
