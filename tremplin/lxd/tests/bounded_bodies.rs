//! Defect 12b: response bodies read into memory are bounded ([`MAX_BUFFERED_BODY`]). A fake LXD
//! on a Unix socket answers every request with an endless chunked body or a huge declared
//! length; the client must refuse it with a "body too large" error quickly, not buffer it.

use std::path::Path;
use std::time::{Duration, Instant};

use crostini_lxd::{Client, MAX_BUFFERED_BODY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[derive(Clone, Copy)]
enum Answer {
    /// `200`, chunked, never ends (stops when the client hangs up).
    Endless,
    /// `200`, declares 2 GiB, sends a little and then waits.
    DeclaredHuge,
    /// `200` with a small body.
    Small(&'static str),
}

async fn read_head(s: &mut UnixStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
}

async fn answer(mut s: UnixStream, how: Answer) {
    read_head(&mut s).await;
    match how {
        Answer::Endless => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', 64 * 1024));
            chunk.extend_from_slice(b"\r\n");
            while s.write_all(&chunk).await.is_ok() {}
        }
        Answer::DeclaredHuge => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        content-length: 2147483648\r\n\r\n{\"type\":";
            let _ = s.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Answer::Small(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
        }
    }
}

fn fake_lxd(socket: &Path, how: Answer) {
    let listener = UnixListener::bind(socket).expect("bind fake LXD");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(answer(s, how));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_json_body_is_refused_as_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    fake_lxd(&socket, Answer::Endless);
    let client = Client::new(&socket);
    let started = Instant::now();
    let err = client
        .server()
        .await
        .expect_err("an endless body is refused");
    assert!(err.is_body_too_large(), "{err}");
    assert!(err.to_string().contains("body too large"), "{err}");
    assert!(err.to_string().contains("GET /1.0"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // Raw (non-JSON) reads such as logs are bounded the same way.
    let err = client
        .instance_log("penguin", "lxc.log")
        .await
        .expect_err("an endless log is refused");
    assert!(err.is_body_too_large(), "{err}");
}

#[tokio::test]
async fn declared_huge_body_is_refused_before_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    fake_lxd(&socket, Answer::DeclaredHuge);
    let client = Client::new(&socket).with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let err = client.server().await.expect_err("2 GiB is refused");
    assert!(err.is_body_too_large(), "{err}");
    assert!(
        err.to_string().contains(&MAX_BUFFERED_BODY.to_string()),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let err = client
        .pull_file("penguin", "/etc/os-release")
        .await
        .expect_err("file API content is bounded too");
    assert!(err.is_body_too_large(), "{err}");
}

#[tokio::test]
async fn small_bodies_still_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    fake_lxd(&socket, Answer::Small("log line\n"));
    let client = Client::new(&socket);
    let log = client
        .instance_log("penguin", "lxc.log")
        .await
        .expect("small log");
    assert_eq!(log, b"log line\n");
}
