//! Disruptive: kills the tests' own LXD (`tests/lxd/ensure-lxd.sh --tests`; never the machine's)
//! during a CreateContainer, expects a FAILED report, then StartLxd (LXD gone) makes tremplin
//! launch and supervise its own LXD, through tests/lxd/test-lxd.sh so that it is again the
//! tests' daemon (LXD_DIR, network namespace); SIGPWR-style shutdown stops it and
//! `tests/lxd/ensure-lxd.sh --tests` restores the harness LXD.
//!
//! Other tests share the tests' LXD, so this runs only with TREMPLIN_DISRUPTIVE_TESTS=1.

mod common;

use std::time::Duration;

use common::*;
use crostini_host::events::Payload;
use crostini_proto::vm_tools::tremplin as pb;
use tremplin::StopKind;

/// PIDs of the tests' LXD daemons (not `lxd forkstart` & co; not the machine's LXD).
fn lxd_daemon_pids() -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim() == "lxd")
            .unwrap_or(false)
        {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let sub = [
                "fork",
                "callhook",
                "waitready",
                "shutdown",
                "init",
                "activateifneeded",
            ];
            if !args
                .iter()
                .skip(1)
                .any(|a| sub.iter().any(|s| a.starts_with(s)))
                && test_lxd::is_tests_process(pid)
            {
                out.push(pid);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxd_killed_during_create_reports_failed_and_start_lxd_recovers() {
    if std::env::var("TREMPLIN_DISRUPTIVE_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: kills the shared LXD; set TREMPLIN_DISRUPTIVE_TESTS=1 to run it");
        return;
    }
    let _serial = SERIAL.lock().await;
    let throttled = ImageServer::start(&["--throttle", "4000000"]);
    let lxd_binary = format!("--lxd-binary={}", test_lxd::script("test-lxd.sh").display());
    let lxd_args = format!("--lxd-args=--group root --logfile {}", test_lxd::LOG);
    let mut h = Harness::start(&[&lxd_binary, &lxd_args]).await;
    h.start_lxd().await;
    if h.lxd.image(&throttled.fingerprint).await.is_ok() {
        let op = h
            .lxd
            .delete_image(&throttled.fingerprint)
            .await
            .expect("delete image");
        h.lxd
            .wait(&op, Duration::from_secs(60))
            .await
            .expect("deleted");
    }
    let name = h.name("crash");
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .create_container(pb::CreateContainerRequest {
            container_name: name.clone(),
            image_server: throttled.url.clone(),
            image_alias: throttled.alias.clone(),
            ..Default::default()
        })
        .await
        .expect("CreateContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::create_container_response::Status::Creating as i32
    );
    h.wait_from(from, |p| matches!(p, Payload::UpdateCreateStatus(c) if c.status == pb::container_creation_progress::Status::Downloading as i32), Duration::from_secs(60)).await;
    let pids = lxd_daemon_pids();
    assert!(!pids.is_empty(), "an LXD daemon runs");
    for pid in &pids {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill LXD");
    }
    let e = h
        .wait_from(from, |p| is_final_create(p, &name), Duration::from_secs(90))
        .await;
    let Payload::UpdateCreateStatus(c) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        c.status,
        pb::container_creation_progress::Status::Failed as i32,
        "{c:?}"
    );
    assert!(!c.failure_reason.is_empty());
    let finals = h
        .payloads_from(from)
        .iter()
        .filter(|p| is_final_create(p, &name))
        .count();
    assert_eq!(finals, 1, "exactly one final report");
    // LXD is gone: RPCs fail cleanly.
    let r = h
        .client
        .get_container_info(pb::GetContainerInfoRequest {
            container_name: name.clone(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::get_container_info_response::Status::NotFound as i32
    );
    // StartLxd notices and starts (and supervises) a new LXD.
    h.start_lxd().await;
    h.lxd.ready().await.expect("LXD answers again");
    let server = ImageServer::start(&[]);
    h.create(&name, &server).await;
    assert!(h.lxd.instance(&name).await.is_ok());
    force_delete(&h.lxd, &name).await;
    // Power off: tremplin sends SIGPWR to its LXD; then the harness LXD comes back.
    if let Some(t) = h.tremplin.take() {
        t.stop(StopKind::PowerOff).await;
    }
    let gone = eventually(Duration::from_secs(120), || async {
        lxd_daemon_pids().is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "tremplin's LXD stopped after SIGPWR");
    let out = std::process::Command::new(test_lxd::script("ensure-lxd.sh"))
        .arg("--tests")
        .output()
        .expect("ensure-lxd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.finish().await;
}
