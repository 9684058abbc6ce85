//! ReportMetrics is rate limited per VM (garcon-host §13), in-process with vsock peers; and
//! `crostini-host serve` records each container's state, address, user and garcon endpoint,
//! which `crostini-host status` shows with the time of the latest app list (issue 11 part 3).

#[path = "parity/fake_tremplin.rs"]
mod fake_tremplin;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crostini_common::{lazy_channel, Address, Peer};
use crostini_host::container_listener::ContainerListenerService;
use crostini_host::state::HostState;
use crostini_proto::vm_tools::container::{
    self as ct, container_listener_client::ContainerListenerClient,
    container_listener_server::ContainerListener,
};
use crostini_proto::vm_tools::tremplin::get_container_info_response::Status as Info;
use crostini_proto::vm_tools::tremplin::{
    self as tp, tremplin_listener_client::TremplinListenerClient,
};
use fake_tremplin::Info as Answer;

const WAIT: Duration = Duration::from_secs(20);

fn from_vm<T>(cid: u32, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .extensions_mut()
        .insert(Peer::Vsock { cid, port: 1024 });
    request
}

fn metrics(token: &str) -> ct::ReportMetricsRequest {
    ct::ReportMetricsRequest {
        token: token.into(),
        metric: vec![ct::Metric {
            name: "crostini-disk-kb-read".into(),
            value: 1,
        }],
    }
}

#[tokio::test]
async fn report_metrics_is_limited_per_vm() {
    let state = Arc::new(HostState::new("termina"));
    let service = ContainerListenerService::new(state.clone());
    for (cid, token) in [(3, "token-a"), (4, "token-b")] {
        state.registry.add_vm(cid, &format!("vm-{cid}"));
        state
            .registry
            .add_trusted(cid, token, "penguin", [100, 115, 92, 2].into());
        let startup = ct::ContainerStartupInfo {
            token: token.into(),
            garcon_port: 8888,
            sftp_port: 0,
        };
        service
            .container_ready(from_vm(cid, startup))
            .await
            .expect("ready");
    }
    let error = |r: Result<tonic::Response<ct::ReportMetricsResponse>, tonic::Status>| {
        r.expect("OK status").into_inner().error
    };
    for i in 0..40 {
        let r = service.report_metrics(from_vm(3, metrics("token-a"))).await;
        assert_eq!(error(r), 0, "call {i} of VM 3");
    }
    let r = service.report_metrics(from_vm(3, metrics("token-a"))).await;
    assert_eq!(error(r), 1, "41st call of VM 3 in the window");
    let r = service.report_metrics(from_vm(4, metrics("token-b"))).await;
    assert_eq!(error(r), 0, "VM 4 has its own budget");
    let endpoint = state.registry.snapshot();
    let vm3 = endpoint.iter().find(|v| v.cid == Some(3)).expect("vm 3");
    assert_eq!(
        vm3.containers[0].garcon_endpoint.as_deref(),
        Some("vsock://3:8888")
    );
}

fn host_cli(state: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(support::workspace_bin("crostini-host"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("crostini-host runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Waits for `serve` (a separate process) to write what `until` looks for.
fn wait_until(what: &str, mut until: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = until() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn serve_records_containers_and_status_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let tremplin_at = Address::unix(dir.path().join("tremplin.sock"));
    fake_tremplin::serve(&tremplin_at, Answer(Info::Running, [100, 115, 92, 7])).await;
    let args: Vec<String> = [
        "--state-dir",
        &state.display().to_string(),
        "serve",
        "--container-listen",
        "tcp://127.0.0.1:0",
        "--tremplin-listen",
        &format!("unix://{}", dir.path().join("7778.sock").display()),
        "--tremplin-address",
        &tremplin_at.to_string(),
        "--token",
        "penguin=tok-1",
    ]
    .map(String::from)
    .into();
    let serve = support::Daemon::spawn("crostini-host", &args, dir.path());
    let listen = wait_until("the ContainerListener address", || {
        let stderr = serve.stderr();
        let line = stderr
            .lines()
            .find(|l| l.starts_with("ContainerListener on "))?;
        Some(line["ContainerListener on ".len()..].to_string())
    });
    let listen: Address = listen.parse().expect("address");
    let mut garcon_side =
        ContainerListenerClient::new(lazy_channel(&listen, WAIT).expect("channel"));
    let startup = ct::ContainerStartupInfo {
        token: "tok-1".into(),
        garcon_port: 41234,
        sftp_port: 0,
    };
    garcon_side.container_ready(startup).await.expect("ready");
    let list = ct::UpdateApplicationListRequest {
        token: "tok-1".into(),
        ..Default::default()
    };
    garcon_side
        .update_application_list(list)
        .await
        .expect("apps");
    let url = ct::OpenUrlRequest {
        url: "http://localhost/x".into(),
        token: "tok-1".into(),
    };
    garcon_side.open_url(url).await.expect("open url");
    let tremplin_side = Address::unix(dir.path().join("7778.sock"));
    let mut tremplin_side =
        TremplinListenerClient::new(lazy_channel(&tremplin_side, WAIT).expect("channel"));
    let starting = tp::ContainerStartProgress {
        container_name: "other".into(),
        status: tp::container_start_progress::Status::Started as i32,
        ..Default::default()
    };
    tremplin_side
        .update_start_status(starting)
        .await
        .expect("start report");

    let json = wait_until("status with both containers and the app list", || {
        let out = host_cli(&state, &["--json", "status"]);
        (out.contains("\"other\"") && out.contains("app_list_time\":1")).then_some(out)
    });
    let rows: serde_json::Value = serde_json::from_str(&json).expect("json");
    let rows = rows.as_array().expect("rows");
    let penguin = rows
        .iter()
        .find(|r| r["container"] == "penguin")
        .expect("penguin");
    assert_eq!(penguin["vm"], "termina");
    assert_eq!(penguin["state"], "ready");
    assert_eq!(penguin["ipv4"], "100.115.92.7");
    assert_eq!(penguin["username"], "penguin-user");
    assert_eq!(penguin["garcon_endpoint"], "tcp://127.0.0.1:41234");
    let other = rows
        .iter()
        .find(|r| r["container"] == "other")
        .expect("other");
    assert_eq!(other["state"], "started");
    assert!(other["ipv4"].is_null() && other["app_list_time"].is_null());

    let table = host_cli(&state, &["status"]);
    let header = table.lines().next().expect("header");
    for column in [
        "VM",
        "CONTAINER",
        "STATE",
        "IPV4",
        "USER",
        "GARCON",
        "APP LIST",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let line = table.lines().find(|l| l.contains("penguin ")).expect("row");
    for cell in [
        "termina",
        "ready",
        "100.115.92.7",
        "penguin-user",
        "tcp://127.0.0.1:41234",
        "UTC",
    ] {
        assert!(line.contains(cell), "{cell} in {line:?}");
    }
    // Without --url-handler, serve prints the translated URL.
    wait_until("the printed URL", || {
        serve
            .stderr()
            .contains("OpenUrl: http://100.115.92.7/x")
            .then_some(String::new())
    });
}
