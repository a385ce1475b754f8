use serde::Serialize;
use serde_json::Value;

/// An RFC 6902 JSON Patch, built op by op against the object a plugin was
/// given. Paths are JSON Pointers; build them with [`pointer()`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Patch {
    ops: Vec<PatchOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
    Test { path: String, value: Value },
}

impl Patch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(PatchOp::Add { path: path.into(), value: value.into() });
        self
    }

    pub fn replace(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(PatchOp::Replace { path: path.into(), value: value.into() });
        self
    }

    pub fn remove(mut self, path: impl Into<String>) -> Self {
        self.push(PatchOp::Remove { path: path.into() });
        self
    }

    pub fn test(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(PatchOp::Test { path: path.into(), value: value.into() });
        self
    }

    /// Append `items` to the array at `path`, which holds `existing` items
    /// now: one `add` of the whole array when it is absent or empty (a JSON
    /// Patch cannot append to an array that is not there), else one
    /// `add <path>/-` per item, so what is there is kept.
    pub fn append<I, V>(mut self, path: &str, existing: usize, items: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Value>,
    {
        let items: Vec<Value> = items.into_iter().map(Into::into).collect();
        if items.is_empty() {
            return self;
        }
        if existing == 0 {
            return self.add(path, Value::Array(items));
        }
        for item in items {
            self = self.add(format!("{path}/-"), item);
        }
        self
    }

    /// Append an op in place, for loops.
    pub fn push(&mut self, op: PatchOp) {
        self.ops.push(op);
    }

    pub fn ops(&self) -> &[PatchOp] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn to_json(&self) -> String {
        // Serializing strings and Values cannot fail.
        serde_json::to_string(&self.ops).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Build a JSON Pointer from raw segments, escaping `~` and `/`
/// (`pointer(["metadata", "labels", "app.kubernetes.io/name"])`).
pub fn pointer<I, S>(segments: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        for c in segment.as_ref().chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        assert_eq!(pointer(["metadata", "labels", "a/b~c"]), "/metadata/labels/a~1b~0c");
        assert_eq!(pointer(Vec::<&str>::new()), "");
    }

    #[test]
    fn append_creates_the_array_or_adds_to_its_end() {
        assert_eq!(
            Patch::new().append("/spec/x", 0, [json!(1), json!(2)]).to_json(),
            r#"[{"op":"add","path":"/spec/x","value":[1,2]}]"#
        );
        assert_eq!(
            Patch::new().append("/spec/x", 3, [json!(1), json!(2)]).to_json(),
            r#"[{"op":"add","path":"/spec/x/-","value":1},{"op":"add","path":"/spec/x/-","value":2}]"#
        );
        assert!(Patch::new().append("/spec/x", 0, Vec::<Value>::new()).is_empty());
    }

    #[test]
    fn patch_serializes_as_rfc6902() {
        let patch = Patch::new().add("/spec/x", json!(1)).remove("/spec/y");
        assert_eq!(patch.to_json(), r#"[{"op":"add","path":"/spec/x","value":1},{"op":"remove","path":"/spec/y"}]"#);
    }
}
