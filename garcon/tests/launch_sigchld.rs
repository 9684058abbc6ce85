//! garcon ignores SIGCHLD (auto-reaping). Launched programs must still start with default
//! dispositions and an empty signal mask, and nothing may be left for garcon to reap.
//! Its own test binary: changing signal dispositions is process-wide.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use garcon::desktop::XdgDirs;
use garcon::launch::{LaunchRequest, Launcher};
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};

#[test]
fn launched_program_gets_default_signals_even_when_garcon_ignores_sigchld() {
    // SAFETY: setting SIG_IGN installs no handler code; this binary has a single test.
    unsafe {
        signal::signal(Signal::SIGCHLD, SigHandler::SigIgn).unwrap();
        signal::signal(Signal::SIGUSR1, SigHandler::SigIgn).unwrap();
        signal::signal(Signal::SIGHUP, SigHandler::SigIgn).unwrap();
    }
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGUSR2);
    signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/launch/record-launch.sh")
        .canonicalize()
        .unwrap();
    let apps = dir.path().join("share/applications");
    fs::create_dir_all(&apps).unwrap();
    fs::write(
        apps.join("rec.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName=R\nExec={} %f\n",
            script.display()
        ),
    )
    .unwrap();
    let launcher = Launcher {
        xdg: XdgDirs::from_data_dirs(vec![dir.path().join("share")]),
        env: std::env::vars_os().collect(),
        startup_notify: false,
    };
    let out: PathBuf = dir.path().join("out");
    let launched = launcher
        .launch(&LaunchRequest {
            desktop_file_id: "rec".into(),
            files: vec![out.display().to_string()],
            ..LaunchRequest::default()
        })
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while !out.join("done").exists() {
        assert!(Instant::now() < deadline, "launched program never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = fs::read_to_string(out.join("status")).unwrap();
    assert!(status.contains("SigIgn:\t0000000000000000"), "{status}");
    assert!(status.contains("SigBlk:\t0000000000000000"), "{status}");
    let pid: u32 = fs::read_to_string(out.join("done"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, launched.pid);
    // No child of ours is left (neither the intermediate nor the program).
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", std::process::id()))
        .unwrap_or_default();
    assert!(
        !children
            .split_whitespace()
            .any(|c| c == launched.pid.to_string()),
        "the program must not be garcon's child: {children}"
    );
}
