//! Pod UPDATE requests as kube-apiserver sends them to a webhook, built from
//! the CREATE fixtures, for tests (native only).
//!
//! ```
//! use berth_sdk::apiserver::{self, PodUpdate};
//! use serde_json::json;
//!
//! let running = apiserver::stored(&json!({"metadata": {"name": "p", "namespace": "ns"},
//!     "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}));
//! // kubectl debug p --image=busybox:1.36 --target=app
//! let request = PodUpdate::debug(&running, "debugger-7xk2p", "busybox:1.36", "app").request();
//! assert_eq!(request["subResource"], "ephemeralcontainers");
//! assert_eq!(request["options"]["kind"], "UpdateOptions");
//! assert_eq!(request["object"]["spec"]["ephemeralContainers"][0]["image"], "busybox:1.36");
//! assert_eq!(request["oldObject"], running);
//! ```
//!
//! What the apiserver does that shows in the request: a `kubectl` PATCH
//! reaches webhooks as operation UPDATE with `UpdateOptions`; `object` and
//! `oldObject` are whole Pods, on the `ephemeralcontainers` sub-resource
//! too (`kind` stays Pod, `resource` pods); an added ephemeral container
//! arrives with the API's defaults filled in.

use crate::changes::EPHEMERAL_CONTAINERS;
use serde_json::{Value, json};

/// `object` (a Pod from a CREATE review, patched or not) as the apiserver
/// stores it: with a uid, a resourceVersion and a creationTimestamp, and a
/// `nodeName` (it has been scheduled). What was already set is kept.
pub fn stored(object: &Value) -> Value {
    let mut pod = object.clone();
    let name = pod["metadata"]["name"].as_str().or(pod["metadata"]["generateName"].as_str()).unwrap_or("pod");
    let name = if name.ends_with('-') { format!("{name}x7k2p") } else { name.to_owned() };
    let defaults = [
        ("name", json!(name)),
        ("uid", json!("6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e")),
        ("resourceVersion", json!("4242")),
        ("creationTimestamp", json!("2026-11-30T10:00:00Z")),
    ];
    if let Some(metadata) = pod["metadata"].as_object_mut() {
        for (key, value) in defaults {
            metadata.entry(key).or_insert(value);
        }
    }
    if let Some(spec) = pod["spec"].as_object_mut() {
        spec.entry("nodeName").or_insert(json!("node-1"));
    }
    pod
}

/// An UPDATE of a stored Pod: the Pod before, the Pod the client sends, and
/// the sub-resource.
#[derive(Debug, Clone)]
pub struct PodUpdate {
    pub old: Value,
    pub new: Value,
    pub sub_resource: Option<String>,
    field_manager: &'static str,
}

impl PodUpdate {
    /// `kubectl set image pod/<name> <container>=<image>`: the container's
    /// image, in whichever of the lists it is.
    pub fn set_image(old: &Value, container: &str, image: &str) -> Self {
        let mut new = old.clone();
        let mut found = false;
        for list in ["initContainers", "containers"] {
            for c in new["spec"][list].as_array_mut().into_iter().flatten() {
                if c["name"] == container {
                    c["image"] = image.into();
                    found = true;
                }
            }
        }
        assert!(found, "the pod has no container {container:?}");
        Self { old: old.clone(), new, sub_resource: None, field_manager: "kubectl-set" }
    }

    /// `kubectl label pod/<name> <key>=<value>`.
    pub fn label(old: &Value, key: &str, value: &str) -> Self {
        let mut new = old.clone();
        let metadata = new["metadata"].as_object_mut().expect("a Pod has metadata");
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        labels[key] = value.into();
        Self { old: old.clone(), new, sub_resource: None, field_manager: "kubectl-label" }
    }

    /// `kubectl debug <pod> -it --image=<image> --target=<target>`: an
    /// ephemeral container appended through the `ephemeralcontainers`
    /// sub-resource, with the API's defaults.
    pub fn debug(old: &Value, name: &str, image: &str, target: &str) -> Self {
        let mut new = old.clone();
        let spec = new["spec"].as_object_mut().expect("a Pod has a spec");
        // The API's default: Always for :latest or no tag.
        let tag = image.rsplit('/').next().and_then(|last| last.split_once(':')).map(|(_, tag)| tag);
        let pull_policy = if matches!(tag, None | Some("latest")) { "Always" } else { "IfNotPresent" };
        let list = spec.entry("ephemeralContainers").or_insert_with(|| json!([]));
        list.as_array_mut().expect("ephemeralContainers is a list").push(json!({
            "name": name,
            "image": image,
            "imagePullPolicy": pull_policy,
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "stdin": true,
            "tty": true,
            "targetContainerName": target,
        }));
        Self {
            old: old.clone(),
            new,
            sub_resource: Some(EPHEMERAL_CONTAINERS.to_owned()),
            field_manager: "kubectl-debug",
        }
    }

    /// The same update with another object sent (berth's patched one, for
    /// reinvocation or for /validate).
    pub fn with_object(&self, new: &Value) -> Self {
        Self { new: new.clone(), ..self.clone() }
    }

    /// The AdmissionRequest.
    pub fn request(&self) -> Value {
        let metadata = &self.old["metadata"];
        let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
        let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
        let uid = format!("{}-{}", self.field_manager, metadata["resourceVersion"].as_str().unwrap_or("0"));
        let mut request = json!({
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "operation": "UPDATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": self.new,
            "oldObject": self.old,
            "dryRun": false,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": self.field_manager},
        });
        if let Some(sub) = &self.sub_resource {
            request["subResource"] = sub.as_str().into();
            request["requestSubResource"] = sub.as_str().into();
        }
        request
    }

    /// The whole AdmissionReview.
    pub fn review(&self) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": self.request()})
    }
}
