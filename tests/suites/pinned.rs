//! `--require-pinned`: a plugin file without a `sha256` pin is refused when
//! berth starts, on every configuration reload, and by `berth eval`; the
//! message names the policy and gives the line that pins it.

use berth_e2e::admission::check;
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures::{self, Fixture};
use berth_e2e::server::{Server, cache_dir};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn bookie() -> Fixture {
    fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json")
}

/// The tolerations plugin as a file beside the configuration, and its digest.
fn plugin_file(dir: &Path) -> String {
    let built = Path::new(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_tolerations.wasm");
    let wasm = std::fs::read(&built).unwrap_or_else(|err| panic!("{}: {err}", built.display()));
    std::fs::write(dir.join("tolerations.wasm"), &wasm).expect("copy the plugin");
    hex::encode(sha2::Sha256::digest(&wasm))
}

/// One policy running `tolerations.wasm` from the configuration's directory,
/// pinned or not, and one bundled policy that needs no pin.
fn config(value: &str, pin: Option<&str>) -> String {
    let pin = pin.map(|sha| format!("    sha256: {sha}\n")).unwrap_or_default();
    format!(
        "policies:\n  - name: from-file\n    plugin: tolerations.wasm\n{pin}    mode: mutate\n    match:\n      resources: [pods]\n    settings:\n      tolerations:\n        - {{key: dedicated, operator: Equal, value: {value}, effect: NoSchedule}}\n  - name: bundled\n    plugin: builtin:tolerations\n    mode: mutate\n    settings:\n      tolerations:\n        - {{key: bundled, operator: Exists, effect: NoSchedule}}\n"
    )
}

fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn toleration_value(server: &Server) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let (_, body) = client.post("/mutate", bookie().body).await.expect("mutate");
        let answer = check(&bookie().review, &body);
        answer.object["spec"]["tolerations"][2]["value"].as_str().unwrap_or_default().to_owned()
    })
}

/// What the refusal says: the policy, the flag, and the pin to add.
fn assert_explains(message: &str, digest: &str) {
    assert!(message.contains("policy \"from-file\""), "{message}");
    assert!(message.contains("no sha256 pin") && message.contains("--require-pinned"), "{message}");
    assert!(message.contains(&format!("sha256: {digest}")), "{message}");
}

#[test]
fn an_unpinned_plugin_file_stops_berth_at_start_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let digest = plugin_file(dir.path());
    let path = dir.path().join("berth.yaml");
    std::fs::write(&path, config("first", None)).expect("config");
    let (status, stderr) = Server::builder().config(&path).arg("--require-pinned").run_to_exit();
    assert!(!status.success(), "{stderr}");
    assert_explains(&stderr, &digest);
    assert!(stderr.contains(&path.display().to_string()), "the file is named: {stderr}");

    // Pinned, it serves; the bundled policy needs no pin.
    std::fs::write(&path, config("first", Some(&digest))).expect("config");
    let server = Server::builder().config(&path).arg("--require-pinned").spawn();
    assert_eq!(toleration_value(&server), "first");
}

#[test]
fn a_reload_to_an_unpinned_plugin_file_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let digest = plugin_file(dir.path());
    let path = dir.path().join("berth.yaml");
    std::fs::write(&path, config("first", Some(&digest))).expect("config");
    let server = Server::builder().config(&path).arg("--require-pinned").spawn();
    assert_eq!(toleration_value(&server), "first");

    replace_file(&path, &config("second", None));
    let refused = server.wait_for_log("new configuration refused", Duration::from_secs(10));
    assert_explains(refused["fields"]["message"].as_str().unwrap_or_default(), &digest);
    assert_eq!(toleration_value(&server), "first", "the pinned configuration keeps serving");

    replace_file(&path, &config("third", Some(&digest)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while toleration_value(&server) != "third" {
        assert!(Instant::now() < deadline, "the pinned configuration never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn eval_refuses_an_unpinned_plugin_file_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let digest = plugin_file(dir.path());
    let path: PathBuf = dir.path().join("berth.yaml");
    let review = bookie().path.display().to_string();
    let cache = cache_dir().display().to_string();
    let eval = |yaml: String| {
        std::fs::write(&path, yaml).expect("config");
        let config = path.display().to_string();
        Server::cli(&["eval", "--require-pinned", "--cache-dir", &cache, "--config", &config, &review])
    };
    let (status, _, stderr) = eval(config("first", None));
    assert!(!status.success(), "{stderr}");
    assert_explains(&stderr, &digest);
    let (status, stdout, stderr) = eval(config("first", Some(&digest)));
    assert!(status.success(), "{stderr}");
    assert!(check(&bookie().review, stdout.as_bytes()).allowed(), "{stdout}");
}
