//! TCP listeners of a network namespace through `sock_diag` netlink (§9.3 step 2):
//! `SOCK_DIAG_BY_FAMILY` dumps with `states = 1 << TCP_LISTEN`, for AF_INET and AF_INET6.
//! The socket is created on a short-lived thread that entered the container's namespace
//! (`/proc/<init pid>/ns/net`), so no tokio thread ever changes namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::netlink;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCP_LISTEN` in the kernel's TCP state enum.
pub const TCP_LISTEN: u8 = 10;
/// `sizeof(struct inet_diag_msg)`.
const INET_DIAG_MSG_LEN: usize = 72;
/// Largest dump accepted (about 1 million sockets): a container cannot make tremplin loop
/// forever.
const MAX_DUMP_BYTES: usize = 128 * 1024 * 1024;

/// One socket of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub state: u8,
    pub local: IpAddr,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("cannot enter the network namespace of pid {pid}: {source}")]
    Namespace { pid: i64, source: std::io::Error },
    #[error("sock_diag: {0}")]
    Io(#[from] std::io::Error),
    #[error("sock_diag: kernel error {0}")]
    Kernel(i32),
    #[error("sock_diag: {0}")]
    Malformed(#[from] netlink::Malformed),
    #[error("sock_diag: dump larger than {MAX_DUMP_BYTES} bytes")]
    TooLarge,
    #[error("sock_diag: namespace thread failed")]
    Thread,
}

/// `struct inet_diag_req_v2` for a dump of TCP sockets of `family` in LISTEN state.
pub fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    let mut req = [0u8; 56];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[4..8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    netlink::request(
        SOCK_DIAG_BY_FAMILY,
        netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP,
        seq,
        &req,
    )
}

/// Parses one `struct inet_diag_msg` (family, state, then the socket id whose source port is
/// big-endian and whose source address is 16 bytes, IPv4 in the first 4).
pub fn parse_inet_diag_msg(payload: &[u8]) -> Option<DiagSocket> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let port = u16::from_be_bytes([payload[4], payload[5]]);
    let src = &payload[8..24];
    let local = match i32::from(payload[0]) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        libc::AF_INET6 => {
            let b: [u8; 16] = src.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(DiagSocket {
        state: payload[1],
        local,
        port,
    })
}

/// What one reply datagram of a dump says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpPart {
    pub sockets: Vec<DiagSocket>,
    pub done: bool,
}

/// Parses one reply datagram: `SOCK_DIAG_BY_FAMILY` messages until `NLMSG_DONE`; an
/// `NLMSG_ERROR` is the kernel's refusal. Messages of other sequence numbers are ignored.
pub fn parse_dump(buf: &[u8], seq: u32) -> Result<DumpPart, DiagError> {
    let mut part = DumpPart::default();
    for m in netlink::messages(buf)? {
        if m.seq != seq {
            continue;
        }
        match m.kind {
            netlink::NLMSG_DONE => {
                part.done = true;
                break;
            }
            netlink::NLMSG_ERROR => match netlink::error_code(m.payload) {
                Some(0) => {}
                Some(e) => return Err(DiagError::Kernel(e)),
                None => return Err(DiagError::Malformed(netlink::Malformed(0))),
            },
            SOCK_DIAG_BY_FAMILY => part.sockets.extend(parse_inet_diag_msg(m.payload)),
            _ => {}
        }
    }
    Ok(part)
}

/// Dumps the listeners of `family` over `fd`.
pub fn dump(fd: &OwnedFd, family: u8, seq: u32) -> Result<Vec<DiagSocket>, DiagError> {
    netlink::send(fd, &dump_request(family, seq))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut total = 0usize;
    loop {
        let n = netlink::recv(fd, &mut buf)?;
        total += n;
        if total > MAX_DUMP_BYTES {
            return Err(DiagError::TooLarge);
        }
        let part = parse_dump(&buf[..n], seq)?;
        out.extend(part.sockets);
        if part.done {
            return Ok(out);
        }
    }
}

/// A sock_diag socket created inside the network namespace of `pid` (kept by the socket
/// after the thread that made it exits).
pub fn socket_in_netns_of(pid: i64) -> Result<OwnedFd, DiagError> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|source| DiagError::Namespace { pid, source })?;
    std::thread::Builder::new()
        .name("tremplin-netns".into())
        .spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                DiagError::Namespace {
                    pid,
                    source: e.into(),
                }
            })?;
            let fd = netlink::open(NETLINK_SOCK_DIAG, 0, false)?;
            netlink::set_recv_timeout(&fd, Duration::from_secs(5))?;
            Ok(fd)
        })
        .map_err(DiagError::Io)?
        .join()
        .map_err(|_| DiagError::Thread)?
}

/// Every TCP listener (IPv4 and IPv6) of the network namespace of `pid`. IPv6 may be
/// disabled there: a refused AF_INET6 dump counts as no IPv6 listener.
pub fn listeners_of_pid(pid: i64) -> Result<Vec<DiagSocket>, DiagError> {
    let fd = socket_in_netns_of(pid)?;
    let mut out = dump(&fd, libc::AF_INET as u8, 1)?;
    match dump(&fd, libc::AF_INET6 as u8, 2) {
        Ok(v6) => out.extend(v6),
        Err(DiagError::Kernel(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn diag_msg(family: i32, state: u8, addr: &[u8], port: u16) -> Vec<u8> {
        let mut m = vec![0u8; INET_DIAG_MSG_LEN];
        m[0] = family as u8;
        m[1] = state;
        m[4..6].copy_from_slice(&port.to_be_bytes());
        m[8..8 + addr.len()].copy_from_slice(addr);
        m
    }

    #[test]
    fn parses_v4_and_v6_messages() {
        let v4 = parse_inet_diag_msg(&diag_msg(libc::AF_INET, 10, &[127, 0, 0, 1], 8123));
        assert_eq!(
            v4,
            Some(DiagSocket {
                state: 10,
                local: "127.0.0.1".parse().expect("ip"),
                port: 8123
            })
        );
        let mut one = [0u8; 16];
        one[15] = 1;
        let v6 = parse_inet_diag_msg(&diag_msg(libc::AF_INET6, 10, &one, 3000)).expect("v6");
        assert_eq!(v6.local, "::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(v6.port, 3000);
    }

    #[test]
    fn short_or_foreign_messages_are_skipped() {
        assert_eq!(parse_inet_diag_msg(&[2, 10, 0]), None);
        assert_eq!(parse_inet_diag_msg(&diag_msg(17, 10, &[1], 1)), None);
    }

    #[test]
    fn dump_reply_until_done_and_kernel_errors() {
        let mut buf = netlink::request(
            SOCK_DIAG_BY_FAMILY,
            0,
            1,
            &diag_msg(libc::AF_INET, 10, &[0, 0, 0, 0], 22),
        );
        // A message of another request is ignored.
        buf.extend(netlink::request(
            SOCK_DIAG_BY_FAMILY,
            0,
            9,
            &diag_msg(libc::AF_INET, 10, &[0, 0, 0, 0], 99),
        ));
        let part = parse_dump(&buf, 1).expect("part");
        assert_eq!(part.sockets.len(), 1);
        assert!(!part.done);
        buf.extend(netlink::request(netlink::NLMSG_DONE, 0, 1, &[0; 4]));
        let part = parse_dump(&buf, 1).expect("done");
        assert!(part.done);
        let err = netlink::request(netlink::NLMSG_ERROR, 0, 1, &(-97i32).to_ne_bytes());
        assert!(matches!(parse_dump(&err, 1), Err(DiagError::Kernel(-97))));
    }

    #[test]
    fn request_asks_for_tcp_listeners() {
        let req = dump_request(libc::AF_INET6 as u8, 5);
        assert_eq!(req.len(), 16 + 56);
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(req[16], libc::AF_INET6 as u8);
        assert_eq!(req[17], libc::IPPROTO_TCP as u8);
        assert_eq!(
            u32::from_ne_bytes([req[20], req[21], req[22], req[23]]),
            1 << 10
        );
    }

    /// Real kernel: a listener of this test shows up in the dump of our own namespace.
    #[test]
    fn own_namespace_dump_sees_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let socks = listeners_of_pid(i64::from(std::process::id())).expect("dump");
        assert!(socks
            .iter()
            .any(|s| s.port == port && s.state == TCP_LISTEN && s.local.is_loopback()));
    }
}
