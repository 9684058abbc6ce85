//! The accept-side idle limit of the gRPC listeners: a connection must send the HTTP/2 preface
//! (24 bytes) within a deadline, or its reads fail and the server closes it. After the preface,
//! HTTP/2 keepalive pings (see [`super::server_builder`]) close connections that stop answering.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::{Peer, Stream};

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const PREFACE_LEN: usize = 24;

/// An accepted gRPC connection, with the preface deadline.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    peer: Peer,
    /// Bytes of the preface still expected, and the deadline for them; `None` once received.
    pending: Option<(usize, Pin<Box<Sleep>>)>,
}

impl GuardedStream {
    pub(super) fn new(inner: Stream, peer: Peer, timeout: Duration) -> Self {
        GuardedStream {
            inner,
            peer,
            pending: Some((PREFACE_LEN, Box::pin(tokio::time::sleep(timeout)))),
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some((remaining, deadline)) = &mut this.pending else {
            return result;
        };
        if let Poll::Ready(Ok(())) = &result {
            let read = buf.filled().len() - before;
            *remaining = remaining.saturating_sub(read);
            if *remaining == 0 || read == 0 {
                this.pending = None;
            }
            return result;
        }
        if result.is_pending() && deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the idle limit",
            )));
        }
        result
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}
