//! Target `reference`: an image reference as a Pod spec may hold it, parsed
//! (plugins/reference) and rewritten (plugins/registry-rewrite) by the
//! default policy's rules and by a set that exercises path prefixes.

use berth::config::Config;
use berth_plugin_registry_rewrite::{RegistryRewriteSettings, Rule, rewrite};
use berth_reference::{NAME_TOTAL_LENGTH_MAX, Reference, RepositoryPrefix, TAG_LENGTH_MAX};
use berth_sdk::Settings as _;
use std::sync::OnceLock;

/// - A refused reference names the input and is refused by the rewriter
///   too.
/// - A parsed reference prints (full and familiar forms) to text that
///   parses equal, within the grammar's limits.
/// - A rewrite keeps the tag and digest, lands on the rule's registry and
///   is never rewritten again; a second rewrite of anything is a no-op.
/// - A registry prefix prints to text that parses equal.
pub fn check(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    if let Ok(prefix) = RepositoryPrefix::parse(text) {
        let printed = prefix.to_string();
        assert_eq!(RepositoryPrefix::parse(&printed).as_ref(), Ok(&prefix), "prefix {text:?} printed as {printed:?}");
    }
    let reference = match Reference::parse(text) {
        Ok(reference) => reference,
        Err(err) => {
            assert_eq!(err.input(), text, "an error names the input");
            for rules in rule_sets() {
                assert!(rewrite(text, rules).is_err(), "{text:?} is refused by the parser but not by the rewriter");
            }
            return false;
        }
    };
    assert!(reference.path().len() <= NAME_TOTAL_LENGTH_MAX, "{text:?}: path too long");
    assert!(reference.tag().is_none_or(|t| t.len() <= TAG_LENGTH_MAX), "{text:?}: tag too long");
    let printed = reference.to_string();
    assert_eq!(printed, format!("{}{}", reference.name(), reference.suffix()));
    for form in [printed, reference.familiar()] {
        let again = Reference::parse(&form).unwrap_or_else(|err| panic!("{text:?} printed as {form:?}: {err}"));
        assert_eq!(again, reference, "{text:?} printed as {form:?} parses to another reference");
    }

    let mut rewritten_once = false;
    for rules in rule_sets() {
        let Ok(Some(rewritten)) = rewrite(text, rules) else { continue };
        let moved =
            Reference::parse(&rewritten).unwrap_or_else(|err| panic!("{text:?} rewritten to {rewritten:?}: {err}"));
        assert_eq!((moved.tag(), moved.digest()), (reference.tag(), reference.digest()), "{text:?} → {rewritten:?}");
        assert!(
            rules.iter().any(|rule| rule.from.contains(&reference) && rule.to.contains(&moved)),
            "{text:?} → {rewritten:?} is not under the rule that matched"
        );
        assert_eq!(rewrite(&rewritten, rules), Ok(None), "{text:?} → {rewritten:?} is rewritten again");
        rewritten_once = true;
    }
    rewritten_once
}

/// The default policy's registry-rewrite rules (each distinct set), and a
/// set with path prefixes, a port and a `to` with a path.
fn rule_sets() -> &'static [Vec<Rule>] {
    static SETS: OnceLock<Vec<Vec<Rule>>> = OnceLock::new();
    SETS.get_or_init(|| {
        let mut sets = vec![parse_rules(serde_json::json!({"rules": [
            {"from": "docker.io/bitnami", "to": "harbor.example.com/bitnami"},
            {"from": "docker.io", "to": "harbor.example.com/library"},
            {"from": "quay.io/prometheus", "to": "harbor.example.com/quay"},
            {"from": "localhost:5000", "to": "mirror.example.com:8443/local"},
            {"from": "[::1]:5000/a", "to": "mirror.example.com/v6"},
        ]}))];
        let sources = Config::embedded_default().expect("the embedded default parses");
        let specs = sources.iter().flat_map(|s| &s.config.policies);
        let mut seen = Vec::new();
        for spec in specs.filter(|p| p.plugin == "builtin:registry-rewrite") {
            if !seen.contains(&spec.settings) {
                seen.push(spec.settings.clone());
                sets.push(parse_rules(spec.settings.clone()));
            }
        }
        assert!(sets.len() > 1, "the default policy rewrites registries");
        sets
    })
}

fn parse_rules(settings: serde_json::Value) -> Vec<Rule> {
    let settings: RegistryRewriteSettings = serde_json::from_value(settings).expect("valid rules");
    settings.validate().expect("valid rules");
    settings.rules
}
