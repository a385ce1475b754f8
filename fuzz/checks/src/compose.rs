//! Target `compose`: an object and the patches several mutating plugins
//! answered for it, in order, composed by patch/'s `WorkingCopy` into the
//! one patch berth sends back.
//!
//! The input is JSON: `{"object": {...}, "patches": [P, ...]}`, where each
//! `P` is one plugin's answer: a string is handed over as the plugin's raw
//! patch text, anything else as its JSON text.

use crate::IDENTITY;
use berth::patch::WorkingCopy;
use berth::review::Object;
use json_patch::PatchOperation;
use serde_json::Value;

/// - A patch that is refused leaves the working copy as it was.
/// - No accepted patch changes the object's identity.
/// - The accepted ops are the patch's own.
/// - The composed patch applies to the original object and gives exactly
///   the working copy; no patch means the object ends as it began.
pub fn check(data: &[u8]) -> bool {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(data) else { return false };
    let original = input.remove("object").unwrap_or(Value::Null);
    let Some(Value::Array(patches)) = input.remove("patches") else { return false };
    // admission.rs never composes for a request without an object.
    if original.is_null() {
        return false;
    }
    // What review.rs would refuse (metadata not shaped as ObjectMeta) never
    // reaches composition.
    let Ok(object) = Object::try_from(&original) else { return false };
    let mut working = WorkingCopy::new();
    for patch in &patches {
        let text = match patch {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let before = current(&working, &object, &original);
        match working.apply(&object, &text) {
            Ok(ops) => {
                let own: Vec<PatchOperation> = serde_json::from_str(&text).expect("an accepted patch parses");
                assert_eq!(&working.ops()[ops], own.as_slice(), "the accepted ops are not the patch's");
            }
            Err(_) => {
                let after = current(&working, &object, &original);
                assert_eq!(after, before, "a refused patch changed the working copy: {text}");
            }
        }
        if let Some(current) = current(&working, &object, &original) {
            for field in IDENTITY {
                assert_eq!(current.pointer(field), original.pointer(field), "{field} changed by {text}");
            }
        }
    }
    let last = current(&working, &object, &original);
    let changed = working.changed();
    match changed.then(|| working.into_ops()) {
        Some(ops) => {
            let mut replay = original.clone();
            json_patch::patch(&mut replay, &ops)
                .unwrap_or_else(|err| panic!("the composed patch does not apply to the original: {err}"));
            if let Some(last) = last {
                assert_eq!(replay, last, "the composed patch gives another object than the working copy");
            }
            assert_ne!(replay, original, "a composed patch that changes nothing");
            true
        }
        None => {
            if let Some(last) = last {
                assert_eq!(last, original, "the object changed, and there is no patch");
            }
            false
        }
    }
}

/// The working copy as a tree: the original until the first change. `None`
/// only when its text nests deeper than serde_json reads a tree (a copy
/// into itself can do that); any other text that is not JSON is a bug.
fn current(working: &WorkingCopy, object: &Object, original: &Value) -> Option<Value> {
    let Some(text) = working.changed_text(object) else { return Some(original.clone()) };
    match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(_) if depth(&text) > 100 => None,
        Err(err) => panic!("the working copy wrote text that is not JSON ({err}): {text}"),
    }
}

/// How deep `json` nests, counting brackets outside strings.
fn depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0, false, false);
    for byte in json.bytes() {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}
