//! The client keeps its HTTP connections to LXD open and reuses them (issue 10 #4): a fake LXD
//! on a Unix socket counts the connections it accepts. Clones of a client share its pool; a
//! connection the server closed, or one whose body the client gave up on, is not reused.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crostini_lxd::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const SERVER: &str = r#"{"type":"sync","status":"Success","status_code":200,"metadata":{"api_version":"1.0","auth":"trusted","environment":{"server_version":"5.0.2"}}}"#;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// HTTP/1.1 keep-alive: answers requests on one connection until the client hangs up.
    KeepAlive,
    /// Answers one request, then closes the connection.
    CloseAfterOne,
}

/// Reads one request head (the client's GETs have no body); false at EOF.
async fn read_head(s: &mut UnixStream, buf: &mut Vec<u8>) -> bool {
    let mut b = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return true;
        }
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

async fn serve(mut s: UnixStream, mode: Mode, requests: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    while read_head(&mut s, &mut buf).await {
        requests.fetch_add(1, Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            SERVER.len()
        );
        if s.write_all(head.as_bytes()).await.is_err()
            || s.write_all(SERVER.as_bytes()).await.is_err()
        {
            return;
        }
        if mode == Mode::CloseAfterOne {
            return;
        }
    }
}

struct FakeLxd {
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

fn fake_lxd(socket: &Path, mode: Mode) -> FakeLxd {
    let listener = UnixListener::bind(socket).expect("bind fake LXD");
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (a, r) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s, mode, r.clone()));
        }
    });
    FakeLxd { accepted, requests }
}

#[tokio::test]
async fn ten_requests_use_one_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    let lxd = fake_lxd(&socket, Mode::KeepAlive);
    let client = Client::new(&socket);
    for _ in 0..10 {
        let (server, _) = client.server().await.expect("GET /1.0");
        assert_eq!(server.api_version, "1.0");
    }
    assert_eq!(lxd.requests.load(Ordering::SeqCst), 10);
    assert_eq!(
        lxd.accepted.load(Ordering::SeqCst),
        1,
        "connections accepted"
    );
}

#[tokio::test]
async fn clones_share_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    let lxd = fake_lxd(&socket, Mode::KeepAlive);
    let client = Client::new(&socket);
    for i in 0..10 {
        // tremplin clones the running client everywhere, often with another timeout.
        let c = client
            .clone()
            .with_timeout(Duration::from_secs(5 + i as u64));
        c.ready().await.expect("GET /1.0");
    }
    assert_eq!(
        lxd.accepted.load(Ordering::SeqCst),
        1,
        "connections accepted"
    );
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    let lxd = fake_lxd(&socket, Mode::CloseAfterOne);
    let client = Client::new(&socket);
    for _ in 0..5 {
        client
            .server()
            .await
            .expect("GET /1.0 after the server hung up");
        // Let the client see the hang-up (LXD restarting between two rpcs is the real case).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lxd.requests.load(Ordering::SeqCst), 5);
    assert_eq!(
        lxd.accepted.load(Ordering::SeqCst),
        5,
        "connections accepted"
    );
}

#[tokio::test]
async fn a_missing_socket_is_not_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::new(dir.path().join("nothing.socket"));
    let err = client.server().await.expect_err("no LXD");
    assert!(err.is_not_running(), "{err}");
    assert!(err.to_string().contains("GET /1.0"), "{err}");
}
