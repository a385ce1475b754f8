//! Target `config`: a `berth.yaml` (webhook/src/config), as `--config`
//! reads it, and what the loader derives from it before any plugin is
//! compiled: the matchers and what they need of the cluster.

use crate::assert_no_repeats;
use berth::config::{Config, Source};
use berth::matcher::Matcher;
use std::time::Duration;

/// - A refused file gives an error whose chain repeats nothing and names
///   the file.
/// - An accepted file keeps the promises `Config::parse` makes: names not
///   empty, timeouts within 1ms..30s, pins of 64 hex digits, a valid audit
///   section; and parsing it again gives the same configuration.
/// - Every matcher, and the union of what they need, is computed.
pub fn check(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let config = match Config::parse(text, "fuzz.yaml") {
        Ok(config) => config,
        Err(err) => {
            assert_no_repeats(&err);
            assert!(berth::error_chain(&err).starts_with("fuzz.yaml"), "{err} does not name the file");
            return false;
        }
    };
    for policy in &config.policies {
        assert!(!policy.name.is_empty(), "an empty policy name was accepted");
        assert!(
            policy.timeout >= Duration::from_millis(1) && policy.timeout <= Duration::from_secs(30),
            "timeout {:?} was accepted",
            policy.timeout
        );
        if let Some(sha) = &policy.sha256 {
            assert!(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()), "sha256 {sha:?} was accepted");
        }
        let matcher = Matcher::from(policy.matcher.clone());
        let needs = matcher.needs();
        assert_eq!(needs.namespace_labels, !matcher.namespace_label_keys().is_empty());
    }
    if let Some(audit) = &config.audit {
        assert_eq!(audit.validate(), Ok(()), "an invalid audit section was accepted");
    }
    let again = Config::parse(text, "fuzz.yaml").expect("parsed once already");
    assert_eq!(format!("{again:?}"), format!("{config:?}"), "parsing is not deterministic");
    let source = Source { config, ..Source::default() };
    berth::policy::needs(std::slice::from_ref(&source));
    true
}
