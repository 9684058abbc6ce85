//! issue 9 #1 as a process: garcon under a 1,900-level directory tree in
//! `~/.local/share/applications`, with the tree churning, still publishes its list and acts on
//! SIGTERM within about a second (the old watcher kept a core busy for > 40 s, sent no list and
//! ignored SIGTERM). The `crostini-host` stand-in listens on a unix socket; never vsock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::{HostConfig, Payload, RunningHost};

const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const GARCON: &str = env!("CARGO_BIN_EXE_garcon");
const LEVELS: usize = 1900;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/garcon")
}

fn level(root: &Path, n: usize) -> PathBuf {
    (0..n).fold(root.to_path_buf(), |p, _| p.join("d"))
}

fn write_app(dir: &Path, id: &str) {
    std::fs::write(
        dir.join(format!("{id}.desktop")),
        format!("[Desktop Entry]\nType=Application\nName={id}\nExec=/bin/true\n"),
    )
    .expect("desktop file");
}

/// Creates and removes directories (and files) a few levels down until `stop` is set, so the
/// watcher keeps re-synchronising while the test signals garcon.
fn churn(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rounds = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let sub = dir.join(format!("churn{}", rounds % 4));
            let _ = std::fs::create_dir(&sub);
            let _ = std::fs::write(sub.join("c.desktop"), "x");
            let _ = std::fs::remove_file(sub.join("c.desktop"));
            let _ = std::fs::remove_dir(&sub);
            rounds += 1;
        }
        rounds
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_answered_within_a_second_under_a_1900_level_tree() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| sandbox.path().join(name);
    std::fs::copy(fixtures().join("token"), path("token")).expect("token fixture");
    let apps = path("home/.local/share/applications");
    std::fs::create_dir_all(level(&apps, LEVELS)).expect("deep tree");
    write_app(&level(&apps, 5), "at-depth-5");
    write_app(&level(&apps, 40), "at-depth-40");

    let host_address = Address::unix(path("host.sock"));
    let host = RunningHost::start(HostConfig {
        container_listener: Some(host_address.clone()),
        ..HostConfig::default()
    })
    .await
    .expect("host starts");
    host.register_container(TOKEN, "penguin");

    let log = path("garcon.log");
    let mut child = Command::new(GARCON)
        .args(["--server", "--allow_any_user", "--log-stderr", "--listen"])
        .arg(format!("unix://{}", path("garcon.sock").display()))
        .arg("--host-address")
        .arg(host_address.to_string())
        .arg("--token-file")
        .arg(path("token"))
        .args(["--sftp-server", "/bin/cat"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", path("home"))
        .env("USER", "tester")
        .env("XDG_DATA_DIRS", fixtures().join("data"))
        .env("XDG_DATA_HOME", path("home/.local/share"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/session")
        .env("RUST_LOG", "info")
        .current_dir(sandbox.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn garcon");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let list = host
        .wait_for(
            |e| e.payload.rpc() == "UpdateApplicationList",
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|err| panic!("no app list: {err}; log:\n{}", read_log()));
    let Payload::UpdateApplicationList(list) = &list.payload else {
        unreachable!()
    };
    let mut ids: Vec<&str> = list
        .application
        .iter()
        .map(|a| a.desktop_file_id.as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["d-d-d-d-d-at-depth-5", "garcon-process-test"]);
    assert!(
        read_log().contains("deeper than 32 levels"),
        "the depth cap is logged; log:\n{}",
        read_log()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(level(&apps, 3), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("garcon ignored SIGTERM for 10 s; log:\n{}", read_log());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let exit_time = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.join().expect("churn thread");
    eprintln!("garcon exited {exit_time:?} after SIGTERM ({rounds} churn rounds meanwhile)");
    assert_eq!(status.code(), Some(0), "log:\n{}", read_log());
    assert!(
        exit_time < Duration::from_secs(3),
        "exit took {exit_time:?} (want ~1 s); log:\n{}",
        read_log()
    );
}
