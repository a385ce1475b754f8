//! A small RFC 6902 applier, independent of the json-patch crate the server
//! uses, so a patch the server encodes wrongly cannot also be read wrongly.

use serde_json::Value;

/// Apply `patch` (a JSON array of operations) to `doc`.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch.as_array().ok_or("a patch is a JSON array")?;
    for op in ops {
        let kind = op["op"].as_str().ok_or("op without \"op\"")?;
        let path = op["path"].as_str().ok_or("op without \"path\"")?;
        match kind {
            "add" => add(doc, path, op.get("value").cloned().ok_or("add without value")?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, op.get("value").cloned().ok_or("replace without value")?)?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move without from")?;
                let value = remove(doc, from)?;
                add(doc, path, value)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy without from")?;
                let value = get(doc, from)?.clone();
                add(doc, path, value)?;
            }
            "test" => {
                if get(doc, path)? != op.get("value").ok_or("test without value")? {
                    return Err(format!("test failed at {path}"));
                }
            }
            other => return Err(format!("unknown op {other:?}")),
        }
    }
    Ok(())
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| format!("pointer {path:?} must start with /"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = doc;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(map) => map.get(&t),
            Value::Array(items) => t.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{path} does not exist"))?;
    }
    Ok(cur)
}

fn parent<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut tokens = tokens(path)?;
    let last = tokens.pop().ok_or("the root has no parent")?;
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(map) => map.get_mut(&t),
            Value::Array(items) => t.parse::<usize>().ok().and_then(move |i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("parent of {path} does not exist"))?;
    }
    Ok((cur, last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent(doc, path)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => {
            let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if i > items.len() {
                return Err(format!("index out of range in {path}"));
            }
            items.insert(i, value);
        }
        _ => return Err(format!("cannot add under a scalar at {path}")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = parent(doc, path)?;
    match parent {
        Value::Object(map) => map.remove(&last).ok_or_else(|| format!("{path} does not exist")),
        Value::Array(items) => {
            let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if i >= items.len() {
                return Err(format!("index out of range in {path}"));
            }
            Ok(items.remove(i))
        }
        _ => Err(format!("{path} does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_the_rfc_6902_operations() {
        let mut doc = json!({"a": {"b": [1, 2]}, "c~d": 1, "e/f": 2});
        apply(
            &mut doc,
            &json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "remove", "path": "/c~0d"},
                {"op": "replace", "path": "/e~1f", "value": 3},
                {"op": "move", "from": "/e~1f", "path": "/g"},
                {"op": "copy", "from": "/g", "path": "/h"},
                {"op": "test", "path": "/a/b", "value": [1, 9, 2, 3]},
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": {"b": [1, 9, 2, 3]}, "g": 3, "h": 3}));
    }

    #[test]
    fn refuses_what_does_not_apply() {
        let doc = json!({"a": {"b": [1]}});
        for op in [
            json!({"op": "replace", "path": "/a/x", "value": 1}),
            json!({"op": "remove", "path": "/a/b/1"}),
            json!({"op": "add", "path": "/a/b/5", "value": 1}),
            json!({"op": "test", "path": "/a/b", "value": []}),
            json!({"op": "add", "path": "a", "value": 1}),
        ] {
            assert!(apply(&mut doc.clone(), &json!([op])).is_err(), "{op}");
        }
    }
}
