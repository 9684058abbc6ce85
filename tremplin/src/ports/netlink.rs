//! Minimal netlink plumbing shared by the audit trigger and the sock_diag enumerator: a raw
//! socket, one request, and a bounds-checked walk over the messages of a datagram.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `NLMSG_ERROR`: an error code (0 = ACK) followed by the request header.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a dump.
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
/// Size of `struct nlmsghdr`.
pub const HEADER_LEN: usize = 16;

/// One message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Error while walking a datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink message at offset {0}")]
pub struct Malformed(pub usize);

/// Splits a datagram into its messages; a length field pointing before the header or past
/// the datagram is an error (nothing after it is trusted).
pub fn messages(buf: &[u8]) -> Result<Vec<Message<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while buf.len().saturating_sub(off) >= HEADER_LEN {
        let u32_at = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let u16_at = |o: usize| u16::from_ne_bytes([buf[o], buf[o + 1]]);
        let len = u32_at(off) as usize;
        if len < HEADER_LEN || len > buf.len() - off {
            return Err(Malformed(off));
        }
        out.push(Message {
            kind: u16_at(off + 4),
            flags: u16_at(off + 6),
            seq: u32_at(off + 8),
            payload: &buf[off + HEADER_LEN..off + len],
        });
        // NLMSG_ALIGN; the last message may omit its padding.
        off = off.saturating_add((len + 3) & !3);
    }
    Ok(out)
}

/// The error code of an `NLMSG_ERROR` payload (0 = ACK, else a negative errno).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(i32::from_ne_bytes(b))
}

/// Encodes a request: header followed by `payload`.
pub fn request(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + payload.len()) as u32;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    msg
}

/// A raw netlink socket of `protocol`, bound to the multicast `groups` bit mask.
pub fn open(protocol: i32, groups: u32, nonblocking: bool) -> std::io::Result<OwnedFd> {
    let mut ty = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain socket(2); the result is checked before being owned.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, ty, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: addr is a valid sockaddr_nl of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sets a receive timeout so a kernel that never answers cannot hang a caller.
pub fn set_recv_timeout(fd: &OwnedFd, timeout: std::time::Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends one datagram to the kernel.
pub fn send(fd: &OwnedFd, msg: &[u8]) -> std::io::Result<()> {
    // SAFETY: msg is a valid buffer; the socket is bound, the kernel is the default peer.
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram into `buf`; returns its length.
pub fn recv(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: buf is a valid writable buffer of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_messages_and_rejects_bad_lengths() {
        let mut buf = request(20, NLM_F_REQUEST, 7, &[1, 2, 3]);
        buf.push(0); // padding to 4
        buf.extend(request(NLMSG_DONE, 0, 7, &0i32.to_ne_bytes()));
        let m = messages(&buf).expect("walk");
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].kind, m[0].seq, m[0].payload),
            (20, 7, &[1u8, 2, 3][..])
        );
        assert_eq!(m[1].kind, NLMSG_DONE);
        assert_eq!(error_code(m[1].payload), Some(0));
        let mut bad = request(20, 0, 1, &[]);
        bad[0] = 200;
        assert_eq!(messages(&bad), Err(Malformed(0)));
        bad[0] = 3;
        assert_eq!(messages(&bad), Err(Malformed(0)));
        assert!(messages(&[1, 2, 3]).expect("short tail ignored").is_empty());
    }
}
