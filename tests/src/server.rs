//! Start berth as its own process, the way it runs in a cluster, and learn
//! its addresses and CA from its JSON log.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `berth serve`.
pub struct Server {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
    /// The CA that signed the serving certificate (the webhook's caBundle).
    pub ca: PathBuf,
    logs: Arc<Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
}

/// Where compiled plugins are cached across test processes.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/berth-test-cache")
}

/// A process's resident set size in KiB (`VmRSS`, Linux), or `None` if
/// there is no such process.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()
}

/// The berth binary cargo built for this package's suites: beside the
/// `deps/` directory the suite itself runs from.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<suite>");
    let binary = dir.join(format!("berth-e2e-server{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.exists(), "{} is missing: cargo builds it for the suites", binary.display());
    binary
}

pub struct ServerBuilder {
    args: Vec<String>,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    binary: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder { args: Vec::new(), tls: None, binary: None, cache_dir: None }
    }

    /// berth with its embedded default policy.
    pub fn start() -> Server {
        Self::builder().spawn()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Send a signal by name (TERM, HUP, KILL).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process has not exited (it may have crashed).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().expect("try_wait").is_none())
    }

    /// The process's resident set size in KiB (`VmRSS`, Linux), or `None`
    /// once it has exited.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Wait for the process to exit; its exit status.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("server is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "berth did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log events so far (JSON objects from `--log-format json`).
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Wait until a log event's message contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.logs().into_iter().find(|e| message(e).contains(needle)) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?} within {timeout:?}; logs: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's working directory (the default audit log is here).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Run the berth CLI (`berth audit ...`, say): its status, stdout, stderr.
    pub fn cli(args: &[&str]) -> (std::process::ExitStatus, String, String) {
        let output = Command::new(binary()).args(args).output().expect("berth runs");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn metrics_text(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://{}/metrics", self.metrics)])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn message(event: &Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or("")
}

impl ServerBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn config(self, path: &Path) -> Self {
        self.arg("--config").arg(path.display().to_string())
    }

    /// Read namespace labels from this stand-in Kubernetes API.
    pub fn kube_api(self, api: &crate::kube::FakeKubeApi) -> Self {
        self.arg("--kube-api")
            .arg(&api.url)
            .arg("--kube-ca")
            .arg(api.ca.display().to_string())
            .arg("--kube-token-file")
            .arg(api.token_file.display().to_string())
    }

    /// Run this berth binary instead of the suites' own [`binary`].
    pub fn binary(mut self, path: PathBuf) -> Self {
        self.binary = Some(path);
        self
    }

    /// Keep compiled plugins here instead of the suites' shared [`cache_dir`].
    pub fn cache_dir(mut self, path: PathBuf) -> Self {
        self.cache_dir = Some(path);
        self
    }

    /// Serve this certificate instead of a generated one: `(ca, cert, key)`.
    pub fn tls_files(mut self, ca: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        self.tls = Some((ca, cert, key));
        self
    }

    /// Run berth expecting it to stop by itself (a configuration that does
    /// not load, say): its exit status and everything it wrote to stderr.
    pub fn run_to_exit(self) -> (std::process::ExitStatus, String) {
        let (mut command, _dir, _ca) = self.command();
        let output = command.stderr(Stdio::piped()).output().expect("berth runs");
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn command(self) -> (Command, tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(self.binary.clone().unwrap_or_else(binary));
        command
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--watch-interval", "100ms"])
            .arg("--cache-dir")
            .arg(self.cache_dir.clone().unwrap_or_else(cache_dir))
            .env("BERTH_LOG", "info")
            // Hermetic: never the in-cluster API of whatever runs the tests.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .current_dir(dir.path());
        let ca = match &self.tls {
            Some((ca, cert, key)) => {
                command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
                ca.clone()
            }
            None => {
                let tls_dir = dir.path().join("tls");
                command.arg("--tls-dir").arg(&tls_dir);
                tls_dir.join("ca.crt")
            }
        };
        command.args(&self.args).stdout(Stdio::null());
        (command, dir, ca)
    }

    /// Start berth and wait until it is ready (its policies loaded).
    pub fn spawn(self) -> Server {
        self.spawn_until("ready")
    }

    /// Start berth and return as soon as it listens, before it is ready.
    pub fn spawn_listening(self) -> Server {
        self.spawn_until("listening")
    }

    fn spawn_until(self, event: &str) -> Server {
        let (command, dir, ca) = self.command();
        Server::spawn_prepared(command, dir, ca, event)
    }
}

impl Server {
    /// Start berth from a command put together elsewhere (a Deployment's
    /// arguments, say), which must include `--log-format json`, and wait
    /// until it is ready. `ca` is the CA its clients trust; `dir` lives as
    /// long as the server.
    pub fn spawn_command(command: Command, dir: tempfile::TempDir, ca: PathBuf) -> Server {
        Server::spawn_prepared(command, dir, ca, "ready")
    }

    fn spawn_prepared(mut command: Command, dir: tempfile::TempDir, ca: PathBuf, event: &str) -> Server {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("berth starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let event =
                    serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({"fields": {"message": line}}));
                sink.lock().expect("log lock").push(event);
            }
        });
        let mut server = Server {
            child: Some(child),
            listen: "0.0.0.0:0".parse().expect("addr"),
            metrics: "0.0.0.0:0".parse().expect("addr"),
            ca,
            logs,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(ready) = server.logs().iter().find(|e| message(e) == event) {
                server.listen = ready["fields"]["listen"].as_str().expect("listen field").parse().expect("listen addr");
                server.metrics =
                    ready["fields"]["metrics"].as_str().expect("metrics field").parse().expect("metrics addr");
                return server;
            }
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("berth exited with {status} before it was ready; logs: {:#?}", server.logs());
            }
            assert!(Instant::now() < deadline, "berth did not log {event:?} within 60s; logs: {:#?}", server.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
