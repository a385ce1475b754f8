//! berth as an operator installs it: the Helm chart rendered by real
//! `helm template`, every object validated against the Kubernetes OpenAPI
//! schemas (kubernetes-validate, strict) and deserialized as its
//! k8s-openapi type, the ConfigMap's policies equal to the embedded ones,
//! `deploy/manifests/` up to date, and the StatefulSet as rendered started:
//! its arguments, mounts and `berth.yaml`, a read-only root, the `berth
//! certs` output, a stand-in Kubernetes API (what berth reads of it is
//! exactly what the ClusterRole grants), and the `helm test` hook's own
//! script against it.
//!
//! helm and kubernetes-validate are found through BERTH_HELM and
//! BERTH_KUBERNETES_VALIDATE, else where `.ci/install-tools` puts them, else
//! on PATH. Missing, the tests fail and say how to install them.

use base64::Engine as _;
use berth_e2e::admission::check;
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::kube::FakeKubeApi;
use berth_e2e::server::{Server, binary, cache_dir};
use hyper::StatusCode;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const RELEASE: &str = "berth";
const NAMESPACE: &str = "berth-system";
/// The Service the chart makes for release `berth`, and the names the
/// apiserver and in-cluster clients reach it by.
const SERVICE_NAMES: [&str; 2] = ["berth.berth-system.svc", "berth.berth-system.svc.cluster.local"];
/// Objects of CRDs: kubernetes-validate has no schema for them.
const CRD_KINDS: [&str; 3] = ["Certificate", "Issuer", "ServiceMonitor"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> String {
    repo().join("deploy/chart").display().to_string()
}

/// A tool: the path in `env` if that is set, else where
/// `.ci/install-tools` puts it, else on PATH. Never skipped: a missing tool
/// fails the test with how to get it.
fn tool(env: &str, installed: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env).map(PathBuf::from) {
        assert!(path.is_file(), "{env}={} is not a file: point it at a {name} binary", path.display());
        return path;
    }
    std::iter::once(repo().join(installed))
        .chain(std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: the deploy suite needs it. Run `bash .ci/install-tools` \
                 (CI's .ci/run does), or set {env} to a {name} binary."
            )
        })
}

pub(crate) fn helm() -> PathBuf {
    tool("BERTH_HELM", ".ci/bin/helm", "helm")
}

pub(crate) fn kubernetes_validate() -> PathBuf {
    tool("BERTH_KUBERNETES_VALIDATE", ".ci/venv/bin/kubernetes-validate", "kubernetes-validate")
}

pub(crate) fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{command:?} runs: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `helm template` of the chart in NAMESPACE: the text, or helm's error.
pub(crate) fn template(args: &[&str]) -> Result<String, String> {
    template_in(NAMESPACE, args)
}

fn template_in(namespace: &str, args: &[&str]) -> Result<String, String> {
    let (ok, stdout, stderr) =
        run(Command::new(helm()).args(["template", RELEASE, &chart(), "--namespace", namespace]).args(args));
    if ok { Ok(stdout) } else { Err(stderr) }
}

/// The rendered objects, parsed.
pub(crate) struct Rendered {
    pub(crate) text: String,
    pub(crate) objects: Vec<Value>,
}

pub(crate) fn render(args: &[&str]) -> Rendered {
    let text = template(args).unwrap_or_else(|e| panic!("helm template {args:?} failed: {e}"));
    Rendered { objects: parse_documents(&text), text }
}

fn parse_documents(text: &str) -> Vec<Value> {
    berth::yaml::documents(text).expect("helm renders YAML")
}

impl Rendered {
    fn kinds(&self) -> BTreeSet<String> {
        self.objects.iter().map(|o| str_of(&o["kind"]).to_owned()).collect()
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    pub(crate) fn get(&self, kind: &str) -> &Value {
        match self.all(kind).as_slice() {
            [one] => one,
            other => panic!("expected one {kind}, rendered {}", other.len()),
        }
    }

    pub(crate) fn typed<T: serde::de::DeserializeOwned>(&self, kind: &str) -> T {
        serde_json::from_value(self.get(kind).clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    pub(crate) fn workload(&self) -> StatefulSet {
        self.typed("StatefulSet")
    }

    pub(crate) fn pod_spec(&self) -> PodSpec {
        self.workload().spec.template.spec.expect("the StatefulSet's pod spec")
    }

    pub(crate) fn container(&self) -> Container {
        let spec = self.pod_spec();
        assert_eq!(spec.containers.len(), 1, "one container");
        spec.containers.into_iter().next().expect("container")
    }

    /// `berth.yaml` from the ConfigMap.
    pub(crate) fn berth_yaml(&self) -> String {
        let map: ConfigMap = self.typed("ConfigMap");
        map.data.and_then(|d| d.get("berth.yaml").cloned()).expect("berth.yaml in the ConfigMap")
    }
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Validate every object with kubernetes-validate --strict, against the
/// oldest Kubernetes the chart supports and the newest the validator knows;
/// every object must pass, and only CRD objects may lack a schema.
pub(crate) fn validate(rendered: &Rendered) {
    validate_for(rendered, ["1.30.0", "1.37.0"]);
}

/// `validate` against these two Kubernetes versions (a field newer than
/// 1.30, such as an image volume, is checked from the version that has it).
pub(crate) fn validate_for(rendered: &Rendered, [oldest, newest]: [&str; 2]) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered.text).expect("write");
    let (ok, stdout, stderr) = run(Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", oldest, "--kubernetes-version", newest])
        .arg(&file));
    assert!(ok, "kubernetes-validate --strict refused the chart:\n{stdout}{stderr}");
    let passed = stdout.lines().filter(|l| l.starts_with("INFO") && l.contains(" passed for resource ")).count();
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("WARN")).collect();
    let crds = rendered.objects.iter().filter(|o| CRD_KINDS.contains(&str_of(&o["kind"]))).count();
    assert_eq!(passed, 2 * (rendered.objects.len() - crds), "every object passes for both versions:\n{stdout}");
    assert_eq!(warnings.len(), 2 * crds, "only CRD objects lack a schema:\n{stdout}");
    for warning in warnings {
        assert!(CRD_KINDS.iter().any(|kind| warning.contains(&format!("kind {kind} "))), "{warning}");
    }
}

/// Deserialize every object as its k8s-openapi type (the CRDs' as the
/// fields berth relies on), so nothing is left unchecked.
pub(crate) fn deserialize_all(rendered: &Rendered) {
    fn as_type<T: serde::de::DeserializeOwned>(object: &Value) {
        serde_json::from_value::<T>(object.clone()).unwrap_or_else(|e| panic!("{}: {e}", str_of(&object["kind"])));
    }
    for object in &rendered.objects {
        match str_of(&object["kind"]) {
            "StatefulSet" => as_type::<StatefulSet>(object),
            "Service" => as_type::<Service>(object),
            "ServiceAccount" => as_type::<ServiceAccount>(object),
            "ConfigMap" => as_type::<ConfigMap>(object),
            "Secret" => as_type::<Secret>(object),
            "ClusterRole" => as_type::<ClusterRole>(object),
            "ClusterRoleBinding" => as_type::<ClusterRoleBinding>(object),
            "PodDisruptionBudget" => as_type::<PodDisruptionBudget>(object),
            "HorizontalPodAutoscaler" => as_type::<HorizontalPodAutoscaler>(object),
            "MutatingWebhookConfiguration" => as_type::<MutatingWebhookConfiguration>(object),
            "ValidatingWebhookConfiguration" => as_type::<ValidatingWebhookConfiguration>(object),
            "Pod" => as_type::<Pod>(object),
            "Certificate" | "Issuer" => assert_eq!(object["apiVersion"], "cert-manager.io/v1"),
            "ServiceMonitor" => assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1"),
            other => panic!("the chart rendered a {other}, which this suite does not know"),
        }
    }
}

fn kinds(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|k| k.to_string()).collect()
}

const ALWAYS: [&str; 10] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Service",
    "StatefulSet",
    "PodDisruptionBudget",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    // The helm test hook.
    "Pod",
];

#[test]
fn the_chart_lints_and_renders_valid_objects_with_default_and_cert_manager_values() {
    for values in [&[][..], &["--set", "certManager.enabled=true"][..]] {
        let (ok, stdout, stderr) = run(Command::new(helm()).args(["lint", "--strict", &chart()]).args(values));
        assert!(ok, "helm lint --strict {values:?}:\n{stdout}{stderr}");
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    }

    let default = render(&[]);
    assert_eq!(default.kinds(), kinds(&ALWAYS));
    validate(&default);
    deserialize_all(&default);

    let cert_manager = render(&[
        "--set",
        "certManager.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "autoscaling.enabled=true",
    ]);
    let mut expected = kinds(&ALWAYS);
    expected.extend(kinds(&["Certificate", "Issuer", "ServiceMonitor", "HorizontalPodAutoscaler"]));
    assert_eq!(cert_manager.kinds(), expected);
    validate(&cert_manager);
    deserialize_all(&cert_manager);
    // The HPA owns the replica count.
    assert_eq!(cert_manager.workload().spec.replicas, None);
    assert_eq!(default.workload().spec.replicas, Some(2));

    let dir = tempfile::tempdir().expect("tmp");
    let certs = berth_certs(dir.path());
    let from_values = render(&[
        "--set-file",
        &format!("tls.cert={}", certs.join("tls.crt").display()),
        "--set-file",
        &format!("tls.key={}", certs.join("tls.key").display()),
        "--set-file",
        &format!("tls.ca={}", certs.join("ca.crt").display()),
    ]);
    let mut expected = kinds(&ALWAYS);
    expected.insert("Secret".into());
    assert_eq!(from_values.kinds(), expected);
    validate(&from_values);
    deserialize_all(&from_values);
    let secret: Secret = from_values.typed("Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("data");
    assert_eq!(data["tls.crt"].0, std::fs::read(certs.join("tls.crt")).expect("tls.crt"));
    assert_eq!(data["ca.crt"].0, std::fs::read(certs.join("ca.crt")).expect("ca.crt"));
}

#[test]
fn a_validator_that_passes_everything_would_be_caught() {
    // The validation above means something only if the validator refuses
    // what kube-apiserver refuses: an unknown field, strictly.
    let mut rendered = render(&[]);
    rendered.text = rendered.text.replace("revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replicaCoun: 3");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered.text).expect("write");
    let (ok, stdout, _) = run(Command::new(kubernetes_validate()).arg("--strict").arg(&file));
    assert!(!ok, "a StatefulSet with an unknown field passed:\n{stdout}");
    assert!(stdout.contains("ERROR") && stdout.contains("statefulset/berth"), "{stdout}");
}

/// Both webhook configurations, as `Value`s with their kind.
fn webhooks(rendered: &Rendered) -> Vec<(String, Value)> {
    ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
        .into_iter()
        .map(|kind| {
            let config = rendered.get(kind);
            let hooks = config["webhooks"].as_array().expect("webhooks");
            assert_eq!(hooks.len(), 1, "{kind}: one webhook");
            (kind.to_owned(), hooks[0].clone())
        })
        .collect()
}

fn yaml(text: &str) -> Value {
    berth::yaml::from_str(text).expect("YAML")
}

#[test]
fn the_webhook_configurations_exclude_kube_system_and_berths_namespace_and_say_how_to_call_berth() {
    let rendered = render(&[]);
    let service: Service = rendered.typed("Service");
    let https_port =
        service.spec.and_then(|s| s.ports).into_iter().flatten().find(|p| p.name.as_deref() == Some("https"));
    assert_eq!(https_port.map(|p| p.port), Some(443));
    for (kind, hook) in webhooks(&rendered) {
        let endpoint = if kind.starts_with("Mutating") { "/mutate" } else { "/validate" };
        assert_eq!(
            hook["clientConfig"]["service"],
            yaml(&format!("{{name: berth, namespace: {NAMESPACE}, path: {endpoint}, port: 443}}")),
            "{kind}"
        );
        assert_eq!(
            hook["namespaceSelector"],
            yaml(&format!(
                "matchLabels: {{berth.dev/enabled: 'true'}}\n\
                 matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, {NAMESPACE}]}}]"
            )),
            "{kind}"
        );
        assert_eq!(hook["failurePolicy"], "Fail", "{kind}");
        assert_eq!(hook["sideEffects"], "NoneOnDryRun", "{kind}");
        assert_eq!(hook["timeoutSeconds"], 5, "{kind}");
        assert_eq!(hook["matchPolicy"], "Equivalent", "{kind}");
        assert_eq!(hook["admissionReviewVersions"], yaml("[v1]"), "{kind}");
        assert_eq!(
            hook["reinvocationPolicy"],
            if kind.starts_with("Mutating") { yaml("IfNeeded") } else { Value::Null },
            "{kind}"
        );
        // Pods on CREATE and UPDATE (image policies also run on UPDATE),
        // kubectl debug's ephemeral containers, PVCs on CREATE.
        let rules: BTreeMap<String, Value> = hook["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|rule| {
                assert_eq!(rule["apiGroups"], yaml("['']"));
                assert_eq!(rule["apiVersions"], yaml("[v1]"));
                assert_eq!(rule["scope"], "Namespaced");
                (str_of(&rule["resources"][0]).to_owned(), rule["operations"].clone())
            })
            .collect();
        assert_eq!(
            rules,
            BTreeMap::from([
                ("persistentvolumeclaims".to_owned(), yaml("[CREATE]")),
                ("pods".to_owned(), yaml("[CREATE, UPDATE]")),
                ("pods/ephemeralcontainers".to_owned(), yaml("[UPDATE]")),
            ]),
            "{kind}"
        );
        // No caBundle until one is given (berth certs, or cert-manager).
        assert_eq!(hook["clientConfig"]["caBundle"], Value::Null, "{kind}");
    }

    // Another namespace, more exclusions, Ignore, all namespaces.
    let text = template_in(
        "webhooks",
        &[
            "--set",
            "webhook.failurePolicy=Ignore",
            "--set",
            "webhook.excludeNamespaces={monitoring,kube-system}",
            "--set",
            "webhook.namespaceLabels=null",
        ],
    )
    .expect("renders");
    let rendered = Rendered { objects: parse_documents(&text), text };
    for (kind, hook) in webhooks(&rendered) {
        assert_eq!(hook["failurePolicy"], "Ignore", "{kind}");
        assert_eq!(
            hook["namespaceSelector"],
            yaml(
                "matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, webhooks, monitoring]}]"
            ),
            "{kind}"
        );
    }
}

#[test]
fn a_client_ca_secret_is_mounted_and_given_to_berth_as_client_ca() {
    let args = |rendered: &Rendered| rendered.container().args.unwrap_or_default();
    assert!(!args(&render(&[])).iter().any(|a| a.starts_with("--client-ca")), "no client CA by default");

    let rendered = render(&["--set", "clientCA.secretName=apiserver-ca", "--set", "clientCA.key=bundle.pem"]);
    validate(&rendered);
    assert!(
        args(&rendered).contains(&"--client-ca=/etc/berth/client-ca/bundle.pem".to_owned()),
        "{:?}",
        args(&rendered)
    );
    let volume = rendered
        .pod_spec()
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == "client-ca")
        .expect("a client-ca volume");
    let secret = volume.secret.expect("from a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("apiserver-ca"));
    let items = secret.items.expect("the one key");
    assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("bundle.pem", "bundle.pem"));
    let mounts = rendered.container().volume_mounts.expect("mounts");
    let mount = mounts.iter().find(|m| m.name == "client-ca").expect("mounted");
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/berth/client-ca", Some(true)));
}

#[test]
fn owner_cache_values_become_berths_flags_and_the_defaults_leave_berths_own() {
    let args = |rendered: &Rendered| rendered.container().args.unwrap_or_default();
    let owner_flags =
        |rendered: &Rendered| args(rendered).into_iter().filter(|a| a.starts_with("--owner-")).collect::<Vec<_>>();
    assert_eq!(owner_flags(&render(&[])), Vec::<String>::new(), "berth's own defaults, as before");

    let rendered = render(&[
        "--set",
        "serve.ownerCache.limit=128Mi",
        "--set",
        "serve.ownerCache.syncDeadline=45s",
        "--set",
        "serve.ownerCache.listPageSize=250",
        "--set",
        "serve.ownerCache.streamingList=true",
    ]);
    validate(&rendered);
    assert_eq!(
        owner_flags(&rendered),
        [
            "--owner-cache-limit=128Mi",
            "--owner-sync-deadline=45s",
            "--owner-list-page-size=250",
            "--owner-streaming-list"
        ]
    );
    // berth parses every argument (values included) before it acts on
    // --help: the chart's flags are ones this berth takes.
    let (ok, _, stderr) = run(Command::new(binary()).args(args(&rendered)).arg("--help"));
    assert!(ok, "berth refuses the rendered arguments {:?}: {stderr}", args(&rendered));
    let (ok, _, _) =
        run(Command::new(binary()).args(args(&render(&["--set", "serve.ownerCache.limit=lots"]))).arg("--help"));
    assert!(!ok, "a value berth cannot read is refused, so the check above means something");
}

#[test]
fn the_cache_volume_and_berths_cache_limit_are_one_value() {
    for (values, expected) in [(vec![], "256Mi"), (vec!["--set", "serve.cacheSizeLimit=512Mi"], "512Mi")] {
        let rendered = render(&values);
        validate(&rendered);
        let volumes = rendered.pod_spec().volumes.expect("volumes");
        let cache = volumes.iter().find(|v| v.name == "cache").and_then(|v| v.empty_dir.clone()).expect("an emptyDir");
        assert_eq!(cache.size_limit.map(|q| q.0).as_deref(), Some(expected));
        let args = rendered.container().args.unwrap_or_default();
        assert!(args.contains(&format!("--cache-size-limit={expected}")), "{args:?}");
        let (ok, _, stderr) = run(Command::new(binary()).args(&args).arg("--help"));
        assert!(ok, "berth refuses the rendered arguments {args:?}: {stderr}");
    }
}

#[test]
fn the_ca_bundle_comes_from_values_or_from_cert_managers_injector() {
    let bundle = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
    let rendered = render(&["--set", &format!("tls.caBundle={bundle}")]);
    for (kind, hook) in webhooks(&rendered) {
        assert_eq!(hook["clientConfig"]["caBundle"], Value::String(bundle.clone()), "{kind}");
    }

    let rendered = render(&["--set", "certManager.enabled=true", "--set", &format!("tls.caBundle={bundle}")]);
    let certificate = rendered.get("Certificate");
    let certificate_name = str_of(&certificate["metadata"]["name"]);
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        let config = rendered.get(kind);
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            Value::String(format!("{NAMESPACE}/{certificate_name}")),
            "{kind}"
        );
        // cainjector owns the field: a value would fight it.
        assert_eq!(config["webhooks"][0]["clientConfig"]["caBundle"], Value::Null, "{kind}");
    }
    assert_eq!(certificate["spec"]["dnsNames"], yaml(&format!("[{}, {}]", SERVICE_NAMES[0], SERVICE_NAMES[1])));
    // cert-manager writes the Secret the StatefulSet mounts.
    let volumes = rendered.pod_spec().volumes.expect("volumes");
    let tls = volumes.iter().find_map(|v| v.secret.as_ref()).and_then(|s| s.secret_name.clone());
    assert_eq!(tls.as_deref(), certificate["spec"]["secretName"].as_str());
    let issuer = rendered.get("Issuer");
    assert_eq!(certificate["spec"]["issuerRef"]["name"], issuer["metadata"]["name"]);
    assert_eq!(issuer["spec"], yaml("selfSigned: {}"));

    // An Issuer of the operator's: the chart makes none.
    let rendered = render(&[
        "--set",
        "certManager.enabled=true",
        "--set",
        "certManager.issuerRef.name=corp-ca",
        "--set",
        "certManager.issuerRef.kind=ClusterIssuer",
    ]);
    assert!(rendered.all("Issuer").is_empty());
    assert_eq!(rendered.get("Certificate")["spec"]["issuerRef"], yaml("{name: corp-ca, kind: ClusterIssuer}"));
}

/// The ClusterRole's rules as (apiGroup, resource) pairs, and their verbs.
fn access(rendered: &Rendered) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let mut pairs = BTreeSet::new();
    let mut verbs = BTreeSet::new();
    for role in rendered.all("ClusterRole") {
        let role: ClusterRole = serde_json::from_value(role.clone()).expect("ClusterRole");
        for rule in role.rules.unwrap_or_default() {
            verbs.extend(rule.verbs);
            for group in rule.api_groups.unwrap_or_default() {
                for resource in rule.resources.clone().unwrap_or_default() {
                    pairs.insert((group.clone(), resource));
                }
            }
        }
    }
    (pairs, verbs)
}

/// Every (apiGroup, resource, verb) the ClusterRole grants.
fn grants(rendered: &Rendered) -> BTreeSet<(String, String, String)> {
    let mut grants = BTreeSet::new();
    for role in rendered.all("ClusterRole") {
        let role: ClusterRole = serde_json::from_value(role.clone()).expect("ClusterRole");
        for rule in role.rules.unwrap_or_default() {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        grants.insert((group.clone(), resource.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    grants
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter().map(|(g, r)| (g.to_string(), r.to_string())).collect()
}

const OWNERS: [(&str, &str); 6] = [
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("apps", "replicasets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
];

#[test]
fn the_cluster_role_grants_reading_what_the_policies_need_and_nothing_more() {
    let (granted, verbs) = access(&render(&["--set", "events.enabled=false"]));
    let mut expected = pairs(&OWNERS);
    expected.extend(pairs(&[("storage.k8s.io", "storageclasses")]));
    assert_eq!(granted, expected);
    assert_eq!(verbs, ["get", "list", "watch"].map(String::from).into_iter().collect());

    let (granted, _) = access(&render(&[
        "--set",
        "rbac.namespaces=true",
        "--set",
        "rbac.owners=false",
        "--set",
        "events.enabled=false",
    ]));
    assert_eq!(granted, pairs(&[("storage.k8s.io", "storageclasses"), ("", "namespaces")]));

    let nothing =
        render(&["--set", "rbac.owners=false", "--set", "rbac.storageClasses=false", "--set", "events.enabled=false"]);
    assert!(nothing.all("ClusterRole").is_empty() && nothing.all("ClusterRoleBinding").is_empty());

    // Events (on by default): exactly create and patch on events.k8s.io's
    // events, the only write; off, berth is told so.
    let rendered = render(&[]);
    let writes: BTreeSet<_> = grants(&rendered)
        .into_iter()
        .filter(|(_, _, verb)| !["get", "list", "watch"].contains(&verb.as_str()))
        .collect();
    let expected: BTreeSet<_> = ["create", "patch"]
        .map(|verb| ("events.k8s.io".to_owned(), "events".to_owned(), verb.to_owned()))
        .into_iter()
        .collect();
    assert_eq!(writes, expected);
    assert!(grants(&rendered).iter().all(|(group, resource, _)| resource != "events" || group == "events.k8s.io"));
    let args = |rendered: &Rendered| rendered.container().args.unwrap_or_default();
    assert!(!args(&rendered).contains(&"--no-events".to_owned()));
    let off = render(&["--set", "events.enabled=false"]);
    assert!(args(&off).contains(&"--no-events".to_owned()), "{:?}", args(&off));
    assert!(!access(&off).0.contains(&("events.k8s.io".to_owned(), "events".to_owned())));
    let only_events = render(&["--set", "rbac.owners=false", "--set", "rbac.storageClasses=false"]);
    assert_eq!(access(&only_events).0, pairs(&[("events.k8s.io", "events")]));

    // The binding is to the StatefulSet's service account.
    let rendered = render(&[]);
    let binding: ClusterRoleBinding = rendered.typed("ClusterRoleBinding");
    let pod = rendered.pod_spec();
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(Some(subject.name.clone()), pod.service_account_name);
    assert_eq!(subject.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(pod.automount_service_account_token, Some(true), "berth's client reads the token");
}

fn extra_policy_values(dir: &Path, selector: &str) -> PathBuf {
    let file = dir.join("values.yaml");
    std::fs::write(
        &file,
        format!(
            "policies:\n  extra:\n    - name: team-tolerations\n      plugin: builtin:tolerations\n      mode: mutate\n      \
             match:\n        namespaceSelector:\n          {selector}\n      settings:\n        tolerations: []\n"
        ),
    )
    .expect("values");
    file
}

#[test]
fn a_policy_that_selects_namespaces_by_label_needs_rbac_namespaces() {
    let dir = tempfile::tempdir().expect("tmp");
    let by_label = extra_policy_values(dir.path(), "matchLabels: {team: data}");
    let values = by_label.display().to_string();
    let err = template(&["-f", &values]).expect_err("refused without access to namespaces");
    assert!(err.contains("policy team-tolerations selects namespaces by the label team"), "{err}");
    assert!(err.contains("rbac.namespaces=true"), "{err}");
    let rendered = render(&["-f", &values, "--set", "rbac.namespaces=true"]);
    assert!(access(&rendered).0.contains(&(String::new(), "namespaces".to_owned())));

    // The name label is known without asking the API.
    let dir = tempfile::tempdir().expect("tmp");
    let by_name = extra_policy_values(
        dir.path(),
        "matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [data]}]",
    );
    render(&["-f", &by_name.display().to_string()]);
}

fn policies_of(text: &str) -> Vec<Value> {
    let config: Value = berth::yaml::from_str(text).expect("berth.yaml is YAML");
    config["policies"].as_array().expect("policies").clone()
}

#[test]
fn the_configmap_with_default_values_is_the_embedded_policy() {
    let rendered = render(&[]);
    let config: Value = berth::yaml::from_str(&rendered.berth_yaml()).expect("YAML");
    let keys: Vec<&str> = config.as_object().expect("mapping").keys().map(String::as_str).collect();
    assert_eq!(keys, ["policies"], "only policies: the audit log is configured by flags");
    // berth embeds exactly these files, in this order (config.rs).
    let mut embedded = Vec::new();
    for (path, text) in berth::config::DEFAULT_POLICY_FILES {
        let on_disk = std::fs::read_to_string(repo().join(path)).expect("policy file");
        assert_eq!(&on_disk, text, "{path}: the binary embeds what is on disk");
        embedded.extend(policies_of(text));
    }
    let from_chart = policies_of(&rendered.berth_yaml());
    let names = |policies: &[Value]| policies.iter().map(|p| str_of(&p["name"]).to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&from_chart), names(&embedded), "the same policies, in the same order");
    for (chart, file) in from_chart.iter().zip(&embedded) {
        assert_eq!(
            chart,
            file,
            "{}: the chart's policy differs from deploy/policies (see deploy/README.md, Policies)",
            str_of(&file["name"])
        );
    }
}

#[test]
fn values_set_the_registry_secret_node_label_taint_and_extra_policies() {
    let dir = tempfile::tempdir().expect("tmp");
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        r#"
policies:
  registry: registry.corp.example:5000
  registryProject: hub
  pullSecret: corp-pull
  failurePolicy: Ignore
  pulsar:
    nodeLabel: {key: example.com/pool, value: streaming}
    taint: {key: pool, value: streaming, effect: NoExecute}
    storageClassName: fast-local
  kafka:
    enabled: false
  extra:
    - name: extra-tolerations
      plugin: builtin:tolerations
      mode: mutate
      match: {operations: [CREATE], resources: [pods], objectSelector: {matchLabels: {team: data}}}
      settings:
        tolerations: [{key: data, operator: Exists, effect: NoSchedule}]
"#,
    )
    .expect("values");
    let rendered = render(&["-f", &values.display().to_string()]);
    let text = rendered.berth_yaml();
    for default in ["harbor.example.com", "regsecret", "local-storage", "node-role.kubernetes.io", "dedicated", "kafka"]
    {
        assert!(!text.contains(default), "{default} is still in berth.yaml:\n{text}");
    }
    let policies = policies_of(&text);
    assert_eq!(policies.len(), 9, "Pulsar's 8 and the extra one");
    assert_eq!(policies.last().map(|p| str_of(&p["name"])), Some("extra-tolerations"));
    assert!(policies[..8].iter().all(|p| p["failurePolicy"] == "Ignore"));

    // What berth does with it: the same evaluation as the server, on a
    // Pulsar broker from the real chart.
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, &text).expect("berth.yaml");
    let fixture = fixtures::get("pulsar", "012-pod-pulsar-broker-0.json");
    let cache = cache_dir().display().to_string();
    let (ok, stdout, stderr) = run(Command::new(binary()).args([
        "eval",
        "--cache-dir",
        &cache,
        "--config",
        &config.display().to_string(),
        &fixture.path.display().to_string(),
    ]));
    assert!(ok, "{stderr}");
    let answer = check(&fixture.review, stdout.as_bytes());
    assert!(answer.allowed(), "{}", answer.response);
    let spec = &answer.object["spec"];
    assert!(spec["tolerations"].as_array().expect("tolerations").contains(
        &serde_json::json!({"key": "pool", "operator": "Equal", "value": "streaming", "effect": "NoExecute"})
    ));
    assert_eq!(spec["nodeSelector"]["example.com/pool"], "streaming");
    assert_eq!(spec["imagePullSecrets"], serde_json::json!([{"name": "corp-pull"}]));
    let image = spec["containers"][0]["image"].as_str().expect("image");
    assert!(image.starts_with("registry.corp.example:5000/hub/apachepulsar/"), "{image}");
}

/// `berth certs` for the chart's Service, as certs/README.md says; the
/// directory it wrote.
fn berth_certs(dir: &Path) -> PathBuf {
    let out = dir.join("certs");
    let (ok, stdout, stderr) = run(Command::new(binary()).args([
        "certs",
        "--service",
        "berth",
        "--namespace",
        NAMESPACE,
        "--out",
        &out.display().to_string(),
    ]));
    assert!(ok, "berth certs: {stderr}");
    let ca = std::fs::read(out.join("ca.crt")).expect("ca.crt");
    assert_eq!(stdout.trim_end(), base64::engine::general_purpose::STANDARD.encode(&ca), "stdout is the caBundle");
    out
}

#[test]
fn berth_certs_writes_a_ca_and_renews_under_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = berth_certs(dir.path());
    let read = |name: &str| std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (ca, cert) = (read("ca.crt"), read("tls.crt"));
    for name in ["ca.key", "tls.key"] {
        assert!(String::from_utf8_lossy(&read(name)).starts_with("-----BEGIN PRIVATE KEY-----"), "{name}");
    }
    let args = |renew: bool| {
        let mut args = vec!["certs", "--service", "berth", "--namespace", NAMESPACE, "--san", "berth.example.com"];
        args.extend(["--out", out.to_str().expect("utf-8 path")]);
        if renew {
            args.push("--renew");
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let (ok, _, stderr) = run(Command::new(binary()).args(args(false)));
    assert!(!ok, "a second CA over the first must be refused");
    assert!(stderr.contains("already holds a CA"), "{stderr}");
    assert_eq!(read("ca.crt"), ca);

    let (ok, stdout, stderr) = run(Command::new(binary()).args(args(true)));
    assert!(ok, "{stderr}");
    assert_eq!(read("ca.crt"), ca, "--renew keeps the CA, so the caBundle stays valid");
    assert_eq!(stdout.trim_end(), base64::engine::general_purpose::STANDARD.encode(&ca));
    assert_ne!(read("tls.crt"), cert, "a new serving certificate");
    assert!(stderr.contains("berth.example.com"), "{stderr}");
}

/// The audit log outlives the pod: by default it is on a
/// PersistentVolumeClaim per replica (volumeClaimTemplates), kept when the
/// StatefulSet scales down or is deleted; an emptyDir only when asked for.
/// The HPA and the PodDisruptionBudget act on the StatefulSet's pods.
#[test]
fn the_audit_log_is_on_a_claim_per_replica_that_outlives_the_pod() {
    let audit_mount = |rendered: &Rendered| {
        let container = rendered.container();
        assert!(
            container.args.iter().flatten().any(|a| a == "--audit-log=/var/log/berth/audit.log"),
            "{:?}",
            container.args
        );
        container
            .volume_mounts
            .into_iter()
            .flatten()
            .find(|m| m.mount_path == "/var/log/berth")
            .expect("the audit mount")
    };
    let rendered = render(&[]);
    let mount = audit_mount(&rendered);
    let spec = rendered.workload().spec;
    assert!(
        spec.template.spec.iter().flat_map(|p| p.volumes.iter().flatten()).all(|v| v.name != mount.name),
        "the audit mount is not a pod volume (no emptyDir)"
    );
    let claim = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .find(|c| c.metadata.name.as_deref() == Some(mount.name.as_str()))
        .expect("the audit mount is backed by a PersistentVolumeClaim template");
    let claim_spec = claim.spec.clone().expect("claim spec");
    assert_eq!(claim_spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
    let size = claim_spec.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned());
    assert_eq!(size.map(|q| q.0), Some("1Gi".to_owned()));
    assert_eq!(claim_spec.storage_class_name, None, "the cluster's default class unless one is set");
    let retention = spec.persistent_volume_claim_retention_policy.expect("a retention policy");
    assert_eq!((retention.when_deleted.as_deref(), retention.when_scaled.as_deref()), (Some("Retain"), Some("Retain")));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert!(rendered.pod_spec().security_context.and_then(|s| s.fs_group).is_some(), "berth's group owns the volume");

    let classed =
        render(&["--set", "auditLog.persistence.storageClassName=fast", "--set", "auditLog.persistence.size=5Gi"]);
    let template = classed.workload().spec.volume_claim_templates.expect("claims");
    let claim_spec = template[0].spec.clone().expect("spec");
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    validate(&classed);

    // Without persistence: the emptyDir of chart 0.1, and no claim.
    let ephemeral = render(&["--set", "auditLog.persistence.enabled=false"]);
    let mount = audit_mount(&ephemeral);
    let volume = ephemeral.pod_spec().volumes.into_iter().flatten().find(|v| v.name == mount.name).expect("volume");
    assert!(volume.empty_dir.is_some());
    let spec = ephemeral.workload().spec;
    assert!(spec.volume_claim_templates.is_none() && spec.persistent_volume_claim_retention_policy.is_none());
    validate(&ephemeral);

    // The HPA scales the StatefulSet; the PDB covers its pods.
    let scaled = render(&["--set", "autoscaling.enabled=true"]);
    let hpa: HorizontalPodAutoscaler = scaled.typed("HorizontalPodAutoscaler");
    let target = hpa.spec.scale_target_ref;
    assert_eq!((target.kind.as_str(), target.name.as_str()), ("StatefulSet", "berth"));
    let pdb: PodDisruptionBudget = scaled.typed("PodDisruptionBudget");
    let selector = pdb.spec.and_then(|s| s.selector).and_then(|s| s.match_labels).expect("matchLabels");
    let labels = scaled.workload().spec.template.metadata.and_then(|m| m.labels).expect("pod labels");
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "{selector:?} ⊄ {labels:?}");
    validate(&scaled);
}

/// The StatefulSet's pod, mapped onto this machine: each volume a
/// directory, each argument naming a mount path rewritten to it.
struct LaidOut {
    args: Vec<String>,
    /// mount path -> host directory
    mounts: BTreeMap<String, PathBuf>,
    /// Directories the container may not write: its working directory,
    /// TMPDIR and HOME (the root filesystem is read-only).
    read_only: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

/// Lay the rendered StatefulSet out on disk: the ConfigMap's files, the TLS
/// Secret from `certs` (as `kubectl create secret generic` makes it from
/// `berth certs --out`), empty dirs for emptyDirs and for the claims of its
/// volumeClaimTemplates (a new volume is empty).
fn lay_out(rendered: &Rendered, certs: &Path) -> LaidOut {
    let dir = tempfile::tempdir().expect("tmp");
    let pod = rendered.pod_spec();
    let container = rendered.container();
    let config_map: ConfigMap = rendered.typed("ConfigMap");
    let mut mounts = BTreeMap::new();
    let claims: Vec<String> =
        rendered.workload().spec.volume_claim_templates.into_iter().flatten().filter_map(|c| c.metadata.name).collect();
    for mount in container.volume_mounts.clone().unwrap_or_default() {
        let host = dir.path().join(format!("volume-{}", mount.name));
        std::fs::create_dir_all(&host).expect("volume dir");
        let Some(volume) = pod.volumes.iter().flatten().find(|v| v.name == mount.name).cloned() else {
            assert!(claims.contains(&mount.name), "{}: every mount has its volume or claim", mount.name);
            mounts.insert(mount.mount_path.clone(), host);
            continue;
        };
        if let Some(source) = &volume.config_map {
            assert_eq!(Some(&source.name), config_map.metadata.name.as_ref(), "the chart's ConfigMap");
            for (file, content) in config_map.data.clone().unwrap_or_default() {
                std::fs::write(host.join(file), content).expect("config file");
            }
            assert_eq!(mount.read_only, Some(true));
        } else if volume.secret.is_some() {
            for file in ["tls.crt", "tls.key", "ca.crt"] {
                std::fs::copy(certs.join(file), host.join(file)).expect("certificate file");
            }
            assert_eq!(mount.read_only, Some(true));
        } else {
            assert!(volume.empty_dir.is_some(), "{}: configMap, secret, emptyDir or claim", volume.name);
        }
        mounts.insert(mount.mount_path.clone(), host);
    }
    let read_only = ["workdir", "tmp", "home"].map(|name| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).expect("dir");
        path
    });
    let args = container.args.clone().expect("args");
    LaidOut { args, mounts, read_only: read_only.to_vec(), dir }
}

impl LaidOut {
    /// The container's arguments with mount paths moved to their host
    /// directories, and the listeners on loopback and free ports (what the
    /// ports were is checked by the caller).
    fn host_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|arg| {
                if arg.starts_with("--listen=") {
                    return "--listen=127.0.0.1:0".to_owned();
                }
                if arg.starts_with("--metrics-listen=") {
                    return "--metrics-listen=127.0.0.1:0".to_owned();
                }
                let mut arg = arg.clone();
                for (path, host) in &self.mounts {
                    if let Some((flag, rest)) = arg.split_once(&format!("={path}")) {
                        arg = format!("{flag}={}{rest}", host.display());
                    }
                }
                arg
            })
            .collect()
    }

    fn host(&self, mount_path: &str) -> &Path {
        self.mounts.get(mount_path).unwrap_or_else(|| panic!("nothing is mounted at {mount_path}"))
    }

    /// The command: berth with the pod's arguments in an empty working
    /// directory, with an empty TMPDIR and HOME, and, where this machine
    /// allows a mount namespace, a read-only root with only the writable volumes
    /// writable. Elsewhere the three directories are made read-only.
    fn command(&self, writable: &[&Path]) -> Command {
        let [workdir, tmp, home] = [&self.read_only[0], &self.read_only[1], &self.read_only[2]];
        let mut command = if mount_namespaces_work() {
            let mut command = Command::new("unshare");
            let script = "set -e\n\
                 for d in $BERTH_WRITABLE; do mount --bind \"$d\" \"$d\"; done\n\
                 mount -o remount,bind,ro /\n\
                 for d in $BERTH_READ_ONLY; do mount --bind -o ro \"$d\" \"$d\"; done\n\
                 for d in / $BERTH_READ_ONLY; do\n\
                   if touch \"$d/.berth-write-probe\" 2>/dev/null; then echo \"$d is writable\" >&2; exit 97; fi\n\
                 done\n\
                 exec \"$@\"";
            command.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"]);
            command.env("BERTH_WRITABLE", join(writable)).env("BERTH_READ_ONLY", join(&[workdir, tmp, home]));
            command.arg(binary());
            eprintln!("berth runs with a read-only root (a mount namespace)");
            command
        } else {
            eprintln!("no mount namespace here: berth runs with a read-only working directory, TMPDIR and HOME");
            for dir in [workdir, tmp, home] {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
            }
            Command::new(binary())
        };
        command
            .args(self.host_args())
            .current_dir(workdir)
            .env("TMPDIR", tmp)
            .env("HOME", home)
            .env("BERTH_LOG", "info")
            .env_remove("BERTH_CACHE_DIR")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null());
        command
    }

    fn assert_nothing_written_outside_volumes(&self) {
        for dir in &self.read_only {
            let entries: Vec<_> = std::fs::read_dir(dir).expect("dir").flatten().map(|e| e.path()).collect();
            assert!(entries.is_empty(), "berth wrote outside its volumes: {entries:?}");
        }
    }
}

fn join(paths: &[&Path]) -> String {
    for path in paths {
        assert!(!path.display().to_string().contains(char::is_whitespace), "{}", path.display());
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
}

/// Whether this process may make a mount namespace with a read-only root
/// (root, or a system that grants it).
fn mount_namespaces_work() -> bool {
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -o remount,bind,ro / && ! touch /.berth-ro-probe",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Also drives the stand-in API while berth runs.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

/// berth started from the rendered StatefulSet, with what it runs against.
struct Started {
    server: Server,
    pod: LaidOut,
    rendered: Rendered,
    /// The cluster of the Pulsar fixtures, in place of the in-cluster API
    /// the pod would reach with its service account.
    api: FakeKubeApi,
    /// Drives the stand-in API; dropped last.
    _runtime: tokio::runtime::Runtime,
}

/// Render with the `berth certs` caBundle, lay the pod out and start berth
/// from it, against a stand-in Kubernetes API.
fn start_rendered(dir: &Path) -> Started {
    let certs = berth_certs(dir);
    let bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(certs.join("ca.crt")).expect("ca"));
    let rendered = render(&["--set", &format!("tls.caBundle={bundle}")]);
    for (kind, hook) in webhooks(&rendered) {
        assert_eq!(hook["clientConfig"]["caBundle"], Value::String(bundle.clone()), "{kind}");
    }
    let pod = lay_out(&rendered, &certs);
    let container = rendered.container();
    let security = container.security_context.clone().expect("securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let writable: Vec<&Path> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only != Some(true))
        .map(|m| pod.host(&m.mount_path))
        .collect();
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture("pulsar")).expect("the stand-in API");
    let mut command = pod.command(&writable);
    command.arg(format!("--kube-api={}", api.url)).arg(format!("--kube-ca={}", api.ca.display()));
    command.arg(format!("--kube-token-file={}", api.token_file.display()));
    let server_dir = tempfile::tempdir().expect("tmp");
    let server = Server::spawn_command(command, server_dir, certs.join("ca.crt"));
    Started { server, pod, rendered, api, _runtime: runtime }
}

/// (apiGroup, resource) of a request path: `/api/v1/namespaces`,
/// `/apis/apps/v1/namespaces/pulsar/statefulsets/pulsar-bookie`.
fn resource_of(path: &str) -> (String, String) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a Kubernetes API path: {path}"),
    };
    let resource = match rest {
        ["namespaces", _namespace, resource, ..] => resource,
        [resource, ..] => resource,
        [] => panic!("no resource in {path}"),
    };
    (group.to_owned(), (*resource).to_owned())
}

#[test]
fn the_statefulset_as_rendered_starts_read_only_and_answers_over_tls_for_the_service_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let Started { mut server, pod, rendered, api, _runtime } = start_rendered(dir.path());
    let container = rendered.container();

    // The listeners the chart asks for are the ones its probes, Service and
    // ServiceMonitor use.
    let ports: BTreeMap<String, i32> =
        container.ports.iter().flatten().map(|p| (p.name.clone().unwrap_or_default(), p.container_port)).collect();
    assert!(pod.args.contains(&format!("--listen=0.0.0.0:{}", ports["https"])), "{:?}", pod.args);
    assert!(pod.args.contains(&format!("--metrics-listen=0.0.0.0:{}", ports["metrics"])), "{:?}", pod.args);
    let probe = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        let get = probe.and_then(|p| p.http_get.clone()).expect("httpGet probe");
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        get.path.expect("path")
    };
    let (liveness, readiness) = (probe(container.liveness_probe.as_ref()), probe(container.readiness_probe.as_ref()));
    assert_eq!((liveness.as_str(), readiness.as_str()), ("/healthz", "/readyz"));

    let ca = server.ca.clone();
    runtime().block_on(async {
        for name in SERVICE_NAMES {
            let mut client = Client::connect_as(server.listen, &ca, Protocol::Http2, name)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for path in [&liveness, &readiness] {
                let (status, _) = client.get(path).await.expect("probe");
                assert_eq!(status, StatusCode::OK, "{path}");
            }
            // A Pulsar broker from the real chart, through the ConfigMap's policies.
            let fixture = fixtures::get("pulsar", "012-pod-pulsar-broker-0.json");
            let (status, body) = client.post("/mutate", fixture.body.clone()).await.expect("mutate");
            assert_eq!(status, StatusCode::OK);
            let answer = check(&fixture.review, &body);
            assert!(answer.allowed() && answer.patch.is_some(), "{}", answer.response);
            // Unmutated, it is refused, and the refusal is in the audit log.
            let (_, body) = client.post("/validate", fixture.body.clone()).await.expect("validate");
            assert!(!check(&fixture.review, &body).allowed());
        }
        // Trusted only through that CA, for those names: not for another.
        let err = Client::connect_as(server.listen, &ca, Protocol::Http2, "localhost").await.err();
        assert!(err.is_some(), "the certificate must not be valid for localhost");
    });

    let audit = pod.host("/var/log/berth").join("audit.log");
    let records = std::fs::read_to_string(&audit).unwrap_or_else(|e| panic!("{}: {e}", audit.display()));
    let denials = records.lines().filter(|l| l.contains("\"decision\":\"denied\"")).count();
    assert!(denials >= 2, "both refusals are recorded: {records}");
    let cache = pod.host("/var/cache/berth");
    assert!(std::fs::read_dir(cache).expect("cache").next().is_some(), "compiled plugins are cached in the emptyDir");

    // SIGTERM: drained and gone well within terminationGracePeriodSeconds.
    let grace = rendered.pod_spec().termination_grace_period_seconds;
    let drain = pod.args.iter().find_map(|a| a.strip_prefix("--drain-timeout=")).expect("--drain-timeout");
    let drain: u64 = drain.trim_end_matches('s').parse().expect("seconds");
    assert!(grace.is_some_and(|g| g as u64 > drain + 5), "grace {grace:?} must outlast preStop and a {drain}s drain");
    // What berth read and wrote of the cluster is what the ClusterRole
    // grants, and the ClusterRole grants nothing it did not use: the
    // policies' reads, and the denials' Events (written in the background).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !api.requests().iter().any(|r| r.method == "POST") {
        assert!(std::time::Instant::now() < deadline, "no Event for the denials: {:#?}", api.requests());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (granted, verbs) = access(&rendered);
    let used: BTreeSet<(String, String)> = api.requests().iter().map(|r| resource_of(r.path_only())).collect();
    assert_eq!(used, granted, "berth used {used:?}; the ClusterRole grants {granted:?}");
    let grants = grants(&rendered);
    for request in api.requests() {
        let (group, resource) = resource_of(request.path_only());
        let verb = match (request.method.as_str(), request.is_watch()) {
            ("GET", true) => "watch",
            ("GET", false) if request.path_only().ends_with(&format!("/{resource}")) => "list",
            ("GET", false) => "get",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            (other, _) => panic!("berth sent a {other}: {request:?}"),
        };
        assert!(
            grants.contains(&(group.clone(), resource.clone(), verb.to_owned())),
            "{verb} {group}/{resource} is not granted"
        );
    }
    assert!(api.requests().iter().any(|r| r.is_watch()) && verbs.contains("watch") && verbs.contains("list"));

    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(drain)).success());
    pod.assert_nothing_written_outside_volumes();
    drop(pod.dir);
}

#[test]
fn the_helm_test_hook_passes_against_the_rendered_statefulset() {
    let dir = tempfile::tempdir().expect("tmp");
    let Started { server, rendered, .. } = start_rendered(dir.path());
    let hook = rendered
        .all("Pod")
        .into_iter()
        .find(|p| p["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .expect("a helm test hook");
    let hook: Pod = serde_json::from_value(hook.clone()).expect("Pod");
    let spec = hook.spec.expect("spec");
    let container = &spec.containers[0];
    let mut env: BTreeMap<String, String> =
        container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
    // The hook trusts berth through ca.crt of berth's TLS Secret only.
    assert_eq!(env["CA"], "/etc/berth/tls/ca.crt");
    env.insert("CA".into(), server.ca.display().to_string());
    let url = env["URL"].clone();
    assert_eq!(url, format!("https://{}:443/mutate", SERVICE_NAMES[0]));
    // curl reaches the Service name at berth's address through its config
    // file; the script and its URL are the hook's own.
    let curl_home = dir.path().join("curl-home");
    std::fs::create_dir_all(&curl_home).expect("dir");
    std::fs::write(
        curl_home.join(".curlrc"),
        format!("connect-to = \"{}:443:127.0.0.1:{}\"\n", SERVICE_NAMES[0], server.listen.port()),
    )
    .expect(".curlrc");
    let command = container.command.clone().expect("command");
    let args = container.args.clone().expect("args");
    let (ok, stdout, stderr) =
        run(Command::new(&command[0]).args(&command[1..]).args(&args).envs(&env).env("CURL_HOME", &curl_home));
    assert!(ok, "the helm test script failed:\n{stdout}{stderr}");
    assert!(stdout.trim_end().ends_with("PASS"), "{stdout}");
    assert!(stdout.contains("harbor.example.com/library/library/busybox:1.36"), "{stdout}");

    // And it fails when the answer is not what it checks for: against a
    // berth whose registry is another, the expected image is not there.
    env.insert("EXPECT_IMAGE".into(), "elsewhere.example.com/library/busybox:1.36".into());
    let (ok, stdout, _) =
        run(Command::new(&command[0]).args(&command[1..]).args(&args).envs(&env).env("CURL_HOME", &curl_home));
    assert!(!ok && stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn the_manifests_are_generated_from_the_chart_and_up_to_date() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = repo().join("deploy/manifests/generate.sh");
    let (ok, stdout, stderr) =
        run(Command::new("bash").arg(&script).arg(dir.path()).env("BERTH_HELM", helm()).current_dir(repo()));
    assert!(ok, "{}: {stdout}{stderr}", script.display());
    let checked_in = repo().join("deploy/manifests");
    let mut generated: Vec<String> = std::fs::read_dir(dir.path())
        .expect("generated")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    assert!(!generated.is_empty());
    for name in &generated {
        let fresh = std::fs::read_to_string(dir.path().join(name)).expect("generated file");
        let old = std::fs::read_to_string(checked_in.join(name)).unwrap_or_default();
        assert!(
            fresh == old,
            "deploy/manifests/{name} is out of date with the chart: run `bash deploy/manifests/generate.sh`"
        );
        validate(&Rendered { objects: parse_documents(&fresh), text: fresh });
    }
    let mut present: Vec<String> = std::fs::read_dir(&checked_in)
        .expect("deploy/manifests")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    present.sort();
    assert_eq!(present, generated, "deploy/manifests holds exactly what generate.sh makes");
}

#[test]
fn the_grafana_dashboard_is_an_opt_in_configmap_for_grafanas_sidecar() {
    let dashboard_file = std::fs::read_to_string(repo().join("deploy/chart/dashboards/berth.json")).expect("dashboard");
    let default = render(&[]);
    assert_eq!(default.all("ConfigMap").len(), 1, "no dashboard unless asked for");

    let rendered = render(&["--set", "metrics.grafanaDashboard.enabled=true", "--set", "serviceMonitor.enabled=true"]);
    validate(&rendered);
    deserialize_all(&rendered);
    let dashboards: Vec<ConfigMap> = rendered
        .all("ConfigMap")
        .into_iter()
        .map(|o| serde_json::from_value(o.clone()).expect("a ConfigMap"))
        .filter(|m: &ConfigMap| m.metadata.labels.as_ref().is_some_and(|l| l.contains_key("grafana_dashboard")))
        .collect();
    let [dashboard] = dashboards.as_slice() else { panic!("one dashboard ConfigMap, rendered {}", dashboards.len()) };
    assert_eq!(dashboard.metadata.name.as_deref(), Some("berth-grafana-dashboard"));
    assert_eq!(dashboard.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(dashboard.metadata.labels.as_ref().expect("labels")["grafana_dashboard"], "1");
    let json = &dashboard.data.as_ref().expect("data")["berth.json"];
    assert_eq!(json.trim_end(), dashboard_file.trim_end(), "the chart's dashboard, verbatim");
    let parsed: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    assert_eq!(parsed["uid"], "berth-admission");
    // The ServiceMonitor keeps berth's `endpoint` label, which the
    // dashboard groups by.
    assert_eq!(rendered.get("ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"], true);

    // Another sidecar label, Grafana's namespace, a folder.
    let custom = render(&[
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "metrics.grafanaDashboard.label=dashboards",
        "--set",
        "metrics.grafanaDashboard.labelValue=berth",
        "--set",
        "metrics.grafanaDashboard.namespace=monitoring",
        "--set",
        "metrics.grafanaDashboard.annotations.grafana_folder=Admission",
    ]);
    validate(&custom);
    let map = custom.all("ConfigMap").into_iter().find(|o| o["metadata"]["labels"]["dashboards"] == "berth");
    let map = map.expect("the dashboard under the custom label");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Admission");
}

#[test]
fn berth_audit_in_the_pod_reads_the_log_the_pod_writes() {
    let rendered = render(&[]);
    let container = rendered.container();
    let args = container.args.expect("args");
    let written = args.iter().find_map(|a| a.strip_prefix("--audit-log=")).expect("--audit-log");
    let env = container.env.expect("env");
    let read = env.iter().find(|e| e.name == "BERTH_AUDIT_LOG").and_then(|e| e.value.as_deref());
    assert_eq!(read, Some(written), "`kubectl exec berth-0 -- berth audit` reads what berth serve writes");

    // And berth reads BERTH_AUDIT_LOG, as `kubectl exec` runs it there.
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("audit.log");
    std::fs::write(
        &log,
        r#"{"time":"2024-05-01T12:00:00Z","uid":"u","operation":"CREATE","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"n","user":"u","endpoint":"validate","policy":"p","decision":"denied","message":"no","allowed":false}
"#,
    )
    .expect("log");
    let output = Command::new(binary())
        .args(["audit", "report", "--html", "-"])
        .env("BERTH_AUDIT_LOG", &log)
        .current_dir(dir.path())
        .output()
        .expect("berth runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains(&log.display().to_string()),
        "the page names the log it read"
    );
}
