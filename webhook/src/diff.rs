//! Objects side by side, as a reader compares them: a unified diff of their
//! YAML. `berth eval --diff` shows what the policies changed with it, and
//! `berth test` what a case expected against what it got.

use serde_json::Value;
use similar::TextDiff;

/// A unified diff of `old` and `new` as YAML, with three lines of context;
/// empty when they are equal.
pub fn yaml(old: &Value, new: &Value, old_name: &str, new_name: &str) -> String {
    let (old, new) = (to_yaml(old), to_yaml(new));
    TextDiff::from_lines(&old, &new).unified_diff().context_radius(3).header(old_name, new_name).to_string()
}

fn to_yaml(value: &Value) -> String {
    // A JSON value always has a YAML form; the fallback is never reached.
    crate::yaml::to_string(value).unwrap_or_else(|err| format!("# cannot show as YAML: {err}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_only_what_changed_with_context() {
        let old = json!({"metadata": {"name": "p", "labels": {"app": "a"}}, "spec": {"x": 1}});
        let new = json!({"metadata": {"name": "p", "labels": {"app": "a", "team": "t"}}, "spec": {"x": 1}});
        let diff = yaml(&old, &new, "before", "after");
        assert!(diff.starts_with("--- before\n+++ after\n@@"), "{diff}");
        assert!(diff.contains("+    team: t\n") && diff.contains("     app: a\n"), "{diff}");
        assert!(!diff.lines().any(|line| line.starts_with('-') && !line.starts_with("---")), "{diff}");
        assert_eq!(yaml(&old, &old, "a", "b"), "");
    }
}
