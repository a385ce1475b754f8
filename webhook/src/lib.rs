//! berth: a Kubernetes admission webhook whose policies are WebAssembly
//! components. docs/ARCHITECTURE.md maps the modules.

pub mod admission;
pub mod audit;
pub mod builtin;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod matcher;
pub mod patch;
pub mod policy;
pub mod review;
pub mod runtime;
pub mod server;

/// An error and its sources on one line, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
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
            namespace: "ns".into(),
            name: "j".into(),
            after: std::time::Duration::from_secs(1),
        });
        assert_no_repeats(&context);
        let io = crate::config::Config::read(std::path::Path::new("/nonexistent/berth.yaml")).unwrap_err();
        assert_no_repeats(&io);
    }
}
