//! Who may connect to a listener, and what a refused peer is told.
//!
//! - vsock: only the host (CID 2) unless widened (`--allow-vsock-cid`, `--vsock-any-peer`). A
//!   guest agent has no business talking to other VMs; Lima's guest agent applies the same rule.
//! - unix: the socket file's mode decides (0600 by default, see [`ListenOptions::socket_mode`]).
//!   Peer credentials are not used: they do not translate across the user namespace of a
//!   bind-mounted socket.
//! - tcp: for tests and development only; every peer that can reach the port is accepted.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Peer, Stream};
use crate::address::VMADDR_CID_HOST;

/// Default mode of a unix socket file: owner only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
/// A connection that has not sent the 24-byte HTTP/2 preface within this time is closed.
pub const DEFAULT_PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the gRPC servers ping an established connection ...
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ... and how long they wait for the acknowledgement before closing it.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused peer's connection is kept to tell it why, at most.
const REFUSAL_LINGER: Duration = Duration::from_secs(5);

/// Which vsock peers a listener accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsockPeers {
    /// These CIDs only (always contains the host's unless built by hand).
    Only(BTreeSet<u32>),
    /// Every CID (the host side, which serves many VMs).
    Any,
}

impl VsockPeers {
    /// The host (CID 2) only: the default of the guest agents.
    pub fn host_only() -> Self {
        VsockPeers::Only(BTreeSet::from([VMADDR_CID_HOST]))
    }

    /// The host plus `extra`.
    pub fn host_and(extra: impl IntoIterator<Item = u32>) -> Self {
        let mut cids = BTreeSet::from([VMADDR_CID_HOST]);
        cids.extend(extra);
        VsockPeers::Only(cids)
    }

    fn describe(&self) -> String {
        match self {
            VsockPeers::Any => "any CID".to_string(),
            VsockPeers::Only(cids) => {
                let list: Vec<String> = cids.iter().map(u32::to_string).collect();
                format!("CID {}", list.join(", "))
            }
        }
    }
}

impl Default for VsockPeers {
    fn default() -> Self {
        VsockPeers::host_only()
    }
}

/// How a listener is set up and whom it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    pub vsock_peers: VsockPeers,
    /// Mode of a unix socket file (permission bits only).
    pub socket_mode: u32,
    /// gRPC listeners close a connection that has not sent the HTTP/2 preface in this time.
    pub preface_timeout: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            vsock_peers: VsockPeers::host_only(),
            socket_mode: DEFAULT_SOCKET_MODE,
            preface_timeout: DEFAULT_PREFACE_TIMEOUT,
        }
    }
}

impl ListenOptions {
    /// The host side: every vsock CID is a VM it serves.
    pub fn any_vsock_peer() -> Self {
        ListenOptions {
            vsock_peers: VsockPeers::Any,
            ..ListenOptions::default()
        }
    }
}

/// Why a peer was refused. The text is what the peer and the log see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    #[error(
        "vsock peer CID {cid} refused: this agent accepts vsock connections from {allowed} \
         only (the host is CID 2; widen with --allow-vsock-cid CID or --vsock-any-peer)"
    )]
    VsockCid { cid: u32, allowed: String },
    #[error("peer refused: its vsock address cannot be read")]
    UnknownVsockPeer,
}

/// The decision, without any socket: may `peer` (accepted on a vsock listener when `on_vsock`)
/// talk to us? unix and tcp peers are always accepted here (file mode and loopback decide).
pub fn check_peer(peers: &VsockPeers, peer: &Peer, on_vsock: bool) -> Result<(), PeerRefused> {
    match (peer, peers) {
        (Peer::Vsock { .. }, VsockPeers::Any) => Ok(()),
        (Peer::Vsock { cid, .. }, VsockPeers::Only(cids)) if cids.contains(cid) => Ok(()),
        (Peer::Vsock { cid, .. }, VsockPeers::Only(_)) => Err(PeerRefused::VsockCid {
            cid: *cid,
            allowed: peers.describe(),
        }),
        (_, VsockPeers::Any) => Ok(()),
        (_, VsockPeers::Only(_)) if on_vsock => Err(PeerRefused::UnknownVsockPeer),
        _ => Ok(()),
    }
}

/// Parses a socket mode given in octal (`0600`, `660`, `0o660`); only permission bits.
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{text:?} is not an octal mode such as 0600 or 0660"))?;
    if mode > 0o777 {
        return Err(format!(
            "{text:?}: only permission bits (at most 0777) are allowed"
        ));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "{text:?}: the owner must keep read and write (0600 or wider)"
        ));
    }
    Ok(mode)
}

/// Parses one vsock CID number (not `VMADDR_CID_ANY`).
pub fn parse_cid(text: &str) -> Result<u32, String> {
    let part = text.trim();
    match part.parse::<u32>() {
        Ok(cid) if cid != crate::address::VMADDR_CID_ANY => Ok(cid),
        _ => Err(format!("{part:?} is not a vsock CID number")),
    }
}

/// Parses one `--allow-vsock-cid` value: a CID number, or several separated by commas.
pub fn parse_cids(text: &str) -> Result<Vec<u32>, String> {
    text.split(',').map(parse_cid).collect()
}

/// Tells a refused gRPC peer why (every request gets PERMISSION_DENIED with `reason`), then
/// closes the connection after [`REFUSAL_LINGER`] at most.
pub(super) fn spawn_refusal(stream: Stream, reason: PeerRefused) {
    let message = reason.to_string();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |_request| {
            let status = tonic::Status::permission_denied(message.clone());
            async move { Ok::<_, Infallible>(status.into_http::<http_body_util::Empty<bytes::Bytes>>()) }
        });
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(REFUSAL_LINGER, connection).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn vsock(cid: u32) -> Peer {
        Peer::Vsock { cid, port: 1234 }
    }

    #[test]
    fn default_accepts_only_the_host_cid() {
        let peers = VsockPeers::default();
        assert_eq!(check_peer(&peers, &vsock(2), true), Ok(()));
        for cid in [0, 1, 3, 42, u32::MAX - 1] {
            let refused = check_peer(&peers, &vsock(cid), true).expect_err("refused");
            let text = refused.to_string();
            assert!(text.contains(&format!("CID {cid} refused")), "{text}");
            assert!(text.contains("--allow-vsock-cid"), "{text}");
        }
    }

    #[test]
    fn widened_lists_and_any_accept_their_cids() {
        let peers = VsockPeers::host_and([3, 7]);
        for cid in [2, 3, 7] {
            assert_eq!(check_peer(&peers, &vsock(cid), true), Ok(()));
        }
        assert!(check_peer(&peers, &vsock(4), true).is_err());
        assert!(check_peer(&VsockPeers::Any, &vsock(4), true).is_ok());
    }

    #[test]
    fn unix_and_tcp_peers_are_left_to_the_socket_and_unknown_vsock_is_refused() {
        let peers = VsockPeers::default();
        let unix = Peer::Unix {
            uid: Some(1000),
            pid: None,
        };
        let tcp = Peer::Tcp(SocketAddr::from(([127, 0, 0, 1], 5)));
        assert!(check_peer(&peers, &unix, false).is_ok());
        assert!(check_peer(&peers, &tcp, false).is_ok());
        assert!(check_peer(&peers, &Peer::Unknown, false).is_ok());
        assert_eq!(
            check_peer(&peers, &Peer::Unknown, true),
            Err(PeerRefused::UnknownVsockPeer)
        );
        assert!(check_peer(&VsockPeers::Any, &Peer::Unknown, true).is_ok());
    }

    #[test]
    fn socket_modes_parse_in_octal_and_keep_the_owner() {
        assert_eq!(parse_socket_mode("0600"), Ok(0o600));
        assert_eq!(parse_socket_mode("660"), Ok(0o660));
        assert_eq!(parse_socket_mode("0o666"), Ok(0o666));
        for bad in ["", "rw", "0888", "01777", "0400", "0066"] {
            assert!(parse_socket_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cid_lists_parse() {
        assert_eq!(parse_cids("3"), Ok(vec![3]));
        assert_eq!(parse_cids("3, 4"), Ok(vec![3, 4]));
        assert!(parse_cids("any").is_err());
        assert!(parse_cids("3,").is_err());
        assert!(parse_cids("4294967295").is_err());
    }
}
