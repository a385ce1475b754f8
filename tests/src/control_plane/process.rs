//! The control plane's processes, in one process group led by a watchdog.
//!
//! The shared control plane lives in a static, which is never dropped, and
//! a test may panic or `cargo test` be killed: the watchdog polls the test
//! process and, once it is gone, removes the test's network and kills the
//! whole group. Nothing is left behind whichever way the run ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

/// The bridge's range and loopback: what no proxy may carry.
pub const NO_PROXY: &str = "10.251.0.0/16,127.0.0.1,localhost";

/// A process group whose leader kills it when this test process is gone.
pub struct Group {
    pgid: i32,
    logs: PathBuf,
    _watchdog: Child,
}

impl Group {
    /// `cleanup` is a shell snippet the watchdog runs before the kill (it
    /// removes what cannot die with a process: network namespaces, links).
    /// `remove` is removed once the group is dead, by a process outside it.
    pub fn new(logs: &Path, cleanup: &str, remove: &Path) -> Group {
        let after = format!("setsid sh -c \"sleep 2; rm -rf '{}'\" </dev/null >/dev/null 2>&1 &", remove.display());
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done\n{cleanup}\n{after}\nkill -KILL 0\n",
            parent = std::process::id(),
        );
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("bash starts the control plane's watchdog");
        let pgid = i32::try_from(watchdog.id()).expect("a pid fits i32");
        Group { pgid, logs: logs.to_path_buf(), _watchdog: watchdog }
    }

    /// Starts `command` in the group, its output in `<logs>/<name>.log`.
    pub fn spawn(&self, name: &str, mut command: Command) -> Proc {
        let log = self.logs.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        // The test's own addresses are never reached through a proxy.
        let child = command
            .env("NO_PROXY", NO_PROXY)
            .env("no_proxy", NO_PROXY)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(self.pgid)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts ({command:?}): {e}"));
        Proc { name: name.to_string(), child, log }
    }
}

/// One process of the group.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("--- {} ({}) ---\n{}", self.name, self.log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
