//! The peer rules over real unix and tcp sockets (vsock's decision is unit-tested in `peers`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Connects to `path` as uid/gid 65534 in a forked child; true when the connect succeeded.
fn nobody_can_connect(path: &Path) -> bool {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("cstring");
    // SAFETY: the child only makes async-signal-safe system calls and then `_exit`s.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(3);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (i, b) in c_path.as_bytes().iter().enumerate() {
                addr.sun_path[i] = *b as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            let rc = libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len);
            libc::_exit(if rc == 0 { 0 } else { 1 });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status));
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 3, "child could not drop to uid 65534");
        code == 0
    }
}

#[tokio::test]
async fn unix_socket_is_0600_by_default_and_widened_by_the_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("s.sock");
    let listener = Listener::bind_with(&Address::unix(&path), ListenOptions::default())
        .await
        .expect("bind");
    assert_eq!(mode_of(&path), 0o600);
    // No staging directory is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    if unsafe { libc::geteuid() } == 0 {
        assert!(
            !nobody_can_connect(&path),
            "uid 65534 connected to a 0600 socket"
        );
    }
    // The owner still connects.
    let owner = connect(&Address::unix(&path), DEFAULT_CONNECT_TIMEOUT).await;
    assert!(owner.is_ok());
    drop(listener);

    let wide = ListenOptions {
        socket_mode: 0o666,
        ..ListenOptions::default()
    };
    let _listener = Listener::bind_with(&Address::unix(&path), wide)
        .await
        .expect("bind");
    assert_eq!(mode_of(&path), 0o666);
    if unsafe { libc::geteuid() } == 0 {
        assert!(nobody_can_connect(&path), "control: 0666 lets uid 65534 in");
    }
}

/// One unary call over HTTP/2 to a tonic server with no services: UNIMPLEMENTED proves the
/// server parsed and answered it.
async fn grpc_status_of_a_call(address: &Address) -> tonic::Status {
    let stream = connect(address, DEFAULT_CONNECT_TIMEOUT)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let request = hyper::Request::post("http://x/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .expect("answered in time")
        .expect("response");
    tonic::Status::from_header_map(response.headers()).expect("trailers-only status")
}

async fn closed_within(stream: &mut Stream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue, // the server's SETTINGS / GOAWAY frames
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn silent_and_garbage_connections_are_closed_and_calls_still_work() {
    let options = ListenOptions {
        preface_timeout: Duration::from_millis(300),
        ..ListenOptions::default()
    };
    let listener = Listener::bind_with(&Address::tcp("127.0.0.1", 0), options)
        .await
        .expect("bind");
    let address = listener.local_address().clone();
    tokio::spawn(
        server_builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(listener.into_incoming()),
    );

    let mut silent = connect(&address, DEFAULT_CONNECT_TIMEOUT)
        .await
        .expect("connect");
    let mut partial = connect(&address, DEFAULT_CONNECT_TIMEOUT)
        .await
        .expect("connect");
    partial.write_all(b"PRI * HTTP/2.0").await.expect("write");
    let mut garbage = connect(&address, DEFAULT_CONNECT_TIMEOUT)
        .await
        .expect("connect");
    garbage
        .write_all(&[0xffu8; 4096])
        .await
        .expect("write garbage");

    let limit = Duration::from_secs(3);
    let garbage_took = closed_within(&mut garbage, limit).await;
    let silent_took = closed_within(&mut silent, limit).await;
    let partial_took = closed_within(&mut partial, limit).await;
    assert!(garbage_took < limit && silent_took < limit && partial_took < limit);

    let status = grpc_status_of_a_call(&address).await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn a_refused_peer_is_told_why() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = Address::tcp("127.0.0.1", listener.local_addr().expect("addr").port());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let refused = check_peer(
            &VsockPeers::default(),
            &Peer::Vsock { cid: 7, port: 1 },
            true,
        )
        .expect_err("CID 7 is not the host");
        peers::spawn_refusal(Stream::Tcp(stream), refused);
    });
    let status = grpc_status_of_a_call(&address).await;
    server.await.expect("join");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("CID 7 refused"), "{status:?}");
}
