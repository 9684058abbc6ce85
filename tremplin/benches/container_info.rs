//! Benchmark against the tests' own LXD (root; tests/lxd harness): an rpc that is one LXD call.
//!
//! 1. GetContainerInfo through a tremplin process (unix socket, the generated tonic client)
//!    against a direct `curl --unix-socket <sock> http://lxd/1.0/instances/<name>/state` (the
//!    one LXD endpoint GetContainerInfo uses) of the same running container, interleaved in
//!    one run: medians and ratios. curl is timed twice: the wall time of the process, and its
//!    own `time_total` (connect + request + response, no process start-up): the strict one.
//! 2. Round trips of the crostini-lxd client (GET /1.0, GET /1.0/instances/<name>, its
//!    /state): one shared client (pooled connection) against a new client per request (a fresh
//!    connection each time), in the same run.
//!
//! `cargo bench -p tremplin --bench container_info` (env `BENCH_ROUNDS`, default 200). Prints a
//! reason and exits 0 when the tests' LXD is not running or the bench is not run as root.

#[path = "../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use crostini_common::Address;
use crostini_host::{HostConfig, RunningHost};
use crostini_lxd::types::{InstanceSource, InstancesPost};
use crostini_proto::vm_tools::tremplin as pb;
use crostini_proto::vm_tools::tremplin::tremplin_client::TremplinClient;
use tonic::transport::Channel;

/// The tests' LXD socket (`CROSTINI_TEST_LXD_DIR`, default /var/lib/crostini-tests/lxd).
fn tests_socket() -> PathBuf {
    let dir = std::env::var_os("CROSTINI_TEST_LXD_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/crostini-tests/lxd"));
    dir.join("unix.socket")
}

/// Why the bench cannot run here, if it cannot.
async fn skip_reason(socket: &Path) -> Option<String> {
    if !nix::unistd::getuid().is_root() {
        return Some("not root (tremplin and the tests' LXD need root)".into());
    }
    let probe = crostini_lxd::Client::new(socket).with_timeout(Duration::from_secs(30));
    match probe.server().await {
        Ok(_) => None,
        Err(e) => Some(format!(
            "the tests' LXD is not running or does not answer ({e}); start it with \
             tests/lxd/ensure-lxd.sh --tests"
        )),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn show(label: &str, v: &[Duration]) -> Duration {
    let m = median(v.to_vec());
    let mut s = v.to_vec();
    s.sort();
    let p90 = s[s.len() * 9 / 10];
    println!("  {label:<66} median {m:>10.1?}  p90 {p90:>10.1?}");
    m
}

fn ratio(label: &str, a: Duration, b: Duration) {
    println!("  {label:<66} {:.2}x", a.as_secs_f64() / b.as_secs_f64());
}

async fn timed<T, F: Future<Output = T>>(f: F) -> (Duration, T) {
    let t0 = Instant::now();
    let v = f.await;
    (t0.elapsed(), v)
}

/// One `curl` process: (wall time, curl's own time_total).
fn curl(socket: &Path, path: &str) -> (Duration, Duration) {
    let t0 = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "-f", "-o", "/dev/null", "-w", "%{time_total}"])
        .arg("--unix-socket")
        .arg(socket)
        .arg(format!("http://lxd{path}"))
        .output()
        .expect("run curl");
    let wall = t0.elapsed();
    assert!(out.status.success(), "curl {path}: {}", out.status);
    let total: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("curl time_total");
    (wall, Duration::from_secs_f64(total))
}

/// A running container from the tests' image server (default profile), with eth0's IPv4.
async fn make_container(lxd: &crostini_lxd::Client, name: &str) {
    let server = ImageServer::start(&[]);
    force_delete(lxd, name).await;
    let req = InstancesPost::new(
        name,
        InstanceSource::simplestreams(&server.url, &server.alias),
    );
    let op = lxd.create_instance(&req).await.expect("create");
    lxd.wait(&op, LONG).await.expect("created");
    let op = lxd.start_instance(name).await.expect("start");
    lxd.wait(&op, LONG).await.expect("started");
    let has_ipv4 = eventually(Duration::from_secs(60), || async {
        let state = lxd.instance_state(name).await.ok()?;
        let eth0 = state.network.as_ref()?.get("eth0")?.clone();
        eth0.addresses
            .iter()
            .any(|a| a.family == "inet")
            .then_some(())
    })
    .await;
    if has_ipv4.is_none() {
        println!("  (container {name} has no IPv4 on eth0 after 60 s; measuring anyway)");
    }
}

/// tremplin as a process listening on a unix socket, reporting to an in-process host stand-in.
struct TremplinProcess {
    child: Child,
    client: TremplinClient<Channel>,
    _host: RunningHost,
}

impl TremplinProcess {
    async fn start(dir: &Path, socket: &Path) -> TremplinProcess {
        let host = RunningHost::start(HostConfig {
            tremplin_listener: Some("tcp://127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        })
        .await
        .expect("host stand-in");
        let host_address = host.tremplin_listener_address().expect("bound").to_string();
        let listen = format!("unix://{}", dir.join("tremplin.sock").display());
        let log = std::fs::File::create(dir.join("tremplin.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tremplin"))
            .args(["-lxd_subnet", SUBNET, "--listen", &listen])
            .args(["--host-address", &host_address, "--crash-address", "none"])
            .arg(format!("--lxd-socket={}", socket.display()))
            .args(paths_args(dir))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tremplin");
        let address: Address = listen.parse().expect("listen address");
        let client = crostini_host::clients::tremplin(&address).expect("client");
        let mut t = TremplinProcess {
            child,
            client,
            _host: host,
        };
        t.start_lxd().await;
        t
    }

    /// StartLxd until it answers ALREADY_RUNNING (tremplin adopted and set up the LXD).
    async fn start_lxd(&mut self) {
        use pb::start_lxd_response::Status;
        let deadline = Instant::now() + LONG;
        loop {
            let r = self
                .client
                .start_lxd(pb::StartLxdRequest {
                    reset_lxd_db: false,
                })
                .await;
            match r.map(|r| r.into_inner()) {
                Ok(r) if r.status == Status::AlreadyRunning as i32 => return,
                Ok(r) if r.status == Status::Starting as i32 => {}
                Ok(r) => panic!("StartLxd: {r:?}"),
                Err(e) if e.code() == tonic::Code::Unavailable => {}
                Err(e) => panic!("StartLxd: {e}"),
            }
            assert!(Instant::now() < deadline, "tremplin did not start LXD");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn info(&mut self, name: &str) -> pb::GetContainerInfoResponse {
        self.client
            .get_container_info(pb::GetContainerInfoRequest {
                container_name: name.to_string(),
            })
            .await
            .expect("GetContainerInfo")
            .into_inner()
    }
}

impl Drop for TremplinProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

async fn bench_info(t: &mut TremplinProcess, socket: &Path, name: &str, rounds: usize) {
    let state_path = format!("/1.0/instances/{name}/state");
    let first = t.info(name).await;
    assert_eq!(
        first.status,
        pb::get_container_info_response::Status::Running as i32,
        "{first:?}"
    );
    for _ in 0..10 {
        t.info(name).await;
        curl(socket, &state_path);
    }
    let (mut rpc, mut wall, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        rpc.push(timed(t.info(name)).await.0);
        let (w, c) = curl(socket, &state_path);
        wall.push(w);
        total.push(c);
    }
    println!("GetContainerInfo vs curl of GET {state_path} ({rounds} rounds, interleaved)");
    let m_rpc = show("tremplin GetContainerInfo (tonic, unix socket)", &rpc);
    let m_total = show("curl --unix-socket: its time_total", &total);
    let m_wall = show("curl --unix-socket: process wall time", &wall);
    ratio("ratio rpc / curl time_total (goal <= 1.5)", m_rpc, m_total);
    ratio("ratio rpc / curl wall time", m_rpc, m_wall);
}

async fn bench_client(socket: &Path, name: &str, rounds: usize) {
    let shared = crostini_lxd::Client::new(socket);
    let instance_path = format!("/1.0/instances/{name}");
    let state_path = format!("{instance_path}/state");
    println!("crostini-lxd client round trips ({rounds} rounds, interleaved)");
    let mut medians = Vec::new();
    for path in ["/1.0", instance_path.as_str(), state_path.as_str()] {
        let get = |c: crostini_lxd::Client| async move {
            match path {
                "/1.0" => c.server().await.map(|_| ()),
                p if p.ends_with("/state") => c.instance_state(name).await.map(|_| ()),
                _ => c.instance(name).await.map(|_| ()),
            }
            .expect("LXD request")
        };
        for _ in 0..10 {
            get(shared.clone()).await;
        }
        let (mut reused, mut fresh) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            reused.push(timed(get(shared.clone())).await.0);
            let new_client = crostini_lxd::Client::new(socket);
            fresh.push(timed(get(new_client)).await.0);
        }
        let a = show(&format!("GET {path}: one shared client"), &reused);
        let b = show(&format!("GET {path}: a new client per request"), &fresh);
        medians.push((path, a, b));
    }
    for (path, a, b) in medians {
        ratio(&format!("ratio shared / new client, GET {path}"), a, b);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let socket = tests_socket();
    if let Some(reason) = skip_reason(&socket).await {
        println!("container_info bench skipped: {reason}");
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    let socket = lxd_socket();
    let lxd = crostini_lxd::Client::new(&socket);
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("tpl-{}-bench-info", std::process::id());
    eprintln!("container_info: creating and starting container {name}");
    make_container(&lxd, &name).await;
    eprintln!(
        "container_info: starting tremplin, StartLxd (log in {})",
        dir.path().display()
    );
    let mut tremplin = TremplinProcess::start(dir.path(), &socket).await;
    eprintln!("container_info: measuring");
    bench_info(&mut tremplin, &socket, &name, rounds).await;
    bench_client(&socket, &name, rounds).await;
    drop(tremplin);
    force_delete(&lxd, &name).await;
}
