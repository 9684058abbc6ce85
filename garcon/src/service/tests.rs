//! The core rpcs end to end over loopback tcp (garcon-service.md §8.8): INVALID_ARGUMENT exactly
//! where §5 says, in-band failures elsewhere, and FileWatchTriggered reaching the host.

use super::*;

use std::path::PathBuf;
use std::time::Duration;

use crostini_common::transport::Listener;
use crostini_common::Address;
use crostini_host::{HostConfig, Payload, RunningHost};
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::garcon_server::GarconServer;
use crostini_proto::vm_tools::container::{
    add_file_watch_response, apply_ansible_playbook_response, get_garcon_session_info_response,
    remove_file_watch_response,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::config::Paths;
use crate::host::HostClient;

const TOKEN: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";

struct Harness {
    client: GarconClient<Channel>,
    state: Arc<GarconState>,
    host: RunningHost,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let host_address = Address::unix(dir.path().join("host.sock"));
    let host = RunningHost::start(HostConfig {
        container_listener: Some(host_address.clone()),
        ..HostConfig::default()
    })
    .await
    .expect("host");
    host.register_container(TOKEN, "penguin");
    let host_client = HostClient::new(&host_address, TOKEN).expect("host client");
    host_client.container_ready(0, 0).await.expect("ready");
    let paths = Paths {
        sftp_server: "/nonexistent/sftp-server".into(),
        vshd: "/nonexistent/vshd".into(),
        chunnel: "/nonexistent/chunnel".into(),
        ansible_playbook: "/nonexistent/ansible-playbook".into(),
        home: Some(home.clone()),
        user: Some("tester".into()),
        temp_dir: dir.path().to_path_buf(),
    };
    let state = Arc::new(GarconState::new(host_client, paths, false));
    let listener = Listener::bind(&Address::tcp("127.0.0.1", 0))
        .await
        .expect("bind");
    let address = listener.local_address().clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GarconServer::new(GarconService::new(state.clone())))
            .serve_with_incoming(listener.into_incoming()),
    );
    let channel = crostini_common::lazy_channel(&address, Duration::from_secs(5)).expect("channel");
    Harness {
        client: GarconClient::new(channel),
        state,
        host,
        home,
        _dir: dir,
    }
}

/// The reply of an rpc that must answer gRPC OK.
async fn reply<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    call.await.expect("rpc").into_inner()
}

/// Asserts that an rpc fails with INVALID_ARGUMENT and exactly `message`.
async fn invalid_argument<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    message: &str,
) {
    let err = call.await.expect_err(message);
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, message)
    );
}

#[tokio::test]
async fn session_info_fails_until_startup_publishes_the_sftp_port() {
    let mut h = harness().await;
    let info = reply(
        h.client
            .get_garcon_session_info(GetGarconSessionInfoRequest {}),
    )
    .await;
    assert_eq!(
        info.status,
        get_garcon_session_info_response::Status::Failed as i32
    );
    assert_eq!(info.failure_reason, misc::SESSION_NOT_READY);

    h.state.set_sftp_vsock_port(5555);
    let info = reply(
        h.client
            .get_garcon_session_info(GetGarconSessionInfoRequest {}),
    )
    .await;
    assert_eq!(
        info.status,
        get_garcon_session_info_response::Status::Succeeded as i32
    );
    assert_eq!(info.sftp_vsock_port, 5555);
    assert_eq!(info.container_username, "tester");
    assert_eq!(info.container_homedir, h.home.to_string_lossy());
}

#[tokio::test]
async fn invalid_arguments_exactly_where_the_spec_says() {
    let mut h = harness().await;
    invalid_argument(
        h.client.launch_vshd(LaunchVshdRequest::default()),
        "vshd port cannot be 0",
    )
    .await;
    invalid_argument(
        h.client.connect_chunnel(ConnectChunnelRequest {
            chunneld_port: 0,
            target_tcp4_port: 1,
        }),
        "invalid chunneld port",
    )
    .await;
    invalid_argument(
        h.client.connect_chunnel(ConnectChunnelRequest {
            chunneld_port: 1,
            target_tcp4_port: 0,
        }),
        "invalid target TCP4 port",
    )
    .await;
    invalid_argument(
        h.client
            .apply_ansible_playbook(ApplyAnsiblePlaybookRequest::default()),
        "playbook cannot be empty",
    )
    .await;
}

#[tokio::test]
async fn spawn_failures_are_in_band() {
    let mut h = harness().await;
    let vshd = reply(h.client.launch_vshd(LaunchVshdRequest {
        port: 5,
        container_features: vec![1, 77],
    }))
    .await;
    assert!(!vshd.success);
    assert_eq!(vshd.failure_reason, "Failed to spawn vshd");
    let chunnel = reply(h.client.connect_chunnel(ConnectChunnelRequest {
        chunneld_port: 1,
        target_tcp4_port: 70000,
    }))
    .await;
    assert!(!chunnel.success);
    assert_eq!(chunnel.failure_reason, "Failed to spawn chunnel");
    let ansible = reply(
        h.client
            .apply_ansible_playbook(ApplyAnsiblePlaybookRequest {
                playbook: "- hosts: all\n".into(),
            }),
    )
    .await;
    assert_eq!(
        ansible.status,
        apply_ansible_playbook_response::Status::Failed as i32
    );
    assert_eq!(
        ansible.failure_reason,
        "Failed to spawn ansible-playbook process"
    );
}

#[tokio::test]
async fn debug_information_has_every_header() {
    let mut h = harness().await;
    let text = reply(
        h.client
            .get_debug_information(GetDebugInformationRequest {}),
    )
    .await
    .debug_information;
    for header in [
        "Installed Crostini Packages:\n",
        "systemctl status:\n",
        "systemctl user status:\n",
        "Filtered journalctl for cros-garcon:\n",
        "Filtered journalctl for sommelier-x@1:\n",
    ] {
        assert!(text.contains(header), "missing {header:?} in {text:?}");
    }
}

#[tokio::test]
async fn file_watch_rpcs_and_notification_reach_the_host() {
    let mut h = harness().await;
    std::fs::create_dir(h.home.join("w")).expect("mkdir");
    let add = |path: &str| AddFileWatchRequest { path: path.into() };
    let added = reply(h.client.add_file_watch(add("w"))).await;
    assert_eq!(
        added.status,
        add_file_watch_response::Status::Succeeded as i32
    );
    let again = reply(h.client.add_file_watch(add("w"))).await;
    assert_eq!(
        (again.status, again.failure_reason.as_str()),
        (
            add_file_watch_response::Status::Failed as i32,
            "already watching path"
        )
    );
    let bad = reply(h.client.add_file_watch(add("a/../b"))).await;
    assert_eq!(bad.failure_reason, "invalid path");

    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(h.home.join("w/f"), "x").expect("write");
    let event = h
        .host
        .wait_for(
            |e| e.payload.rpc() == "FileWatchTriggered",
            Duration::from_secs(10),
        )
        .await
        .expect("FileWatchTriggered");
    let Payload::FileWatchTriggered(info) = &event.payload else {
        unreachable!()
    };
    assert_eq!((info.token.as_str(), info.path.as_str()), (TOKEN, "w"));
    assert!(event.is_ok(), "host accepted it: {event:?}");

    let remove = |path: &str| RemoveFileWatchRequest { path: path.into() };
    let removed = reply(h.client.remove_file_watch(remove("w"))).await;
    assert_eq!(
        removed.status,
        remove_file_watch_response::Status::Succeeded as i32
    );
    let again = reply(h.client.remove_file_watch(remove("w"))).await;
    assert_eq!(again.failure_reason, "not watching path");
}
