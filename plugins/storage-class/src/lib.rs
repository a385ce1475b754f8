//! # storage-class
//!
//! Gives a PersistentVolumeClaim a `spec.storageClassName` when it names
//! none (`mode: ifMissing`, the default) or always (`mode: always`). With
//! `allowed`, a claim that names a class not on the list is denied, naming
//! the class (in `ifMissing` mode; `always` overrides it instead).
//!
//! The class of a claim is `spec.storageClassName`, or failing that the
//! legacy `volume.beta.kubernetes.io/storage-class` annotation. An empty
//! class (`""`) is a choice, not an absence: it asks for a volume with no
//! class, and is kept as the DefaultStorageClass admission plugin keeps it.
//! A claim's class cannot change after creation, so only CREATE is acted on.
//!
//! On a cluster with a default StorageClass, the DefaultStorageClass
//! admission plugin writes that class into every claim that names none,
//! before any webhook runs. With `context: [defaultStorageClass]` in its
//! policy, this plugin is told the default, and a claim whose class is the
//! default counts as naming none: the chart did not choose it.

use berth_sdk::{Error, Operation, Patch, Request, Settings, SettingsError, Verdict, pointer};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The annotation that named a claim's class before `storageClassName`.
pub const BETA_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StorageClassSettings {
    pub storage_class_name: String,
    #[serde(default)]
    pub mode: Mode,
    /// The classes a claim may name; absent means any.
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Set the class only on claims that name none.
    #[default]
    IfMissing,
    /// Set the class on every claim, replacing the one it names.
    Always,
}

impl Settings for StorageClassSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if let Err(reason) = berth_sdk::names::check_dns_subdomain(&self.storage_class_name) {
            return Err(SettingsError::new(
                "storageClassName",
                format!("{:?} is not a valid StorageClass name: {reason}", self.storage_class_name),
            ));
        }
        if let Some(allowed) = &self.allowed {
            if allowed.is_empty() {
                return Err(SettingsError::new("allowed", "must list at least one class (leave it out to allow any)"));
            }
            for (i, name) in allowed.iter().enumerate() {
                if let Err(reason) = berth_sdk::names::check_dns_subdomain(name) {
                    return Err(SettingsError::new(
                        format!("allowed[{i}]"),
                        format!("{name:?} is not a valid StorageClass name: {reason}"),
                    ));
                }
            }
            // Otherwise a claim this policy completed would be refused by it
            // the next time it is seen.
            if !allowed.contains(&self.storage_class_name) {
                return Err(SettingsError::new(
                    "allowed",
                    format!("must include storageClassName {:?}, the class this policy sets", self.storage_class_name),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Claim {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    annotations: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    storage_class_name: Option<String>,
}

pub fn evaluate(request: &Request, settings: &StorageClassSettings) -> Result<Verdict, Error> {
    request.require_kind("PersistentVolumeClaim", "storage-class")?;
    if request.operation != Operation::Create {
        // storageClassName is immutable once the claim exists.
        return Ok(Verdict::allow());
    }
    let claim: Claim = request.object()?;
    let annotated = claim.metadata.annotations.as_ref().and_then(|a| a.get(BETA_ANNOTATION)).and_then(|v| v.as_str());
    let wanted = settings.storage_class_name.as_str();
    // The cluster's default, filled in by the apiserver, is not a choice.
    let named = claim
        .spec
        .storage_class_name
        .as_deref()
        .filter(|class| request.context().default_storage_class.as_deref() != Some(*class) || annotated.is_some());
    let mut patch = Patch::new();
    match (settings.mode, named, annotated) {
        (Mode::IfMissing, None, None) => patch = patch.add("/spec/storageClassName", wanted),
        (Mode::IfMissing, Some(class), _) | (Mode::IfMissing, None, Some(class)) => {
            if let Some(allowed) = settings.allowed.as_ref().filter(|allowed| !allowed.iter().any(|a| a == class)) {
                return Ok(Verdict::deny(format!(
                    "PersistentVolumeClaim storageClassName {class:?} is not allowed (allowed: {})",
                    allowed.join(", ")
                )));
            }
        }
        (Mode::Always, spec, annotation) => {
            if spec != Some(wanted) {
                patch = patch.add("/spec/storageClassName", wanted);
            }
            // The apiserver refuses a claim whose annotation and field differ.
            if annotation.is_some_and(|class| class != wanted) {
                patch = patch.replace(pointer(["metadata", "annotations", BETA_ANNOTATION]), wanted);
            }
        }
    }
    Ok(Verdict::mutate(patch))
}

berth_sdk::export_plugin!(StorageClassSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::{Decision, testing::Harness};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use serde_json::{Value, json};

    const FIXTURES: &str = "../../tests/fixtures";
    const KAFKA_PVC: &str = "kafka-kraft/reviews/001-pvc-data-kafka-broker-0.json";
    const PULSAR_PVC: &str = "pulsar/reviews/003-pvc-pulsar-bookie-journal-pulsar-bookie-0.json";

    fn harness(settings: Value) -> Harness<StorageClassSettings> {
        Harness::new(evaluate).settings(settings)
    }

    fn class(claim: &PersistentVolumeClaim) -> Option<String> {
        claim.spec.as_ref().unwrap().storage_class_name.clone()
    }

    fn fixture(file: &str) -> String {
        format!("{FIXTURES}/{file}")
    }

    fn claim_request(class: Option<&str>, annotation: Option<&str>) -> Value {
        let mut object = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "ns"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        });
        if let Some(class) = class {
            object["spec"]["storageClassName"] = class.into();
        }
        if let Some(annotation) = annotation {
            object["metadata"]["annotations"] = json!({ BETA_ANNOTATION: annotation });
        }
        json!({
            "uid": "u", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            "object": object
        })
    }

    #[test]
    fn sets_the_class_on_claims_without_one() {
        let outcome = harness(json!({"storageClassName": "local-storage"})).run_file(fixture(KAFKA_PVC));
        assert_eq!(class(&outcome.object()).as_deref(), Some("local-storage"));
        let second = harness(json!({"storageClassName": "local-storage"})).run_request(outcome.reinvocation());
        assert_eq!(second.verdict(), &Verdict::allow());
    }

    #[test]
    fn keeps_a_class_that_is_set() {
        let h = harness(json!({"storageClassName": "fast"}));
        assert_eq!(h.run_file(fixture(PULSAR_PVC)).verdict(), &Verdict::allow());
        // An explicit "" (no class) is a choice too.
        assert_eq!(h.run_request(claim_request(Some(""), None)).verdict(), &Verdict::allow());
        // And so is the legacy annotation.
        assert_eq!(h.run_request(claim_request(None, Some("slow"))).verdict(), &Verdict::allow());
    }

    #[test]
    fn denies_classes_not_allowed() {
        let h = harness(json!({"storageClassName": "local-storage", "allowed": ["local-storage", "fast"]}));
        assert_eq!(h.run_file(fixture(PULSAR_PVC)).verdict(), &Verdict::allow());
        match &h.run_request(claim_request(Some("standard"), None)).verdict().decision {
            Decision::Deny { message, .. } => {
                assert_eq!(
                    message,
                    r#"PersistentVolumeClaim storageClassName "standard" is not allowed (allowed: local-storage, fast)"#
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(!h.run_request(claim_request(None, Some("standard"))).verdict().is_allowed());
        // Missing is still filled in.
        let claim: PersistentVolumeClaim = h.run_file(fixture(KAFKA_PVC)).object();
        assert_eq!(class(&claim).as_deref(), Some("local-storage"));
    }

    #[test]
    fn always_overrides() {
        let h = harness(json!({"storageClassName": "local-storage", "mode": "always", "allowed": ["local-storage"]}));
        let outcome = h.run_request(claim_request(Some("standard"), Some("standard")));
        let claim: PersistentVolumeClaim = outcome.object();
        assert_eq!(class(&claim).as_deref(), Some("local-storage"));
        assert_eq!(claim.metadata.annotations.unwrap()[BETA_ANNOTATION], "local-storage");
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
        assert_eq!(h.run_file(fixture(PULSAR_PVC)).verdict(), &Verdict::allow());
        let claim: PersistentVolumeClaim = h.run_file(fixture(KAFKA_PVC)).object();
        assert_eq!(class(&claim).as_deref(), Some("local-storage"));
    }

    #[test]
    fn only_create_is_acted_on() {
        let h = harness(json!({"storageClassName": "local-storage", "allowed": ["local-storage"]}));
        let mut request = claim_request(Some("standard"), None);
        request["operation"] = "UPDATE".into();
        request["oldObject"] = request["object"].clone();
        assert_eq!(h.run_request(request).verdict(), &Verdict::allow());
        let outcome = h.run_file(fixture("pulsar/reviews/032-pvc-pulsar-bookie-journal-pulsar-bookie-0-delete.json"));
        assert_eq!(outcome.verdict(), &Verdict::allow());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |settings: Value| harness(settings).validate_settings().unwrap_err();
        let e = err(json!({"storageClassName": "Local_Storage"}));
        assert!(e.contains("settings.storageClassName"), "{e}");
        let e = err(json!({"storageClassName": "a", "mode": "sometimes"}));
        assert!(e.contains("mode") && e.contains("sometimes"), "{e}");
        let e = err(json!({"storageClassName": "a", "allowed": []}));
        assert!(e.contains("settings.allowed"), "{e}");
        let e = err(json!({"storageClassName": "a", "allowed": ["b"]}));
        assert!(e.contains("settings.allowed") && e.contains("must include"), "{e}");
        let e = err(json!({"storageClassName": "a", "allowed": ["a", "B"]}));
        assert!(e.contains("allowed[1]"), "{e}");
        let e = err(json!({}));
        assert!(e.contains("storageClassName"), "{e}");
    }

    #[test]
    fn claims_only() {
        let outcome =
            harness(json!({"storageClassName": "a"})).run_file(fixture("pulsar/reviews/005-pod-pulsar-bookie-0.json"));
        assert!(outcome.error().unwrap().contains("Pod"));
    }

    #[test]
    fn the_clusters_default_class_counts_as_none() {
        let settings = json!({"storageClassName": "local-storage"});
        let default = berth_sdk::Context { default_storage_class: Some("standard".into()) };
        // DefaultStorageClass wrote "standard": replaced.
        let outcome =
            harness(settings.clone()).context(default.clone()).run_request(claim_request(Some("standard"), None));
        assert_eq!(class(&outcome.object()).as_deref(), Some("local-storage"));
        // A class the chart named on purpose is kept.
        let outcome = harness(settings.clone()).context(default.clone()).run_request(claim_request(Some("fast"), None));
        assert_eq!(class(&outcome.object()).as_deref(), Some("fast"));
        // Without the context, "standard" is a choice like any other.
        let outcome = harness(settings.clone()).run_request(claim_request(Some("standard"), None));
        assert_eq!(class(&outcome.object()).as_deref(), Some("standard"));
        // Idempotent: the second pass sees local-storage, not the default.
        let first =
            harness(settings.clone()).context(default.clone()).run_request(claim_request(Some("standard"), None));
        let second = harness(settings).context(default).run_request(first.reinvocation());
        assert!(second.verdict().patch().is_none_or(|p| p.is_empty()), "{:?}", second.verdict());
    }
}
