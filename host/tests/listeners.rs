//! The stand-in answers as cicerone does (garcon-host §16, tremplin §13), over a real unix socket.

use std::time::Duration;

use crostini_common::{lazy_channel, Address};
use crostini_host::{HostConfig, Payload, RunningHost};
use crostini_proto::vm_tools::container::{
    self as ct, container_listener_client::ContainerListenerClient,
};
use crostini_proto::vm_tools::tremplin::{
    self as tp, tremplin_listener_client::TremplinListenerClient,
};
use tonic::Code;

struct Fixture {
    _dir: tempfile::TempDir,
    host: RunningHost,
    garcon_side: ContainerListenerClient<tonic::transport::Channel>,
    tremplin_side: TremplinListenerClient<tonic::transport::Channel>,
}

async fn fixture() -> Fixture {
    fixture_with(HostConfig::default()).await
}

async fn fixture_with(config: HostConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = RunningHost::start(HostConfig {
        container_listener: Some(Address::unix(dir.path().join("8889.sock"))),
        tremplin_listener: Some(Address::unix(dir.path().join("7778.sock"))),
        ..config
    })
    .await
    .expect("host starts");
    let timeout = Duration::from_secs(5);
    let garcon_side = ContainerListenerClient::new(
        lazy_channel(host.container_listener_address().expect("bound"), timeout).expect("channel"),
    );
    let tremplin_side = TremplinListenerClient::new(
        lazy_channel(host.tremplin_listener_address().expect("bound"), timeout).expect("channel"),
    );
    Fixture {
        _dir: dir,
        host,
        garcon_side,
        tremplin_side,
    }
}

fn ready(token: &str) -> ct::ContainerStartupInfo {
    ct::ContainerStartupInfo {
        token: token.into(),
        garcon_port: 0,
        sftp_port: 0,
    }
}

#[tokio::test]
async fn container_ready_needs_a_token_the_host_handed_out() {
    let mut f = fixture().await;
    let refused = f
        .garcon_side
        .container_ready(ready("stranger"))
        .await
        .expect_err("unknown token");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    f.host.register_container("t-1", "penguin");
    f.garcon_side
        .container_ready(ready("t-1"))
        .await
        .expect("pending token accepted");
    let event = f
        .host
        .wait_for(
            |e| e.is_ok() && matches!(&e.payload, Payload::ContainerReady(i) if i.token == "t-1"),
            Duration::from_secs(5),
        )
        .await
        .expect("recorded");
    assert!(event.peer.starts_with("unix:"), "{}", event.peer);
    assert!(event.to_json_line().contains("\"rpc\":\"ContainerReady\""));
}

#[tokio::test]
async fn token_checked_rpcs_follow_the_token_lifecycle() {
    let mut f = fixture().await;
    let mime = |token: &str| ct::UpdateMimeTypesRequest {
        token: token.into(),
        ..Default::default()
    };
    assert_eq!(
        f.garcon_side
            .update_mime_types(mime("t-2"))
            .await
            .expect_err("not active")
            .code(),
        Code::FailedPrecondition
    );
    f.host.register_container("t-2", "penguin");
    f.garcon_side
        .container_ready(ready("t-2"))
        .await
        .expect("ready");
    f.garcon_side
        .update_mime_types(mime("t-2"))
        .await
        .expect("active token accepted");
    let empty = f
        .garcon_side
        .container_shutdown(ct::ContainerShutdownInfo {
            token: String::new(),
        })
        .await
        .expect_err("empty token");
    assert_eq!(empty.code(), Code::InvalidArgument);
    f.garcon_side
        .container_shutdown(ct::ContainerShutdownInfo {
            token: "t-2".into(),
        })
        .await
        .expect("shutdown");
    assert_eq!(
        f.garcon_side
            .update_mime_types(mime("t-2"))
            .await
            .expect_err("forgotten")
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn progress_with_unknown_status_is_refused() {
    let mut f = fixture().await;
    f.host.register_container("t-3", "penguin");
    f.garcon_side
        .container_ready(ready("t-3"))
        .await
        .expect("ready");
    let bad = ct::InstallLinuxPackageProgressInfo {
        token: "t-3".into(),
        status: 9,
        ..Default::default()
    };
    let e = f
        .garcon_side
        .install_linux_package_progress(bad)
        .await
        .expect_err("status 9");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "Invalid status field in protobuf request");
}

#[tokio::test]
async fn open_url_and_terminal_share_a_limit_of_ten_per_window() {
    let mut f = fixture().await;
    f.host.register_container("t-4", "penguin");
    f.garcon_side
        .container_ready(ready("t-4"))
        .await
        .expect("ready");
    for i in 0..10 {
        let url = ct::OpenUrlRequest {
            url: format!("https://example.invalid/{i}"),
            token: "t-4".into(),
        };
        if i % 2 == 0 {
            f.garcon_side.open_url(url).await.expect("within limit");
        } else {
            f.garcon_side
                .open_terminal(ct::OpenTerminalRequest {
                    token: "t-4".into(),
                    params: vec![],
                })
                .await
                .expect("within limit");
        }
    }
    let e = f
        .garcon_side
        .open_url(ct::OpenUrlRequest {
            url: "https://x.invalid".into(),
            token: "t-4".into(),
        })
        .await
        .expect_err("11th call");
    assert_eq!(e.code(), Code::ResourceExhausted);
}

/// Issue 9 defect 11: callers with a wrong token are refused before they are counted, so they
/// cannot use up the real container's budget.
#[tokio::test]
async fn wrong_token_calls_do_not_use_up_the_real_containers_budget() {
    let mut f = fixture().await;
    f.host.register_container("t-real", "penguin");
    f.garcon_side
        .container_ready(ready("t-real"))
        .await
        .expect("ready");
    for i in 0..200 {
        let e = if i % 2 == 0 {
            f.garcon_side
                .open_url(ct::OpenUrlRequest {
                    url: "https://example.invalid".into(),
                    token: format!("wrong-{i}"),
                })
                .await
        } else {
            f.garcon_side
                .open_terminal(ct::OpenTerminalRequest {
                    token: format!("wrong-{i}"),
                    params: vec![],
                })
                .await
                .map(|_| tonic::Response::new(Default::default()))
        }
        .expect_err("wrong token");
        assert_eq!(e.code(), Code::FailedPrecondition, "call {i}: {e:?}");
    }
    f.garcon_side
        .open_url(ct::OpenUrlRequest {
            url: "https://example.invalid/real".into(),
            token: "t-real".into(),
        })
        .await
        .expect("the real container's OpenUrl still succeeds");
}

#[tokio::test]
async fn open_url_refuses_parent_references_and_unknown_schemes() {
    let mut f = fixture().await;
    f.host.register_container("t-5", "penguin");
    f.garcon_side
        .container_ready(ready("t-5"))
        .await
        .expect("ready");
    for url in ["file:///home/../etc/passwd", "gopher://x"] {
        let e = f
            .garcon_side
            .open_url(ct::OpenUrlRequest {
                url: url.into(),
                token: "t-5".into(),
            })
            .await
            .expect_err(url);
        assert_eq!(e.code(), Code::FailedPrecondition, "{url}");
    }
}

#[tokio::test]
async fn tremplin_reports_are_validated_like_cicerone() {
    let mut f = fixture().await;
    f.tremplin_side
        .tremplin_ready(tp::TremplinStartupInfo {})
        .await
        .expect("ready");
    let unnamed = tp::ContainerCreationProgress::default();
    assert_eq!(
        f.tremplin_side
            .update_create_status(unnamed)
            .await
            .expect_err("empty name")
            .code(),
        Code::FailedPrecondition
    );
    let export = tp::ContainerExportProgress {
        container_name: "penguin".into(),
        status: 9,
        ..Default::default()
    };
    assert_eq!(
        f.tremplin_side
            .update_export_status(export)
            .await
            .expect_err("status 9")
            .code(),
        Code::FailedPrecondition
    );
    let shutdown = tp::ContainerShutdownInfo::default();
    assert_eq!(
        f.tremplin_side
            .container_shutdown(shutdown)
            .await
            .expect_err("empty name")
            .code(),
        Code::InvalidArgument
    );
    f.tremplin_side
        .container_shutdown(tp::ContainerShutdownInfo {
            container_name: "unknown".into(),
        })
        .await
        .expect("unknown container is still OK");
    let rpcs: Vec<_> = f.host.events().iter().map(|e| e.payload.rpc()).collect();
    assert_eq!(
        rpcs,
        [
            "TremplinReady",
            "UpdateCreateStatus",
            "UpdateExportStatus",
            "ContainerShutdown",
            "ContainerShutdown"
        ]
    );
}

#[tokio::test]
async fn scripted_failure_applies_once() {
    let mut f = fixture().await;
    f.host
        .state
        .fail_next("TremplinReady", tonic::Status::unavailable("scripted"));
    let e = f
        .tremplin_side
        .tremplin_ready(tp::TremplinStartupInfo {})
        .await
        .expect_err("scripted");
    assert_eq!(e.code(), Code::Unavailable);
    f.tremplin_side
        .tremplin_ready(tp::TremplinStartupInfo {})
        .await
        .expect("second is OK");
}

/// Issue 9, Peers: the sockets are owner-only, and a connection that sends nothing or garbage is
/// closed while normal calls keep working.
#[tokio::test]
async fn sockets_are_0600_and_silent_or_garbage_connections_are_closed() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut config = HostConfig::default();
    config.listen_options.preface_timeout = Duration::from_millis(500);
    let mut f = fixture_with(config).await;
    for name in ["8889.sock", "7778.sock"] {
        let mode = std::fs::metadata(f._dir.path().join(name))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let path = f._dir.path().join("8889.sock");
    let mut silent = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect");
    let mut garbage = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect");
    garbage.write_all(&[0x16; 512]).await.expect("write");
    for stream in [&mut garbage, &mut silent] {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection still open after 3 s");
    }
    f.host.register_container("t-peer", "penguin");
    f.garcon_side
        .container_ready(ready("t-peer"))
        .await
        .expect("a normal call still works");
}
