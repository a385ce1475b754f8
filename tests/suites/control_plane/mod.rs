//! berth against a real control plane (tests/src/control_plane): etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler built from
//! the Kubernetes modules, berth installed with its chart, and the seed's
//! charts installed with `helm install`, Helm 3 and Helm 4. The controllers
//! create the pods and claims, the apiserver's admission chain calls berth,
//! and the scheduler decides where everything lands.
//!
//! - `installs`: the fixtures' charts, placed (and the control without berth);
//! - `contract`: what the real apiserver sends and does around berth;
//! - `events`: berth's Events as `kubectl get events` and `describe` show them.

mod contract;
mod events;
mod installs;
