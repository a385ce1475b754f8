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
    /// The object's text is JSON, but the part a patch reaches cannot be
    /// built as a tree: it nests deeper than serde_json's limit, or holds a
    /// number serde_json cannot represent.
    #[error("berth cannot build the part of the object the patch reaches: {0}")]
    Unpatchable(String),
}

mod sparse;

use sparse::Sparse;

/// The object as the mutating chain has left it so far. The first change
/// builds the parts of the object that the ops reach (see [`sparse`]), and
/// the same parts as they were, to tell at the end whether the changes
/// cancelled out. A chain that changes nothing builds nothing.
#[derive(Debug, Default)]
pub struct WorkingCopy {
    trees: Option<Sparse>,
    ops: Vec<PatchOperation>,
}

impl WorkingCopy {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current object's JSON text, for the next plugin: `None` until
    /// the first change. `original` is the object the chain began with.
    pub fn changed_text(&self, original: &Object) -> Option<String> {
        self.trees.as_ref().map(|trees| trees.write(original.text()))
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
        let text = original.text();
        let first = self.trees.is_none();
        let mut trees = match self.trees.take() {
            Some(trees) => trees,
            None => Sparse::new(text)?,
        };
        // Building more of the object leaves it the same object, so what
        // was built stays even if the patch is refused.
        let reached = ops.iter().try_for_each(|op| {
            trees.reach(text, op.path().as_str())?;
            from(op).map_or(Ok(()), |from| trees.reach(text, from))
        });
        let patched = reached.and_then(|()| patch_tree(&mut trees.current, &ops));
        if !(first && patched.is_err()) {
            self.trees = Some(trees);
        }
        patched?;
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
    // compare and roll back, and one with a `move`: json-patch cannot undo
    // a move whose `from` it removed before the `path` failed, and panics
    // trying (both found by the compose fuzz checks), so such a patch is
    // applied without json-patch's undo and rolled back from the snapshot.
    // The common case pays nothing.
    let protected = ops.iter().any(touches_protected);
    let moves = ops.iter().any(|op| matches!(op, PatchOperation::Move(_)));
    let before = (protected || moves).then(|| object.clone());
    let applied = if moves { json_patch::patch_unsafe(object, ops) } else { json_patch::patch(object, ops) };
    if let Err(err) = applied {
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
            copy.changed_text(&original).is_none(),
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
        let before = copy.changed_text(&original);
        let err = copy.apply(&original, r#"[{"op":"move","from":"/spec/x","path":"/nowhere/x"}]"#).unwrap_err();
        assert!(matches!(err, PatchError::DoesNotApply(_)), "{err:?}");
        assert_eq!(copy.changed_text(&original), before);
        let err = copy.apply(&original, r#"[{"op":"move","from":"/metadata/namespace","path":"/nowhere/ns"}]"#);
        assert!(matches!(err, Err(PatchError::DoesNotApply(_))), "{err:?}");
        assert_eq!(copy.changed_text(&original), before);
    }

    #[test]
    fn an_object_too_deep_for_a_tree_is_patched_beside_its_depth_and_refused_within() {
        // Kept as text, such an object is read and matched; a patch builds
        // only what it reaches, and serde_json's recursion limit refuses a
        // tree of the deep part alone.
        let text = format!(r#"{{"metadata":{{"name":"p"}},"spec":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        let deep: Object = serde_json::from_str(&text).unwrap();
        let mut copy = WorkingCopy::new();
        let err = copy.apply(&deep, r#"[{"op":"add","path":"/spec/0/0","value":1}]"#).unwrap_err();
        assert!(matches!(err, PatchError::Unpatchable(_)), "{err:?}");
        assert!(!copy.changed() && copy.ops().is_empty());
        copy.apply(&deep, r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#).unwrap();
        assert!(copy.changed());
        let written = copy.changed_text(&deep).unwrap();
        assert_eq!(written, text.replacen(r#""name":"p"}"#, r#""name":"p","labels":{"a":"b"}}"#, 1));
    }

    #[test]
    fn only_what_the_ops_reach_is_rebuilt_and_the_rest_is_the_original_bytes() {
        // Key order, escapes and numbers as the apiserver wrote them, where
        // no op reached.
        let text = r#"{"kind":"Pod","metadata":{"name":"p","annotations":{"z":"&","a":"1"},"labels":{"app":"x"}},"spec":{"b":1.50,"tolerations":[{"key":"k"}],"containers":[{"name":"c","image":"i"}]},"status":{}}"#;
        let original: Object = serde_json::from_str(text).unwrap();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"replace","path":"/spec/containers/0/image","value":"j"}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/tolerations/-","value":{"key":"d"}}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"add","path":"/metadata/labels/b~1c","value":"y"}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"s"}]}]"#).unwrap();
        let written = copy.changed_text(&original).unwrap();
        assert_eq!(
            written,
            r#"{"kind":"Pod","metadata":{"name":"p","annotations":{"z":"&","a":"1"},"labels":{"app":"x","b/c":"y"}},"spec":{"b":1.50,"tolerations":[{"key":"k"},{"key":"d"}],"containers":[{"image":"j","name":"c"}],"imagePullSecrets":[{"name":"s"}]},"status":{}}"#
        );
        // The same object as the whole patch applied to a whole tree.
        let mut replay = original.to_value().unwrap();
        json_patch::patch(&mut replay, copy.ops()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), replay);
        assert!(copy.changed());

        // An op on an object a former op went into builds the rest of it,
        // and a removal there is not undone by the original's text.
        copy.apply(&original, r#"[{"op":"remove","path":"/metadata/labels/app"}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"replace","path":"/metadata","value":{"name":"p","x":{}}}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"move","from":"/spec/b","path":"/spec/c"}]"#).unwrap();
        let written: Value = serde_json::from_str(&copy.changed_text(&original).unwrap()).unwrap();
        let mut replay = original.to_value().unwrap();
        json_patch::patch(&mut replay, copy.ops()).unwrap();
        assert_eq!(written, replay);
        assert_eq!(written["metadata"], serde_json::json!({"name": "p", "x": {}}));
        assert_eq!(written["spec"]["c"], serde_json::json!(1.5));
    }

    #[test]
    fn a_value_too_deep_to_build_is_kept_as_text_when_a_later_patch_is_refused() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let text = format!(r#"{{"metadata":{{"name":"p"}},"spec":{{"deep":{deep},"x":1}}}}"#);
        let original: Object = serde_json::from_str(&text).unwrap();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/y","value":2}]"#).unwrap();
        let before = copy.changed_text(&original).unwrap();
        assert!(matches!(
            copy.apply(&original, r#"[{"op":"add","path":"/spec/deep/0","value":0}]"#),
            Err(PatchError::Unpatchable(_))
        ));
        assert!(matches!(
            copy.apply(&original, r#"[{"op":"replace","path":"/spec","value":{}}]"#),
            Err(PatchError::Unpatchable(_))
        ));
        assert_eq!(copy.changed_text(&original).unwrap(), before);
        assert_eq!(before, text.replace(r#""x":1}"#, r#""x":1,"y":2}"#));
        assert_eq!(copy.ops().len(), 1);
    }

    #[test]
    fn a_refused_patch_leaves_every_partial_object_whole_at_any_depth() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let text = format!(r#"{{"metadata":{{"name":"p"}},"spec":{{"a":{{"deep":{deep},"k":1}},"b":1}}}}"#);
        let original: Object = serde_json::from_str(&text).unwrap();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/a/x","value":1}]"#).unwrap();
        let before = copy.changed_text(&original).unwrap();
        assert_eq!(before, text.replace(r#""k":1}"#, r#""k":1,"x":1}"#));
        // Completing /spec must build /spec/a's deep member too, and fails:
        // neither object may lose a member for it.
        let err = copy.apply(&original, r#"[{"op":"replace","path":"/spec","value":{}}]"#).unwrap_err();
        assert!(matches!(err, PatchError::Unpatchable(_)), "{err:?}");
        assert_eq!(copy.changed_text(&original).unwrap(), before);
        copy.apply(&original, r#"[{"op":"replace","path":"/spec/a/k","value":2}]"#).unwrap();
        assert!(copy.changed_text(&original).unwrap().ends_with(r#""k":2,"x":1},"b":1}}"#));
    }

    #[test]
    fn changes_that_cancel_out_are_no_change_wherever_they_reach() {
        let text = r#"{"metadata":{"name":"p","labels":{"a":"1"}},"spec":{"x":{"y":[1,2]}}}"#;
        let original: Object = serde_json::from_str(text).unwrap();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"replace","path":"/metadata/labels/a","value":"2"}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/x/y/0","value":0}]"#).unwrap();
        assert!(copy.changed());
        copy.apply(&original, r#"[{"op":"remove","path":"/spec/x/y/0"}]"#).unwrap();
        copy.apply(&original, r#"[{"op":"replace","path":"/metadata/labels","value":{"a":"1"}}]"#).unwrap();
        assert!(!copy.changed());
        assert_eq!(
            serde_json::from_str::<Value>(&copy.changed_text(&original).unwrap()).unwrap(),
            original.to_value().unwrap()
        );
    }

    #[test]
    fn a_net_no_op_is_no_patch() {
        let original = pod();
        let mut copy = WorkingCopy::new();
        copy.apply(&original, r#"[{"op":"add","path":"/spec/x","value":1},{"op":"remove","path":"/spec/x"}]"#).unwrap();
        assert!(!copy.changed());
    }
}
