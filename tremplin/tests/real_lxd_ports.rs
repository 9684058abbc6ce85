//! Listening ports on the real LXD (tremplin §9.3, issue 11 #2): a listener opened in a
//! container reaches the host in UpdateListeningPorts within 2 s through the audit trigger,
//! a closed one disappears (at the next trigger, and at the 60 s resend with nothing else
//! happening), and the machine's audit status and rules are as before once tremplin stopped.
//! Root; `cargo test -p tremplin --test real_lxd_ports` (serialized with the other real-LXD
//! tests by the nextest group `real-lxd`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use crostini_host::events::Payload;
use tremplin::ports::audit;
use tremplin::ports::audit_rules::rule_owner;

const MIN: Duration = Duration::from_secs(60);
const TWO_S: Duration = Duration::from_secs(2);

/// Starts a loopback listener on `port` in `name` (a transient systemd unit `tpl-port-<port>`).
async fn listen(h: &Harness, name: &str, port: u16) {
    let unit = format!("--unit=tpl-port-{port}");
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "systemd-run",
        &unit,
        "systemd-socket-activate",
        "-l",
        &addr,
        "/bin/true",
    ];
    let (code, out) = h.exec(name, &args).await;
    assert_eq!(code, 0, "systemd-run listener on {port}: {out}");
}

async fn unlisten(h: &Harness, name: &str, port: u16) {
    let socket = format!("tpl-port-{port}.socket");
    let service = format!("tpl-port-{port}.service");
    let unit = format!("tpl-port-{port}");
    h.exec(name, &["systemctl", "stop", &socket, &service, &unit])
        .await;
}

/// Polls `systemctl is-system-running` (no `--wait`: one exec must not outlast the client's
/// timeout on a loaded machine) until systemd finished booting.
async fn wait_booted(h: &Harness, name: &str) {
    let req = crostini_lxd::ExecRequest::new(&["systemctl", "is-system-running"]);
    let done = eventually(Duration::from_secs(300), || async {
        let out = h.lxd.exec(name, &req).await.ok()?;
        let state = out.stdout_str();
        (state.starts_with("running") || state.starts_with("degraded")).then_some(())
    })
    .await;
    assert!(done.is_some(), "{name} did not finish booting");
}

/// Rules added by this process's tremplin.
fn own_rules(s: &audit::AuditSnapshot) -> usize {
    s.rules
        .iter()
        .filter_map(|r| rule_owner(r))
        .filter(|o| o.pid == std::process::id())
        .count()
}

fn other_tremplins(s: &audit::AuditSnapshot) -> bool {
    s.rules
        .iter()
        .filter_map(|r| rule_owner(r))
        .any(|o| o.pid != std::process::id())
}

fn ports_of(p: &Payload, name: &str) -> Option<Vec<u32>> {
    match p {
        Payload::UpdateListeningPorts(info) => info
            .container_ports
            .get(name)
            .map(|c| c.listening_tcp4_ports.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_listener_reported_within_2s_and_removed_and_audit_restored() {
    let _serial = SERIAL.lock().await;
    let audit_before = audit::snapshot().expect("audit status and rules");
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&[]).await;
    h.start_lxd().await;
    let name = h.name("ports");
    force_delete(&h.lxd, &name).await;
    h.create(&name, &server).await;
    h.start_container(&name, "ports-token").await;
    wait_booted(&h, &name).await;
    let armed = audit::snapshot().expect("audit snapshot");
    assert_ne!(armed.enabled, 0, "tremplin armed the audit trigger");
    assert!(
        own_rules(&armed) > 0,
        "tremplin's own listen rules are in place"
    );

    // A listener: reported within 2 s of the request that opens it.
    let from = h.host.state.events.next_seq();
    let t0 = Instant::now();
    listen(&h, &name, 8125).await;
    h.wait_from(
        from,
        |p| ports_of(p, &name).is_some_and(|v| v.contains(&8125)),
        TWO_S,
    )
    .await;
    let first = t0.elapsed();
    assert!(first < TWO_S, "{first:?}");

    // Closed, and another one opened: the next report has the new port and not the old.
    unlisten(&h, &name, 8125).await;
    let from = h.host.state.events.next_seq();
    let t1 = Instant::now();
    listen(&h, &name, 8126).await;
    let e = h
        .wait_from(
            from,
            |p| ports_of(p, &name).is_some_and(|v| v.contains(&8126)),
            TWO_S,
        )
        .await;
    assert!(t1.elapsed() < TWO_S);
    let ports = ports_of(&e.payload, &name).expect("ports");
    assert!(
        !ports.contains(&8125),
        "closed listener still reported: {ports:?}"
    );

    // Closed with nothing else happening in the container: gone at the next update (a listen()
    // anywhere on the machine, or at the latest the 60 s resend).
    unlisten(&h, &name, 8126).await;
    let from = h.host.state.events.next_seq();
    h.wait_from(
        from,
        |p| ports_of(p, &name).is_some_and(|v| !v.contains(&8126)),
        MIN + Duration::from_secs(5),
    )
    .await;
    eprintln!("listener reported {first:?} after the exec request");

    h.finish().await;
    let after = audit::snapshot().expect("audit snapshot");
    assert_eq!(
        own_rules(&after),
        0,
        "tremplin left its audit rules: {after:?}"
    );
    // Other tremplins on the machine (other test runs) may arm or restore meanwhile; without
    // them, the machine's audit state is exactly as before.
    if !other_tremplins(&audit_before) && !other_tremplins(&after) {
        assert_eq!(
            after, audit_before,
            "tremplin left the audit status/rules changed"
        );
    }
}
