//! berth: a Kubernetes admission webhook whose policies are WebAssembly
//! components. docs/ARCHITECTURE.md maps the modules.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod builtin;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod diff;
pub mod events;
pub mod matcher;
pub mod patch;
pub mod policy;
pub mod policy_test;
pub mod project;
pub mod review;
pub mod runtime;
pub mod server;
pub mod yaml;

/// An error and its sources on one line, for logs and answers. A cause
/// whose text is already there is skipped: some libraries' errors (hyper's,
/// kube-rs's) print their own source as well.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::error::Error;

    /// A message gives context and leaves its cause to the chain: no error
    /// in a chain repeats the text of the one it wraps.
    fn assert_no_repeats(err: &(dyn Error + 'static)) {
        let mut current: &(dyn Error + 'static) = err;
        while let Some(source) = current.source() {
            let (outer, inner) = (current.to_string(), source.to_string());
            assert!(!outer.contains(&inner), "{outer:?} repeats its cause {inner:?} (chain: {})", error_chain(err));
            current = source;
        }
    }

    #[test]
    fn a_cause_that_prints_its_own_source_is_not_printed_twice() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect): refused")]
        struct Noisy(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("refused")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("looking up Job ns/j")]
        struct Outer(#[source] Noisy);
        assert_eq!(error_chain(&Outer(Noisy(Inner))), "looking up Job ns/j: client error (Connect): refused");
    }

    #[test]
    fn no_error_chain_repeats_a_part() {
        let config = crate::config::Config::parse("policies:\n  - name: a\n    plugn: x\n", "berth.yaml").unwrap_err();
        assert_no_repeats(&config);
        assert!(error_chain(&config).contains("plugn"));
        let bad_json = crate::review::Review::parse(b"{not json").unwrap_err();
        assert_no_repeats(&bad_json);
        let malformed = crate::review::Review::parse(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"SMASH"}}"#,
        )
        .unwrap_err();
        assert_no_repeats(&malformed);
        let load = crate::policy::PolicySetError::Load {
            policy: "p".into(),
            error: crate::runtime::LoadError::SettingsCall(crate::runtime::PluginError::Timeout {
                after: std::time::Duration::from_millis(5),
            }),
        };
        assert_no_repeats(&load);
        let context = crate::admission::PolicyError::Context(crate::cluster::ContextError::Timeout {
            kind: "Job",
            object: "ns/j".into(),
            after: std::time::Duration::from_secs(1),
        });
        assert_no_repeats(&context);
        let io = crate::config::Config::read(std::path::Path::new("/nonexistent/berth.yaml")).unwrap_err();
        assert_no_repeats(&io);
    }
}
