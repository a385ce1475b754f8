//! Shipping a plugin into the cluster (issue 16 §6): the chart's
//! `plugins.images` puts an OCI image's files at /plugins/NAME/ in berth's
//! pod, through a Kubernetes image volume or an init container that copies
//! them into an emptyDir, and `policies.extra` names the file with its
//! sha256 pin. Rendered by real `helm template`, validated by
//! kubernetes-validate (strict) and k8s-openapi, and the rendered berth.yaml
//! loaded with the plugin file where the pod would see it.

use crate::deploy::{Rendered, deserialize_all, helm, render, run, template, validate, validate_for};
use berth::cluster::Cluster;
use berth::config::{Config, Source};
use berth::policy::{PolicySet, require_pinned};
use berth::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A real component: the bundled tolerations plugin, as a file.
fn component() -> &'static [u8] {
    berth::builtin::get("tolerations").expect("the bundled tolerations plugin")
}

fn values(dir: &Path, mode: &str, sha256: &str) -> PathBuf {
    let file = dir.join(format!("values-{mode}.yaml"));
    let text = format!(
        "imagePullSecrets: [{{name: harbor}}]\n\
         plugins:\n  images:\n    - name: dedicated\n      image: harbor.example.com/berth-plugins/dedicated:1.0.0\n      mode: {mode}\n\
         policies:\n  extra:\n    - name: dedicated-tolerations\n      plugin: /plugins/dedicated/policy.wasm\n      sha256: {sha256}\n      mode: mutate\n      match: {{resources: [pods], objectSelector: {{matchLabels: {{team: dedicated}}}}}}\n      settings:\n        tolerations: [{{key: dedicated, operator: Equal, value: team, effect: NoSchedule}}]\n"
    );
    std::fs::write(&file, text).expect("values");
    file
}

/// The rendered berth.yaml, loaded as berth in the pod loads it, with
/// /plugins/dedicated/ holding `wasm`.
fn load(rendered: &Rendered, wasm: &[u8]) -> Result<PolicySet, String> {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("plugins/dedicated")).expect("dir");
    std::fs::write(dir.path().join("plugins/dedicated/policy.wasm"), wasm).expect("wasm");
    let text = rendered.berth_yaml().replace("/plugins/", &format!("{}/plugins/", dir.path().display()));
    let config = Config::parse(&text, "berth.yaml").map_err(|e| e.to_string())?;
    let sources = [Source { config, base_dir: PathBuf::new(), origin: "berth.yaml".into() }];
    // The chart runs berth with --require-pinned when it ships plugin images.
    require_pinned(&sources).map_err(|e| e.to_string())?;
    let runtime =
        Runtime::new(RuntimeOptions { cache: ArtifactCache::at(berth_e2e::server::cache_dir()), ..Default::default() })
            .expect("runtime");
    PolicySet::load(&runtime, &sources, Cluster::missing_context()).map_err(|e| berth::error_chain(&e))
}

#[test]
fn a_plugin_from_an_image_renders_validates_and_loads_with_its_pin_in_both_modes() {
    let dir = tempfile::tempdir().expect("tmp");
    let pin = hex::encode(sha2::Sha256::digest(component()));
    for mode in ["volume", "initContainer"] {
        let file = values(dir.path(), mode, &pin).display().to_string();
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chart");
        let (ok, stdout, stderr) = run(Command::new(helm()).args(["lint", "--strict"]).arg(&chart).args(["-f", &file]));
        assert!(ok && stdout.contains("0 chart(s) failed"), "helm lint --strict ({mode}):\n{stdout}{stderr}");
        let rendered = render(&["-f", &file]);
        // An image volume is a field of Kubernetes 1.31+ (the chart fails
        // below that); an init container works from 1.30.
        if mode == "volume" {
            validate_for(&rendered, ["1.33.0", "1.37.0"]);
        } else {
            validate(&rendered);
        }
        deserialize_all(&rendered);

        let pod = rendered.pod_spec();
        let container = rendered.container();
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/plugins/dedicated")
            .expect("the plugin's files at /plugins/dedicated");
        assert_eq!(mount.read_only, Some(true), "{mode}: berth only reads its plugins");
        assert!(container.args.iter().flatten().any(|a| a == "--require-pinned"), "{mode}: {:?}", container.args);
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).expect("the plugin volume");
        let image = "harbor.example.com/berth-plugins/dedicated:1.0.0";
        match mode {
            "volume" => {
                let source = volume.image.as_ref().expect("an image volume");
                assert_eq!(source.reference.as_deref(), Some(image));
                assert_eq!(source.pull_policy.as_deref(), Some("IfNotPresent"));
                assert!(pod.init_containers.is_none(), "nothing to copy");
            }
            _ => {
                assert!(volume.empty_dir.is_some(), "copied into an emptyDir");
                let inits = pod.init_containers.clone().expect("an init container");
                let [init] = inits.as_slice() else { panic!("one init container: {inits:?}") };
                assert_eq!(init.image.as_deref(), Some(image), "it runs the plugin's own image");
                assert_eq!(
                    init.command.clone().expect("command"),
                    ["/bin/busybox", "cp", "/policy.wasm", "/plugins/dedicated/"],
                    "the image's static busybox copies the file"
                );
                let out = init.volume_mounts.iter().flatten().find(|m| m.name == mount.name).expect("mount");
                assert_eq!((out.mount_path.as_str(), out.read_only), ("/plugins/dedicated", None));
                let security = init.security_context.clone().expect("securityContext");
                assert_eq!(security.read_only_root_filesystem, Some(true));
                assert_eq!(security.allow_privilege_escalation, Some(false));
            }
        }
        assert_eq!(pod.image_pull_secrets.expect("pull secrets")[0].name, "harbor", "the image comes from Harbor");

        // The pin: the file as shipped loads; another file is refused.
        let berth_yaml = rendered.berth_yaml();
        assert!(berth_yaml.contains(&format!("sha256: {pin}")), "{berth_yaml}");
        let set = load(&rendered, component()).unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(set.policies().iter().any(|p| &*p.name == "dedicated-tolerations"));
        let other = berth::builtin::get("pull-secrets").expect("another plugin");
        let err = load(&rendered, other).expect_err("a file with another digest loads");
        assert!(err.contains(&format!("but the policy pins {pin}")), "{mode}: {err}");
    }
}

#[test]
fn a_plugin_image_without_its_pin_or_on_an_old_cluster_is_refused_at_render() {
    let dir = tempfile::tempdir().expect("tmp");
    let unpinned = values(dir.path(), "initContainer", "\"\"");
    let text = std::fs::read_to_string(&unpinned).expect("values").replace("      sha256: \"\"\n", "");
    std::fs::write(&unpinned, text).expect("values");
    let err = template(&["-f", &unpinned.display().to_string()]).expect_err("an unpinned plugin renders");
    assert!(
        err.contains("policy dedicated-tolerations: plugin /plugins/dedicated/policy.wasm comes from a plugin image and has no sha256 pin"),
        "{err}"
    );
    let pinned = values(dir.path(), "volume", &"ab".repeat(32));
    let err = template(&["-f", &pinned.display().to_string(), "--kube-version", "1.30.4"]).expect_err("renders");
    assert!(err.contains("mode volume needs Kubernetes 1.31+") && err.contains("initContainer"), "{err}");
    let err = template(&["--set", "plugins.images[0].name=Bad_Name", "--set", "plugins.images[0].image=x"])
        .expect_err("renders");
    assert!(err.contains("a lowercase DNS label"), "{err}");
}
