//! Benchmark of the listening-port reports against the tests' own LXD (root; tests/lxd
//! harness), issue 11 #2:
//!
//! 1. Latency from a `listen()` inside a container to the host stand-in receiving the
//!    UpdateListeningPorts that contains the port: p50 and p99 over `BENCH_ROUNDS` (default 30)
//!    listeners. The moment of the `listen()` is when the bench's own reader of the audit
//!    multicast group receives its `SYSCALL` record (the kernel's own record timestamp, ms
//!    resolution, is printed against it too).
//! 2. With nothing changing for 60 s: the bench process's context switches (voluntary +
//!    nonvoluntary over /proc/self/task/*/status; the process holds tremplin and the host
//!    stand-in) and the UpdateListeningPorts sent meanwhile.
//!
//! `cargo bench -p tremplin --bench ports_latency` (env `BENCH_ROUNDS`, `BENCH_IDLE_SECONDS`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use crostini_host::events::Payload;
use tremplin::ports::{audit, netlink};

/// The `audit(SEC.MSEC:SERIAL)` stamp of a record, in Unix milliseconds.
fn record_unix_ms(text: &str) -> Option<u128> {
    let stamp = text.strip_prefix("audit(")?.split(':').next()?;
    let (sec, ms) = stamp.split_once('.')?;
    Some(sec.parse::<u128>().ok()? * 1000 + ms.parse::<u128>().ok()?)
}

/// Reads the audit multicast group on a thread; sends (receipt instant, kernel stamp) of every
/// successful listen() by `systemd-socket-activate` (comm `systemd-socket-`).
fn audit_observer() -> std::sync::mpsc::Receiver<(Instant, u128)> {
    let fd = netlink::open(9, 1, false).expect("audit multicast socket");
    netlink::set_recv_timeout(&fd, Duration::from_millis(500)).expect("timeout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Ok(n) = netlink::recv(&fd, &mut buf) else {
                continue;
            };
            let at = Instant::now();
            for m in netlink::messages(&buf[..n]).unwrap_or_default() {
                let text = String::from_utf8_lossy(m.payload);
                if audit::is_listen_success(m.kind, &text) && text.contains("comm=\"systemd-socket")
                {
                    let stamp = record_unix_ms(&text).unwrap_or(0);
                    if tx.send((at, stamp)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ctxt_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

async fn unlisten(h: &Harness, name: &str, port: u16) {
    let units = [
        format!("tpl-port-{port}.socket"),
        format!("tpl-port-{port}.service"),
        format!("tpl-port-{port}"),
    ];
    let mut argv = vec!["systemctl", "stop"];
    argv.extend(units.iter().map(String::as_str));
    h.exec(name, &argv).await;
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rounds = env("BENCH_ROUNDS", 30) as u16;
    let idle = Duration::from_secs(env("BENCH_IDLE_SECONDS", 60));
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&[]).await;
    h.start_lxd().await;
    let name = h.name("bench-ports");
    force_delete(&h.lxd, &name).await;
    h.create(&name, &server).await;
    h.start_container(&name, "bench-token").await;
    wait_booted(&h, &name).await;
    let observer = audit_observer();

    let mut latencies = Vec::new();
    let mut stamp_gaps = Vec::new();
    for i in 0..rounds {
        let port = 9000 + i;
        while observer.try_recv().is_ok() {}
        let from = h.host.state.events.next_seq();
        let unit = format!("--unit=tpl-port-{port}");
        let addr = format!("127.0.0.1:{port}");
        let argv = [
            "systemd-run",
            &unit,
            "systemd-socket-activate",
            "-l",
            &addr,
            "/bin/true",
        ];
        let (code, out) = h.exec(&name, &argv).await;
        assert_eq!(code, 0, "{out}");
        let e = h
            .wait_from(
                from,
                |p| ports_of(p, &name).is_some_and(|v| v.contains(&u32::from(port))),
                Duration::from_secs(10),
            )
            .await;
        let (listened, stamp) = observer
            .recv_timeout(Duration::from_secs(5))
            .expect("the listen() record of the round");
        latencies.push(e.at.saturating_duration_since(listened));
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        let receipt_unix = now_unix - listened.elapsed().as_millis();
        stamp_gaps.push(receipt_unix.saturating_sub(stamp));
        unlisten(&h, &name, port).await;
    }
    latencies.sort();
    println!(
        "listen() in container -> host UpdateListeningPorts: {} samples, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    stamp_gaps.sort();
    println!(
        "  (kernel record stamp -> bench's receipt of the record: median {} ms, max {} ms)",
        stamp_gaps[stamp_gaps.len() / 2],
        stamp_gaps.last().copied().unwrap_or(0)
    );

    // Idle: let the last updates settle, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = h.host.state.events.next_seq();
    let before = ctxt_switches();
    let t0 = Instant::now();
    tokio::time::sleep(idle).await;
    let switches = ctxt_switches() - before;
    let updates = h
        .payloads_from(from)
        .iter()
        .filter(|p| matches!(p, Payload::UpdateListeningPorts(_)))
        .count();
    println!(
        "idle {:?}: {switches} context switches of the bench process (tremplin + host stand-in, \
         all threads), {updates} UpdateListeningPorts",
        t0.elapsed()
    );
    h.finish().await;
}
