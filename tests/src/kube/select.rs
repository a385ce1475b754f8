//! `labelSelector` and `fieldSelector` query parameters, as the API reads
//! them: label requirements `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
//! `k notin (a,b)`; the fields every resource has, `metadata.name` and
//! `metadata.namespace`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Missing(String),
}

/// Both selectors of a request; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// Split on the commas that are not inside a set's parentheses.
fn requirements(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0_i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

fn set(values: &str) -> Option<Vec<String>> {
    let inner = values.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
}

fn parse_one(text: &str) -> Option<Requirement> {
    let owned = |s: &str| s.trim().to_owned();
    if let Some((key, value)) = text.split_once("!=") {
        return Some(Requirement::NotEquals(owned(key), owned(value)));
    }
    if let Some((key, value)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Some(Requirement::Equals(owned(key), owned(value)));
    }
    if let Some((key, values)) = text.split_once(" notin ") {
        return Some(Requirement::NotIn(owned(key), set(values)?));
    }
    if let Some((key, values)) = text.split_once(" in ") {
        return Some(Requirement::In(owned(key), set(values)?));
    }
    if text.contains(['(', ')', ' ']) {
        return None;
    }
    Some(match text.strip_prefix('!') {
        Some(key) => Requirement::Missing(owned(key)),
        None => Requirement::Exists(owned(text)),
    })
}

impl Selector {
    /// `Err` names the part that does not parse (the API answers 400).
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let parse = |text: Option<&str>| -> Result<Vec<Requirement>, String> {
            requirements(text.unwrap_or("")).into_iter().map(|r| parse_one(r).ok_or_else(|| r.to_owned())).collect()
        };
        let selector = Selector { labels: parse(labels)?, fields: parse(fields)? };
        for field in &selector.fields {
            match field {
                Requirement::Equals(key, _) | Requirement::NotEquals(key, _)
                    if key == "metadata.name" || key == "metadata.namespace" => {}
                other => return Err(format!("field selector {other:?} is not supported")),
            }
        }
        Ok(selector)
    }

    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let label = |key: &str| metadata["labels"][key].as_str();
        let field = |key: &str| match key {
            "metadata.name" => metadata["name"].as_str(),
            _ => Some(metadata["namespace"].as_str().unwrap_or("")),
        };
        self.labels.iter().all(|r| holds(r, label)) && self.fields.iter().all(|r| holds(r, field))
    }
}

fn holds<'v>(requirement: &Requirement, get: impl Fn(&str) -> Option<&'v str>) -> bool {
    match requirement {
        Requirement::Equals(key, value) => get(key) == Some(value.as_str()),
        Requirement::NotEquals(key, value) => get(key) != Some(value.as_str()),
        Requirement::In(key, values) => get(key).is_some_and(|v| values.iter().any(|x| x == v)),
        Requirement::NotIn(key, values) => get(key).is_none_or(|v| values.iter().all(|x| x != v)),
        Requirement::Exists(key) => get(key).is_some(),
        Requirement::Missing(key) => get(key).is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::Selector;
    use serde_json::json;

    #[test]
    fn label_and_field_requirements_select_as_the_api_does() {
        let job = json!({"metadata": {"name": "init", "namespace": "pulsar",
            "labels": {"release": "pulsar", "component": "init"}}});
        let cases = [
            ("release=pulsar", "", true),
            ("release==pulsar,component!=broker", "", true),
            ("release=kafka", "", false),
            ("component in (init, bookie),release", "", true),
            ("component notin (init)", "", false),
            ("!heritage", "metadata.namespace=pulsar", true),
            ("", "metadata.name!=init", false),
        ];
        for (labels, fields, expected) in cases {
            let selector = Selector::parse(Some(labels), Some(fields)).expect(labels);
            assert_eq!(selector.matches(&job), expected, "{labels:?} {fields:?}");
        }
        assert!(Selector::parse(None, Some("spec.nodeName=a")).is_err());
        assert!(Selector::parse(Some("a in b"), None).is_err());
    }
}
