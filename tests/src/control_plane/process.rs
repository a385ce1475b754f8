//! The control plane's processes, in one process group, and a watchdog
//! outside it.
//!
//! The shared control plane lives in a static, which is never dropped, and
//! a test may panic or `cargo test` be killed: the watchdog polls the test
//! process and, once it is gone, removes the test's network, kills the
//! whole group, and then removes the group's files. Being in a group of its
//! own, it outlives the kill (and a Ctrl-C sent to the test's group).
//! Nothing is left behind whichever way the run ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

/// In the removed directory: directories made outside it (mount points of
/// host pods), a line each, parents first; removed if still empty.
pub const CREATED_DIRS: &str = "created-dirs";

/// The bridge's range and loopback: what no proxy may carry.
pub const NO_PROXY: &str = "10.251.0.0/16,127.0.0.1,localhost";

/// A process group that a watchdog kills when this test process is gone.
pub struct Group {
    pgid: i32,
    logs: PathBuf,
    _leader: Child,
    _watchdog: Child,
}

impl Group {
    /// `cleanup` is a shell snippet the watchdog runs before the kill (it
    /// removes what cannot die with a process: network namespaces, links).
    /// `remove` is removed once the group is dead, after the empty
    /// directories listed in its [`CREATED_DIRS`] file.
    pub fn new(logs: &Path, cleanup: &str, remove: &Path) -> Group {
        let quiet = |command: &mut Command| {
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
        };
        // The group's leader does nothing but keep the group's id alive.
        let mut leader = Command::new("sleep");
        leader.arg("infinity");
        quiet(&mut leader);
        let leader = leader.spawn().expect("sleep leads the control plane's process group");
        let pgid = i32::try_from(leader.id()).expect("a pid fits i32");
        let remove = remove.display();
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done\n{cleanup}\nkill -KILL -- -{pgid}\nsleep 1\n\
             tac '{remove}/{CREATED_DIRS}' 2>/dev/null | while read -r d; do rmdir \"$d\" 2>/dev/null; done\n\
             rm -rf '{remove}'\n",
            parent = std::process::id(),
        );
        let mut watchdog = Command::new("bash");
        watchdog.arg("-c").arg(script);
        quiet(&mut watchdog);
        let watchdog = watchdog.spawn().expect("bash starts the control plane's watchdog");
        Group { pgid, logs: logs.to_path_buf(), _leader: leader, _watchdog: watchdog }
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
