//! The foundation: crostini-host and both daemons, over unix sockets and over tcp, announce
//! themselves in the order the spec requires and stop on the signals it names.

mod support;

use std::time::Duration;

use crostini_common::{lazy_channel, Address};
use crostini_host::{HostConfig, Payload, RunningHost};
use crostini_proto::vm_tools::container::{self as ct, garcon_client::GarconClient};
use crostini_proto::vm_tools::tremplin::{self as tp, tremplin_client::TremplinClient};
use support::Daemon;

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";

fn tremplin_args(listen: &Address, host: &Address, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--listen".into(),
        listen.to_string(),
        "--host-address".into(),
        host.to_string(),
        "--lxd_subnet".into(),
        "100.115.92.1/24".into(),
        // No LXD is needed until StartLxd; point at a socket that does not exist.
        "--lxd-socket".into(),
        dir.join("no-lxd.sock").display().to_string(),
    ]
}

fn garcon_args(listen: &Address, host: &Address, token_file: &std::path::Path) -> Vec<String> {
    vec![
        "--server".into(),
        "--allow_any_user".into(),
        "--listen".into(),
        listen.to_string(),
        "--host-address".into(),
        host.to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
    ]
}

/// Runs the whole readiness sequence with the host listening on `host_*` and the daemons on
/// `*_listen`, then checks what arrived and that the daemons answer where they said they would.
async fn readiness_round_trip(
    host_container: Address,
    host_tremplin: Address,
    tremplin_listen: Address,
    garcon_listen: Address,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = RunningHost::start(HostConfig {
        container_listener: Some(host_container),
        tremplin_listener: Some(host_tremplin),
        ..HostConfig::default()
    })
    .await
    .expect("host starts");
    host.register_container(TOKEN, "penguin");
    let token_file = dir.path().join("container_token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");

    let mut tremplin = Daemon::spawn(
        "tremplin",
        &tremplin_args(
            &tremplin_listen,
            host.tremplin_listener_address().expect("bound"),
            dir.path(),
        ),
        dir.path(),
    );
    let ready = host
        .wait_for(|e| matches!(e.payload, Payload::TremplinReady(_)), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; tremplin stderr:\n{}", tremplin.stderr()));
    assert!(
        ready.is_ok(),
        "host refused TremplinReady: {}",
        ready.status_message
    );

    let mut garcon = Daemon::spawn(
        "garcon",
        &garcon_args(
            &garcon_listen,
            host.container_listener_address().expect("bound"),
            &token_file,
        ),
        dir.path(),
    );
    let ready = host
        .wait_for(|e| matches!(e.payload, Payload::ContainerReady(_)), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; garcon stderr:\n{}", garcon.stderr()));
    let Payload::ContainerReady(info) = &ready.payload else {
        unreachable!()
    };
    assert!(
        ready.is_ok(),
        "host refused ContainerReady: {}",
        ready.status_message
    );
    assert_eq!(info.token, TOKEN, "token read verbatim, at most 36 bytes");

    // garcon serves where it says it does: the reported tcp port, or the unix path we gave it.
    let garcon_at = match &garcon_listen {
        Address::Tcp { host, .. } => {
            assert_ne!(info.garcon_port, 0, "tcp listen reports the bound port");
            Address::tcp(
                host.clone(),
                u16::try_from(info.garcon_port).expect("tcp port"),
            )
        }
        other => {
            assert_eq!(info.garcon_port, 0, "unix listen reports port 0");
            other.clone()
        }
    };
    let mut garcon_client = GarconClient::new(lazy_channel(&garcon_at, WAIT).expect("channel"));
    garcon_client
        .get_debug_information(ct::GetDebugInformationRequest {})
        .await
        .unwrap_or_else(|e| panic!("garcon answers at {garcon_at}: {e}"));

    let mut tremplin_client =
        TremplinClient::new(lazy_channel(&tremplin_listen, WAIT).expect("channel"));
    let info = tremplin_client
        .get_container_info(tp::GetContainerInfoRequest {
            container_name: "penguin".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("tremplin answers at {tremplin_listen}: {e}"))
        .into_inner();
    assert_ne!(
        info.status,
        tp::get_container_info_response::Status::Running as i32,
        "no LXD yet, so nothing runs"
    );

    // SIGTERM: garcon says ContainerShutdown with its token and exits 0.
    let before = host.state.events.next_seq();
    garcon.signal(libc::SIGTERM);
    let shutdown = host
        .wait_for_from(
            before,
            |e| matches!(e.payload, Payload::ContainerShutdown(_)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; garcon stderr:\n{}", garcon.stderr()));
    let Payload::ContainerShutdown(bye) = &shutdown.payload else {
        unreachable!()
    };
    assert_eq!(bye.token, TOKEN);
    assert_eq!(
        garcon.wait_exit(WAIT).code(),
        Some(0),
        "garcon stderr:\n{}",
        garcon.stderr()
    );

    // SIGPWR: tremplin stops and exits 0.
    tremplin.signal(libc::SIGPWR);
    assert_eq!(
        tremplin.wait_exit(WAIT).code(),
        Some(0),
        "tremplin stderr:\n{}",
        tremplin.stderr()
    );
    host.shutdown().await;
}

/// Tremplin does not report its port, so its tcp listen port is picked free beforehand.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn daemons_announce_themselves_over_unix_sockets() {
    let dir = tempfile::tempdir().expect("tempdir");
    readiness_round_trip(
        Address::unix(dir.path().join("host-8889.sock")),
        Address::unix(dir.path().join("host-7778.sock")),
        Address::unix(dir.path().join("tremplin.sock")),
        Address::unix(dir.path().join("garcon.sock")),
    )
    .await;
}

#[tokio::test]
async fn daemons_announce_themselves_over_tcp() {
    readiness_round_trip(
        Address::tcp("127.0.0.1", 0),
        Address::tcp("127.0.0.1", 0),
        Address::tcp("127.0.0.1", free_tcp_port()),
        Address::tcp("127.0.0.1", 0),
    )
    .await;
}
