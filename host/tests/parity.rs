//! What cicerone does around ContainerReady, OpenUrl, OpenTerminal and ReportMetrics (issue 11
//! part 3; garcon-host §6, §7, §13, §16), over real unix sockets: ContainerReady asks tremplin
//! (a scripted one, and the real binary without LXD), OpenUrl and OpenTerminal run handler
//! scripts that write their argv to a file, ReportMetrics is limited per VM, and `serve` records
//! what `crostini-host status` shows.

#[path = "parity/fake_tremplin.rs"]
mod fake_tremplin;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crostini_common::{lazy_channel, Address};
use crostini_host::handlers::Command;
use crostini_host::state::Desktop;
use crostini_host::{HostConfig, RunningHost};
use crostini_proto::vm_tools::container::{
    self as ct, container_listener_client::ContainerListenerClient,
};
use crostini_proto::vm_tools::tremplin::get_container_info_response::Status as Info;
use fake_tremplin::Info as Answer;
use tonic::transport::Channel;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    dir: tempfile::TempDir,
    host: RunningHost,
    garcon_side: ContainerListenerClient<Channel>,
}

async fn fixture(tremplin: Option<Address>, desktop: Desktop) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = RunningHost::start(HostConfig {
        container_listener: Some(Address::unix(dir.path().join("8889.sock"))),
        tremplin_address: tremplin,
        desktop,
        ..HostConfig::default()
    })
    .await
    .expect("host starts");
    let channel = lazy_channel(host.container_listener_address().expect("bound"), WAIT);
    Fixture {
        garcon_side: ContainerListenerClient::new(channel.expect("channel")),
        dir,
        host,
    }
}

fn ready(token: &str) -> ct::ContainerStartupInfo {
    ct::ContainerStartupInfo {
        token: token.into(),
        garcon_port: 0,
        sftp_port: 0,
    }
}

/// A handler script that writes its argv (one per line) to `out`.
fn argv_recorder(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let script = dir.join(name);
    let out = dir.join(format!("{name}.argv"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" \"env=$CROSTINI_CONTAINER\" > '{}.tmp'\nmv '{0}.tmp' '{0}'\n",
            out.display()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, out)
}

/// The argv the recorder wrote, after waiting for it (the handler runs detached).
fn recorded_argv(out: &Path) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(out) {
            let _ = std::fs::remove_file(out);
            return text.lines().skip(1).map(str::to_string).collect();
        }
        assert!(
            Instant::now() < deadline,
            "handler did not run: {}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn container_ready_is_accepted_only_once_tremplin_says_running_with_an_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tremplin_at = Address::unix(dir.path().join("tremplin.sock"));
    let tremplin = fake_tremplin::serve(&tremplin_at, Answer(Info::Stopped, [0; 4])).await;
    let mut f = fixture(Some(tremplin_at), Desktop::default()).await;
    f.host.expect_container("t-1", "penguin");

    let refused = f.garcon_side.container_ready(ready("t-1")).await;
    let refused = refused.expect_err("STOPPED");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.message(), "Cannot find VM for ContainerListener");

    // RUNNING without an address yet: asked again for a while, then refused.
    *tremplin.info.lock().expect("lock") = Answer(Info::Running, [0; 4]);
    let started = Instant::now();
    let e = f.garcon_side.container_ready(ready("t-1")).await;
    assert_eq!(e.expect_err("no address").code(), Code::FailedPrecondition);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    *tremplin.info.lock().expect("lock") = Answer(Info::Running, [100, 115, 92, 7]);
    f.garcon_side
        .container_ready(ready("t-1"))
        .await
        .expect("RUNNING with an address");
    assert!(tremplin
        .asked
        .lock()
        .expect("lock")
        .iter()
        .all(|n| n == "penguin"));
    let facts = f
        .host
        .state
        .registry
        .facts(crostini_host::registry::LOCAL_VM_CID, "penguin")
        .expect("facts");
    assert_eq!(facts.state, "ready");
    assert_eq!(facts.ipv4, Some([100, 115, 92, 7].into()));
    assert_eq!(facts.username, "penguin-user");
    assert_eq!(facts.homedir, "/home/penguin-user");
}

#[tokio::test]
async fn container_ready_is_refused_without_a_tremplin_to_ask_or_by_a_real_tremplin_without_lxd() {
    let mut f = fixture(None, Desktop::default()).await;
    f.host.expect_container("t-2", "penguin");
    let e = f.garcon_side.container_ready(ready("t-2")).await;
    assert_eq!(e.expect_err("no tremplin").code(), Code::FailedPrecondition);
    // The harness path registers a container taken as running.
    f.host.register_container("t-3", "penguin");
    f.garcon_side
        .container_ready(ready("t-3"))
        .await
        .expect("harness");

    // The real tremplin, with no LXD: GetContainerInfo says NOT_FOUND.
    let listen = Address::unix(f.dir.path().join("real-tremplin.sock"));
    let host_side = RunningHost::start(HostConfig {
        tremplin_listener: Some(Address::unix(f.dir.path().join("7778.sock"))),
        ..HostConfig::default()
    })
    .await
    .expect("tremplin listener");
    let args: Vec<String> = [
        "--listen".to_string(),
        listen.to_string(),
        "--host-address".into(),
        host_side
            .tremplin_listener_address()
            .expect("bound")
            .to_string(),
        "--lxd_subnet".into(),
        "100.115.92.1/24".into(),
        "--lxd-socket".into(),
        f.dir.path().join("no-lxd.sock").display().to_string(),
    ]
    .into();
    let tremplin = support::Daemon::spawn("tremplin", &args, f.dir.path());
    host_side
        .wait_for(
            |e| e.payload.rpc() == "TremplinReady",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", tremplin.stderr()));
    let mut g = fixture(Some(listen), Desktop::default()).await;
    g.host.expect_container("t-4", "penguin");
    let e = g.garcon_side.container_ready(ready("t-4")).await;
    assert_eq!(e.expect_err("NOT_FOUND").code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn open_url_translates_for_the_host_and_runs_the_url_handler() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let (script, out) = argv_recorder(scripts.path(), "open-url");
    let handler: Command = format!("{} --new {{url}}", script.display())
        .parse()
        .expect("cmd");
    let tremplin_at = Address::unix(scripts.path().join("tremplin.sock"));
    fake_tremplin::serve(&tremplin_at, Answer(Info::Running, [100, 115, 92, 9])).await;
    let desktop = Desktop {
        url_handler: Some(handler),
        shares: vec!["/home/me=/srv/penguin-home".parse().expect("share")],
        ..Desktop::default()
    };
    let mut f = fixture(Some(tremplin_at), desktop).await;
    f.host.expect_container("t-5", "penguin");
    f.garcon_side
        .container_ready(ready("t-5"))
        .await
        .expect("ready");
    let open = |url: &str| ct::OpenUrlRequest {
        url: url.into(),
        token: "t-5".into(),
    };
    for (url, opened) in [
        ("http://localhost/app", "http://100.115.92.9/app"),
        ("http://127.0.0.1:8080/dev", "http://127.0.0.1:8080/dev"),
        (
            "file:///home/me/doc.pdf",
            "file:///srv/penguin-home/doc.pdf",
        ),
        ("https://example.com/a b", "https://example.com/a b"),
    ] {
        f.garcon_side.open_url(open(url)).await.expect(url);
        assert_eq!(
            recorded_argv(&out),
            ["--new", opened, "env=penguin"],
            "{url}"
        );
    }
    for url in [
        "file:///home/%2e%2e/etc/passwd",
        "file:///home/me/../../etc/passwd",
        "file:///etc/passwd",
        "gopher://x",
    ] {
        let e = f.garcon_side.open_url(open(url)).await.expect_err(url);
        assert_eq!(e.code(), Code::FailedPrecondition, "{url}");
        assert_eq!(e.message(), "Failure in OpenUrl");
    }
    assert!(!out.exists(), "nothing opened for refused URLs");
}

#[tokio::test]
async fn open_terminal_runs_the_terminal_handler_with_the_containers_shell() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let (script, out) = argv_recorder(scripts.path(), "terminal");
    let handler: Command = format!(
        "{} -e lxc exec {{container}} -- sudo -iu {{user}} {{params}}",
        script.display()
    )
    .parse()
    .expect("cmd");
    let tremplin_at = Address::unix(scripts.path().join("tremplin.sock"));
    fake_tremplin::serve(&tremplin_at, Answer(Info::Running, [100, 115, 92, 9])).await;
    let desktop = Desktop {
        terminal_handler: Some(handler),
        ..Desktop::default()
    };
    let mut f = fixture(Some(tremplin_at), desktop).await;
    f.host.expect_container("t-6", "penguin");
    f.garcon_side
        .container_ready(ready("t-6"))
        .await
        .expect("ready");
    let shell = [
        "-e",
        "lxc",
        "exec",
        "penguin",
        "--",
        "sudo",
        "-iu",
        "penguin-user",
    ];
    for params in [vec![], vec!["vim".to_string(), "a b; rm -rf ~".to_string()]] {
        f.garcon_side
            .open_terminal(ct::OpenTerminalRequest {
                token: "t-6".into(),
                params: params.clone(),
            })
            .await
            .expect("terminal");
        let mut want: Vec<String> = shell.iter().map(|s| s.to_string()).collect();
        want.extend(params);
        want.push("env=penguin".into());
        assert_eq!(recorded_argv(&out), want);
    }

    // A handler that cannot start fails the call.
    let broken = Desktop {
        terminal_handler: Some("/nonexistent/terminal".parse().expect("cmd")),
        ..Desktop::default()
    };
    let mut g = fixture(None, broken).await;
    g.host.register_container("t-7", "penguin");
    g.garcon_side
        .container_ready(ready("t-7"))
        .await
        .expect("ready");
    let e = g
        .garcon_side
        .open_terminal(ct::OpenTerminalRequest {
            token: "t-7".into(),
            params: vec![],
        })
        .await
        .expect_err("spawn fails");
    assert_eq!(e.code(), Code::FailedPrecondition);
}
