//! Benchmark against the tests' own LXD (root; tests/lxd harness, `ensure-lxd.sh --tests`):
//!
//! 1. CreateContainer + StartContainer through tremplin (request → `STARTED` report) vs
//!    `lxc launch` of the same image from the same simplestreams server with the same profile,
//!    image cached in both cases; the ratio of the medians.
//! 2. Delay from an LXD download-progress event (seen by a second subscriber to
//!    `/1.0/events`) to the matching `DOWNLOADING` report at the host stand-in.
//!
//! `cargo bench -p tremplin --bench create_start` (env `BENCH_ROUNDS`, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use crostini_host::events::Payload;
use crostini_lxd::progress::download_progress;
use crostini_lxd::EventType;
use crostini_proto::vm_tools::tremplin as pb;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn tremplin_round(h: &mut Harness, server: &ImageServer, name: &str) -> Duration {
    force_delete(&h.lxd, name).await;
    let t0 = Instant::now();
    h.create(name, server).await;
    h.start_container(name, "bench-token").await;
    let took = t0.elapsed();
    force_delete(&h.lxd, name).await;
    took
}

fn lxc_round(conf: &std::path::Path, name: &str) -> Duration {
    let t0 = Instant::now();
    let out = test_lxd::lxc_in_netns()
        .env("LXD_CONF", conf)
        .args(["launch", "bench:crostini-test", name, "-p", PROFILE])
        .output()
        .expect("lxc launch");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "lxc launch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = test_lxd::lxc_in_netns()
        .env("LXD_CONF", conf)
        .args(["delete", "--force", name])
        .status();
    took
}

async fn progress_delay(h: &mut Harness) -> Vec<Duration> {
    let server = ImageServer::start(&["--throttle", "8000000"]);
    if h.lxd.image(&server.fingerprint).await.is_ok() {
        let op = h
            .lxd
            .delete_image(&server.fingerprint)
            .await
            .expect("delete image");
        h.lxd
            .wait(&op, Duration::from_secs(60))
            .await
            .expect("deleted");
    }
    let name = h.name("bench-progress");
    force_delete(&h.lxd, &name).await;
    // Second subscriber: when LXD published each percentage.
    let mut events = h.lxd.events(&[EventType::Operation]).await.expect("events");
    let seen: std::sync::Arc<std::sync::Mutex<BTreeMap<i32, Instant>>> = Default::default();
    let watcher = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = events.next().await {
                if let Some(p) = ev
                    .operation()
                    .and_then(|op| download_progress(&op.metadata))
                {
                    seen.lock()
                        .expect("lock")
                        .entry(p.reported_percent())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    let from = h.host.state.events.next_seq();
    h.create(&name, &server).await;
    watcher.abort();
    let seen = seen.lock().expect("lock").clone();
    let mut delays = Vec::new();
    for e in h.host.events().into_iter().filter(|e| e.seq >= from) {
        if let Payload::UpdateCreateStatus(c) = &e.payload {
            if c.status == pb::container_creation_progress::Status::Downloading as i32 {
                if let Some(t) = seen.get(&c.download_progress) {
                    delays.push(e.at.saturating_duration_since(*t));
                }
            }
        }
    }
    force_delete(&h.lxd, &name).await;
    delays
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&[]).await;
    h.start_lxd().await;
    // Warm-up: caches the image in LXD so both paths start from a cached image.
    let warm = h.name("bench-warm");
    tremplin_round(&mut h, &server, &warm).await;

    let conf = tempfile::tempdir().expect("tempdir");
    let out = test_lxd::lxc_in_netns()
        .env("LXD_CONF", conf.path())
        .args([
            "remote",
            "add",
            "bench",
            &server.url,
            "--protocol",
            "simplestreams",
            "--public",
        ])
        .output()
        .expect("lxc remote add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..rounds {
        let name = h.name(&format!("bench-t{i}"));
        ours.push(tremplin_round(&mut h, &server, &name).await);
        let lxc_name = h.name(&format!("bench-l{i}"));
        theirs.push(lxc_round(conf.path(), &lxc_name));
    }
    let (m_ours, m_theirs) = (median(ours.clone()), median(theirs.clone()));
    println!("create+start via tremplin (request -> STARTED report): {ours:?}, median {m_ours:?}");
    println!(
        "lxc launch (same image, cached, same profile):         {theirs:?}, median {m_theirs:?}"
    );
    println!(
        "ratio tremplin / lxc launch: {:.2}",
        m_ours.as_secs_f64() / m_theirs.as_secs_f64()
    );

    let delays = progress_delay(&mut h).await;
    if delays.is_empty() {
        println!("progress delay: no DOWNLOADING report matched an LXD event");
    } else {
        let max = delays.iter().max().copied().unwrap_or_default();
        println!(
            "LXD progress event -> host DOWNLOADING report: {} samples, median {:?}, max {:?}",
            delays.len(),
            median(delays.clone()),
            max
        );
    }
    h.finish().await;
}
