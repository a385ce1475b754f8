//! Target `compose`: an object and the patches several mutating plugins
//! answered for it, in order, composed by patch.rs's `WorkingCopy` into the
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
        let before = working.changed_object(&object).unwrap_or_else(|| original.clone());
        match working.apply(&object, &text) {
            Ok(ops) => {
                let own: Vec<PatchOperation> = serde_json::from_str(&text).expect("an accepted patch parses");
                assert_eq!(&working.ops()[ops], own.as_slice(), "the accepted ops are not the patch's");
            }
            Err(_) => {
                let after = working.changed_object(&object).unwrap_or_else(|| original.clone());
                assert_eq!(after, before, "a refused patch changed the working copy: {text}");
            }
        }
        let current = working.changed_object(&object).unwrap_or_else(|| original.clone());
        for field in IDENTITY {
            assert_eq!(current.pointer(field), original.pointer(field), "{field} changed by {text}");
        }
    }
    let last = working.changed_object(&object).unwrap_or_else(|| original.clone());
    let changed = working.changed();
    match changed.then(|| working.into_ops()) {
        Some(ops) => {
            let mut replay = original.clone();
            json_patch::patch(&mut replay, &ops)
                .unwrap_or_else(|err| panic!("the composed patch does not apply to the original: {err}"));
            assert_eq!(replay, last, "the composed patch gives another object than the working copy");
            assert_ne!(replay, original, "a composed patch that changes nothing");
            true
        }
        None => {
            assert_eq!(last, original, "the object changed, and there is no patch");
            false
        }
    }
}
