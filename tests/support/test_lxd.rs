//! The test suite's own LXD daemon as the Rust real-LXD tests find it: started or adopted by
//! `tests/lxd/ensure-lxd.sh --tests`, with its own LXD_DIR, socket, storage pool and network
//! namespace, so that the tests never touch, restart or depend on the machine's LXD
//! (`/var/lib/lxd`, which `./demo.sh` uses). Shared by the tremplin, crostini-lxd and end-to-end
//! tests (included with `#[path]`, so it uses std only).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The machine's LXD socket: the tests must never use it.
pub const SYSTEM_LXD_SOCKET: &str = "/var/lib/lxd/unix.socket";
/// Where the tests' LXD logs (`--logfile` of tremplin's `--lxd-args` in the kill-LXD test too).
pub const LOG: &str = "/var/log/crostini-test-lxd.log";

/// The repository root: the nearest ancestor of this crate holding `tests/lxd/ensure-lxd.sh`.
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        if dir.join("tests/lxd/ensure-lxd.sh").exists() {
            return dir;
        }
        assert!(
            dir.pop(),
            "no tests/lxd/ensure-lxd.sh above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

/// A script of the real-LXD harness (`tests/lxd/<name>`).
pub fn script(name: &str) -> PathBuf {
    repo_root().join("tests/lxd").join(name)
}

/// Runs `ensure-lxd.sh --tests` once per test binary and returns the tests' LXD socket.
pub fn socket() -> PathBuf {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let path = script("ensure-lxd.sh");
            let out = Command::new(&path)
                .arg("--tests")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
            assert!(
                out.status.success(),
                "{} --tests failed ({}):\n{}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let socket = PathBuf::from(stdout.trim().lines().last().unwrap_or(""));
            assert_not_system_socket(&socket);
            socket
        })
        .clone()
}

/// Panics when `socket` is (or resolves to) the machine's LXD socket.
pub fn assert_not_system_socket(socket: &Path) {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    assert!(
        socket.is_absolute() && resolve(socket) != resolve(Path::new(SYSTEM_LXD_SOCKET)),
        "the tests' LXD socket {:?} is the machine's LXD ({SYSTEM_LXD_SOCKET})",
        socket
    );
}

/// The tests' LXD_DIR: the directory of their socket.
pub fn lxd_dir() -> PathBuf {
    socket().parent().expect("socket directory").to_path_buf()
}

/// `lxc` talking to the tests' LXD.
pub fn lxc() -> Command {
    let mut c = Command::new("lxc");
    c.env("LXD_DIR", lxd_dir());
    c
}

/// `program` run inside the tests' LXD's network namespace (`tests/lxd/netns.sh exec`), e.g. an
/// image server on 127.0.0.1 that this LXD must reach. The child's pid is the program's.
pub fn in_netns(program: &str) -> Command {
    let mut c = Command::new(script("netns.sh"));
    c.arg("exec").arg(program);
    c
}

/// `lxc` talking to the tests' LXD from inside its network namespace: for `lxc` commands that
/// read a test image server themselves (`lxc remote add`, `lxc launch remote:alias`).
pub fn lxc_in_netns() -> Command {
    let mut c = in_netns("lxc");
    c.env("LXD_DIR", lxd_dir());
    c
}

/// The LXD_DIR process `pid` runs with (LXD's default /var/lib/lxd when it has none).
pub fn pid_lxd_dir(pid: i32) -> Option<PathBuf> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let dir = env
        .rsplit(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"LXD_DIR="))
        .map(|v| PathBuf::from(String::from_utf8_lossy(v).into_owned()))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/var/lib/lxd"));
    Some(std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// True when process `pid` runs with the tests' LXD_DIR (the tests' own daemon, never the
/// machine's).
pub fn is_tests_process(pid: i32) -> bool {
    let ours = lxd_dir();
    let ours = std::fs::canonicalize(&ours).unwrap_or(ours);
    pid_lxd_dir(pid).is_some_and(|d| d == ours)
}

/// Removes the tests' LXD's cached simplestreams index for `url`
/// (`$LXD_DIR/cache/<sha256(url)>`, kept an hour; the URL of a test server never comes back).
pub fn forget_index(url: &str) {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", url])
        .output()
    {
        let digest = String::from_utf8_lossy(&out.stdout);
        if let Some(digest) = digest.split_whitespace().next() {
            if digest.len() == 64 {
                let _ = std::fs::remove_dir_all(lxd_dir().join("cache").join(digest));
            }
        }
    }
}
