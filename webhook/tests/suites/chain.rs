//! The admission chain with configurations built in code: what a failing or
//! lying plugin does to the response under each failurePolicy, and how the
//! mutations of several policies compose into one patch.

use base64::Engine as _;
use berth::admission::{Admitted, Endpoint, PolicyError, PolicyOutcome, PolicyResult, admit};
use berth::config::{Config, FailurePolicy, Source};
use berth::policy::{PolicySet, PolicySetError};
use berth::review::Review;
use berth::runtime::{ArtifactCache, LoadError, PluginError, Runtime, RuntimeOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const BOOKIE: &str = "../tests/fixtures/pulsar/reviews/005-pod-pulsar-bookie-0.json";
const BAD_OUTPUTS: [&str; 4] = ["bad-json", "not-an-array", "not-an-object", "rename"];

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeOptions {
            max_memory: 64 << 20,
            max_instances: 16,
            warm_instances: 16,
            max_wasm_stack: 512 << 10,
            cache: ArtifactCache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-artifact-cache")),
        })
        .expect("runtime starts")
    })
}

fn hostile_path() -> String {
    let path = PathBuf::from(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_hostile.wasm");
    assert!(path.is_absolute() && path.exists(), "{} is built by build.rs", path.display());
    path.display().to_string()
}

/// A hostile policy, as YAML (one list item).
fn hostile(name: &str, behaviour: &str, failure_policy: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: {plugin:?}\n    mode: mutate\n    failurePolicy: {failure_policy}\n    settings:\n      behaviour: {behaviour}\n",
        plugin = hostile_path(),
    )
}

/// A tolerations policy adding `key=<key>:NoSchedule` tolerations.
fn tolerations(name: &str, keys: &[&str]) -> String {
    let tolerations: Vec<Value> = keys
        .iter()
        .map(|key| json!({"key": key, "operator": "Equal", "value": "pulsar", "effect": "NoSchedule"}))
        .collect();
    format!(
        "  - name: {name}\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n      resources: [pods]\n    settings:\n      tolerations: {}\n",
        Value::from(tolerations)
    )
}

fn try_load(items: &[String]) -> Result<PolicySet, PolicySetError> {
    try_load_in(items, berth::cluster::Cluster::none())
}

fn try_load_in(items: &[String], cluster: berth::cluster::Cluster) -> Result<PolicySet, PolicySetError> {
    let yaml = format!("policies:\n{}", items.concat());
    let config = Config::parse(&yaml, "test").unwrap_or_else(|err| panic!("{err}\n{yaml}"));
    PolicySet::load(runtime(), &[Source { config, base_dir: PathBuf::new(), origin: "test".into() }], cluster)
}

fn load(items: &[String]) -> PolicySet {
    try_load(items).unwrap_or_else(|err| panic!("loading the policies: {err}"))
}

fn bookie() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(BOOKIE)).expect("the bookie fixture")
}

fn original_object(body: &[u8]) -> Value {
    let review: Value = serde_json::from_slice(body).expect("fixture is JSON");
    review["request"]["object"].clone()
}

/// Admit the bookie Pod on /mutate; whatever happens, the uid is echoed.
fn admit_bookie(policies: &PolicySet) -> Admitted {
    let body = bookie();
    let review = Review::parse(&body).expect("the fixture is a valid review");
    let uid = review.request.uid.clone();
    let admitted = admit(policies, Endpoint::Mutate, review);
    assert_eq!(admitted.response.uid, uid, "the uid is echoed");
    admitted
}

/// The response's patch, decoded, and the original object with it applied.
fn patched(admitted: &Admitted) -> (Vec<Value>, Value) {
    let response = &admitted.response;
    assert_eq!(response.patch_type, Some(berth::review::PatchType::JsonPatch));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response.patch.as_deref().expect("a patch"))
        .expect("the patch is base64");
    let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("the patch is a JSON array");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("the patch is RFC 6902");
    let mut object = original_object(&bookie());
    json_patch::patch(&mut object, &patch).expect("the patch applies to the original object");
    (ops, object)
}

fn toleration_keys(pod: &Value) -> Vec<String> {
    pod["spec"]["tolerations"]
        .as_array()
        .expect("tolerations")
        .iter()
        .map(|t| t["key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const APISERVER_TOLERATIONS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];

fn keys_after(added: &[&str]) -> Vec<String> {
    APISERVER_TOLERATIONS.iter().chain(added).map(|k| (*k).to_owned()).collect()
}

#[test]
fn bad_outputs_under_fail_deny_naming_the_policy_and_the_kind() {
    for behaviour in BAD_OUTPUTS {
        let name = format!("hostile-{behaviour}");
        let policies =
            load(&[tolerations("tol-a", &["a"]), hostile(&name, behaviour, "Fail"), tolerations("tol-b", &["b"])]);
        let admitted = admit_bookie(&policies);
        let response = &admitted.response;
        assert!(!response.allowed, "{behaviour}: {response:?}");
        let status = response.status.as_ref().expect("a denial has a status");
        assert_eq!(status.code, 500, "{behaviour}");
        assert!(
            status.message.contains(&name) && status.message.contains("bad_output"),
            "{behaviour}: {}",
            status.message
        );
        // A denied response carries no patch, not even the earlier policy's.
        assert_eq!(response.patch, None, "{behaviour}");
        assert_eq!(response.audit_annotations.get("denied-by"), Some(&name));
        // The chain stops at the failing policy: tol-b never ran.
        assert_eq!(admitted.outcomes.len(), 2, "{behaviour}");
        assert!(matches!(admitted.outcomes[0].result, PolicyResult::Mutated(_)), "{behaviour}");
        assert!(
            matches!(
                &admitted.outcomes[1].result,
                PolicyResult::Failed {
                    error: PolicyError::Plugin(PluginError::BadOutput(_)),
                    failure_policy: FailurePolicy::Fail
                }
            ),
            "{behaviour}: {:?}",
            admitted.outcomes[1].result
        );
    }
}

#[test]
fn bad_outputs_under_ignore_warn_and_the_other_mutations_land() {
    for behaviour in BAD_OUTPUTS {
        let name = format!("hostile-{behaviour}");
        let policies =
            load(&[tolerations("tol-a", &["a"]), hostile(&name, behaviour, "Ignore"), tolerations("tol-b", &["b"])]);
        let admitted = admit_bookie(&policies);
        let response = &admitted.response;
        assert!(response.allowed, "{behaviour}: {response:?}");
        assert_eq!(response.status, None);
        assert_eq!(response.warnings, [format!("{name}: skipped after bad_output")], "{behaviour}");
        assert!(
            matches!(
                &admitted.outcomes[1].result,
                PolicyResult::Failed {
                    error: PolicyError::Plugin(PluginError::BadOutput(_)),
                    failure_policy: FailurePolicy::Ignore
                }
            ),
            "{behaviour}: {:?}",
            admitted.outcomes[1].result
        );
        let (ops, pod) = patched(&admitted);
        assert_eq!(ops.len(), 2, "{behaviour}: only tol-a's and tol-b's ops: {ops:?}");
        assert_eq!(toleration_keys(&pod), keys_after(&["a", "b"]), "{behaviour}");
        assert_eq!(pod["metadata"]["name"], "pulsar-bookie-0", "{behaviour}");
        assert_eq!(response.audit_annotations.get("mutated-by").map(String::as_str), Some("tol-a,tol-b"));
    }
}

#[test]
fn bad_outputs_are_told_apart() {
    let detail = |behaviour: &str| {
        let admitted = admit_bookie(&load(&[hostile("h", behaviour, "Fail")]));
        match &admitted.outcomes[0].result {
            PolicyResult::Failed { error: PolicyError::Plugin(PluginError::BadOutput(detail)), .. } => detail.clone(),
            other => panic!("{behaviour}: {other:?}"),
        }
    };
    assert!(detail("bad-json").contains("not an RFC 6902 JSON Patch array"));
    assert!(detail("not-an-array").contains("not an RFC 6902 JSON Patch array"));
    // Replacing the root is refused outright: kube-apiserver could not apply it.
    assert!(detail("not-an-object").contains("operates on the whole object"));
    assert!(detail("rename").contains("/metadata/name"));
}

#[test]
fn two_mutating_policies_land_in_configured_order_in_one_patch() {
    for (first, second) in [("a", "b"), ("b", "a")] {
        let policies = load(&[tolerations("tol-first", &[first]), tolerations("tol-second", &[second])]);
        let admitted = admit_bookie(&policies);
        assert!(admitted.response.allowed);
        assert!(admitted.outcomes.iter().all(|o| matches!(o.result, PolicyResult::Mutated(_))));
        let (ops, pod) = patched(&admitted);
        let added: Vec<&Value> = ops.iter().map(|op| &op["value"]["key"]).collect();
        assert_eq!(added, [first, second]);
        assert!(ops.iter().all(|op| op["op"] == "add" && op["path"] == "/spec/tolerations/-"), "{ops:?}");
        assert_eq!(toleration_keys(&pod), keys_after(&[first, second]));
        assert_eq!(
            admitted.response.audit_annotations.get("mutated-by").map(String::as_str),
            Some("tol-first,tol-second")
        );
    }
}

#[test]
fn later_policies_see_earlier_mutations() {
    // tol-b wants a and b; a is already there after tol-a, so it adds only b.
    let policies = load(&[tolerations("tol-a", &["a"]), tolerations("tol-b", &["a", "b"])]);
    let admitted = admit_bookie(&policies);
    let (ops, pod) = patched(&admitted);
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(toleration_keys(&pod), keys_after(&["a", "b"]));
}

#[test]
fn timeout_under_fail_names_the_policy_and_the_deadline() {
    let policies = load(&[tolerations("tol-a", &["a"]), hostile("hostile-loop", "loop", "Fail")]);
    let admitted = admit_bookie(&policies);
    let response = &admitted.response;
    assert!(!response.allowed);
    let message = &response.status.as_ref().expect("status").message;
    assert!(message.contains("hostile-loop") && message.contains("timed out after 100ms"), "{message}");
    assert!(message.contains("(timeout)"), "{message}");
    assert_eq!(response.patch, None);
    assert!(matches!(
        admitted.outcomes[1].result,
        PolicyResult::Failed {
            error: PolicyError::Plugin(PluginError::Timeout { .. }),
            failure_policy: FailurePolicy::Fail
        }
    ));
}

#[test]
fn timeout_under_ignore_is_skipped() {
    let policies = load(&[hostile("hostile-loop", "loop", "Ignore"), tolerations("tol-a", &["a"])]);
    let admitted = admit_bookie(&policies);
    assert!(admitted.response.allowed);
    assert_eq!(admitted.response.warnings, ["hostile-loop: skipped after timeout"]);
    let (_, pod) = patched(&admitted);
    assert_eq!(toleration_keys(&pod), keys_after(&["a"]));
}

#[test]
fn a_patch_from_a_validating_policy_is_bad_output() {
    let yaml = hostile("hostile-validate", "rename", "Fail").replace("mode: mutate", "mode: validate");
    let policies = load(&[yaml]);
    let body = bookie();
    let admitted = admit(&policies, Endpoint::Validate, Review::parse(&body).expect("review"));
    assert!(!admitted.response.allowed);
    assert_eq!(admitted.response.uid, "2df0b5b4-431f-5254-a1b2-0b373ac5edd2");
    let message = &admitted.response.status.as_ref().expect("status").message;
    assert!(message.contains("hostile-validate") && message.contains("bad_output"), "{message}");
}

#[test]
fn the_uid_is_echoed_when_nothing_matches() {
    let admitted = admit_bookie(&load(&[]));
    assert!(admitted.response.allowed && admitted.response.patch.is_none() && admitted.outcomes.is_empty());
}

#[test]
fn bad_settings_fail_the_load_with_the_policy_and_the_field() {
    let mut bad = hostile("hostile-bad", "explode", "Fail");
    let err = try_load(&[tolerations("tol-a", &["a"]), bad.clone()]).expect_err("unknown behaviour");
    match &err {
        PolicySetError::Load { policy, error: LoadError::Settings { message } } => {
            assert_eq!(policy, "hostile-bad");
            assert!(message.contains("settings.behaviour") && message.contains("\"explode\""), "{message}");
        }
        other => panic!("expected PolicySetError::Load with LoadError::Settings, got {other:?}"),
    }
    // The message gives the policy; its cause, the plugin's words.
    let text = berth::error_chain(&err);
    assert!(text.starts_with("policy \"hostile-bad\": ") && text.contains("settings.behaviour"), "{text}");

    bad = tolerations("tol-bad", &["a"]).replace("NoSchedule", "Sometimes");
    let err = berth::error_chain(&try_load(&[bad]).expect_err("bad effect"));
    assert!(err.contains("\"tol-bad\"") && err.contains("tolerations[0].effect") && err.contains("Sometimes"), "{err}");
}

/// A validating require-placement policy denying the bookie (it lacks the
/// `key` toleration), with an optional code.
fn requires(name: &str, key: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: builtin:require-placement\n    mode: validate\n    settings:\n      tolerations:\n        - {{key: {key}, operator: Equal, value: pulsar, effect: NoSchedule}}\n"
    )
}

#[test]
fn validate_joins_every_reason_with_the_first_code() {
    let policies = load(&[requires("needs-a", "a"), tolerations("mutator", &["x"]), requires("needs-b", "b")]);
    let body = bookie();
    let admitted = admit(&policies, Endpoint::Validate, Review::parse(&body).expect("review"));
    let response = &admitted.response;
    assert!(!response.allowed);
    let status = response.status.as_ref().expect("a status");
    assert_eq!(status.code, 403);
    let (first, second) = status.message.split_once("; ").expect("two reasons joined");
    assert!(first.starts_with("needs-a: ") && first.contains("a=pulsar"), "{first}");
    assert!(second.starts_with("needs-b: ") && second.contains("b=pulsar"), "{second}");
    assert_eq!(response.audit_annotations.get("denied-by").map(String::as_str), Some("needs-a,needs-b"));
    // Only validating policies run on /validate.
    assert_eq!(admitted.outcomes.iter().map(|o| &*o.policy).collect::<Vec<_>>(), ["needs-a", "needs-b"]);
    assert!(response.patch.is_none());
}

#[test]
fn an_object_no_policy_matches_costs_no_plugin_call() {
    let policies = load(&[tolerations("pods-only", &["x"])]);
    let mut review: Value = serde_json::from_slice(&bookie()).expect("json");
    review["request"]["resource"]["resource"] = json!("pods");
    review["request"]["subResource"] = json!("status");
    let body = review.to_string();
    let admitted = admit(&policies, Endpoint::Mutate, Review::parse(body.as_bytes()).expect("review"));
    assert!(admitted.outcomes.is_empty(), "a subresource no policy names is not evaluated");
    assert!(admitted.response.allowed && admitted.response.patch.is_none());
}

#[test]
fn a_sha256_pin_that_does_not_match_refuses_the_plugin() {
    let plugin = berth::builtin::get("tolerations").expect("bundled");
    let actual = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(plugin))
    };
    let pinned = |sha: &str| {
        tolerations("pinned", &["x"]).replace("    mode: mutate\n", &format!("    mode: mutate\n    sha256: {sha}\n"))
    };
    load(&[pinned(&actual)]);
    let wrong = "0".repeat(64);
    let err = try_load(&[pinned(&wrong)]).expect_err("a wrong pin refuses to load");
    assert!(
        matches!(&err, PolicySetError::Load { policy, error: LoadError::Checksum { .. } } if policy == "pinned"),
        "{err}"
    );
    let text = berth::error_chain(&err);
    assert!(text.contains(&actual) && text.contains(&wrong), "{text}");
}

// Fail closed: every way a policy can fail, on both endpoints, under both
// failure policies. `Fail` denies, naming the policy and the kind of error,
// and lets nothing through; `Ignore` allows with a warning, and nothing of
// the failed policy reaches the patch.

/// `(what, hostile behaviour, extra policy YAML, PolicyError::kind)`.
const FAILURES: [(&str, &str, &str, &str); 9] = [
    ("trap", "trap", "", "trap"),
    ("deadline", "loop", "    timeout: 50ms\n", "timeout"),
    ("memory", "memory-bomb", "    memoryLimit: 8Mi\n", "out_of_memory"),
    ("stack", "stack-overflow", "", "stack_overflow"),
    ("panic", "panic", "", "panic"),
    ("error returned", "error", "", "policy_error"),
    ("invalid output", "bad-json", "", "bad_output"),
    ("invalid patch", "rename", "", "bad_output"),
    // The bookie's owner must be looked up, and offline there is no cluster
    // to ask: the policy fails before its plugin is called.
    ("context unavailable", "ok", "    match:\n      owner:\n        matchLabels: {app: pulsar}\n", "context"),
];

/// A hostile policy of either mode, as YAML (one list item).
fn failing(name: &str, behaviour: &str, extra: &str, mode: &str, failure_policy: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: {plugin:?}\n    mode: {mode}\n    failurePolicy: {failure_policy}\n{extra}    settings:\n      behaviour: {behaviour}\n",
        plugin = hostile_path(),
    )
}

/// Loaded as `berth eval` loads without --context: owners cannot be read.
fn load_offline(items: &[String]) -> PolicySet {
    try_load_in(items, berth::cluster::Cluster::missing_context())
        .unwrap_or_else(|err| panic!("loading the policies: {}", berth::error_chain(&err)))
}

fn admit_on(policies: &PolicySet, endpoint: Endpoint) -> Admitted {
    let body = bookie();
    let review = Review::parse(&body).expect("the fixture is a valid review");
    let uid = review.request.uid.clone();
    let admitted = admit(policies, endpoint, review);
    assert_eq!(admitted.response.uid, uid, "the uid is echoed");
    admitted
}

fn mode(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Mutate => "mutate",
        Endpoint::Validate => "validate",
    }
}

/// The failed policy's outcome is a failure of `kind` under `failure_policy`.
fn assert_failed(admitted: &Admitted, name: &str, kind: &str, failure_policy: FailurePolicy) {
    let outcome = admitted.outcomes.iter().find(|o| &*o.policy == name).expect("the policy ran");
    match &outcome.result {
        PolicyResult::Failed { error, failure_policy: fp } => {
            assert_eq!((error.kind(), *fp), (kind, failure_policy), "{name}: {error}");
        }
        other => panic!("{name}: expected a {kind} failure, got {other:?}"),
    }
}

#[test]
fn every_failure_under_fail_denies_on_both_endpoints() {
    for (what, behaviour, extra, kind) in FAILURES {
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let name = format!("failing-{behaviour}");
            // On /mutate an earlier policy has already patched: its patch
            // must not leak out of the denial either.
            let policies =
                load_offline(&[tolerations("tol-a", &["a"]), failing(&name, behaviour, extra, mode(endpoint), "Fail")]);
            let admitted = admit_on(&policies, endpoint);
            let response = &admitted.response;
            let case = format!("{what} on /{}", mode(endpoint));
            assert!(!response.allowed, "{case}: {response:?}");
            let status = response.status.as_ref().expect("a denial has a status");
            assert_eq!(status.code, 500, "{case}");
            assert!(status.message.contains(&format!("policy {name} failed ({kind})")), "{case}: {}", status.message);
            assert_eq!((&response.patch, &response.patch_type), (&None, &None), "{case}");
            assert_eq!(response.audit_annotations.get("denied-by"), Some(&name), "{case}");
            assert_failed(&admitted, &name, kind, FailurePolicy::Fail);
        }
    }
}

#[test]
fn every_failure_under_ignore_allows_without_its_patch_on_both_endpoints() {
    for (what, behaviour, extra, kind) in FAILURES {
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let name = format!("failing-{behaviour}");
            let policies = load_offline(&[
                failing(&name, behaviour, extra, mode(endpoint), "Ignore"),
                tolerations("tol-a", &["a"]),
            ]);
            let admitted = admit_on(&policies, endpoint);
            let response = &admitted.response;
            let case = format!("{what} on /{}", mode(endpoint));
            assert!(response.allowed, "{case}: {response:?}");
            assert_eq!(response.status, None, "{case}");
            assert_eq!(response.warnings, [format!("{name}: skipped after {kind}")], "{case}");
            assert_failed(&admitted, &name, kind, FailurePolicy::Ignore);
            match endpoint {
                // Only tol-a's toleration: nothing of the failed policy (the
                // rename, say) is in the patch.
                Endpoint::Mutate => {
                    let (ops, pod) = patched(&admitted);
                    assert_eq!(ops.len(), 1, "{case}: {ops:?}");
                    assert_eq!(toleration_keys(&pod), keys_after(&["a"]), "{case}");
                    assert_eq!(pod["metadata"]["name"], "pulsar-bookie-0", "{case}");
                    assert_eq!(response.audit_annotations.get("mutated-by").map(String::as_str), Some("tol-a"));
                }
                Endpoint::Validate => assert_eq!(response.patch, None, "{case}"),
            }
        }
    }
}

/// When every policy fails, one `Fail` among them is enough to deny; only
/// when all are `Ignore` is the object let through, unchanged.
#[test]
fn when_every_policy_fails_one_fail_denies() {
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let all = |first: &str, second: &str| {
            load_offline(&[
                failing("first", "trap", "", mode(endpoint), first),
                failing("second", "error", "", mode(endpoint), second),
            ])
        };
        for (first, second, denied_by) in [("Ignore", "Fail", "second"), ("Fail", "Ignore", "first")] {
            let admitted = admit_on(&all(first, second), endpoint);
            let response = &admitted.response;
            assert!(!response.allowed, "{first}/{second} on /{}: {response:?}", mode(endpoint));
            let message = &response.status.as_ref().expect("status").message;
            assert!(message.contains(&format!("policy {denied_by} failed")), "{message}");
            assert_eq!(response.patch, None);
        }
        let both = admit_on(&all("Fail", "Fail"), endpoint);
        assert!(!both.response.allowed);
        let message = &both.response.status.as_ref().expect("status").message;
        match endpoint {
            // /mutate stops at the first denial; /validate gives every reason.
            Endpoint::Mutate => assert!(message.contains("policy first failed (trap)"), "{message}"),
            Endpoint::Validate => assert!(
                message.contains("policy first failed (trap)")
                    && message.contains("policy second failed (policy_error)"),
                "{message}"
            ),
        }
        let ignored = admit_on(&all("Ignore", "Ignore"), endpoint);
        assert!(ignored.response.allowed && ignored.response.patch.is_none(), "{:?}", ignored.response);
        assert_eq!(ignored.response.warnings, ["first: skipped after trap", "second: skipped after policy_error"]);
    }
}

/// Settings a plugin refuses never make a policy set: berth does not start
/// (or keeps the configuration it had), whichever mode and failurePolicy.
#[test]
fn bad_settings_refuse_the_policy_in_either_mode_and_failure_policy() {
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        for failure_policy in ["Fail", "Ignore"] {
            let item = failing("bad-settings", "explode", "", mode(endpoint), failure_policy);
            match try_load(&[item]) {
                Err(PolicySetError::Load { policy, error: LoadError::Settings { message } }) => {
                    assert_eq!(policy, "bad-settings");
                    assert!(message.contains("settings.behaviour"), "{message}");
                }
                other => panic!("/{} {failure_policy}: expected a settings error, got {other:?}", mode(endpoint)),
            }
        }
    }
}

/// An object nested deeper than serde_json builds trees is still read and
/// matched (it is kept as text), and patched where the ops do not reach the
/// deep part (only what they reach is built); a patch that reaches it fails
/// the policy as the object's fault, not the plugin's, under the policy's
/// failurePolicy.
#[test]
fn an_object_too_deep_to_patch_fails_the_policy_as_an_object_error() {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let mut review: Value = serde_json::from_slice(&bookie()).expect("fixture is JSON");
    review["request"]["object"]["spec"]["deep"] = deep.clone();
    review["request"]["object"]["spec"]["containers"][0]["deep"] = deep;
    // serde_json's own serializer has no depth limit.
    let body = serde_json::to_vec(&review).expect("serializes");
    let rewrite = "  - name: rewrite\n    plugin: builtin:registry-rewrite\n    mode: mutate\n    settings:\n      rules: [{from: docker.io, to: harbor.example.com/library}]\n";
    let policies = load(&[tolerations("beside", &["dedicated"]), rewrite.to_owned()]);
    let admitted = admit(&policies, Endpoint::Mutate, Review::parse(&body).expect("a deep object is a review"));
    match &admitted.outcomes[..] {
        [
            PolicyOutcome { result: PolicyResult::Mutated(_), .. },
            PolicyOutcome { result: PolicyResult::Failed { error, failure_policy: FailurePolicy::Fail }, .. },
        ] => {
            // The container the image is in holds the deep value: building
            // it is what fails.
            assert_eq!(error.kind(), "object", "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!admitted.response.allowed && admitted.response.patch.is_none(), "{:?}", admitted.response);

    // The tolerations alone: the deep members are beside what is built.
    let policies = load(&[tolerations("beside", &["dedicated"])]);
    let admitted = admit(&policies, Endpoint::Mutate, Review::parse(&body).expect("a deep object is a review"));
    assert!(admitted.response.allowed, "{:?}", admitted.response);
    let (ops, _) = patched(&admitted);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["path"], "/spec/tolerations/-");
}
