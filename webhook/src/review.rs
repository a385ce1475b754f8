//! AdmissionReview v1: the types kube-apiserver sends and expects back.
//! Types only; parsing an incoming review is the one fallible step here.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use thiserror::Error;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Why a review was refused with HTTP 400: the request is not one the
/// apiserver would send, so there is no uid to answer to.
#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("body is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("apiVersion must be {API_VERSION}, got {0:?}")]
    WrongApiVersion(String),
    #[error("kind must be {KIND}, got {0:?}")]
    WrongKind(String),
    #[error("the review has no request")]
    MissingRequest,
    #[error("the request has no uid")]
    MissingUid,
    #[error("the request is malformed")]
    InvalidRequest(#[source] serde_json::Error),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, borrow)]
    request: Option<&'a RawValue>,
}

/// The objects of a request as the apiserver sent them, as JSON text:
/// plugins are handed them as they are.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObjects<'a> {
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
}

/// A parsed review: the typed request, and its objects' JSON texts as the
/// apiserver sent them (`None` for an absent or null object).
#[derive(Debug)]
pub struct Review<'a> {
    pub request: AdmissionRequest,
    pub raw_object: Option<&'a str>,
    pub raw_old_object: Option<&'a str>,
}

impl<'a> Review<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, ReviewError> {
        let envelope: Envelope<'a> = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
        match envelope.api_version.as_deref() {
            Some(API_VERSION) => {}
            other => return Err(ReviewError::WrongApiVersion(other.unwrap_or_default().to_owned())),
        }
        match envelope.kind.as_deref() {
            Some(KIND) => {}
            other => return Err(ReviewError::WrongKind(other.unwrap_or_default().to_owned())),
        }
        let raw = envelope.request.filter(|raw| raw.get() != "null").ok_or(ReviewError::MissingRequest)?;
        let request: AdmissionRequest = serde_json::from_str(raw.get()).map_err(ReviewError::InvalidRequest)?;
        if request.uid.is_empty() {
            return Err(ReviewError::MissingUid);
        }
        let objects: RawObjects<'a> = serde_json::from_str(raw.get()).map_err(ReviewError::InvalidRequest)?;
        let text = |raw: Option<&'a RawValue>| raw.map(RawValue::get).filter(|text| *text != "null");
        Ok(Self { request, raw_object: text(objects.object), raw_old_object: text(objects.old_object) })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// `request` of an AdmissionReview v1. The object is parsed (policies match
/// on its labels and mutate a copy); the rest is carried through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Missing or empty is refused by [`Review::parse`].
    #[serde(default)]
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<GroupVersionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_resource: Option<GroupVersionResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sub_resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

impl AdmissionRequest {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }

    /// The request as JSON without its objects: what a plugin gets besides
    /// them (WIT `evaluate`'s `request`).
    pub fn to_json_without_objects(&mut self) -> String {
        let objects = (self.object.take(), self.old_object.take());
        // Serializing a Value-backed struct cannot fail.
        let text = serde_json::to_string(self).unwrap_or_default();
        (self.object, self.old_object) = objects;
        text
    }

    /// The object policies are about: `object`, or `oldObject` on DELETE.
    pub fn subject(&self) -> Option<&Value> {
        self.object.as_ref().filter(|o| !o.is_null()).or(self.old_object.as_ref().filter(|o| !o.is_null()))
    }

    /// Labels of the subject object.
    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.subject()?.get("metadata")?.get("labels")?.as_object()
    }

    /// `metadata.name`, or `generateName` for objects not yet named.
    pub fn display_name(&self) -> String {
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            return name.to_owned();
        }
        let meta = self.subject().and_then(|o| o.get("metadata"));
        let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
        field("name").or_else(|| field("generateName")).unwrap_or_default().to_owned()
    }
}

/// metav1.Status, as much of it as a webhook response uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

/// The one patch type admission/v1 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatchType {
    #[serde(rename = "JSONPatch")]
    JsonPatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Set together with `patch` by [`AdmissionResponse::with_patch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<PatchType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

impl From<&AdmissionRequest> for AdmissionResponse {
    /// An allowing response that echoes the request's uid; everything else
    /// is built on top of this, so the uid can never be missed.
    fn from(request: &AdmissionRequest) -> Self {
        Self {
            uid: request.uid.clone(),
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
        }
    }
}

impl AdmissionResponse {
    pub fn deny(&mut self, code: u16, message: String) {
        self.allowed = false;
        self.patch = None;
        self.patch_type = None;
        self.status = Some(Status { code, message });
    }

    /// Attach an RFC 6902 patch: the base64 text and its type are set
    /// together, so they cannot disagree.
    pub fn with_patch(&mut self, ops: &[json_patch::PatchOperation]) -> Result<(), serde_json::Error> {
        use base64::Engine as _;
        let json = serde_json::to_vec(ops)?;
        self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        self.patch_type = Some(PatchType::JsonPatch);
        Ok(())
    }

    /// Wrap in the AdmissionReview envelope the apiserver expects.
    pub fn into_review(self) -> ResponseReview {
        ResponseReview { api_version: API_VERSION, kind: KIND, response: self }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseReview {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: &str) -> String {
        format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#)
    }

    const POD: &str = r#"{"uid":"abc","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","object":{"metadata":{"generateName":"job-"}}}"#;

    #[test]
    fn parses_and_keeps_the_objects_text() {
        let body = review(POD);
        let mut parsed = Review::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.request.uid, "abc");
        assert_eq!(parsed.raw_object, Some(r#"{"metadata":{"generateName":"job-"}}"#));
        assert_eq!(parsed.raw_old_object, None);
        let without: Value = serde_json::from_str(&parsed.request.to_json_without_objects()).unwrap();
        assert_eq!(without["uid"], "abc");
        assert!(without.get("object").is_none() && without.get("oldObject").is_none(), "{without}");
        assert!(parsed.request.object.is_some(), "the objects are put back");
        let delete = review(
            &POD.replace(r#""object":{"metadata":{"generateName":"job-"}}"#, r#""object":null,"oldObject":{"a":1}"#),
        );
        let deleted = Review::parse(delete.as_bytes()).unwrap();
        assert_eq!((deleted.raw_object, deleted.raw_old_object), (None, Some(r#"{"a":1}"#)));
        assert_eq!(parsed.request.display_name(), "job-");
        assert_eq!(AdmissionResponse::from(&parsed.request).uid, "abc");
    }

    #[test]
    fn refuses_what_the_apiserver_would_never_send() {
        assert!(matches!(Review::parse(b"{not json"), Err(ReviewError::NotJson(_))));
        let wrong_version = review(POD).replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        assert!(
            matches!(Review::parse(wrong_version.as_bytes()), Err(ReviewError::WrongApiVersion(v)) if v == "admission.k8s.io/v1beta1")
        );
        let wrong_kind = review(POD).replace("\"AdmissionReview\"", "\"Pod\"");
        assert!(matches!(Review::parse(wrong_kind.as_bytes()), Err(ReviewError::WrongKind(_))));
        let no_request = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert!(matches!(Review::parse(no_request.as_bytes()), Err(ReviewError::MissingRequest)));
        let no_uid = review(&POD.replace(r#""uid":"abc","#, ""));
        assert!(matches!(Review::parse(no_uid.as_bytes()), Err(ReviewError::MissingUid)));
        let bad_op = review(&POD.replace("CREATE", "SMASH"));
        assert!(matches!(Review::parse(bad_op.as_bytes()), Err(ReviewError::InvalidRequest(_))));
    }
}
