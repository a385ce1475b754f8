//! Target `review`: an AdmissionReview body, as kube-apiserver would POST
//! it, parsed (review.rs) and matched against the default policy
//! (policy.rs, matcher.rs); when a mutating policy matches, the whole
//! /mutate chain runs with the real plugins and its answer is checked.

use crate::{IDENTITY, assert_no_repeats, default_policies};
use base64::Engine as _;
use berth::admission::{Endpoint, admit};
use berth::config::Mode;
use berth::policy::Matched;
use berth::review::{API_VERSION, AdmissionRequest, KIND, Object, Review};
use json_patch::PatchOperation;

/// - A body is refused with a typed error whose chain repeats nothing, or
///   parsed with a uid.
/// - The request serializes, and what admission.rs re-serializes for the
///   next plugin parses back and serializes to the same text.
/// - What plugins get (contract 0.3.0) is the request: the request without
///   its objects, plus each object's text, put back together, equals it.
/// - Matching is the same on the re-serialized request, and yields
///   policies of the asked mode in configuration order.
/// - On /mutate, the answer echoes the uid; a patch applies to the object
///   it was made for, changes it, keeps its identity, and the default
///   policy's own promise holds: a reinvocation over berth's output
///   changes nothing more.
pub fn check(data: &[u8]) -> bool {
    let review = match Review::parse(data) {
        Ok(review) => review,
        Err(err) => {
            assert_no_repeats(&err);
            return false;
        }
    };
    let mut review = review;
    // An object too deep for a tree is kept as text and matched; what is
    // checked below needs trees of the objects.
    let objects = [&review.request.object, &review.request.old_object];
    if objects.into_iter().flatten().any(|object| object.to_value().is_err()) {
        return false;
    }
    let without = review.request.to_json_without_objects();
    let mut handed: serde_json::Value = serde_json::from_str(&without).expect("the request for plugins is JSON");
    assert!(handed.get("object").is_none() && handed.get("oldObject").is_none(), "objects left in {without}");
    for (key, object) in [("object", &review.request.object), ("oldObject", &review.request.old_object)] {
        if let Some(object) = object {
            handed[key] = serde_json::from_str(object.text()).expect("an object's text is JSON");
        }
    }
    let whole = serde_json::to_value(&review.request).expect("a parsed request serializes");
    let strip_nulls = |mut v: serde_json::Value| {
        if let Some(fields) = v.as_object_mut() {
            fields.retain(|_, value| !value.is_null());
        }
        v
    };
    assert_eq!(strip_nulls(handed), strip_nulls(whole), "the request and its objects, put back, differ");
    let request = &review.request;
    assert!(!request.uid.is_empty(), "a parsed review has a uid");

    let once = serde_json::to_string(request).expect("a parsed request serializes");
    let reparsed: AdmissionRequest = serde_json::from_str(&once)
        .unwrap_or_else(|err| panic!("the re-serialized request does not parse back: {err}\n{once}"));
    let twice = serde_json::to_string(&reparsed).expect("a parsed request serializes");
    assert_eq!(once, twice, "re-serializing the request is not stable");

    let set = default_policies();
    let mut mutating = 0;
    for mode in [Mode::Mutate, Mode::Validate] {
        let matched = names(&set.matching(mode, request));
        assert_eq!(matched, names(&set.matching(mode, &reparsed)), "matching changed with re-serialization");
        let order: Vec<&str> = set.policies().iter().filter(|p| p.mode == mode).map(|p| &*p.name).collect();
        let mut rest = order.iter();
        assert!(
            matched.iter().all(|(name, _)| rest.any(|p| *p == name.as_str())),
            "{matched:?} are not {mode:?} policies in configuration order"
        );
        if mode == Mode::Mutate {
            mutating = matched.len();
        }
    }
    mutating > 0 && check_mutate(data)
}

fn names(matched: &[Matched<'_>]) -> Vec<(String, bool)> {
    matched.iter().map(|m| (m.policy.name.to_string(), m.context.is_ok())).collect()
}

/// Whether /mutate answered with a patch.
fn check_mutate(data: &[u8]) -> bool {
    let set = default_policies();
    let review = Review::parse(data).expect("parsed once already");
    let uid = review.request.uid.clone();
    let original = review.request.object.clone();
    let admitted = admit(set, Endpoint::Mutate, review);
    let response = &admitted.response;
    assert_eq!(response.uid, uid, "the answer echoes the uid");
    let Some(patch) = &response.patch else { return false };
    assert!(response.allowed, "a patch on a denial");
    let original = original.expect("a patch for a request with an object");
    let original = original.to_value().expect("a patched object has a tree");
    let json = base64::engine::general_purpose::STANDARD.decode(patch).expect("the patch is base64");
    let ops: Vec<PatchOperation> = serde_json::from_slice(&json).expect("the patch is an RFC 6902 array");
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &ops)
        .unwrap_or_else(|err| panic!("the patch does not apply to the object it was made for: {err}"));
    assert_ne!(patched, original, "a patch that changes nothing");
    for field in IDENTITY {
        assert_eq!(patched.pointer(field), original.pointer(field), "the patch changed {field}");
    }

    // kube-apiserver's reinvocation: the same request with berth's output.
    let mut request = admitted.request;
    request.object = Some(Object::try_from(&patched).expect("a patched object is still an object"));
    let body = serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "request": request}).to_string();
    let again = admit(set, Endpoint::Mutate, Review::parse(body.as_bytes()).expect("the patched review parses"));
    assert!(
        again.response.allowed && again.response.patch.is_none(),
        "a reinvocation over berth's own output was answered {:?}",
        again.response
    );
    true
}
