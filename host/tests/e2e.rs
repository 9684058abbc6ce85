//! End to end on the real LXD, arranged the way a Chromebook runs Crostini, with crostini-host
//! standing in for cicerone and unix sockets standing in for vsock:
//!
//! ```text
//!  this test: crostini-host (library) ◀── TremplinListener ── tremplin (binary) ──REST──▶ LXD
//!     │   ▲ ContainerListener                                                            │
//!     │   └── garcon (cros-garcon user unit in the container e2e-<pid>) ◀── creates/starts ┘
//!     └── Garcon calls ──▶ garcon.sock
//! ```
//!
//! The host's two listener sockets live in one directory that is bind-mounted into the container
//! (an LXD disk device on the instance), so garcon reports to
//! `unix:///mnt/crostini-host/8889.sock` and serves on `unix:///mnt/crostini-host/garcon.sock`,
//! which the host reaches through the same directory. Everything else is the production path:
//! tremplin writes the profile, the token device and the guest tools device; the cros-garcon
//! package (packaging/build-deb.sh) starts garcon as a systemd user unit of uid 1000, with a
//! drop-in that only changes its two addresses (tests/e2e/container/container-setup.sh).
//!
//! Stages (each prints its wall time; a table follows at the end, also after a failure):
//! StartLxd → CreateContainer (download from the local simplestreams server, with progress) →
//! SetUpUser → StartContainer (token, guest tools) → cros-garcon package and garcon user unit →
//! ContainerReady → application list → GetIcon → LaunchApplication → InstallLinuxPackage →
//! UninstallPackageOwningFile → StopContainer → ExportContainer → ImportContainer.
//!
//! Needs root; runs `tests/lxd/ensure-lxd.sh --tests` and build-image.sh itself (both
//! idempotent; the image is cached). It uses the test suite's own LXD (own LXD_DIR, socket, pool
//! and network namespace; never the machine's), shares it with other tests and only touches
//! what it creates: the container and profile `e2e-<pid>` and the test image, which it deletes
//! from LXD's image store first so that the download and its progress are observed. Environment:
//! `CROSTINI_E2E_GARCON=<path>` picks the garcon binary mounted into the container (default: the
//! newer of packaging's static build and target/debug/garcon); `CROSTINI_E2E_KEEP=1` leaves the
//! container and the temp directory behind for inspection.

#[path = "../../tests/support/image_server.rs"]
mod image_server;
mod support;
use image_server::{test_lxd, ImageServer};

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crostini_common::Address;
use crostini_host::clients::{self, with_deadline};
use crostini_host::{Event, HostConfig, Payload, RunningHost};
use crostini_lxd::{ExecOutput, ExecRequest, FileContent, FileMeta};
use crostini_proto::vm_tools::container as ct;
use crostini_proto::vm_tools::tremplin as tp;
use support::Daemon;

/// Generous bounds: the machine is small and shared with other builds and tests.
const SHORT: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(300);
/// The bridge address the tests/lxd harness gives lxdbr0 (tremplin rewrites the bridge with it).
const SUBNET: &str = "100.115.92.1/24";
const MILESTONE: &str = "120";
/// Where the host directory appears inside the container.
const MOUNT: &str = "/mnt/crostini-host";
const USER: &str = "testuser";
/// Download speed of the image (bytes/s): the ~86 MB rootfs takes about 4 s, long enough for
/// DOWNLOADING reports.
const THROTTLE: &str = "20000000";
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs a script of the repository; returns its stdout (panics with its stderr on failure).
fn run_script(path: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_line(text: &str) -> String {
    text.trim().lines().last().unwrap_or("").to_string()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The garcon binary mounted into the container, and why it was chosen.
fn garcon_binary() -> (PathBuf, String) {
    if let Some(path) = std::env::var_os("CROSTINI_E2E_GARCON") {
        return (PathBuf::from(path), "CROSTINI_E2E_GARCON".into());
    }
    let debug = support::workspace_bin("garcon");
    let root = repo_root();
    let packaged = root.join("target/packaging/vm/opt/google/cros-containers/bin/garcon");
    // The packaged copy's mtime is normalised (SOURCE_DATE_EPOCH); the build it came from is not.
    let static_build = root.join("target/static/x86_64-unknown-linux-gnu/release/garcon");
    match (packaged.exists(), mtime(&static_build), mtime(&debug)) {
        (true, Some(s), Some(d)) if s >= d => (
            packaged,
            "packaging's static build (newer than target/debug/garcon)".into(),
        ),
        (true, _, _) => (
            debug,
            "target/debug/garcon (newer than packaging's static build; dynamically linked, the bookworm container has the host's glibc)".into(),
        ),
        (false, _, _) => (
            debug,
            "target/debug/garcon (no packaging/build-vm-image.sh output; dynamically linked, the bookworm container has the host's glibc)".into(),
        ),
    }
}

fn new_token() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("kernel uuid")
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Timing

/// Wall time per stage; printed as each stage ends and as a table when dropped (so a failing run
/// still shows how far it got).
struct Stages {
    started: Instant,
    rows: Vec<(String, Duration, String)>,
}

impl Stages {
    fn new() -> Self {
        Stages {
            started: Instant::now(),
            rows: Vec::new(),
        }
    }

    fn done(&mut self, stage: &str, since: Instant, note: impl Into<String>) {
        let took = since.elapsed();
        let note = note.into();
        eprintln!("[e2e] {stage:<28} {:>8.2}s  {note}", took.as_secs_f64());
        self.rows.push((stage.to_string(), took, note));
    }
}

impl Drop for Stages {
    fn drop(&mut self) {
        let mut table = String::from("\n[e2e] stage wall times\n");
        let _ = writeln!(table, "  {:<28} {:>9}  note", "stage", "seconds");
        for (stage, took, note) in &self.rows {
            let _ = writeln!(table, "  {stage:<28} {:>9.2}  {note}", took.as_secs_f64());
        }
        let _ = writeln!(
            table,
            "  {:<28} {:>9.2}{}",
            "total",
            self.started.elapsed().as_secs_f64(),
            if std::thread::panicking() {
                "  (FAILED after the last stage listed)"
            } else {
                ""
            }
        );
        eprintln!("{table}");
    }
}

// ---------------------------------------------------------------------------------------------
// Things to undo

/// Deletes the test's containers and profile even when the test fails.
struct LxdCleanup {
    containers: Vec<String>,
    profile: String,
}

impl Drop for LxdCleanup {
    fn drop(&mut self) {
        if std::env::var_os("CROSTINI_E2E_KEEP").is_some() {
            eprintln!(
                "[e2e] CROSTINI_E2E_KEEP: leaving containers {:?} and profile {}",
                self.containers, self.profile
            );
            return;
        }
        for name in &self.containers {
            let _ = test_lxd::lxc()
                .args(["delete", "--force", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = test_lxd::lxc()
            .args(["profile", "delete", &self.profile])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// The running system

struct World {
    host: RunningHost,
    tremplin: Daemon,
    tremplin_client: crostini_proto::vm_tools::tremplin::tremplin_client::TremplinClient<
        tonic::transport::Channel,
    >,
    lxd: crostini_lxd::Client,
    name: String,
}

impl World {
    fn seq(&self) -> u64 {
        self.host.state.events.next_seq()
    }

    /// Waits for a host event; on timeout panics with what did arrive and the daemons' logs.
    async fn wait(
        &self,
        from: u64,
        what: &str,
        matches: impl Fn(&Payload) -> bool,
        timeout: Duration,
    ) -> Event {
        match self
            .host
            .wait_for_from(from, |e| matches(&e.payload), timeout)
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("{what}: {e}\n{}", self.diagnostics(from).await),
        }
    }

    /// Events since `from`, tremplin's stderr tail and garcon's journal.
    async fn diagnostics(&self, from: u64) -> String {
        let mut text = String::from("host events received:\n");
        for e in self.host.events().iter().filter(|e| e.seq >= from) {
            let line = e.to_json_line();
            let cut: String = line.chars().take(600).collect();
            let _ = writeln!(text, "  {cut}");
        }
        // The support module runs daemons with RUST_LOG=debug; the gRPC frame logs drown the rest.
        let stderr = strip_ansi(&self.tremplin.stderr());
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .rev()
            .take(40)
            .collect();
        let _ = writeln!(text, "tremplin stderr (last 40 lines above DEBUG):");
        for line in tail.into_iter().rev() {
            let _ = writeln!(text, "  {line}");
        }
        if let Ok(out) = self
            .lxd
            .exec(
                &self.name,
                &ExecRequest::new(&[
                    "journalctl",
                    "--no-pager",
                    "-n",
                    "60",
                    "_SYSTEMD_USER_UNIT=cros-garcon.service",
                ])
                .env("PATH", PATH_ENV)
                .timeout(Duration::from_secs(20)),
            )
            .await
        {
            let _ = writeln!(text, "garcon journal:\n{}", out.stdout_str());
        }
        text
    }

    async fn exec_as(&self, uid: Option<u32>, argv: &[&str], timeout: Duration) -> ExecOutput {
        let mut req = ExecRequest::new(argv)
            .env("PATH", PATH_ENV)
            .timeout(timeout);
        if let Some(uid) = uid {
            req.user = Some(uid);
            req.group = Some(uid);
            req = req.env("HOME", &format!("/home/{USER}"));
        }
        self.lxd
            .exec(&self.name, &req)
            .await
            .unwrap_or_else(|e| panic!("exec {argv:?} in {}: {e}", self.name))
    }

    /// Runs as root; asserts exit 0 and returns stdout.
    /// Waits for the container's systemd to finish booting; returns its state and the last
    /// stderr. Right after a start the system bus may not accept connections yet ("Failed to
    /// connect to bus"), so the question is asked again until it is answered or time runs out.
    async fn wait_for_boot(&self, timeout: Duration) -> (String, String) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let out = self
                .exec_as(None, &["systemctl", "is-system-running", "--wait"], timeout)
                .await;
            let state = out.stdout_str().trim().to_string();
            if state == "running" || state == "degraded" || std::time::Instant::now() >= deadline {
                return (state, out.stderr_str());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn exec_ok(&self, argv: &[&str], timeout: Duration) -> String {
        let out = self.exec_as(None, argv, timeout).await;
        assert_eq!(
            out.exit_code,
            0,
            "{argv:?} in {} exited {}:\nstdout: {}\nstderr: {}",
            self.name,
            out.exit_code,
            out.stdout_str(),
            out.stderr_str()
        );
        out.stdout_str()
    }

    async fn push(&self, path: &str, content: Vec<u8>, uid: u32, mode: u32) {
        self.lxd
            .push_file(
                &self.name,
                path,
                content,
                FileMeta {
                    uid,
                    gid: uid,
                    mode,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("push {path} into {}: {e}", self.name));
    }

    async fn wait_op(&self, op: &crostini_lxd::Operation, what: &str) {
        self.lxd
            .wait(op, LONG)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// Removes terminal colour sequences (`ESC [ ... m`) from a log.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_final_create(p: &Payload, name: &str) -> bool {
    matches!(p, Payload::UpdateCreateStatus(c) if c.container_name == name
        && c.status != tp::container_creation_progress::Status::Downloading as i32)
}

fn app_ids(p: &Payload) -> Option<Vec<String>> {
    match p {
        Payload::UpdateApplicationList(l) => Some(
            l.application
                .iter()
                .map(|a| a.desktop_file_id.clone())
                .collect(),
        ),
        _ => None,
    }
}

fn decode_png(bytes: &[u8], what: &str) -> (u32, u32) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("{what}: not a PNG ({} bytes): {e}", bytes.len()));
    (img.width(), img.height())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crostini_end_to_end_on_real_lxd() {
    assert!(
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() } == 0,
        "the end-to-end test drives the real LXD and must run as root (test.sh does)"
    );
    let mut stages = Stages::new();
    let root = repo_root();

    // ---- Prerequisites: LXD, image, packages, directories ----------------------------------
    let t = Instant::now();
    let lxd_socket = test_lxd::socket();
    run_script(&root.join("tests/lxd/build-image.sh"), &[], &[]);
    let dir = tempfile::Builder::new()
        .prefix("crostini-e2e-")
        .tempdir()
        .expect("tempdir");
    let d = |s: &str| dir.path().join(s);
    chmod(dir.path(), 0o755);
    let out_dir = d("debs");
    let garcon_deb = PathBuf::from(last_line(&run_script(
        &root.join("packaging/build-deb.sh"),
        &[],
        &[("OUT_DIR", out_dir.to_str().expect("utf-8 path"))],
    )));
    let hello_deb = PathBuf::from(last_line(&run_script(
        &root.join("tests/e2e/build-fixture-deb.sh"),
        &[out_dir.to_str().expect("utf-8 path")],
        &[],
    )));
    for sub in [
        "sock",
        "tools/bin",
        "tokens",
        "shared",
        "stateful",
        "fonts",
        "external",
        "logs",
    ] {
        std::fs::create_dir_all(d(sub)).expect("mkdir");
    }
    // Container uid 1000 (mapped to host uid 1000) connects to the host's sockets and creates
    // garcon's: the directory is world-writable, the sockets world-connectable.
    chmod(&d("sock"), 0o777);
    chmod(&d("tools"), 0o755);
    chmod(&d("tools/bin"), 0o755);
    let (garcon_src, garcon_why) = garcon_binary();
    let garcon_dst = d("tools/bin/garcon");
    if std::fs::hard_link(&garcon_src, &garcon_dst).is_err() {
        std::fs::copy(&garcon_src, &garcon_dst).expect("copy garcon into the tools dir");
    }
    chmod(&garcon_dst, 0o755);
    stages.done(
        "prerequisites",
        t,
        format!("garcon = {} [{garcon_why}]", garcon_src.display()),
    );

    // ---- crostini-host and tremplin -------------------------------------------------------
    let t = Instant::now();
    let host = RunningHost::start(HostConfig {
        container_listener: Some(Address::unix(d("sock/8889.sock"))),
        tremplin_listener: Some(Address::unix(d("sock/7778.sock"))),
        // ContainerReady asks this tremplin (GetContainerInfo) whether the container runs.
        tremplin_address: Some(Address::unix(d("tremplin.sock"))),
        ..HostConfig::default()
    })
    .await
    .expect("crostini-host listeners bind");
    chmod(&d("sock/8889.sock"), 0o666);
    chmod(&d("sock/7778.sock"), 0o666);
    let pid = std::process::id();
    let name = format!("e2e-{pid}");
    let profile = format!("e2e-{pid}");
    let mut cleanup = LxdCleanup {
        containers: vec![name.clone()],
        profile: profile.clone(),
    };
    let p = |s: &str| d(s).display().to_string();
    let tremplin_listen = Address::unix(d("tremplin.sock"));
    let args: Vec<String> = vec![
        format!("--listen={tremplin_listen}"),
        format!("--host-address=unix://{}", p("sock/7778.sock")),
        "--crash-address=none".into(),
        format!("--lxd-socket={}", lxd_socket.display()),
        "-lxd_subnet".into(),
        SUBNET.into(),
        format!("--milestone={MILESTONE}"),
        format!("--lsb-release={}", p("no-lsb-release")),
        format!("--milestone-file={}", p("cros_milestone")),
        format!("--tokens-dir={}", p("tokens")),
        format!("--guest-tools-dir={}", p("tools")),
        format!("--shared-dir={}", p("shared")),
        format!("--stateful-dir={}", p("stateful")),
        // tremplin's "empty string: skip" is refused by its flag parser (clap rejects an empty
        // path), so the directory goes to the temp dir, owned by root.
        format!("--lxd-conf-dir={}", p("stateful/lxd_conf")),
        "--lxd-conf-owner=root".into(),
        format!("--fonts-dir={}", p("fonts")),
        format!("--external-dir={}", p("external")),
        // The values the harness gave lxdbr0, so the shared bridge is left as it is.
        "--resolv-conf=/etc/resolv.conf".into(),
        "--arc-hosts=/dev/null".into(),
        format!("--lxd-profile={profile}"),
        "--storage-driver=dir".into(),
        "--no-apt-key-refresh".into(),
        "--log-stderr".into(),
    ];
    let tremplin = Daemon::spawn("tremplin", &args, &d("logs"));
    let mut w = World {
        tremplin_client: clients::tremplin(&tremplin_listen).expect("tremplin client"),
        host,
        tremplin,
        lxd: crostini_lxd::Client::new(&lxd_socket).with_timeout(SHORT),
        name: name.clone(),
    };
    let deadline = Instant::now() + SHORT;
    let ready = loop {
        let found = w
            .host
            .wait_for(
                |e| matches!(e.payload, Payload::TremplinReady(_)),
                Duration::from_secs(1),
            )
            .await;
        if let Ok(e) = found {
            break e;
        }
        assert!(
            w.tremplin.is_running() && Instant::now() < deadline,
            "no TremplinReady (tremplin running: {}); stderr:\n{}",
            w.tremplin.is_running(),
            w.tremplin.stderr()
        );
    };
    assert!(
        ready.is_ok(),
        "host refused TremplinReady: {}",
        ready.status_message
    );
    stages.done("tremplin ready", t, "TremplinReady over unix socket");

    // ---- StartLxd -------------------------------------------------------------------------
    let t = Instant::now();
    let from = w.seq();
    let r = w
        .tremplin_client
        .start_lxd(with_deadline(
            tp::StartLxdRequest {
                reset_lxd_db: false,
            },
            SHORT,
        ))
        .await
        .expect("StartLxd")
        .into_inner();
    assert_eq!(
        r.status,
        tp::start_lxd_response::Status::Starting as i32,
        "{r:?}"
    );
    let e = w
        .wait(
            from,
            "UpdateStartLxdStatus",
            |p| matches!(p, Payload::UpdateStartLxdStatus(_)),
            LONG,
        )
        .await;
    let Payload::UpdateStartLxdStatus(s) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        s.status,
        tp::start_lxd_progress::Status::Started as i32,
        "StartLxd failed: {}",
        s.failure_reason
    );
    stages.done("StartLxd", t, "STARTED (adopted the running LXD)");

    // ---- The host directory in the container ----------------------------------------------
    // A disk device in the profile tremplin just wrote (tremplin.md §6): tremplin replaces every
    // *instance* device on each StartContainer (§7), so a device there would be gone after the
    // restart below; the profile keeps it from the first boot on, the way vsock is always there
    // on a Chromebook.
    let t = Instant::now();
    let (prof, etag) = w.lxd.profile(&profile).await.expect("tremplin's profile");
    let mut put = prof.writable();
    put.devices.insert(
        "crostini-host".into(),
        [
            ("type", "disk"),
            ("source", p("sock").as_str()),
            ("path", MOUNT),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    w.lxd
        .update_profile(&profile, &put, etag.as_deref())
        .await
        .expect("add the crostini-host disk device to the profile");
    stages.done(
        "host socket directory",
        t,
        format!("{} -> {MOUNT} (profile {profile})", p("sock")),
    );

    // ---- CreateContainer with download progress -------------------------------------------
    let t = Instant::now();
    let server = ImageServer::start(&["--throttle", THROTTLE]);
    // tremplin creates every container under the fixed temporary name
    // `crostini-inprogress-create` (tremplin.md §8.1), so a tremplin of another test creating at
    // the same moment on this shared LXD makes one of the two fail ("Instance is busy ..."). Such
    // a failure is retried; the retries show in the stage note.
    let mut retries = Vec::new();
    let from = loop {
        match w.lxd.delete_image(&server.fingerprint).await {
            Ok(op) => w.wait_op(&op, "deleting the cached test image").await,
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("deleting the cached test image {}: {e}", server.fingerprint),
        }
        let from = w.seq();
        let r = w
            .tremplin_client
            .create_container(with_deadline(
                tp::CreateContainerRequest {
                    container_name: name.clone(),
                    image_server: server.url.clone(),
                    image_alias: server.alias.clone(),
                    ..Default::default()
                },
                clients::LONG_DEADLINE,
            ))
            .await
            .expect("CreateContainer")
            .into_inner();
        assert_eq!(
            r.status,
            tp::create_container_response::Status::Creating as i32,
            "{r:?}"
        );
        let e = w
            .wait(
                from,
                "final UpdateCreateStatus",
                |p| is_final_create(p, &name),
                LONG,
            )
            .await;
        let Payload::UpdateCreateStatus(c) = &e.payload else {
            unreachable!()
        };
        if c.status == tp::container_creation_progress::Status::Created as i32 {
            break from;
        }
        let contention = [
            "busy",
            "crostini-inprogress-create",
            "already exists",
            "not found",
        ]
        .iter()
        .any(|s| c.failure_reason.contains(s));
        assert!(
            contention && retries.len() < 3,
            "create failed (after {} retries): {}",
            retries.len(),
            c.failure_reason
        );
        eprintln!(
            "[e2e] CreateContainer failed, probably another test's tremplin creating at the same time; retrying in 20 s: {}",
            c.failure_reason
        );
        retries.push(c.failure_reason.clone());
        tokio::time::sleep(Duration::from_secs(20)).await;
    };
    let downloads: Vec<i32> = w
        .host
        .events()
        .iter()
        .filter(|e| e.seq >= from)
        .filter_map(|e| match &e.payload {
            Payload::UpdateCreateStatus(c)
                if c.status == tp::container_creation_progress::Status::Downloading as i32 =>
            {
                Some(c.download_progress)
            }
            _ => None,
        })
        .collect();
    assert!(
        !downloads.is_empty(),
        "no DOWNLOADING report while pulling the image at {THROTTLE} B/s"
    );
    assert!(
        downloads.iter().all(|p| (0..=100).contains(p)),
        "{downloads:?}"
    );
    drop(server);
    stages.done(
        "CreateContainer",
        t,
        format!(
            "CREATED after {} DOWNLOADING reports ({}% .. {}%){}",
            downloads.len(),
            downloads.first().copied().unwrap_or(0),
            downloads.last().copied().unwrap_or(0),
            if retries.is_empty() {
                String::new()
            } else {
                format!("; {} retries after contention: {retries:?}", retries.len())
            }
        ),
    );

    // ---- SetUpUser ------------------------------------------------------------------------
    let t = Instant::now();
    let r = w
        .tremplin_client
        .set_up_user(with_deadline(
            tp::SetUpUserRequest {
                container_name: name.clone(),
                container_username: USER.into(),
            },
            SHORT,
        ))
        .await
        .expect("SetUpUser")
        .into_inner();
    assert_eq!(
        r.status,
        tp::set_up_user_response::Status::Success as i32,
        "{r:?}"
    );
    assert_eq!(r.username, USER);
    stages.done("SetUpUser", t, "SUCCESS");

    // ---- StartContainer with a token ------------------------------------------------------
    let t = Instant::now();
    let token = new_token();
    w.host.expect_container(&token, &name);
    let from = w.seq();
    let r = w
        .tremplin_client
        .start_container(with_deadline(
            tp::StartContainerRequest {
                container_name: name.clone(),
                token: token.clone(),
                ..Default::default()
            },
            clients::LONG_DEADLINE,
        ))
        .await
        .expect("StartContainer")
        .into_inner();
    assert_eq!(
        r.status,
        tp::start_container_response::Status::Starting as i32,
        "{r:?}"
    );
    let e = w
        .wait(
            from,
            "final UpdateStartStatus",
            |p| {
                matches!(p, Payload::UpdateStartStatus(s) if s.container_name == name
                && s.status != tp::container_start_progress::Status::Starting as i32)
            },
            LONG,
        )
        .await;
    let Payload::UpdateStartStatus(s) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        s.status,
        tp::container_start_progress::Status::Started as i32,
        "start failed: {}",
        s.failure_reason
    );
    let in_container_token = w.exec_ok(&["cat", "/dev/.container_token"], SHORT).await;
    assert_eq!(
        in_container_token, token,
        "token device /dev/.container_token"
    );
    w.exec_ok(
        &["test", "-x", "/opt/google/cros-containers/bin/garcon"],
        SHORT,
    )
    .await;
    // The container's systemd finishes booting (user@1000 for the lingering user among it).
    let (boot_state, boot_stderr) = w.wait_for_boot(LONG).await;
    assert!(
        boot_state == "running" || boot_state == "degraded",
        "container boot: {boot_state:?} {boot_stderr}"
    );
    stages.done(
        "StartContainer",
        t,
        format!("STARTED; token and guest tools mounted; systemd {boot_state}"),
    );

    // ---- The host directory, the cros-garcon package and garcon ---------------------------
    let t = Instant::now();
    // Outside /tmp, which systemd-tmpfiles empties while the container boots.
    let fixture_dir = "/var/lib/crostini-e2e";
    w.exec_ok(&["mkdir", "-p", fixture_dir], SHORT).await;
    let container_files = root.join("tests/e2e/container");
    for entry in std::fs::read_dir(&container_files).expect("tests/e2e/container") {
        let path = entry.expect("dir entry").path();
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        w.push(
            &format!("{fixture_dir}/{file}"),
            std::fs::read(&path).expect("read fixture"),
            0,
            mode | 0o444,
        )
        .await;
    }
    w.push(
        &format!("{fixture_dir}/cros-garcon.deb"),
        std::fs::read(&garcon_deb).expect("read cros-garcon deb"),
        0,
        0o644,
    )
    .await;
    let from = w.seq();
    let setup_started = Instant::now();
    let setup = w
        .exec_as(
            None,
            &[
                "sh",
                &format!("{fixture_dir}/container-setup.sh"),
                "--user",
                USER,
                "--host-address",
                &format!("unix://{MOUNT}/8889.sock"),
                "--listen",
                &format!("unix://{MOUNT}/garcon.sock"),
                "--deb",
                &format!("{fixture_dir}/cros-garcon.deb"),
            ],
            LONG,
        )
        .await;
    assert_eq!(
        setup.exit_code,
        0,
        "container-setup.sh failed:\n{}\n{}",
        setup.stdout_str(),
        setup.stderr_str()
    );
    stages.done(
        "cros-garcon package",
        t,
        format!("installed; {}", setup.stdout_str().trim()),
    );

    // ---- ContainerReady and the application list -----------------------------------------
    let t = Instant::now();
    let e = w
        .wait(
            from,
            "ContainerReady",
            |p| matches!(p, Payload::ContainerReady(_)),
            LONG,
        )
        .await;
    let Payload::ContainerReady(info) = &e.payload else {
        unreachable!()
    };
    assert!(
        e.is_ok(),
        "host refused ContainerReady: {}",
        e.status_message
    );
    assert_eq!(
        info.token, token,
        "garcon presents the token tremplin mounted"
    );
    // Accepted because tremplin's GetContainerInfo said RUNNING with the container's address.
    let facts = w
        .host
        .state
        .registry
        .facts(crostini_host::registry::LOCAL_VM_CID, &name)
        .expect("the host recorded the container");
    assert!(
        facts
            .ipv4
            .is_some_and(|ip| ip.octets()[..3] == [100, 115, 92]),
        "address from GetContainerInfo in {SUBNET}: {facts:?}"
    );
    assert_eq!(facts.username, USER, "GetContainerUsername: {facts:?}");
    stages.done(
        "ContainerReady",
        t,
        format!(
            "{} ms after container-setup.sh began; peer {}",
            e.at.saturating_duration_since(setup_started).as_millis(),
            e.peer
        ),
    );

    let t = Instant::now();
    let e = w
        .wait(
            from,
            "an application list with e2e-marker",
            |p| app_ids(p).is_some_and(|ids| ids.iter().any(|i| i == "e2e-marker")),
            SHORT,
        )
        .await;
    assert!(
        e.is_ok(),
        "host refused UpdateApplicationList: {}",
        e.status_message
    );
    let first_list = app_ids(&e.payload).expect("app list");
    stages.done("application list", t, format!("{first_list:?}"));

    // ---- GetIcon --------------------------------------------------------------------------
    let t = Instant::now();
    let mut garcon = clients::garcon(&Address::unix(d("sock/garcon.sock"))).expect("garcon client");
    let mut sizes = Vec::new();
    for size in [48, 32] {
        let reply = garcon
            .get_icon(with_deadline(
                ct::IconRequest {
                    desktop_file_ids: vec!["e2e-marker".into()],
                    icon_size: size,
                    scale: 1,
                },
                SHORT,
            ))
            .await
            .expect("GetIcon")
            .into_inner();
        let icon = reply
            .desktop_icons
            .iter()
            .find(|i| i.desktop_file_id == "e2e-marker")
            .unwrap_or_else(|| panic!("no icon for e2e-marker at {size}: {reply:?}"));
        assert_eq!(icon.format, ct::desktop_icon::Format::Png as i32);
        let dims = decode_png(&icon.icon, "GetIcon e2e-marker");
        assert_eq!(dims, (size as u32, size as u32), "icon asked at {size} px");
        sizes.push(format!("{}x{}", dims.0, dims.1));
    }
    stages.done("GetIcon", t, format!("PNG {}", sizes.join(", ")));

    // ---- LaunchApplication ----------------------------------------------------------------
    let t = Instant::now();
    let reply = garcon
        .launch_application(with_deadline(
            ct::LaunchApplicationRequest {
                desktop_file_id: "e2e-marker".into(),
                files: vec!["/etc/hostname".into()],
                ..Default::default()
            },
            SHORT,
        ))
        .await
        .expect("LaunchApplication")
        .into_inner();
    assert!(reply.success, "LaunchApplication: {}", reply.failure_reason);
    let deadline = Instant::now() + SHORT;
    let marker = loop {
        let out = w
            .exec_as(None, &["cat", "/tmp/e2e-marker.launched"], SHORT)
            .await;
        if out.exit_code == 0 {
            break out.stdout_str();
        }
        assert!(
            Instant::now() < deadline,
            "the launched application wrote no /tmp/e2e-marker.launched\n{}",
            w.diagnostics(from).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        marker.lines().any(|l| l == "uid=1000"),
        "launched as uid 1000: {marker}"
    );
    assert!(
        marker.lines().any(|l| l == "arg=/etc/hostname"),
        "launched with the file: {marker}"
    );
    stages.done("LaunchApplication", t, "marker file written by uid 1000");

    // ---- InstallLinuxPackage --------------------------------------------------------------
    let t = Instant::now();
    let deb_in_container = format!(
        "/home/{USER}/{}",
        hello_deb.file_name().expect("deb name").to_string_lossy()
    );
    w.push(
        &deb_in_container,
        std::fs::read(&hello_deb).expect("read fixture deb"),
        1000,
        0o644,
    )
    .await;
    let command_uuid = new_token();
    let from = w.seq();
    let reply = garcon
        .install_linux_package(with_deadline(
            ct::InstallLinuxPackageRequest {
                file_path: deb_in_container.clone(),
                command_uuid: command_uuid.clone(),
                ..Default::default()
            },
            SHORT,
        ))
        .await
        .expect("InstallLinuxPackage")
        .into_inner();
    assert_eq!(
        reply.status,
        ct::install_linux_package_response::Status::Started as i32,
        "{reply:?}"
    );
    use ct::install_linux_package_progress_info::Status as Install;
    let done = w
        .wait(
            from,
            "final InstallLinuxPackageProgress",
            |p| {
                matches!(p, Payload::InstallLinuxPackageProgress(i)
                if i.status == Install::Succeeded as i32 || i.status == Install::Failed as i32)
            },
            LONG,
        )
        .await;
    let Payload::InstallLinuxPackageProgress(fin) = &done.payload else {
        unreachable!()
    };
    assert_eq!(
        fin.status,
        Install::Succeeded as i32,
        "install failed: {}\n{}",
        fin.failure_details,
        w.diagnostics(from).await
    );
    assert_eq!(fin.command_uuid, command_uuid);
    let progress: Vec<String> = w
        .host
        .events()
        .iter()
        .filter(|e| e.seq >= from && e.seq < done.seq)
        .filter_map(|e| match &e.payload {
            Payload::InstallLinuxPackageProgress(i) => Some(format!(
                "{}:{}",
                Install::try_from(i.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?"),
                i.progress_percent
            )),
            _ => None,
        })
        .collect();
    assert!(
        !progress.is_empty(),
        "no InstallLinuxPackageProgress before SUCCEEDED"
    );
    let install_took = t.elapsed();
    let listed = w
        .wait(
            from,
            "an application list with crostini-e2e-hello",
            |p| app_ids(p).is_some_and(|ids| ids.iter().any(|i| i == "crostini-e2e-hello")),
            SHORT,
        )
        .await;
    let lag = listed.at.saturating_duration_since(done.at);
    assert!(
        lag <= Duration::from_secs(1),
        "the new application reached the host {lag:?} after the install finished"
    );
    let with_hello = app_ids(&listed.payload).expect("app list");
    stages.done(
        "InstallLinuxPackage",
        t,
        format!(
            "SUCCEEDED in {:.2}s after {progress:?}; app listed {} ms after",
            install_took.as_secs_f64(),
            lag.as_millis()
        ),
    );

    // ---- UninstallPackageOwningFile -------------------------------------------------------
    let t = Instant::now();
    let from = w.seq();
    let reply = garcon
        .uninstall_package_owning_file(with_deadline(
            ct::UninstallPackageOwningFileRequest {
                desktop_file_id: "crostini-e2e-hello".into(),
            },
            SHORT,
        ))
        .await
        .expect("UninstallPackageOwningFile")
        .into_inner();
    assert_eq!(
        reply.status,
        ct::uninstall_package_owning_file_response::Status::Started as i32,
        "{reply:?}"
    );
    use ct::uninstall_package_progress_info::Status as Uninstall;
    let done = w
        .wait(
            from,
            "final UninstallPackageProgress",
            |p| {
                matches!(p, Payload::UninstallPackageProgress(u)
                if u.status == Uninstall::Succeeded as i32 || u.status == Uninstall::Failed as i32)
            },
            LONG,
        )
        .await;
    let Payload::UninstallPackageProgress(fin) = &done.payload else {
        unreachable!()
    };
    assert_eq!(
        fin.status,
        Uninstall::Succeeded as i32,
        "uninstall failed: {}\n{}",
        fin.failure_details,
        w.diagnostics(from).await
    );
    let shrunk = w
        .wait(
            from,
            "an application list without crostini-e2e-hello",
            |p| app_ids(p).is_some_and(|ids| !ids.iter().any(|i| i == "crostini-e2e-hello")),
            SHORT,
        )
        .await;
    let without_hello = app_ids(&shrunk.payload).expect("app list");
    assert!(
        without_hello.len() < with_hello.len(),
        "{without_hello:?} vs {with_hello:?}"
    );
    let removed = w
        .exec_as(None, &["dpkg-query", "-W", "crostini-e2e-hello"], SHORT)
        .await;
    assert_ne!(removed.exit_code, 0, "the package is still installed");
    stages.done(
        "UninstallPackageOwningFile",
        t,
        format!(
            "SUCCEEDED; list {} -> {} apps",
            with_hello.len(),
            without_hello.len()
        ),
    );

    // ---- garcon's SIGTERM path -------------------------------------------------------------
    // StopContainer stops with force (tremplin.md §8.3), which kills garcon without a SIGTERM, so
    // garcon's ContainerShutdown is checked here: systemd stops the user unit with SIGTERM.
    let t = Instant::now();
    let from = w.seq();
    let stop_unit = w
        .exec_as(
            None,
            &[
                "runuser",
                "-u",
                USER,
                "--",
                "env",
                "XDG_RUNTIME_DIR=/run/user/1000",
                "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus",
                "systemctl",
                "--user",
                "stop",
                "cros-garcon.service",
            ],
            SHORT,
        )
        .await;
    assert_eq!(
        stop_unit.exit_code,
        0,
        "systemctl --user stop cros-garcon: {}",
        stop_unit.stderr_str()
    );
    let bye = w
        .wait(
            from,
            "garcon's ContainerShutdown",
            |p| matches!(p, Payload::ContainerShutdown(c) if c.token == token),
            SHORT,
        )
        .await;
    assert!(
        bye.is_ok(),
        "host refused ContainerShutdown: {}",
        bye.status_message
    );
    stages.done(
        "garcon SIGTERM",
        t,
        "user unit stopped; ContainerShutdown with the token",
    );

    // ---- StopContainer --------------------------------------------------------------------
    let marker_text = format!("export marker {token}\n");
    w.push(
        "/root/e2e-export-marker",
        marker_text.clone().into_bytes(),
        0,
        0o644,
    )
    .await;
    let t = Instant::now();
    let from = w.seq();
    let r = w
        .tremplin_client
        .stop_container(with_deadline(
            tp::StopContainerRequest {
                container_name: name.clone(),
            },
            SHORT,
        ))
        .await
        .expect("StopContainer")
        .into_inner();
    assert_eq!(
        r.status,
        tp::stop_container_response::Status::Stopping as i32,
        "{r:?}"
    );
    let e = w
        .wait(
            from,
            "final UpdateStopStatus",
            |p| {
                matches!(p, Payload::UpdateStopStatus(s) if s.container_name == name
                && s.status != tp::container_stop_progress::Status::Stopping as i32)
            },
            LONG,
        )
        .await;
    let Payload::UpdateStopStatus(s) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        s.status,
        tp::container_stop_progress::Status::Stopped as i32,
        "stop failed: {}",
        s.failure_reason
    );
    w.wait(
        from,
        "tremplin's ContainerShutdown",
        |p| matches!(p, Payload::TremplinContainerShutdown(c) if c.container_name == name),
        SHORT,
    )
    .await;
    stages.done(
        "StopContainer",
        t,
        "STOPPED; tremplin's ContainerShutdown received",
    );

    // ---- ExportContainer ------------------------------------------------------------------
    let t = Instant::now();
    let export_name = "e2e-export.tar.gz";
    let from = w.seq();
    let r = w
        .tremplin_client
        .export_container(with_deadline(
            tp::ExportContainerRequest {
                container_name: name.clone(),
                export_path: export_name.into(),
            },
            SHORT,
        ))
        .await
        .expect("ExportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        tp::export_container_response::Status::Exporting as i32,
        "{r:?}"
    );
    use tp::container_export_progress::Status as Export;
    let e = w
        .wait(
            from,
            "final UpdateExportStatus",
            |p| {
                matches!(p, Payload::UpdateExportStatus(x) if x.container_name == name
                && x.status != Export::ExportingStreaming as i32)
            },
            Duration::from_secs(900),
        )
        .await;
    let Payload::UpdateExportStatus(x) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        x.status,
        Export::Done as i32,
        "export failed: {}",
        x.failure_reason
    );
    let exported = std::fs::metadata(d("shared").join(export_name))
        .expect("exported file")
        .len();
    assert!(
        exported > 0 && exported == x.bytes_exported,
        "{exported} vs {x:?}"
    );
    let streaming = w
        .host
        .events()
        .iter()
        .filter(|e| {
            e.seq >= from
                && matches!(&e.payload, Payload::UpdateExportStatus(x) if x.status == Export::ExportingStreaming as i32)
        })
        .count();
    stages.done(
        "ExportContainer",
        t,
        format!(
            "DONE: {} files, {:.1} MB -> {:.1} MB gzip, {streaming} streaming reports",
            x.total_input_files,
            x.total_input_bytes as f64 / 1e6,
            exported as f64 / 1e6
        ),
    );

    // ---- ImportContainer ------------------------------------------------------------------
    // Change the container after the export, so only the import can bring the marker back.
    w.lxd
        .delete_file(&name, "/root/e2e-export-marker")
        .await
        .expect("delete the marker from the stopped container");
    let t = Instant::now();
    cleanup.containers.push("rootfs-import".into());
    let from = w.seq();
    let r = w
        .tremplin_client
        .import_container(with_deadline(
            tp::ImportContainerRequest {
                container_name: name.clone(),
                import_path: export_name.into(),
                ..Default::default()
            },
            SHORT,
        ))
        .await
        .expect("ImportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        tp::import_container_response::Status::Importing as i32,
        "{r:?}"
    );
    use tp::container_import_progress::Status as Import;
    let e = w
        .wait(
            from,
            "final UpdateImportStatus",
            |p| {
                matches!(p, Payload::UpdateImportStatus(x) if x.container_name == name
                && x.status != Import::ImportingUpload as i32
                && x.status != Import::ImportingUnpack as i32)
            },
            Duration::from_secs(900),
        )
        .await;
    let Payload::UpdateImportStatus(x) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        x.status,
        Import::Done as i32,
        "import failed: {}",
        x.failure_reason
    );
    let (uploads, unpacks) =
        w.host
            .events()
            .iter()
            .filter(|e| e.seq >= from)
            .fold((0, 0), |(u, p), e| match &e.payload {
                Payload::UpdateImportStatus(x) if x.status == Import::ImportingUpload as i32 => {
                    (u + 1, p)
                }
                Payload::UpdateImportStatus(x) if x.status == Import::ImportingUnpack as i32 => {
                    (u, p + 1)
                }
                _ => (u, p),
            });
    let restored = w
        .lxd
        .pull_file(&name, "/root/e2e-export-marker")
        .await
        .expect("the marker file in the imported container");
    let FileContent::File { content, .. } = restored else {
        panic!("/root/e2e-export-marker is not a file: {restored:?}")
    };
    assert_eq!(String::from_utf8_lossy(&content), marker_text);
    assert!(
        w.lxd.instance("rootfs-import").await.is_err(),
        "rootfs-import left behind"
    );
    // Imported: the name may belong to another test's import from now on.
    cleanup.containers.retain(|c| c != "rootfs-import");
    stages.done(
        "ImportContainer",
        t,
        format!("DONE after {uploads} upload and {unpacks} unpack reports; marker file restored"),
    );

    // ---- The imported container boots into a working garcon by itself ---------------------
    // Nothing is run in the container this time: systemd starts the user session of the
    // lingering user, the cros-garcon unit (package, drop-in and host directory all came back
    // with the import) reads the new token and reports.
    let t = Instant::now();
    let token2 = new_token();
    w.host.expect_container(&token2, &name);
    let from = w.seq();
    let r = w
        .tremplin_client
        .start_container(with_deadline(
            tp::StartContainerRequest {
                container_name: name.clone(),
                token: token2.clone(),
                ..Default::default()
            },
            clients::LONG_DEADLINE,
        ))
        .await
        .expect("StartContainer after the import")
        .into_inner();
    assert_eq!(
        r.status,
        tp::start_container_response::Status::Starting as i32,
        "{r:?}"
    );
    let e = w
        .wait(
            from,
            "ContainerReady of the imported container",
            |p| matches!(p, Payload::ContainerReady(c) if c.token == token2),
            LONG,
        )
        .await;
    assert!(
        e.is_ok(),
        "host refused ContainerReady: {}",
        e.status_message
    );
    let ready_after = t.elapsed();
    let e = w
        .wait(
            from,
            "an application list from the imported container",
            |p| app_ids(p).is_some_and(|ids| ids.iter().any(|i| i == "e2e-marker")),
            SHORT,
        )
        .await;
    assert!(e.is_ok(), "{}", e.status_message);
    stages.done(
        "restart after import",
        t,
        format!(
            "STARTED; garcon started by systemd at boot: ContainerReady {:.2}s after StartContainer, app list restored",
            ready_after.as_secs_f64()
        ),
    );

    let _ = std::fs::remove_file(d("shared").join(export_name));
    drop(cleanup);
    if std::env::var_os("CROSTINI_E2E_KEEP").is_some() {
        eprintln!("[e2e] CROSTINI_E2E_KEEP: keeping {}", dir.keep().display());
    }
    drop(w);
}
