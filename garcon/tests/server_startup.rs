//! Process-level tests: the built `garcon` binary against the `crostini-host` stand-in over unix
//! sockets and loopback tcp (never vsock). Fixtures: tests/fixtures/garcon/.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::registry::{ContainerRecord, LOCAL_VM_CID};
use crostini_host::{Event, HostConfig, Payload, RunningHost};
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::Application;
use crostini_proto::vm_tools::container::{
    get_garcon_session_info_response, GetGarconSessionInfoRequest,
};

const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const GARCON: &str = env!("CARGO_BIN_EXE_garcon");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/garcon")
}

/// A temp dir with the token file, a home and the socket paths.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(fixtures().join("token"), dir.path().join("token")).expect("token fixture");
        std::fs::create_dir(dir.path().join("home")).expect("home");
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn host_address(&self) -> Address {
        Address::unix(self.path("host.sock"))
    }

    async fn host(&self) -> RunningHost {
        let host = RunningHost::start(HostConfig {
            container_listener: Some(self.host_address()),
            ..HostConfig::default()
        })
        .await
        .expect("host starts");
        host.register_container(TOKEN, "penguin");
        host
    }

    /// A garcon command with a hermetic environment: no D-Bus, fixture XDG data, temp HOME.
    fn garcon(&self, args: &[&str]) -> Command {
        let mut command = Command::new(GARCON);
        command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .env("USER", "tester")
            .env("XDG_DATA_DIRS", fixtures().join("data"))
            .env("XDG_DATA_HOME", self.path("home/.local/share"))
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", self.path("no-system-bus").display()),
            )
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", self.path("no-session-bus").display()),
            )
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    fn server_args(&self, listen: &str) -> Vec<String> {
        vec![
            "--server".into(),
            "--allow_any_user".into(),
            "--log-stderr".into(),
            "--listen".into(),
            listen.into(),
            "--host-address".into(),
            self.host_address().to_string(),
            "--token-file".into(),
            self.path("token").display().to_string(),
            "--sftp-server".into(),
            "/bin/cat".into(),
        ]
    }

    fn spawn_server(&self, listen: &str) -> Server {
        let args = self.server_args(listen);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(&args, &[])
    }

    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let log = self.path("garcon.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = self.garcon(args);
        command
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().expect("spawn garcon");
        Server {
            child: Some(child),
            log,
        }
    }

    /// Runs a one-shot garcon to completion: (exit code, stdout, stderr). Async so the
    /// in-process host keeps answering meanwhile.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut command = self.garcon(args);
        command.envs(env.iter().copied());
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::from(command).output(),
        )
        .await
        .expect("garcon finished within 60 s")
        .expect("run garcon");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// A spawned garcon, killed (by pid) if still running when dropped.
struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> nix::unistd::Pid {
        let child = self.child.as_ref().expect("running");
        nix::unistd::Pid::from_raw(child.id() as i32)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal garcon");
    }

    async fn wait(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "garcon did not exit within {within:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_rpc(host: &RunningHost, rpc: &str, server: &Server) -> Event {
    match host
        .wait_for(|e| e.payload.rpc() == rpc, Duration::from_secs(20))
        .await
    {
        Ok(event) => event,
        Err(error) => panic!("{rpc}: {error}; garcon log:\n{}", server.log()),
    }
}

fn ready_info(event: &Event) -> (String, u32, u32) {
    match &event.payload {
        Payload::ContainerReady(info) => (info.token.clone(), info.garcon_port, info.sftp_port),
        other => panic!("not ContainerReady: {other:?}"),
    }
}

fn count(host: &RunningHost, rpc: &str) -> usize {
    host.events()
        .iter()
        .filter(|e| e.payload.rpc() == rpc)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_ready_over_unix_then_app_list_and_sigterm_shutdown() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let listen = format!("unix://{}", sandbox.path("garcon.sock").display());
    let mut server = sandbox.spawn_server(&listen);

    let ready = wait_rpc(&host, "ContainerReady", &server).await;
    assert!(ready.is_ok(), "host accepted: {ready:?}");
    let (token, garcon_port, sftp_port) = ready_info(&ready);
    assert_eq!(token, TOKEN, "36-char token without the newline");
    assert_eq!(
        (garcon_port, sftp_port),
        (0, 0),
        "unix listeners have no port"
    );

    // The publisher hook is wired: the fixture app arrives, then Pending{0}.
    let list = wait_rpc(&host, "UpdateApplicationList", &server).await;
    let Payload::UpdateApplicationList(list) = &list.payload else {
        unreachable!()
    };
    let ids: Vec<&str> = list
        .application
        .iter()
        .map(|a| a.desktop_file_id.as_str())
        .collect();
    assert_eq!(ids, ["garcon-process-test"]);
    assert_eq!(list.token, TOKEN);
    let pending = wait_rpc(&host, "PendingUpdateApplicationListCalls", &server).await;
    let Payload::PendingUpdateApplicationListCalls(pending) = &pending.payload else {
        unreachable!()
    };
    assert_eq!(pending.count, 0);
    assert_eq!(count(&host, "ContainerShutdown"), 0);

    server.signal(nix::sys::signal::Signal::SIGTERM);
    let status = server.wait(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    let shutdown = wait_rpc(&host, "ContainerShutdown", &server).await;
    let Payload::ContainerShutdown(info) = &shutdown.payload else {
        unreachable!()
    };
    assert_eq!(info.token, TOKEN);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&host, "ContainerShutdown"), 1, "exactly once");
    assert!(
        !sandbox.path("garcon.sock").exists(),
        "socket removed on exit"
    );
}

/// (desktop_file_id, [(locale, name)]) of every app of an UpdateApplicationList event.
fn apps_of(event: &Event) -> Vec<(String, Vec<(String, String)>)> {
    let Payload::UpdateApplicationList(list) = &event.payload else {
        panic!("not UpdateApplicationList: {event:?}")
    };
    list.application.iter().map(app_summary).collect()
}

fn app_summary(app: &Application) -> (String, Vec<(String, String)>) {
    let names = app
        .name
        .as_ref()
        .map(|name| {
            name.values
                .iter()
                .map(|v| (v.locale.clone(), v.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    (app.desktop_file_id.clone(), names)
}

fn fixture_apps() -> Vec<(String, Vec<(String, String)>)> {
    vec![(
        "garcon-process-test".to_string(),
        vec![
            (String::new(), "Garcon Process Test".to_string()),
            ("fr".to_string(), "Test de processus garcon".to_string()),
        ],
    )]
}

fn has_app(event: &Event, id: &str) -> bool {
    matches!(&event.payload, Payload::UpdateApplicationList(list)
        if list.application.iter().any(|a| a.desktop_file_id == id))
}

/// issue 4: "a new .desktop file reaches the host within 1 s" — garcon as a process, host over
/// unix sockets, XDG data in a temp dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_desktop_file_reaches_the_host_within_one_second() {
    let sandbox = Sandbox::new();
    let applications = sandbox.path("data/applications");
    std::fs::create_dir_all(&applications).expect("applications dir");
    std::fs::copy(
        fixtures().join("data/applications/garcon-process-test.desktop"),
        applications.join("garcon-process-test.desktop"),
    )
    .expect("fixture desktop file");
    let host = sandbox.host().await;
    let args = sandbox.server_args(&format!("unix://{}", sandbox.path("garcon.sock").display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = sandbox.path("data").display().to_string();
    let mut server = sandbox.spawn(&args, &[("XDG_DATA_DIRS", data.as_str())]);

    wait_rpc(&host, "ContainerReady", &server).await;
    let initial = wait_rpc(&host, "UpdateApplicationList", &server).await;
    assert_eq!(apps_of(&initial), fixture_apps());
    wait_rpc(&host, "PendingUpdateApplicationListCalls", &server).await;

    let from = host.events().last().map_or(0, |e| e.seq + 1);
    let written = Instant::now();
    std::fs::write(
        applications.join("latency-probe.desktop"),
        "[Desktop Entry]\nType=Application\nName=Latency Probe\nExec=/bin/true\n",
    )
    .expect("write the new desktop file");
    let update = host
        .wait_for_from(
            from,
            |e| has_app(e, "latency-probe"),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|error| panic!("{error}; garcon log:\n{}", server.log()));
    let latency = written.elapsed();
    assert!(
        latency < Duration::from_secs(1),
        "the new app reached the host after {latency:?}"
    );
    let mut expected = fixture_apps();
    expected.push((
        "latency-probe".to_string(),
        vec![(String::new(), "Latency Probe".to_string())],
    ));
    let mut got = apps_of(&update);
    got.sort();
    assert_eq!(got, expected);
    // The change was announced first: Pending{1} before the list, Pending{0} after it.
    let counts: Vec<(u64, u32)> = host
        .events()
        .into_iter()
        .filter(|e| e.seq >= from)
        .filter_map(|e| match e.payload {
            Payload::PendingUpdateApplicationListCalls(p) => Some((e.seq, p.count)),
            _ => None,
        })
        .collect();
    assert!(
        counts
            .iter()
            .any(|&(seq, count)| seq < update.seq && count == 1),
        "{counts:?}"
    );

    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(15)).await.code(), Some(0));
}

/// issue 4: "resend the full list whenever the host reconnects". The host goes away and a new
/// one comes up on the same address; nothing changes in the container, yet the list arrives.
///
/// The new host already knows the token as active: it models a host that kept its container
/// table across the interruption (cicerone keeps it while its vsock connection drops; a
/// cicerone that really lost its state would not know this boot's token at all, so neither an
/// UpdateApplicationList nor a second ContainerReady could succeed there). garcon does not
/// re-register: upstream never sends ContainerReady twice, and it would make the host redo its
/// registration and announce a second ContainerStarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_host_gets_the_full_list_again_without_a_change() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let listen = format!("unix://{}", sandbox.path("garcon.sock").display());
    let mut server = sandbox.spawn_server(&listen);
    wait_rpc(&host, "ContainerReady", &server).await;
    let initial = wait_rpc(&host, "UpdateApplicationList", &server).await;
    assert_eq!(apps_of(&initial), fixture_apps());
    wait_rpc(&host, "PendingUpdateApplicationListCalls", &server).await;
    host.shutdown().await;

    let restarted = RunningHost::start(HostConfig {
        container_listener: Some(sandbox.host_address()),
        ..HostConfig::default()
    })
    .await
    .expect("the new host starts on the same address");
    restarted.register_container(TOKEN, "penguin");
    restarted
        .state
        .registry
        .activate(
            LOCAL_VM_CID,
            ContainerRecord {
                name: "penguin".to_string(),
                token: TOKEN.to_string(),
                garcon_port: 0,
                sftp_port: 0,
                garcon_address: None,
            },
        )
        .expect("token activated");
    let up = Instant::now();

    let again = wait_rpc(&restarted, "UpdateApplicationList", &server).await;
    assert!(again.is_ok(), "the host took it: {again:?}");
    assert!(
        up.elapsed() < Duration::from_secs(5),
        "the list arrived {:?} after the host came back",
        up.elapsed()
    );
    assert_eq!(apps_of(&again), fixture_apps());
    let pending = wait_rpc(&restarted, "PendingUpdateApplicationListCalls", &server).await;
    assert!(pending.seq > again.seq, "Pending follows the list");
    let Payload::PendingUpdateApplicationListCalls(pending) = &pending.payload else {
        unreachable!()
    };
    assert_eq!(pending.count, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&restarted, "ContainerReady"), 0, "no re-registration");
    assert_eq!(
        count(&restarted, "UpdateApplicationList"),
        1,
        "one resend per reconnect"
    );

    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(15)).await.code(), Some(0));
    wait_rpc(&restarted, "ContainerShutdown", &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_ready_over_tcp_reports_the_bound_port() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let mut server = sandbox.spawn_server("tcp://127.0.0.1:0");

    let ready = wait_rpc(&host, "ContainerReady", &server).await;
    let (token, garcon_port, sftp_port) = ready_info(&ready);
    assert_eq!(token, TOKEN);
    assert_ne!(garcon_port, 0);
    assert_ne!(sftp_port, 0);
    assert_ne!(garcon_port, sftp_port);

    // The reported port really is garcon's gRPC server.
    let address = Address::tcp("127.0.0.1", u16::try_from(garcon_port).expect("tcp port"));
    let channel = crostini_common::lazy_channel(&address, Duration::from_secs(5)).expect("channel");
    let mut client = GarconClient::new(channel);
    let info = client
        .get_garcon_session_info(GetGarconSessionInfoRequest {})
        .await
        .expect("GetGarconSessionInfo")
        .into_inner();
    assert_eq!(
        info.status,
        get_garcon_session_info_response::Status::Succeeded as i32
    );
    assert_eq!(info.sftp_vsock_port, sftp_port);
    assert_eq!(info.container_username, "tester");
    assert_eq!(
        info.container_homedir,
        sandbox.path("home").display().to_string()
    );

    // And the sftp port runs the configured server (/bin/cat echoes).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sftp = tokio::net::TcpStream::connect(("127.0.0.1", sftp_port as u16))
        .await
        .expect("sftp connect");
    sftp.write_all(b"sftp-hello").await.expect("write");
    sftp.shutdown().await.expect("shutdown");
    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sftp.read_to_end(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(echoed, b"sftp-hello");

    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(15)).await.code(), Some(0));
    wait_rpc(&host, "ContainerShutdown", &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_kills_without_container_shutdown() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let mut server = sandbox.spawn_server("tcp://127.0.0.1:0");
    wait_rpc(&host, "ContainerReady", &server).await;
    server.signal(nix::sys::signal::Signal::SIGINT);
    let status = server.wait(Duration::from_secs(15)).await;
    assert_ne!(status.code(), Some(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&host, "ContainerShutdown"), 0);

    // A crash restart re-registers with the same token (no ContainerShutdown was sent).
    let mut again = sandbox.spawn_server("tcp://127.0.0.1:0");
    let second = host
        .wait_for_from(
            host.events().last().map_or(0, |e| e.seq + 1),
            |e| e.payload.rpc() == "ContainerReady",
            Duration::from_secs(20),
        )
        .await
        .expect("second ContainerReady");
    assert!(second.is_ok(), "host accepts the restarted garcon");
    again.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(again.wait(Duration::from_secs(15)).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_file_is_a_clear_error_and_255() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let mut args = sandbox.server_args("tcp://127.0.0.1:0");
    let missing = sandbox.path("no-token");
    let token_index = args.iter().position(|a| a == "--token-file").expect("flag") + 1;
    args[token_index] = missing.display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let (code, _, stderr) = sandbox
        .run(&args, &[("GARCON_TEST_TOKEN_WAIT_MS", "400")])
        .await;
    assert_eq!(code, Some(255), "stderr:\n{stderr}");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "polled first"
    );
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("token"), "{stderr}");
    assert!(host.events().is_empty(), "nothing sent without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_are_clear_errors_and_255() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--server",
                "--allow_any_user",
                "--host-address",
                "vsock://two:8889",
            ],
            "vsock://two:8889",
        ),
        (
            &["--server", "--allow_any_user", "--listen", "http://x:1"],
            "http://x:1",
        ),
        (&["--server", "--listen"], "--listen needs a value"),
        (
            &[
                "--client",
                "--url",
                "https://a",
                "--host-address=unix://relative",
            ],
            "unix://relative",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, stderr) = sandbox.run(args, &[]).await;
        assert_eq!(code, Some(255), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_address_in_use_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let _host = sandbox.host().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let args = sandbox.server_args(&format!("tcp://127.0.0.1:{port}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = sandbox.run(&args, &[]).await;
    assert_eq!(code, Some(255), "{stderr}");
    assert!(stderr.contains(&port.to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_retries_then_exits_255() {
    let sandbox = Sandbox::new();
    // No host at all.
    let args = sandbox.server_args("tcp://127.0.0.1:0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = sandbox
        .run(&args, &[("GARCON_TEST_READY_RETRY_MS", "1200")])
        .await;
    assert_eq!(code, Some(255), "{stderr}");
    assert!(
        stderr.matches("ContainerReady failed").count() >= 1,
        "each retried failure is logged: {stderr}"
    );
    assert!(
        stderr.contains("host.sock"),
        "names the host address: {stderr}"
    );
    assert!(stderr.contains("Unavailable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_switches_are_required() {
    let sandbox = Sandbox::new();
    for args in [&[][..], &["--server", "--client"], &["--url", "https://a"]] {
        let (code, _, stderr) = sandbox.run(args, &[]).await;
        assert_eq!(code, Some(255), "{args:?}");
        assert!(
            stderr.contains("--server") && stderr.contains("--client"),
            "{stderr}"
        );
    }
    let (code, stdout, _) = sandbox.run(&["--help"], &[]).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--host-address"));
}

async fn client_run(
    sandbox: &Sandbox,
    host_flag: &str,
    token_flag: &str,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let mut args = vec!["--client", host_flag, token_flag];
    args.extend_from_slice(extra);
    sandbox.run(&args, &[]).await
}

/// Client modes reach the host (the token must be active: a garcon server registers first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_url_and_terminal_reach_the_host() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let mut server = sandbox.spawn_server("tcp://127.0.0.1:0");
    wait_rpc(&host, "ContainerReady", &server).await;
    std::fs::write(sandbox.path("doc.pdf"), "%PDF").expect("doc");

    let host_flag = format!("--host-address={}", sandbox.host_address());
    let token_flag = format!("--token-file={}", sandbox.path("token").display());
    let client =
        |extra: &'static [&'static str]| client_run(&sandbox, &host_flag, &token_flag, extra);

    let (code, _, stderr) = client(&["--url", "https://example.com", "doc.pdf", "-x"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let urls: Vec<String> = host
        .events()
        .into_iter()
        .filter_map(|e| match e.payload {
            Payload::OpenUrl(m) => Some(m.url),
            _ => None,
        })
        .collect();
    let real = std::fs::canonicalize(sandbox.path("doc.pdf")).expect("realpath");
    assert_eq!(
        urls,
        [
            "https://example.com".to_string(),
            format!("file://{}", real.display())
        ]
    );

    let (code, _, stderr) = client(&["--terminal", "-e", "vim", "notes.txt"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let params: Vec<Vec<String>> = host
        .events()
        .into_iter()
        .filter_map(|e| match e.payload {
            Payload::OpenTerminal(m) => Some(m.params),
            _ => None,
        })
        .collect();
    assert_eq!(params, [vec!["vim".to_string(), "notes.txt".to_string()]]);

    // Refused by the host (scheme not allowed) ⇒ 255.
    let (code, _, _) = client(&["--url", "gopher://x"]).await;
    assert_eq!(code, Some(255));
    // Usage errors: no rpc.
    let before = host.events().len();
    assert_eq!(client(&["--url"]).await.0, Some(255));
    assert_eq!(client(&["--url=https://a"]).await.0, Some(255));
    assert_eq!(client(&["--metrics", "a=-1"]).await.0, Some(255));
    assert_eq!(client(&[]).await.0, Some(255));
    assert_eq!(host.events().len(), before);

    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(15)).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_exit_codes_when_the_host_is_down_or_token_missing() {
    let sandbox = Sandbox::new();
    let host_flag = format!(
        "--host-address=unix://{}",
        sandbox.path("nobody.sock").display()
    );
    let token_flag = format!("--token-file={}", sandbox.path("token").display());
    let run = |extra: &'static [&'static str]| client_run(&sandbox, &host_flag, &token_flag, extra);
    let (code, _, stderr) = run(&["--url", "https://a"]).await;
    assert_eq!(code, Some(255), "{stderr}");
    assert!(stderr.contains("OpenUrl failed"), "{stderr}");
    assert_eq!(run(&["--terminal"]).await.0, Some(255));
    assert_eq!(run(&["--selectfile"]).await.0, Some(255));
    assert_eq!(
        run(&["--metrics", "crostini-disk-kb-read=1"]).await.0,
        Some(1)
    );

    let missing = format!("--token-file={}", sandbox.path("missing").display());
    for mode in [
        &["--url", "https://a"][..],
        &["--terminal"],
        &["--metrics", "a=1"],
    ] {
        let mut args = vec!["--client", host_flag.as_str(), missing.as_str()];
        args.extend_from_slice(mode);
        let (code, _, stderr) = sandbox.run(&args, &[]).await;
        assert_eq!(code, Some(255), "{mode:?}");
        assert!(stderr.contains("missing"), "{stderr}");
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Polls the server's log until it contains `needle`.
async fn wait_log(server: &Server, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !server.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log within {within:?}:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Issue 9 #9: `open()` of a FIFO token file used to block the executor forever, with no log
/// line, past the 60 s limit and deaf to SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_token_file_is_a_logged_refusal_and_sigterm_and_the_limit_still_hold() {
    let sandbox = Sandbox::new();
    let host = sandbox.host().await;
    let token = sandbox.path("token");
    std::fs::remove_file(&token).expect("remove token");
    mkfifo(&token);
    let args = sandbox.server_args("tcp://127.0.0.1:0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Default 60 s wait: the refusal is logged at once and SIGTERM ends the wait quietly.
    let mut server = sandbox.spawn(&args, &[]);
    wait_log(&server, "FIFO", Duration::from_secs(3)).await;
    assert!(
        server.log().contains(&token.display().to_string()),
        "{}",
        server.log()
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let status = server.wait(Duration::from_secs(2)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());

    // A short wait: exit 255 on time, naming the refusal.
    let start = Instant::now();
    let (code, _, stderr) = sandbox
        .run(&args, &[("GARCON_TEST_TOKEN_WAIT_MS", "500")])
        .await;
    assert_eq!(code, Some(255), "stderr:\n{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(stderr.contains("FIFO"), "{stderr}");
    assert!(host.events().is_empty(), "nothing sent without a token");
}

/// Issue 9 #8: a host that accepts and closes the connection (mid-restart) used to make garcon
/// exit 255 after one attempt; it now gets the same backoff as a missing socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_closing_connections_is_retried_until_a_real_host_answers() {
    const CLOSED_ACCEPTS: usize = 3;
    let sandbox = Sandbox::new();
    let socket = sandbox.path("host.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the closing listener");
    let args = sandbox.server_args("tcp://127.0.0.1:0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = sandbox.spawn(&args, &[]);
    for accepted in 0..CLOSED_ACCEPTS {
        match tokio::time::timeout(Duration::from_secs(20), listener.accept()).await {
            Ok(Ok((connection, _))) => drop(connection),
            Ok(Err(error)) => panic!("accept: {error}"),
            Err(_) => panic!(
                "garcon stopped trying after {accepted} accepted-and-closed connection(s); \
                 log:\n{}",
                server.log()
            ),
        }
    }
    drop(listener);
    std::fs::remove_file(&socket).expect("remove the closing listener's socket");
    let host = sandbox.host().await;
    let ready = wait_rpc(&host, "ContainerReady", &server).await;
    assert!(ready.is_ok(), "host accepted: {ready:?}");
    assert!(
        server.log().matches("ContainerReady failed").count() >= CLOSED_ACCEPTS,
        "each failure is logged and retried:\n{}",
        server.log()
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(15)).await.code(), Some(0));
}
