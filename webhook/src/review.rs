//! AdmissionReview v1: the types kube-apiserver sends and expects back.
//! Types only; parsing an incoming review is the one fallible step here.

use crate::cluster::{Labels, Meta};
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

/// Why an answer's patch could not be applied to its object (offline, in
/// `berth eval` and `berth test`: the server never applies its own patch).
#[derive(Debug, Error)]
pub enum ApplyPatchError {
    #[error("the patch is not base64")]
    Base64(#[source] base64::DecodeError),
    #[error("the patch is not an RFC 6902 JSON Patch")]
    NotJsonPatch(#[source] serde_json::Error),
    #[error("the patch does not apply to the object")]
    Apply(#[source] json_patch::PatchError),
}

/// The envelope, with its request parsed in the same pass: the one read of
/// the body that a well-formed review takes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<AdmissionRequest>,
}

/// The envelope with its request left unread: the slower path that names
/// what is wrong with a body the one-pass read refused.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, borrow)]
    request: Option<&'a RawValue>,
}

/// A parsed review: the request, with its objects kept as the apiserver's
/// text and their metadata (see [`Object`]).
#[derive(Debug)]
pub struct Review {
    pub request: AdmissionRequest,
}

impl Review {
    pub fn parse(body: &[u8]) -> Result<Self, ReviewError> {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
            return Err(Self::why_not(body));
        };
        check_type(envelope.api_version, envelope.kind)?;
        let request = envelope.request.ok_or(ReviewError::MissingRequest)?;
        if request.uid.is_empty() {
            return Err(ReviewError::MissingUid);
        }
        Ok(Self { request })
    }

    /// Why `body` is not a review, in the order the apiserver's fields are
    /// checked: JSON at all, then the type, then the request.
    fn why_not(body: &[u8]) -> ReviewError {
        let envelope: RawEnvelope<'_> = match serde_json::from_slice(body) {
            Ok(envelope) => envelope,
            Err(err) => return ReviewError::NotJson(err),
        };
        if let Err(err) = check_type(envelope.api_version, envelope.kind) {
            return err;
        }
        let Some(raw) = envelope.request.filter(|raw| raw.get() != "null") else {
            return ReviewError::MissingRequest;
        };
        match serde_json::from_str::<AdmissionRequest>(raw.get()) {
            Err(err) => ReviewError::InvalidRequest(err),
            // The one-pass read failed where this did not: only the limit on
            // nesting, which counts the envelope too, tells them apart.
            Ok(_) => ReviewError::InvalidRequest(serde::de::Error::custom("the review nests too deeply")),
        }
    }
}

fn check_type(api_version: Option<String>, kind: Option<String>) -> Result<(), ReviewError> {
    match api_version.as_deref() {
        Some(API_VERSION) => {}
        other => return Err(ReviewError::WrongApiVersion(other.unwrap_or_default().to_owned())),
    }
    match kind.as_deref() {
        Some(KIND) => Ok(()),
        other => Err(ReviewError::WrongKind(other.unwrap_or_default().to_owned())),
    }
}

/// One object of a request (`object` or `oldObject`): its JSON text, which
/// plugins get, and the metadata matching and the audit log read, parsed
/// from that text once. The text is the apiserver's, compact as Go writes
/// it; a review that came indented (a file, a test client) has the
/// whitespace between its tokens taken out once a plugin is about to read
/// it ([`Object::compact`]), rather than scanned again by every plugin. A
/// mutating chain builds only the parts its patches reach (`patch/`); a
/// tree of the whole object ([`Object::to_value`]) is built only for an
/// audit record that stores it.
#[derive(Debug, Clone)]
pub struct Object {
    text: Box<RawValue>,
    meta: Meta,
}

impl Object {
    /// The object's JSON text: as the apiserver sent it, or compact once a
    /// plugin is about to read it ([`Object::compact`]).
    pub fn text(&self) -> &str {
        self.text.get()
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Take out the whitespace between the text's tokens: the same JSON
    /// value, which plugins then scan without it.
    pub fn compact(&mut self) {
        let text = std::mem::replace(&mut self.text, RawValue::NULL.to_owned());
        self.text = compacted(text);
    }

    /// A tree of the whole object. Fails only on nesting deeper than
    /// serde_json's limit, which the text alone does not check.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.text.get())
    }
}

impl Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Box::<RawValue>::deserialize(deserializer)?;
        let meta = Meta::of_object(text.get()).map_err(serde::de::Error::custom)?;
        Ok(Self { text, meta })
    }
}

/// `text` without whitespace between its tokens: the same JSON value.
fn compacted(text: Box<RawValue>) -> Box<RawValue> {
    // Inside a JSON string a tab, CR or LF must be escaped: such a byte is
    // whitespace between tokens, and compact JSON (the apiserver's) has none.
    if memchr::memchr3(b'\n', b'\r', b'\t', text.get().as_bytes()).is_none() {
        return text;
    }
    // The text is valid JSON (serde_json read it): only ASCII whitespace
    // between tokens is removed, so what is left is valid JSON and UTF-8.
    let compact = compact(text.get());
    RawValue::from_string(compact).unwrap_or(text)
}

/// Valid JSON `json` without the whitespace between its tokens.
fn compact(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut at = 0;
    while let Some(skip) = bytes[at..].iter().position(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        let start = at + skip;
        // Up to the next string's end, or the next whitespace: a run of
        // tokens copied as is.
        let mut end = start;
        while end < bytes.len() {
            match bytes[end] {
                b' ' | b'\n' | b'\r' | b'\t' => break,
                b'"' => end = string_end(bytes, end),
                _ => end += 1,
            }
        }
        out.push_str(&json[start..end]);
        at = end;
    }
    out
}

/// Where the JSON string that opens at `open` ends (just past its quote).
fn string_end(bytes: &[u8], open: usize) -> usize {
    let mut at = open + 1;
    while let Some(found) = bytes.get(at..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
        at += found;
        if bytes[at] == b'"' {
            return at + 1;
        }
        // A backslash escapes the byte after it (a quote included).
        at += 2;
    }
    bytes.len()
}

impl TryFrom<&Value> for Object {
    type Error = serde_json::Error;

    /// An object from a tree: for tests and tools that build requests.
    fn try_from(value: &Value) -> Result<Self, Self::Error> {
        serde_json::from_str(&value.to_string())
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

/// `request` of an AdmissionReview v1. `null` objects are `None`.
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
    pub object: Option<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Object>,
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
    /// Compact both objects' texts ([`Object::compact`]).
    pub fn compact_objects(&mut self) {
        self.object.iter_mut().chain(self.old_object.iter_mut()).for_each(Object::compact);
    }

    pub fn to_json_without_objects(&mut self) -> String {
        let objects = (self.object.take(), self.old_object.take());
        // Serializing a Value-backed struct cannot fail.
        let text = serde_json::to_string(self).unwrap_or_default();
        (self.object, self.old_object) = objects;
        text
    }

    /// The object policies are about: `object`, or `oldObject` on DELETE.
    pub fn subject(&self) -> Option<&Object> {
        self.object.as_ref().or(self.old_object.as_ref())
    }

    /// Labels of the subject object.
    pub fn labels(&self) -> Option<&Labels> {
        Some(&self.subject()?.meta.labels)
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

    /// `object` as the apiserver would store it: this answer's patch, if it
    /// has one, applied.
    pub fn apply_patch(&self, mut object: Value) -> Result<Value, ApplyPatchError> {
        use base64::Engine as _;
        if let Some(patch) = &self.patch {
            let bytes = base64::engine::general_purpose::STANDARD.decode(patch).map_err(ApplyPatchError::Base64)?;
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(ApplyPatchError::NotJsonPatch)?;
            json_patch::patch(&mut object, &patch).map_err(ApplyPatchError::Apply)?;
        }
        Ok(object)
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
    fn an_indented_object_reaches_plugins_compact_and_unchanged_in_value() {
        let object = "{\n  \"metadata\" : {\"name\": \"p q\",\t\"labels\": { \"a\" : \"say \\\"hi\\\" \\\\\" } },\r\n  \"spec\": [ 1 , 2.5e3, true, null, { } , [ ] ] }";
        let body = review(&POD.replace(r#"{"metadata":{"generateName":"job-"}}"#, object));
        let mut parsed = Review::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.request.object.as_ref().unwrap().text(), object, "kept as sent until plugins read it");
        parsed.request.compact_objects();
        let kept = parsed.request.object.as_ref().unwrap();
        assert_eq!(
            kept.text(),
            r#"{"metadata":{"name":"p q","labels":{"a":"say \"hi\" \\"}},"spec":[1,2.5e3,true,null,{},[]]}"#
        );
        let sent: Value = serde_json::from_str(object).unwrap();
        assert_eq!(kept.to_value().unwrap(), sent);
        assert_eq!(kept.meta().name, "p q");
        assert_eq!(kept.meta().labels.get("a").map(String::as_str), Some(r#"say "hi" \"#));

        // Every fixture, indented as the files are: the same value, and
        // nothing left to take out.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pulsar/reviews");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            let whole: Value = serde_json::from_slice(&body).unwrap();
            let mut request = Review::parse(&body).unwrap().request;
            request.compact_objects();
            for (object, sent) in
                [(&request.object, &whole["request"]["object"]), (&request.old_object, &whole["request"]["oldObject"])]
            {
                let Some(object) = object else { continue };
                assert_eq!(object.to_value().unwrap(), *sent);
                assert_eq!(compact(object.text()), object.text(), "nothing left to take out");
                assert!(object.text().len() * 3 < sent.to_string().len() * 4, "compact as serde_json writes it");
                seen += 1;
            }
        }
        assert!(seen > 10, "{seen} objects");
    }

    #[test]
    fn a_compact_object_is_kept_as_sent() {
        // Spaces alone are not taken out: without a newline or tab the text
        // is taken to be as compact as its sender meant.
        let body = review(&POD.replace(r#"{"metadata":{"generateName":"job-"}}"#, r#"{"metadata": {"name": "p"}}"#));
        let mut parsed = Review::parse(body.as_bytes()).unwrap();
        parsed.request.compact_objects();
        assert_eq!(parsed.request.object.unwrap().text(), r#"{"metadata": {"name": "p"}}"#);
    }

    #[test]
    fn parses_and_keeps_the_objects_text() {
        let body = review(POD);
        let mut parsed = Review::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.request.uid, "abc");
        let object = parsed.request.object.as_ref().unwrap();
        assert_eq!(object.text(), r#"{"metadata":{"generateName":"job-"}}"#);
        assert_eq!(object.meta().generate_name, "job-");
        assert!(parsed.request.old_object.is_none());
        let without: Value = serde_json::from_str(&parsed.request.to_json_without_objects()).unwrap();
        assert_eq!(without["uid"], "abc");
        assert!(without.get("object").is_none() && without.get("oldObject").is_none(), "{without}");
        assert!(parsed.request.object.is_some(), "the objects are put back");
        let delete = review(
            &POD.replace(r#""object":{"metadata":{"generateName":"job-"}}"#, r#""object":null,"oldObject":{"a":1}"#),
        );
        let deleted = Review::parse(delete.as_bytes()).unwrap().request;
        assert!(deleted.object.is_none());
        assert_eq!(deleted.subject().map(Object::text), Some(r#"{"a":1}"#));
        assert_eq!(AdmissionResponse::from(&parsed.request).uid, "abc");
    }

    #[test]
    fn reads_an_objects_metadata_without_a_tree() {
        let object = r#"{"kind":"Pod","metadata":{"name":"p","labels":{"app":"pulsar"},"annotations":{"meta.helm.sh/release-name":"r","x":"y"},"creationTimestamp":null,"managedFields":[{"manager":"m"}],"ownerReferences":[{"apiVersion":"v1","kind":"Other","name":"o","uid":"1"},{"apiVersion":"batch/v1","kind":"Job","name":"j","uid":"2","controller":true}]},"spec":{"deep":[[[1]]]}}"#;
        let body = review(&POD.replace(r#"{"metadata":{"generateName":"job-"}}"#, object));
        let request = Review::parse(body.as_bytes()).unwrap().request;
        let meta = request.subject().unwrap().meta();
        assert_eq!((meta.name.as_str(), meta.labels.get("app").map(String::as_str)), ("p", Some("pulsar")));
        assert_eq!(meta.annotations.len(), 1, "only the annotations berth reads are kept");
        assert_eq!(meta.controller.as_ref().map(|c| c.uid.as_str()), Some("2"), "the controlling owner");
        assert_eq!(request.subject().unwrap().to_value().unwrap()["spec"]["deep"][0][0][0], 1);
        // What the apiserver checks before any webhook is refused, not guessed.
        let bad = review(&POD.replace(r#"{"generateName":"job-"}"#, r#"{"labels":{"app":5}}"#));
        assert!(matches!(Review::parse(bad.as_bytes()), Err(ReviewError::InvalidRequest(_))));
        // serde_json would fill a struct from an array, by position.
        for array in [r#"[]"#, r#"[{"labels":{"app":"pulsar"}}]"#, r#"{"metadata":["p"]}"#] {
            let bad = review(&POD.replace(r#"{"metadata":{"generateName":"job-"}}"#, array));
            assert!(matches!(Review::parse(bad.as_bytes()), Err(ReviewError::InvalidRequest(_))), "{array}");
        }
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
