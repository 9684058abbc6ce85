//! Shared helpers for tests that run the daemons as processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A workspace binary built next to this test (`cargo build --workspace --bins` builds them).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the daemons first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A daemon process that is killed when the test ends, with its stderr kept in a file.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    pub stderr_path: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &str, args: &[String], log_dir: &Path) -> Daemon {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(workspace_bin(name))
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            stderr_path,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill() on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; stderr:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a binary to completion with a timeout; returns (status, stderr).
pub fn run_to_exit(name: &str, args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut daemon = Daemon::spawn(name, &argv, dir.path());
    let status = daemon.wait_exit(timeout);
    (status, daemon.stderr())
}
