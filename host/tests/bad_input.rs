//! Bad addresses and an unreachable host give a clear error and a non-zero exit, never a panic;
//! garcon retries an unreachable host (the spec's recommended deviation) and succeeds once it
//! appears.

mod support;

use std::time::Duration;

use crostini_common::Address;
use crostini_host::{HostConfig, Payload, RunningHost};
use support::{run_to_exit, Daemon};

const WAIT: Duration = Duration::from_secs(30);

fn assert_clear_failure(name: &str, status: std::process::ExitStatus, stderr: &str, needle: &str) {
    assert!(!status.success(), "{name} must fail; stderr:\n{stderr}");
    assert!(
        status.code().is_some(),
        "{name} died of a signal; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
    assert!(
        stderr.contains(needle),
        "{name} stderr lacks {needle:?}:\n{stderr}"
    );
}

#[test]
fn malformed_addresses_name_the_accepted_forms() {
    for (name, flag) in [
        ("tremplin", "--listen"),
        ("tremplin", "--host-address"),
        ("garcon", "--host-address"),
        ("garcon", "--listen"),
    ] {
        let mut args = vec![flag, "vsock://host:1"];
        if name == "tremplin" {
            args.extend(["--lxd_subnet", "100.115.92.1/24"]);
        } else {
            args.extend(["--server", "--allow_any_user"]);
        }
        let (status, stderr) = run_to_exit(name, &args, WAIT);
        assert_clear_failure(name, status, &stderr, "vsock://CID:PORT");
    }
}

#[test]
fn tremplin_exits_non_zero_when_the_host_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Address::unix(dir.path().join("nobody-listens.sock")).to_string();
    let listen = Address::unix(dir.path().join("tremplin.sock")).to_string();
    let (status, stderr) = run_to_exit(
        "tremplin",
        &[
            "--listen",
            &listen,
            "--host-address",
            &host,
            "--lxd_subnet",
            "100.115.92.1/24",
        ],
        Duration::from_secs(90),
    );
    assert_clear_failure("tremplin", status, &stderr, "nobody-listens.sock");
}

#[test]
fn tremplin_requires_lxd_subnet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = Address::unix(dir.path().join("tremplin.sock")).to_string();
    let (status, stderr) = run_to_exit("tremplin", &["--listen", &listen], WAIT);
    assert_clear_failure("tremplin", status, &stderr, "lxd_subnet");
}

#[tokio::test]
async fn garcon_retries_container_ready_until_the_host_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "retry-token").expect("token");
    let host_address = Address::unix(dir.path().join("late-host.sock"));
    let args: Vec<String> = [
        "--server",
        "--allow_any_user",
        "--listen",
        &Address::unix(dir.path().join("garcon.sock")).to_string(),
        "--host-address",
        &host_address.to_string(),
        "--token-file",
        &token_file.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut garcon = Daemon::spawn("garcon", &args, dir.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        garcon.is_running(),
        "garcon gave up too early:\n{}",
        garcon.stderr()
    );

    let host = RunningHost::start(HostConfig {
        container_listener: Some(host_address),
        ..HostConfig::default()
    })
    .await
    .expect("host");
    host.register_container("retry-token", "penguin");
    let ready = host
        .wait_for(|e| matches!(e.payload, Payload::ContainerReady(_)), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; garcon stderr:\n{}", garcon.stderr()));
    assert!(ready.is_ok());
    assert!(
        garcon.stderr().contains("late-host.sock"),
        "each failed attempt is logged with the address:\n{}",
        garcon.stderr()
    );
}
