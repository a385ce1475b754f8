//! Composing mutations: each plugin's patch is applied to a working copy, in
//! order, and the ops are concatenated into the one RFC 6902 patch the
//! apiserver applies to the object it sent us.

use crate::review::Object;
use json_patch::PatchOperation;
use serde_json::Value;
use std::ops::Range;

/// Fields a plugin must never change: they identify the object.
const PROTECTED: &[&str] = &["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace", "/metadata/uid"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    #[error("patch is not an RFC 6902 JSON Patch array: {0}")]
    NotAPatch(String),
    #[error("patch does not apply: {0}")]
    DoesNotApply(String),
    #[error("patch changes {0}, which identifies the object")]
    Protected(&'static str),
    #[error("patch operates on the whole object (path \"\"), which kube-apiserver cannot apply; patch its fields")]
    WholeObject,
    /// The object's text is JSON, but nests deeper than berth builds trees.
    #[error("the object nests deeper than berth builds trees: {0}")]
    Unpatchable(String),
}

/// The object as the mutating chain has left it so far. The first change
/// builds two trees of the object: the one patched, and the original to
/// tell at the end whether the changes cancelled out. A chain that changes
/// nothing builds neither.
#[derive(Debug, Default)]
pub struct WorkingCopy {
    trees: Option<Trees>,
    ops: Vec<PatchOperation>,
}

#[derive(Debug)]
struct Trees {
    original: Value,
    current: Value,
}

impl WorkingCopy {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current object: `None` until the first change.
    pub fn changed_object(&self) -> Option<&Value> {
        self.trees.as_ref().map(|trees| &trees.current)
    }

    /// Apply one plugin's patch to `original` as changed so far, and return
    /// where its ops stand among [`WorkingCopy::ops`]. On any error the
    /// working copy is unchanged (a refused first patch leaves no trees).
    pub fn apply(&mut self, original: &Object, patch_json: &str) -> Result<Range<usize>, PatchError> {
        let ops: Vec<PatchOperation> =
            serde_json::from_str(patch_json).map_err(|err| PatchError::NotAPatch(err.to_string()))?;
        let start = self.ops.len();
        if ops.is_empty() {
            return Ok(start..start);
        }
        // kube-apiserver's JSON Patch (evanphx/json-patch) finds no parent for
        // the root path and fails the request, so such a patch is refused
        // here, where the policy and its failurePolicy are known.
        if ops.iter().any(|op| op.path().as_str().is_empty() || from(op).is_some_and(str::is_empty)) {
            return Err(PatchError::WholeObject);
        }
        let first = self.trees.is_none();
        if first {
            let original = original.to_value().map_err(|err| PatchError::Unpatchable(err.to_string()))?;
            self.trees = Some(Trees { current: original.clone(), original });
        }
        let trees = self.trees.as_mut().expect("set above");
        if let Err(err) = patch_tree(&mut trees.current, &ops) {
            if first {
                self.trees = None;
            }
            return Err(err);
        }
        self.ops.extend(ops);
        Ok(start..self.ops.len())
    }

    /// Every op applied so far, in order.
    pub fn ops(&self) -> &[PatchOperation] {
        &self.ops
    }

    /// Whether the object differs from the original: ops can cancel out.
    pub fn changed(&self) -> bool {
        self.trees.as_ref().is_some_and(|trees| trees.current != trees.original)
    }

    /// The ops applied, to answer with (if [`WorkingCopy::changed`]) and to
    /// audit, without a copy.
    pub fn into_ops(self) -> Vec<PatchOperation> {
        self.ops
    }
}

/// Apply `ops` to `object`, which is left as it was on any error.
fn patch_tree(object: &mut Value, ops: &[PatchOperation]) -> Result<(), PatchError> {
    // Only a patch that reaches a protected field needs a snapshot to
    // compare and roll back, and one with a `move`: json-patch does not
    // undo a move whose `from` it removed before the `path` failed (found
    // by the compose fuzz target). The common case pays nothing.
    let protected = ops.iter().any(touches_protected);
    let moves = ops.iter().any(|op| matches!(op, PatchOperation::Move(_)));
    let before = (protected || moves).then(|| object.clone());
    if let Err(err) = json_patch::patch(object, ops) {
        if let Some(before) = before {
            *object = before;
        }
        return Err(PatchError::DoesNotApply(err.to_string()));
    }
    if let Some(before) = before.filter(|_| protected) {
        // A patch that spares the root leaves an object; only the identity
        // can have changed.
        if let Some(changed) = PROTECTED.iter().find(|p| before.pointer(p) != object.pointer(p)) {
            *object = before;
            return Err(PatchError::Protected(changed));
        }
    }
    Ok(())
}

fn touches_protected(op: &PatchOperation) -> bool {
    let is_prefix = |path: &str| PROTECTED.iter().any(|p| *p == path || p.starts_with(&format!("{path}/")));
    is_prefix(op.path().as_str()) || from(op).is_some_and(is_prefix)
}

/// The `from` of a move or copy.
fn from(op: &PatchOperation) -> Option<&str> {
    match op {
        PatchOperation::Move(m) => Some(m.from.as_str()),
        PatchOperation::Copy(c) => Some(c.from.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Object {
        (&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": {"tolerations": []}}))
            .try_into()
            .unwrap()
    }

    #[test]
    fn composes_in_order_and_reports_one_patch() {
        let original = pod();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/tolerations/-","value":{"key":"a"}}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/tolerations/-","value":{"key":"b"}}]"#).unwrap();
        assert!(copy.changed());
        let ops = copy.into_ops();
        let mut replay = original.to_value().unwrap();
        json_patch::patch(&mut replay, &ops).unwrap();
        assert_eq!(replay["spec"]["tolerations"], json!([{"key": "a"}, {"key": "b"}]));
    }

    #[test]
    fn refuses_identity_changes_and_rolls_back() {
        let original = pod();
        let mut copy = WorkingCopy::new();
        let err = copy.apply(&original, r#"[{"op":"replace","path":"/metadata/name","value":"q"}]"#).unwrap_err();
        assert_eq!(err, PatchError::Protected("/metadata/name"));
        let err = copy.apply(&original, r#"[{"op":"replace","path":"/metadata","value":{"name":"q"}}]"#).unwrap_err();
        assert_eq!(err, PatchError::Protected("/metadata/name"));
        let err = copy.apply(&original, r#"[{"op":"replace","path":"","value":[1]}]"#).unwrap_err();
        assert_eq!(err, PatchError::WholeObject);
        let err = copy.apply(&original, r#"[{"op":"replace","path":"/metadata","value":[1]}]"#).unwrap_err();
        assert_eq!(err, PatchError::Protected("/metadata/name"));
        let err = copy.apply(&original, r#"[{"op":"move","from":"","path":"/spec/x"}]"#).unwrap_err();
        assert_eq!(err, PatchError::WholeObject);
        // Replacing the metadata while keeping the identity is allowed.
        copy.apply(
            &original,
            r#"[{"op":"replace","path":"/metadata","value":{"name":"p","namespace":"ns","labels":{"x":"y"}}}]"#,
        )
        .unwrap();
        assert!(copy.changed());
    }

    #[test]
    fn malformed_and_non_applying_patches() {
        let original = pod();
        let mut copy = WorkingCopy::new();
        assert!(matches!(copy.apply(&original, "not json"), Err(PatchError::NotAPatch(_))));
        assert!(copy.apply(&original, r#"[{"op":"remove","path":"/metadata/name"}]"#).is_err());
        assert!(
            copy.changed_object().is_none(),
            "a refused first patch leaves the apiserver's text to the next plugin"
        );
        assert!(matches!(copy.apply(&original, r#"{"op":"add"}"#), Err(PatchError::NotAPatch(_))));
        assert!(matches!(
            copy.apply(&original, r#"[{"op":"remove","path":"/spec/nothing"}]"#),
            Err(PatchError::DoesNotApply(_))
        ));
        assert!(!copy.changed());
    }

    #[test]
    fn a_move_that_fails_halfway_leaves_the_copy_as_it_was() {
        let original = pod();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/x","value":1}]"#).unwrap();
        let before = copy.changed_object().cloned();
        let err = copy.apply(&original, r#"[{"op":"move","from":"/spec/x","path":"/nowhere/x"}]"#).unwrap_err();
        assert!(matches!(err, PatchError::DoesNotApply(_)), "{err:?}");
        assert_eq!(copy.changed_object().cloned(), before);
        let err = copy.apply(&original, r#"[{"op":"move","from":"/metadata/namespace","path":"/nowhere/ns"}]"#);
        assert!(matches!(err, Err(PatchError::DoesNotApply(_))), "{err:?}");
        assert_eq!(copy.changed_object().cloned(), before);
    }

    #[test]
    fn an_object_too_deep_for_a_tree_is_refused_not_patched() {
        // Kept as text, such an object is read and matched; only a patch
        // needs its tree, which serde_json's recursion limit refuses.
        let text = format!(r#"{{"metadata":{{"name":"p"}},"spec":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        let deep: Object = serde_json::from_str(&text).unwrap();
        let mut copy = WorkingCopy::new();
        let err = copy.apply(&deep, r#"[{"op":"add","path":"/spec2","value":1}]"#).unwrap_err();
        assert!(matches!(err, PatchError::Unpatchable(_)), "{err:?}");
        assert!(!copy.changed() && copy.ops().is_empty());
    }

    #[test]
    fn a_net_no_op_is_no_patch() {
        let original = pod();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/x","value":1},{"op":"remove","path":"/spec/x"}]"#).unwrap();
        assert!(!copy.changed());
    }
}
