//! Shared fixture of the real-LXD tests: the harness scripts (tests/lxd), the simplestreams
//! server, the host stand-in (crostini-host) and an in-process tremplin.
//!
//! Requirements: root, and the harness scripts' dependencies (they install what is missing).
//! The tests use the test suite's own LXD (`tests/lxd/ensure-lxd.sh --tests`: own LXD_DIR,
//! socket, pool and network namespace), never the machine's; within it they only touch
//! containers, images and the profile they create (profile `tremplin-test`, container names
//! `tpl-<pid>-...`).

#![allow(dead_code)]

#[path = "../../../tests/support/image_server.rs"]
mod image_server;
pub use image_server::{test_lxd, ImageServer};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::events::Payload;
use crostini_host::{Event, HostConfig, RunningHost};
use crostini_proto::vm_tools::tremplin as pb;
use crostini_proto::vm_tools::tremplin::tremplin_client::TremplinClient;
use tonic::transport::Channel;
use tremplin::config::Config;
use tremplin::{RunningTremplin, StopKind};

/// Serializes the tests of one binary: each creates containers on a 2-core machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const PROFILE: &str = "tremplin-test";
pub const SUBNET: &str = "100.115.92.1/24";
pub const MILESTONE: u32 = 120;
pub const LONG: Duration = Duration::from_secs(300);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run_script(name: &str) -> String {
    let path = repo_root().join("tests/lxd").join(name);
    let out = Command::new(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

/// Runs `ensure-lxd.sh --tests` and build-image.sh once per test binary; returns the socket of
/// the tests' own LXD.
pub fn lxd_socket() -> PathBuf {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            assert!(
                nix::unistd::getuid().is_root(),
                "the real-LXD tests must run as root (they drive LXD and read container files)"
            );
            let socket = test_lxd::socket();
            run_script("build-image.sh");
            socket
        })
        .clone()
}

/// Host stand-in + tremplin + client, with every Termina path inside a temp dir.
pub struct Harness {
    pub host: RunningHost,
    pub tremplin: Option<RunningTremplin>,
    pub client: TremplinClient<Channel>,
    pub lxd: crostini_lxd::Client,
    pub dir: tempfile::TempDir,
    pub created: Created,
}

pub fn paths_args(dir: &Path) -> Vec<String> {
    let p = |s: &str| dir.join(s).display().to_string();
    for d in [
        "shared",
        "tokens",
        "cros-containers",
        "fonts",
        "external",
        "stateful",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::fs::write(
        dir.join("lsb-release"),
        format!("CHROMEOS_RELEASE_CHROME_MILESTONE={MILESTONE}\n"),
    )
    .expect("write lsb-release");
    vec![
        format!("--lsb-release={}", p("lsb-release")),
        format!("--milestone-file={}", p("cros_milestone")),
        format!("--tokens-dir={}", p("tokens")),
        format!("--shared-dir={}", p("shared")),
        format!("--stateful-dir={}", p("stateful")),
        format!("--lxd-conf-dir={}", p("stateful/lxd_conf")),
        format!("--guest-tools-dir={}", p("cros-containers")),
        format!("--fonts-dir={}", p("fonts")),
        format!("--external-dir={}", p("external")),
        "--resolv-conf=/etc/resolv.conf".to_string(),
        "--arc-hosts=/dev/null".to_string(),
        format!("--lxd-profile={PROFILE}"),
        "--no-apt-key-refresh".to_string(),
        "--ports-poll-seconds=1".to_string(),
    ]
}

impl Harness {
    /// Starts the host stand-in and tremplin (not StartLxd).
    pub async fn start(extra_args: &[&str]) -> Harness {
        let socket = lxd_socket();
        let dir = tempfile::tempdir().expect("tempdir");
        let host = RunningHost::start(HostConfig {
            tremplin_listener: Some("tcp://127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        })
        .await
        .expect("host stand-in");
        let host_address = host.tremplin_listener_address().expect("bound").to_string();
        let listen = format!("unix://{}", dir.path().join("tremplin.sock").display());
        let mut args: Vec<String> = vec![
            "tremplin".into(),
            "-lxd_subnet".into(),
            SUBNET.into(),
            "--listen".into(),
            listen,
            "--host-address".into(),
            host_address,
            "--crash-address".into(),
            "none".into(),
            format!("--lxd-socket={}", socket.display()),
        ];
        args.extend(paths_args(dir.path()));
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let config = Config::from_args(args).expect("config");
        let tremplin = RunningTremplin::start(config)
            .await
            .expect("tremplin starts");
        let client = crostini_host::clients::tremplin(tremplin.local_address()).expect("client");
        Harness {
            host,
            tremplin: Some(tremplin),
            client,
            lxd: crostini_lxd::Client::new(&socket),
            dir,
            created: Created::default(),
        }
    }

    pub fn address(&self) -> Address {
        self.tremplin
            .as_ref()
            .expect("running")
            .local_address()
            .clone()
    }

    /// StartLxd → STARTING (or ALREADY_RUNNING) and, for STARTING, the STARTED report.
    pub async fn start_lxd(&mut self) {
        let from = self.host.state.events.next_seq();
        let r = self
            .client
            .start_lxd(pb::StartLxdRequest {
                reset_lxd_db: false,
            })
            .await
            .expect("StartLxd")
            .into_inner();
        if r.status == pb::start_lxd_response::Status::Starting as i32 {
            let e = self
                .wait_from(
                    from,
                    |p| matches!(p, Payload::UpdateStartLxdStatus(_)),
                    LONG,
                )
                .await;
            let Payload::UpdateStartLxdStatus(p) = &e.payload else {
                unreachable!()
            };
            assert_eq!(
                p.status,
                pb::start_lxd_progress::Status::Started as i32,
                "StartLxd failed: {}",
                p.failure_reason
            );
        } else {
            assert_eq!(
                r.status,
                pb::start_lxd_response::Status::AlreadyRunning as i32,
                "{r:?}"
            );
        }
    }

    pub async fn wait_from(
        &self,
        from: u64,
        f: impl Fn(&Payload) -> bool,
        timeout: Duration,
    ) -> Event {
        self.host
            .wait_for_from(from, |e| f(&e.payload), timeout)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no matching listener call within {timeout:?}; received:\n{}",
                    self.host
                        .events()
                        .iter()
                        .filter(|e| e.seq >= from)
                        .map(|e| e.to_json_line())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    }

    /// Every recorded payload from `from` on.
    pub fn payloads_from(&self, from: u64) -> Vec<Payload> {
        self.host
            .events()
            .into_iter()
            .filter(|e| e.seq >= from)
            .map(|e| e.payload)
            .collect()
    }

    pub fn name(&mut self, suffix: &str) -> String {
        let n = format!("tpl-{}-{suffix}", std::process::id());
        self.created.0.push(n.clone());
        n
    }

    /// CreateContainer from `server`, waiting for the final report (asserted CREATED).
    pub async fn create(&mut self, name: &str, server: &ImageServer) -> Vec<Payload> {
        let from = self.host.state.events.next_seq();
        let r = self
            .client
            .create_container(pb::CreateContainerRequest {
                container_name: name.to_string(),
                image_server: server.url.clone(),
                image_alias: server.alias.clone(),
                ..Default::default()
            })
            .await
            .expect("CreateContainer")
            .into_inner();
        assert_eq!(
            r.status,
            pb::create_container_response::Status::Creating as i32,
            "{r:?}"
        );
        let e = self
            .wait_from(from, |p| is_final_create(p, name), LONG)
            .await;
        let Payload::UpdateCreateStatus(p) = &e.payload else {
            unreachable!()
        };
        assert_eq!(
            p.status,
            pb::container_creation_progress::Status::Created as i32,
            "create failed: {}",
            p.failure_reason
        );
        self.payloads_from(from)
    }

    /// StartContainer with `token`, waiting for STARTED.
    pub async fn start_container(&mut self, name: &str, token: &str) -> pb::StartContainerResponse {
        let from = self.host.state.events.next_seq();
        let r = self
            .client
            .start_container(pb::StartContainerRequest {
                container_name: name.to_string(),
                token: token.to_string(),
                ..Default::default()
            })
            .await
            .expect("StartContainer")
            .into_inner();
        assert_eq!(
            r.status,
            pb::start_container_response::Status::Starting as i32,
            "{r:?}"
        );
        let e = self
            .wait_from(
                from,
                |p| matches!(p, Payload::UpdateStartStatus(s) if s.container_name == name && s.status != pb::container_start_progress::Status::Starting as i32),
                LONG,
            )
            .await;
        let Payload::UpdateStartStatus(s) = &e.payload else {
            unreachable!()
        };
        assert_eq!(
            s.status,
            pb::container_start_progress::Status::Started as i32,
            "start failed: {}",
            s.failure_reason
        );
        r
    }

    /// Runs a command in a container, returning (exit code, stdout).
    pub async fn exec(&self, name: &str, argv: &[&str]) -> (i32, String) {
        let out = self
            .lxd
            .exec(name, &crostini_lxd::ExecRequest::new(argv))
            .await
            .unwrap_or_else(|e| panic!("exec {argv:?} in {name}: {e}"));
        (out.exit_code, out.stdout_str())
    }

    /// Waits until the container's systemd has booted (its system bus answers), as a freshly
    /// started container under load may not accept `systemctl`/`timedatectl` for a while.
    pub async fn wait_for_boot(&self, name: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (_, state) = self
                .exec(name, &["systemctl", "is-system-running", "--wait"])
                .await;
            let state = state.trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} did not finish booting: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Removes what the test created (best effort) and stops tremplin and the host.
    pub async fn finish(mut self) {
        for name in std::mem::take(&mut self.created.0) {
            force_delete(&self.lxd, &name).await;
        }
        if let Some(t) = self.tremplin.take() {
            t.stop(StopKind::Terminate).await;
        }
        self.host.shutdown().await;
    }
}

pub fn is_final_create(p: &Payload, name: &str) -> bool {
    matches!(p, Payload::UpdateCreateStatus(c) if c.container_name == name
        && c.status != pb::container_creation_progress::Status::Downloading as i32)
}

/// Containers a test created; a failed test does not reach `Harness::finish`, so they are
/// removed on drop too.
#[derive(Default)]
pub struct Created(pub Vec<String>);

impl Drop for Created {
    fn drop(&mut self) {
        for name in self.0.drain(..) {
            let _ = test_lxd::lxc()
                .args(["delete", "--force", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Stops (force) and deletes an instance if it exists.
pub async fn force_delete(lxd: &crostini_lxd::Client, name: &str) {
    if let Ok((i, _)) = lxd.instance(name).await {
        if i.is_running() {
            if let Ok(op) = lxd.stop_instance(name, true).await {
                let _ = lxd.wait(&op, Duration::from_secs(120)).await;
            }
        }
        if let Ok(op) = lxd.delete_instance(name).await {
            let _ = lxd.wait(&op, Duration::from_secs(120)).await;
        }
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
