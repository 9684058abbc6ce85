//! Listening and dialing over vsock, unix and tcp with one API, for tonic servers and clients.
//!
//! This is the only module that knows about sockets. The vsock paths are kept thin: they are a
//! direct mapping onto `tokio-vsock` and are exercised in tests only through address conversion,
//! because the test machines have no vsock loopback.
//!
//! Peer rules (see [`peers`]): vsock listeners accept the host's CID only unless widened, unix
//! socket files are created with mode 0600 unless widened, tcp is for tests and development.
//! gRPC connections that send nothing are closed: no HTTP/2 preface within 10 s ([`guard`]),
//! and no answer to the keepalive pings of [`server_builder`].

mod guard;
pub mod peers;
mod unix_bind;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream as FuturesStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream};
use tonic::transport::{Channel, Endpoint};

use crate::address::Address;
pub use guard::GuardedStream;
pub use peers::{check_peer, ListenOptions, PeerRefused, VsockPeers};

static PROCESS_LISTEN_OPTIONS: OnceLock<ListenOptions> = OnceLock::new();

/// Sets the options [`Listener::bind`] uses in this process (from the command line, once, before
/// anything binds). A second call is refused and returns the options it was given.
pub fn set_process_listen_options(options: ListenOptions) -> Result<(), ListenOptions> {
    PROCESS_LISTEN_OPTIONS.set(options)
}

/// The options [`Listener::bind`] uses: those set by [`set_process_listen_options`], else the
/// defaults (vsock host only, unix 0600, 10 s preface limit).
pub fn process_listen_options() -> ListenOptions {
    PROCESS_LISTEN_OPTIONS.get().cloned().unwrap_or_default()
}

/// A tonic server with the keepalive every listener uses: an established connection that does
/// not acknowledge a ping within [`peers::HTTP2_KEEPALIVE_TIMEOUT`] is closed.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(peers::HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(peers::HTTP2_KEEPALIVE_TIMEOUT))
}

/// How long dialing may take before the call fails as unavailable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: Address, source: io::Error },
    #[error("another process already listens on {address}")]
    InUse { address: Address },
    #[error("cannot connect to {address}: {source}")]
    Connect { address: Address, source: io::Error },
    #[error("cannot build a gRPC channel for {address}: {source}")]
    Endpoint {
        address: Address,
        source: tonic::transport::Error,
    },
}

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Vsock { cid: u32, port: u32 },
    Unix { uid: Option<u32>, pid: Option<i32> },
    Tcp(SocketAddr),
    Unknown,
}

impl Peer {
    /// The vsock CID of the peer, which is how a host identifies a VM.
    pub fn vsock_cid(&self) -> Option<u32> {
        match self {
            Peer::Vsock { cid, .. } => Some(*cid),
            _ => None,
        }
    }
}

/// A connected byte stream of any supported transport.
#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Vsock(VsockStream),
}

impl Stream {
    pub fn peer(&self) -> Peer {
        match self {
            Stream::Unix(s) => match s.peer_cred() {
                Ok(cred) => Peer::Unix {
                    uid: Some(cred.uid()),
                    pid: cred.pid(),
                },
                Err(_) => Peer::Unix {
                    uid: None,
                    pid: None,
                },
            },
            Stream::Tcp(s) => s.peer_addr().map(Peer::Tcp).unwrap_or(Peer::Unknown),
            Stream::Vsock(s) => s
                .peer_addr()
                .map(|a| Peer::Vsock {
                    cid: a.cid(),
                    port: a.port(),
                })
                .unwrap_or(Peer::Unknown),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $inner:ident => $body:expr) => {
        match $self.get_mut() {
            Stream::Unix($inner) => $body,
            Stream::Tcp($inner) => $body,
            Stream::Vsock($inner) => $body,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl tonic::transport::server::Connected for Stream {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer()
    }
}

/// The peer of a gRPC request served over [`Listener::into_incoming`].
pub fn request_peer<T>(request: &tonic::Request<T>) -> Peer {
    request
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or(Peer::Unknown)
}

enum Inner {
    Unix {
        listener: UnixListener,
        _cleanup: UnixSocketGuard,
    },
    Tcp(TcpListener),
    Vsock(VsockListener),
}

/// Removes a unix socket file when the listener goes away, so no stale socket is left behind.
struct UnixSocketGuard(PathBuf);

impl Drop for UnixSocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A bound listener of any supported transport.
pub struct Listener {
    inner: Inner,
    local: Address,
    options: ListenOptions,
}

impl Listener {
    /// Binds `address` with [`process_listen_options`].
    pub async fn bind(address: &Address) -> Result<Self, TransportError> {
        Self::bind_with(address, process_listen_options()).await
    }

    /// Binds `address`. Port 0 (tcp, vsock) picks a free port; [`Listener::local_address`] says
    /// which. A stale unix socket file (nobody listening) is replaced; a live one is an error.
    /// A unix socket file gets `options.socket_mode` before anyone can reach it.
    pub async fn bind_with(
        address: &Address,
        options: ListenOptions,
    ) -> Result<Self, TransportError> {
        let bind_err = |source| TransportError::Bind {
            address: address.clone(),
            source,
        };
        match address {
            Address::Unix(path) => {
                remove_stale_socket(address, path).await?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(bind_err)?;
                }
                let std_listener =
                    unix_bind::bind_with_mode(path, options.socket_mode).map_err(bind_err)?;
                let cleanup = UnixSocketGuard(path.clone());
                let listener = UnixListener::from_std(std_listener).map_err(bind_err)?;
                Ok(Listener {
                    inner: Inner::Unix {
                        listener,
                        _cleanup: cleanup,
                    },
                    local: address.clone(),
                    options,
                })
            }
            Address::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        if e.kind() == io::ErrorKind::AddrInUse {
                            TransportError::InUse {
                                address: address.clone(),
                            }
                        } else {
                            bind_err(e)
                        }
                    })?;
                let actual = listener.local_addr().map_err(bind_err)?.port();
                Ok(Listener {
                    inner: Inner::Tcp(listener),
                    local: Address::tcp(host.clone(), actual),
                    options,
                })
            }
            Address::Vsock { cid, port } => {
                let listener = VsockListener::bind(VsockAddr::new(*cid, *port)).map_err(|e| {
                    if e.kind() == io::ErrorKind::AddrInUse {
                        TransportError::InUse {
                            address: address.clone(),
                        }
                    } else {
                        bind_err(e)
                    }
                })?;
                let actual = listener.local_addr().map_err(bind_err)?.port();
                Ok(Listener {
                    inner: Inner::Vsock(listener),
                    local: Address::vsock(*cid, actual),
                    options,
                })
            }
        }
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// Accepts one connection from an allowed peer; a refused one is logged and closed.
    pub async fn accept(&self) -> io::Result<Stream> {
        loop {
            let (stream, peer) = self.accept_any().await?;
            match self.check(&peer) {
                Ok(()) => return Ok(stream),
                Err(refused) => self.log_refusal(&refused),
            }
        }
    }

    async fn accept_any(&self) -> io::Result<(Stream, Peer)> {
        let stream = match &self.inner {
            Inner::Unix { listener: l, .. } => l.accept().await.map(|(s, _)| Stream::Unix(s))?,
            Inner::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            })?,
            Inner::Vsock(l) => l.accept().await.map(|(s, _)| Stream::Vsock(s))?,
        };
        let peer = stream.peer();
        Ok((stream, peer))
    }

    fn check(&self, peer: &Peer) -> Result<(), PeerRefused> {
        let on_vsock = matches!(self.inner, Inner::Vsock(_));
        check_peer(&self.options.vsock_peers, peer, on_vsock)
    }

    fn log_refusal(&self, refused: &PeerRefused) {
        let cid = match refused {
            PeerRefused::VsockCid { cid, .. } => Some(*cid),
            PeerRefused::UnknownVsockPeer => None,
        };
        tracing::warn!(address = %self.local, peer_cid = ?cid, "{refused}");
    }

    /// A stream of accepted connections for `tonic::transport::Server::serve_with_incoming`.
    /// Accept errors (e.g. out of file descriptors) are logged and retried, never end the server.
    /// A refused peer is logged and answered PERMISSION_DENIED with the reason on its own small
    /// connection task; an allowed one must send the HTTP/2 preface within the preface limit.
    pub fn into_incoming(
        self,
    ) -> impl FuturesStream<Item = io::Result<GuardedStream>> + Send + 'static {
        futures::stream::unfold(self, |listener| async move {
            loop {
                match listener.accept_any().await {
                    Ok((stream, peer)) => match listener.check(&peer) {
                        Ok(()) => {
                            let timeout = listener.options.preface_timeout;
                            let guarded = GuardedStream::new(stream, peer, timeout);
                            return Some((Ok(guarded), listener));
                        }
                        Err(refused) => {
                            listener.log_refusal(&refused);
                            peers::spawn_refusal(stream, refused);
                        }
                    },
                    Err(e) => {
                        tracing::warn!(address = %listener.local, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    }
}

async fn remove_stale_socket(address: &Address, path: &Path) -> Result<(), TransportError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path)).await {
        Ok(Ok(_)) => Err(TransportError::InUse {
            address: address.clone(),
        }),
        _ => std::fs::remove_file(path).map_err(|source| TransportError::Bind {
            address: address.clone(),
            source,
        }),
    }
}

/// Opens one connection to `address`, failing after `timeout`.
pub async fn connect(address: &Address, timeout: Duration) -> Result<Stream, TransportError> {
    let connect_err = |source| TransportError::Connect {
        address: address.clone(),
        source,
    };
    let attempt = async {
        match address {
            Address::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
            Address::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Address::Vsock { cid, port } => VsockStream::connect(VsockAddr::new(*cid, *port))
                .await
                .map(Stream::Vsock),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map_err(connect_err),
        Err(_) => Err(connect_err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        ))),
    }
}

/// A lazily connecting gRPC channel to `address`: a down peer surfaces as `UNAVAILABLE` on the
/// first call, as with upstream's channels, and the channel reconnects by itself afterwards.
pub fn lazy_channel(
    address: &Address,
    connect_timeout: Duration,
) -> Result<Channel, TransportError> {
    // The URI is a placeholder: the connector below decides where bytes go.
    let endpoint = Endpoint::from_static("http://crostini.invalid")
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    let target = address.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let target = target.clone();
        async move { connect(&target, connect_timeout).await.map(TokioIo::new) }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Converts a vsock [`Address`] into the socket address tokio-vsock takes.
pub fn vsock_addr(address: &Address) -> Option<VsockAddr> {
    match address {
        Address::Vsock { cid, port } => Some(VsockAddr::new(*cid, *port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tcp_port_zero_reports_actual_port_and_accepts() {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let local = listener.local_address().clone();
        assert_ne!(local.port(), Some(0));
        let client = tokio::spawn(async move {
            let mut s = connect(&local, DEFAULT_CONNECT_TIMEOUT)
                .await
                .expect("connect");
            s.write_all(b"hi").await.expect("write");
        });
        let mut server_side = listener.accept().await.expect("accept");
        assert!(matches!(server_side.peer(), Peer::Tcp(_)));
        let mut buf = [0u8; 2];
        server_side.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");
        client.await.expect("join");
    }

    #[tokio::test]
    async fn unix_replaces_stale_socket_refuses_live_one_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/s.sock");
        let address = Address::unix(&path);
        // A stale socket file: bound then the listener dropped without cleanup.
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("std bind"));
        assert!(path.exists());
        let listener = Listener::bind(&address).await.expect("bind over stale");
        let second = Listener::bind(&address).await;
        assert!(matches!(second, Err(TransportError::InUse { .. })));
        let peer = tokio::spawn({
            let address = address.clone();
            async move {
                connect(&address, DEFAULT_CONNECT_TIMEOUT)
                    .await
                    .expect("connect")
            }
        });
        let accepted = listener.accept().await.expect("accept");
        assert!(matches!(accepted.peer(), Peer::Unix { uid: Some(_), .. }));
        drop(peer.await);
        drop(listener);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn connect_to_missing_unix_socket_names_the_address() {
        let e = connect(
            &Address::unix("/nonexistent/x.sock"),
            DEFAULT_CONNECT_TIMEOUT,
        )
        .await
        .expect_err("must fail");
        assert!(e.to_string().contains("unix:///nonexistent/x.sock"), "{e}");
    }

    #[test]
    fn vsock_address_maps_to_vsock_addr() {
        let a = vsock_addr(&"vsock://any:8890".parse().expect("addr")).expect("vsock");
        assert_eq!((a.cid(), a.port()), (u32::MAX, 8890));
        assert!(vsock_addr(&Address::unix("/x")).is_none());
    }
}

#[cfg(test)]
mod peer_tests;
