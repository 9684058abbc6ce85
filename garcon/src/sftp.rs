//! The sftp listener (garcon-host.md §3.4): every accepted connection gets its own sftp-server
//! process with stdin and stdout on the connection and stderr = garcon's stderr.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crostini_common::transport::{Listener, Stream};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::task::JoinHandle;

use crate::launch::{spawn_detached, SpawnOptions};

/// Accepts forever on `listener`, spawning `sftp_server` (no arguments, garcon's environment
/// and working directory) per connection. Accept and spawn failures are logged; the loop goes on.
pub fn spawn_acceptor(listener: Listener, sftp_server: PathBuf) -> JoinHandle<()> {
    tokio::spawn(async move {
        let address = listener.local_address().clone();
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let program = sftp_server.clone();
                    // Forking is synchronous; keep it off the async workers.
                    let spawned =
                        tokio::task::spawn_blocking(move || serve_connection(stream, &program))
                            .await;
                    match spawned {
                        Ok(Ok(pid)) => tracing::debug!(pid, "sftp-server started"),
                        Ok(Err(error)) => tracing::error!(
                            "cannot start {} for an sftp connection: {error}",
                            sftp_server.display()
                        ),
                        Err(error) => tracing::error!("sftp spawn task failed: {error}"),
                    }
                }
                Err(error) => {
                    tracing::warn!(%address, "sftp accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// Starts `program` on `stream` and closes garcon's copy of the connection.
fn serve_connection(stream: Stream, program: &Path) -> io::Result<u32> {
    let socket = blocking_dup(&stream)?;
    // Our copy of the connection is closed when `stream` drops at the end of this function.
    let argv = [program.to_string_lossy().into_owned()];
    let stdin = Stdio::from(socket.try_clone()?);
    let stdout = Stdio::from(socket);
    spawn_detached(SpawnOptions {
        argv: &argv,
        stdin: Some(stdin),
        stdout: Some(stdout),
        stderr: Some(Stdio::inherit()),
        ..Default::default()
    })
    .map_err(io::Error::other)
}

/// A close-on-exec duplicate of the connection in blocking mode (the child does plain reads).
fn blocking_dup(stream: &Stream) -> io::Result<OwnedFd> {
    let fd = match stream {
        Stream::Unix(s) => s.as_fd().try_clone_to_owned()?,
        Stream::Tcp(s) => s.as_fd().try_clone_to_owned()?,
        Stream::Vsock(s) => s.as_fd().try_clone_to_owned()?,
    };
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).map_err(io::Error::from)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crostini_common::Address;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection gets its own copy of the program with stdin/stdout on the socket; `cat`
    /// stands in for sftp-server and echoes what we send.
    #[tokio::test]
    async fn each_connection_spawns_the_program_on_the_socket() {
        let listener = Listener::bind(&Address::tcp("127.0.0.1", 0))
            .await
            .expect("bind");
        let address = listener.local_address().clone();
        let Address::Tcp { port, .. } = address else {
            panic!("tcp address expected");
        };
        let task = spawn_acceptor(listener, PathBuf::from("/bin/cat"));
        for round in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let message = format!("hello sftp {round}\n");
            conn.write_all(message.as_bytes()).await.expect("write");
            conn.shutdown().await.expect("shutdown write");
            let mut echoed = String::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                conn.read_to_string(&mut echoed),
            )
            .await
            .expect("echo within 10 s")
            .expect("read");
            assert_eq!(echoed, message);
        }
        task.abort();
    }

    #[tokio::test]
    async fn missing_program_keeps_accepting() {
        let listener = Listener::bind(&Address::tcp("127.0.0.1", 0))
            .await
            .expect("bind");
        let Address::Tcp { port, .. } = listener.local_address().clone() else {
            panic!("tcp address expected");
        };
        let task = spawn_acceptor(listener, PathBuf::from("/nonexistent/sftp-server"));
        for _ in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            // The connection is closed without a server behind it.
            let mut buf = Vec::new();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                conn.read_to_end(&mut buf),
            )
            .await
            .expect("closed within 10 s");
            assert!(read.map(|n| n == 0).unwrap_or(true));
        }
        assert!(!task.is_finished());
        task.abort();
    }
}
