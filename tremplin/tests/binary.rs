//! The tremplin binary: flags, startup order (listener bound before TremplinReady),
//! TremplinReady failure, SIGTERM/SIGPWR. No LXD needed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crostini_host::events::Payload;
use crostini_host::{HostConfig, RunningHost};
use crostini_proto::vm_tools::tremplin as pb;

const BIN: &str = env!("CARGO_BIN_EXE_tremplin");

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("tremplin did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .arg("--log-stderr")
        .arg("--crash-address=none")
        .arg("--lsb-release=/nonexistent/lsb-release")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tremplin")
}

#[test]
fn missing_lxd_subnet_exits_non_zero_with_message() {
    let out = Command::new(BIN).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lxd_subnet"), "{err}");
}

#[test]
fn bad_flag_values_exit_non_zero() {
    for args in [
        vec!["-lxd_subnet", "10.0.0.1/24", "--listen", "bogus"],
        vec!["-lxd_subnet", "10.0.0.1/24", "-no-such-flag"],
    ] {
        let out = Command::new(BIN).args(&args).output().expect("run");
        assert!(!out.status.success(), "{args:?}");
    }
}

#[test]
fn tremplin_ready_failure_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("unix://{}", dir.path().join("t.sock").display());
    let host = format!("unix://{}", dir.path().join("nobody.sock").display());
    let mut child = spawn(&[
        "-lxd_subnet=10.0.0.1/24",
        "--listen",
        &listen,
        "--host-address",
        &host,
    ]);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert!(err.contains("TremplinReady failed"), "{err}");
}

/// Serves on `listen`; on TremplinReady the service must already answer; then `signal` stops
/// the process with exit status 0.
async fn serve_ready_then_signal(
    listen: String,
    signal: nix::sys::signal::Signal,
    subnet_flag: &[&str],
) {
    let host = RunningHost::start(HostConfig {
        tremplin_listener: Some("tcp://127.0.0.1:0".parse().expect("addr")),
        ..Default::default()
    })
    .await
    .expect("host");
    let host_address = host.tremplin_listener_address().expect("bound").to_string();
    let mut args: Vec<&str> = subnet_flag.to_vec();
    args.extend([
        "--listen",
        &listen,
        "--host-address",
        &host_address,
        "--feature",
        "a",
        "-feature=b",
    ]);
    let mut child = spawn(&args);
    let ready = host
        .wait_for(
            |e| matches!(e.payload, Payload::TremplinReady(_)),
            Duration::from_secs(20),
        )
        .await
        .expect("TremplinReady");
    assert!(ready.is_ok());
    // Cicerone connects back right away (it waits at most 5 s).
    let mut client =
        crostini_host::clients::tremplin(&listen.parse().expect("addr")).expect("client");
    let started = Instant::now();
    let info = client
        .get_debug_info(pb::GetDebugInfoRequest {})
        .await
        .expect("service answers as soon as TremplinReady arrives")
        .into_inner();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(info.debug_information, "LXD not running");
    let readies = host
        .events()
        .iter()
        .filter(|e| matches!(e.payload, Payload::TremplinReady(_)))
        .count();
    assert_eq!(readies, 1);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, signal).expect("signal");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{signal}: {status:?}");
    host.shutdown().await;
}

#[tokio::test]
async fn unix_listener_sigterm_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("unix://{}", dir.path().join("tremplin.sock").display());
    serve_ready_then_signal(
        listen,
        nix::sys::signal::Signal::SIGTERM,
        &["-lxd_subnet", "100.115.92.1/24"],
    )
    .await;
}

#[tokio::test]
async fn tcp_listener_sigpwr_exits_zero() {
    let listen = format!("tcp://127.0.0.1:{}", free_tcp_port());
    serve_ready_then_signal(
        listen,
        nix::sys::signal::Signal::SIGPWR,
        &["--lxd_subnet=100.115.92.1/24"],
    )
    .await;
}

/// Defect 12a: an LXD that exits at once makes the supervisor give up after 10 exits; StartLxd
/// must report FAILED then, not after the 120 s readiness limit.
#[tokio::test]
async fn crashing_lxd_reports_start_lxd_failed_when_the_supervisor_gives_up() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("fake-lxd");
    std::fs::write(&fake, "#!/bin/sh\necho 'fake lxd: crashing' >&2\nexit 3\n").expect("write");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let lxd_dir = dir.path().join("lxd");
    std::fs::create_dir_all(&lxd_dir).expect("mkdir");
    let host = RunningHost::start(HostConfig {
        tremplin_listener: Some("tcp://127.0.0.1:0".parse().expect("addr")),
        ..Default::default()
    })
    .await
    .expect("host");
    let host_address = host.tremplin_listener_address().expect("bound").to_string();
    let listen = format!("unix://{}", dir.path().join("tremplin.sock").display());
    let socket = format!("--lxd-socket={}", lxd_dir.join("unix.socket").display());
    let binary = format!("--lxd-binary={}", fake.display());
    let tokens = format!("--tokens-dir={}", dir.path().join("tokens").display());
    let mut child = spawn(&[
        "-lxd_subnet=10.0.0.1/24",
        "--listen",
        &listen,
        "--host-address",
        &host_address,
        &socket,
        &binary,
        "--lxd-args=--group root",
        &tokens,
    ]);
    host.wait_for(
        |e| matches!(e.payload, Payload::TremplinReady(_)),
        Duration::from_secs(20),
    )
    .await
    .expect("TremplinReady");
    let mut client =
        crostini_host::clients::tremplin(&listen.parse().expect("addr")).expect("client");
    let started = Instant::now();
    let r = client
        .start_lxd(pb::StartLxdRequest::default())
        .await
        .expect("StartLxd")
        .into_inner();
    assert_eq!(r.status, pb::start_lxd_response::Status::Starting as i32);
    let e = host
        .wait_for(
            |e| matches!(e.payload, Payload::UpdateStartLxdStatus(_)),
            Duration::from_secs(30),
        )
        .await
        .expect("a StartLxd status arrives");
    let elapsed = started.elapsed();
    let Payload::UpdateStartLxdStatus(p) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        p.status,
        pb::start_lxd_progress::Status::Failed as i32,
        "{p:?}"
    );
    assert!(p.failure_reason.contains("gave up"), "{}", p.failure_reason);
    assert!(
        elapsed < Duration::from_secs(15),
        "FAILED after {elapsed:?}"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    wait_exit(&mut child, Duration::from_secs(10));
    host.shutdown().await;
}
