//! Redaction: what of an object or a patch never reaches the audit log.
//!
//! Every rule is a predicate on the path of a value from the object's root,
//! so the same rules cover the object and each patch operation (whose value
//! is walked from the operation's path). kubectl's
//! `last-applied-configuration` annotation holds a copy of the object as a
//! JSON string; it is parsed and redacted with the same rules.

use crate::config::audit::RedactSpec;
use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "<redacted>";

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const DATA_FIELDS: [&str; 2] = ["data", "stringData"];
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    env_values: bool,
    data: bool,
    /// Decoded JSON Pointers; "*" matches any one segment.
    paths: Vec<Vec<String>>,
}

impl Redactor {
    pub fn new(spec: &RedactSpec) -> Self {
        Self {
            env_values: spec.env_values,
            data: spec.data,
            paths: spec.paths.iter().map(|p| pointer_segments(p)).collect(),
        }
    }

    pub fn is_noop(&self) -> bool {
        !self.env_values && !self.data && self.paths.is_empty()
    }

    /// Redact a whole object in place.
    pub fn object(&self, value: &mut Value) {
        if !self.is_noop() {
            self.walk(value, &mut Vec::new());
        }
    }

    /// Redact the values of JSON Patch operations (an array of ops) in place.
    pub fn patch(&self, ops: &mut Value) {
        if self.is_noop() {
            return;
        }
        let Some(ops) = ops.as_array_mut() else { return };
        for op in ops {
            let Some(op) = op.as_object_mut() else { continue };
            let mut path = op.get("path").and_then(Value::as_str).map(pointer_segments).unwrap_or_default();
            if let Some(value) = op.get_mut("value") {
                self.walk(value, &mut path);
            }
        }
    }

    fn walk(&self, value: &mut Value, path: &mut Vec<String>) {
        if self.covers(path, value) {
            if !value.is_null() {
                *value = Value::String(REDACTED.to_owned());
            }
            return;
        }
        if is_last_applied(path) {
            if let Value::String(text) = value {
                *text = match serde_json::from_str::<Value>(text) {
                    Ok(mut inner) => {
                        self.walk(&mut inner, &mut Vec::new());
                        inner.to_string()
                    }
                    Err(_) => REDACTED.to_owned(),
                };
            }
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    path.push(key.clone());
                    self.walk(child, path);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter_mut().enumerate() {
                    path.push(index.to_string());
                    self.walk(child, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Whether the value at `path` is replaced as a whole.
    fn covers(&self, path: &[String], value: &Value) -> bool {
        let n = path.len();
        if self.env_values
            && n >= 5
            && path[n - 1] == "value"
            && is_index(&path[n - 2])
            && path[n - 3] == "env"
            && is_index(&path[n - 4])
            && CONTAINER_LISTS.contains(&path[n - 5].as_str())
        {
            return true;
        }
        if self.data && n >= 1 {
            // Strictly under a data field: redacted. The data field itself:
            // its members are (keys stay visible), unless it is a scalar.
            if path[..n - 1].iter().any(|s| DATA_FIELDS.contains(&s.as_str())) {
                return true;
            }
            if DATA_FIELDS.contains(&path[n - 1].as_str()) && !value.is_object() && !value.is_array() {
                return true;
            }
        }
        self.paths.iter().any(|pattern| {
            pattern.len() <= n && pattern.iter().zip(path).all(|(want, have)| want == "*" || want == have)
        })
    }
}

fn is_last_applied(path: &[String]) -> bool {
    let n = path.len();
    n >= 2 && path[n - 1] == LAST_APPLIED && path[n - 2] == "annotations"
}

/// An array index, or `-` (the end of an array, in a patch path).
fn is_index(segment: &str) -> bool {
    segment == "-" || (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 6901: "/a~1b/c" → ["a/b", "c"].
fn pointer_segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn default() -> Redactor {
        Redactor::new(&RedactSpec::default())
    }

    #[test]
    fn env_values_in_pods_and_templates() {
        let mut pod = json!({
            "spec": {
                "containers": [{"name": "a", "env": [{"name": "TOKEN", "value": "s3cret"}, {"name": "REF", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}}]}],
                "initContainers": [{"env": [{"name": "P", "value": "pw"}]}],
                "ephemeralContainers": [{"env": [{"name": "Q", "value": "q"}]}]
            }
        });
        default().object(&mut pod);
        assert_eq!(pod["spec"]["containers"][0]["env"][0], json!({"name": "TOKEN", "value": REDACTED}));
        assert_eq!(pod["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["name"], "x");
        assert_eq!(pod["spec"]["initContainers"][0]["env"][0]["value"], REDACTED);
        assert_eq!(pod["spec"]["ephemeralContainers"][0]["env"][0]["value"], REDACTED);

        let mut cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"env": [{"name": "K", "value": "v"}]}]}}}}}});
        default().object(&mut cronjob);
        assert_eq!(
            cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            REDACTED
        );
    }

    #[test]
    fn data_and_string_data_keep_their_keys() {
        let mut secret = json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "cGFzcw==", "nested": {"a": 1}}, "stringData": {"token": "t"}, "type": "Opaque"});
        default().object(&mut secret);
        assert_eq!(secret["data"], json!({"password": REDACTED, "nested": REDACTED}));
        assert_eq!(secret["stringData"], json!({"token": REDACTED}));
        assert_eq!(secret["metadata"]["name"], "s");
        assert_eq!(secret["type"], "Opaque");
        let mut odd = json!({"spec": {"data": "inline", "list": {"data": ["a", "b"]}}});
        default().object(&mut odd);
        assert_eq!(odd, json!({"spec": {"data": REDACTED, "list": {"data": [REDACTED, REDACTED]}}}));
    }

    #[test]
    fn last_applied_configuration_is_redacted_inside() {
        let applied = json!({"kind": "Secret", "data": {"k": "c2VjcmV0"}}).to_string();
        let mut secret =
            json!({"metadata": {"annotations": {LAST_APPLIED: applied, "other": "kept"}}, "data": {"k": "c2VjcmV0"}});
        default().object(&mut secret);
        let annotation = secret["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
        assert!(!annotation.contains("c2VjcmV0"), "{annotation}");
        assert_eq!(serde_json::from_str::<Value>(annotation).unwrap()["data"]["k"], REDACTED);
        assert_eq!(secret["metadata"]["annotations"]["other"], "kept");
        let mut broken = json!({"metadata": {"annotations": {LAST_APPLIED: "{not json"}}});
        default().object(&mut broken);
        assert_eq!(broken["metadata"]["annotations"][LAST_APPLIED], REDACTED);
    }

    #[test]
    fn patch_values_by_their_path() {
        let mut ops = json!([
            {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "X", "value": "secret"}},
            {"op": "replace", "path": "/spec/containers/1/env/2/value", "value": "secret"},
            {"op": "add", "path": "/spec/initContainers", "value": [{"env": [{"name": "Y", "value": "secret"}]}]},
            {"op": "add", "path": "/data/key", "value": "secret"},
            {"op": "add", "path": "/data", "value": {"key": "secret"}},
            {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "kept"}},
            {"op": "remove", "path": "/data/key"}
        ]);
        default().patch(&mut ops);
        let text = ops.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(ops[0]["value"], json!({"name": "X", "value": REDACTED}));
        assert_eq!(ops[4]["value"], json!({"key": REDACTED}));
        assert_eq!(ops[5]["value"]["key"], "kept");
        assert_eq!(ops[6], json!({"op": "remove", "path": "/data/key"}));
    }

    #[test]
    fn configurable() {
        let spec = RedactSpec {
            env_values: false,
            data: false,
            paths: vec!["/spec/containers/*/args".into(), "/metadata/annotations/a~1b".into()],
            object: true,
        };
        let mut pod = json!({"metadata": {"annotations": {"a/b": "x", "c": "y"}}, "data": {"k": "v"}, "spec": {"containers": [{"args": ["--password", "p"], "env": [{"name": "E", "value": "v"}]}]}});
        Redactor::new(&spec).object(&mut pod);
        assert_eq!(pod["spec"]["containers"][0]["args"], REDACTED);
        assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "v");
        assert_eq!(pod["data"]["k"], "v");
        assert_eq!(pod["metadata"]["annotations"], json!({"a/b": REDACTED, "c": "y"}));
        let mut ops = json!([{"op": "add", "path": "/spec/containers/0/args/-", "value": "p"}]);
        Redactor::new(&spec).patch(&mut ops);
        assert_eq!(ops[0]["value"], REDACTED);

        let off = RedactSpec { env_values: false, data: false, paths: vec![], object: true };
        let mut secret = json!({"data": {"k": "v"}});
        Redactor::new(&off).object(&mut secret);
        assert_eq!(secret["data"]["k"], "v");
    }
}
