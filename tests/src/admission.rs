//! What kube-apiserver does with a webhook's answer, as assertions: the
//! envelope and uid, the patch type, the patch applied independently, and
//! the result still a valid object of the same kind.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::Value;

/// A response that passed the apiserver's checks.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: Value,
    /// The decoded JSON Patch, if any.
    pub patch: Option<Value>,
    /// The object after the patch (the object itself without one).
    pub object: Value,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.response["allowed"] == Value::Bool(true)
    }

    pub fn message(&self) -> &str {
        self.response["status"]["message"].as_str().unwrap_or("")
    }
}

/// Check berth's answer to `review` the way the apiserver would.
pub fn check(review: &Value, body: &[u8]) -> Answer {
    let answer: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    let response = answer["response"].clone();
    assert_eq!(response["uid"], review["request"]["uid"], "the uid must be echoed");
    assert!(response["allowed"].is_boolean(), "allowed must always be set: {response}");
    let mut object = review["request"]["object"].clone();
    let patch = match response.get("patch").and_then(Value::as_str) {
        None => {
            assert!(response.get("patchType").is_none(), "patchType without a patch: {response}");
            None
        }
        Some(encoded) => {
            assert_eq!(response["patchType"], "JSONPatch", "{response}");
            assert_eq!(response["allowed"], true, "a patch only comes with allowed: true");
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("patch is base64");
            let patch: Value = serde_json::from_slice(&bytes).expect("patch is JSON");
            crate::jsonpatch::apply(&mut object, &patch)
                .unwrap_or_else(|e| panic!("patch does not apply: {e}: {patch}"));
            Some(patch)
        }
    };
    assert_still_valid(review, &object);
    Answer { response, patch, object }
}

/// The patched object deserializes as the same Kubernetes kind, with its
/// identity unchanged.
pub fn assert_still_valid(review: &Value, object: &Value) {
    if object.is_null() {
        return;
    }
    let kind = review["request"]["kind"]["kind"].as_str().unwrap_or("");
    match kind {
        "Pod" => {
            serde_json::from_value::<Pod>(object.clone())
                .unwrap_or_else(|e| panic!("patched Pod is no longer a Pod: {e}"));
        }
        "PersistentVolumeClaim" => {
            serde_json::from_value::<PersistentVolumeClaim>(object.clone())
                .unwrap_or_else(|e| panic!("patched PVC is no longer a PVC: {e}"));
        }
        other => panic!("unexpected kind {other}"),
    }
    let original = &review["request"]["object"];
    for field in ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace", "/metadata/generateName"] {
        assert_eq!(original.pointer(field), object.pointer(field), "{field} changed");
    }
}

/// The review the apiserver sends on reinvocation: the same request with
/// the object as it now stands.
pub fn with_object(review: &Value, object: &Value) -> Value {
    let mut review = review.clone();
    review["request"]["object"] = object.clone();
    review
}
