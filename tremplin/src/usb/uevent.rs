//! Kernel uevents (§9.2): the message parser and the sockets they arrive on.
//!
//! A message is a header (`ACTION@DEVPATH`) followed by NUL-separated `KEY=VALUE` records,
//! at most [`MAX_UEVENT_SIZE`] bytes. Production reads the `NETLINK_KOBJECT_UEVENT` multicast
//! group 1; tests (and `--uevent-socket`) read the same bytes from a unix datagram socket.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use tokio::io::unix::AsyncFd;
use tokio::net::UnixDatagram;

/// Largest uevent message read (§9.2).
pub const MAX_UEVENT_SIZE: usize = 4096;

/// Kernel uevent multicast group.
const UEVENT_GROUP: u32 = 1;

/// One parsed uevent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    /// The header (e.g. `add@/devices/...`); udev-style messages have `libudev` here.
    pub header: String,
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// Parses a raw message (pure, never panics). Records without `=` are ignored; bytes beyond
/// [`MAX_UEVENT_SIZE`] are ignored; invalid UTF-8 is replaced.
pub fn parse_uevent(raw: &[u8]) -> Uevent {
    let raw = &raw[..raw.len().min(MAX_UEVENT_SIZE)];
    let mut records = raw.split(|b| *b == 0);
    let header = records
        .next()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .unwrap_or_default();
    let mut vars = BTreeMap::new();
    for record in records {
        if record.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(record);
        if let Some((k, v)) = text.split_once('=') {
            if !k.is_empty() {
                vars.insert(k.to_string(), v.to_string());
            }
        }
    }
    Uevent { header, vars }
}

/// Serializes a uevent the way the kernel sends it (header, then `KEY=VALUE\0` records);
/// used by tests and tools feeding `--uevent-socket`.
pub fn encode_uevent(header: &str, vars: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(header.as_bytes());
    out.push(0);
    for (k, v) in vars {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Where uevents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UeventSourceKind {
    /// The kernel's `NETLINK_KOBJECT_UEVENT` socket, multicast group 1.
    Netlink,
    /// A unix datagram socket bound at this path; each datagram is one raw message.
    UnixDatagram(PathBuf),
}

/// An open uevent socket.
pub enum UeventSource {
    Netlink(AsyncFd<OwnedFd>),
    Unix(UnixDatagram, PathBuf),
}

impl UeventSource {
    /// Opens (binds) the socket.
    pub fn open(kind: &UeventSourceKind) -> std::io::Result<UeventSource> {
        match kind {
            UeventSourceKind::Netlink => {
                let fd = socket(
                    AddressFamily::Netlink,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                    SockProtocol::NetlinkKObjectUEvent,
                )?;
                bind(fd.as_raw_fd(), &NetlinkAddr::new(0, UEVENT_GROUP))?;
                // SAFETY: `fd` is an open socket owned by the AsyncFd from here on; OwnedFd
                // always returns that same descriptor and closes it only on drop.
                let registered = unsafe { AsyncFd::register(fd) }?;
                Ok(UeventSource::Netlink(registered))
            }
            UeventSourceKind::UnixDatagram(path) => {
                // A stale socket file from an earlier run would make bind fail.
                if std::fs::symlink_metadata(path).is_ok() {
                    std::fs::remove_file(path)?;
                }
                Ok(UeventSource::Unix(
                    UnixDatagram::bind(path)?,
                    path.to_path_buf(),
                ))
            }
        }
    }

    /// Receives one raw message into `buf` (truncated to its size).
    pub async fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            UeventSource::Netlink(fd) => loop {
                let mut guard = fd.readable().await?;
                match guard.try_io(|inner| {
                    recv(inner.get_ref().as_raw_fd(), buf, MsgFlags::empty())
                        .map_err(std::io::Error::from)
                }) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            },
            UeventSource::Unix(sock, _) => sock.recv(buf).await,
        }
    }

    /// The bound path of a unix source.
    pub fn path(&self) -> Option<&Path> {
        match self {
            UeventSource::Netlink(_) => None,
            UeventSource::Unix(_, p) => Some(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_records() {
        let raw = encode_uevent(
            "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2",
            &[
                ("ACTION", "add"),
                ("DEVPATH", "/devices/pci0000:00/0000:00:14.0/usb1/1-2"),
                ("SUBSYSTEM", "usb"),
                ("DEVNAME", "bus/usb/001/002"),
                ("MAJOR", "189"),
                ("MINOR", "1"),
                ("EMPTY", ""),
                ("WITH", "a=b"),
            ],
        );
        let ev = parse_uevent(&raw);
        assert_eq!(ev.header, "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2");
        assert_eq!(ev.get("ACTION"), Some("add"));
        assert_eq!(ev.get("DEVNAME"), Some("bus/usb/001/002"));
        assert_eq!(ev.get("EMPTY"), Some(""));
        assert_eq!(ev.get("WITH"), Some("a=b"), "value keeps later '='");
        assert_eq!(ev.vars.len(), 8);
    }

    #[test]
    fn malformed_records_are_skipped() {
        let ev = parse_uevent(b"hdr\0noequals\0=novalue\0\0K=V\0trailing");
        assert_eq!(ev.header, "hdr");
        assert_eq!(ev.vars.len(), 1);
        assert_eq!(ev.get("K"), Some("V"));
        assert_eq!(parse_uevent(b""), Uevent::default());
        assert_eq!(parse_uevent(b"only-header").header, "only-header");
    }

    #[test]
    fn bytes_past_the_limit_are_ignored() {
        let mut raw = encode_uevent("h", &[("A", "1")]);
        raw.resize(MAX_UEVENT_SIZE, b'x');
        raw.extend_from_slice(b"\0LATE=1\0");
        let ev = parse_uevent(&raw);
        assert_eq!(ev.get("A"), Some("1"));
        assert_eq!(ev.get("LATE"), None);
    }

    #[test]
    fn fuzzed_messages_never_panic() {
        // Deterministic xorshift so failures reproduce.
        let mut rng = crostini_common::test_rng::XorShift64::new(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        let alphabet = b"\0=@/ACTIONDEVPATHSUBSYSTEMusb-0123456789\xff\xfe";
        for _ in 0..5000 {
            let len = (next() % 5000) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let ev = parse_uevent(&raw);
            for (k, _) in ev.vars.iter() {
                assert!(!k.is_empty() && !k.contains('\0'));
            }
        }
    }

    #[tokio::test]
    async fn netlink_source_opens() {
        match UeventSource::open(&UeventSourceKind::Netlink) {
            Ok(source) => assert!(source.path().is_none()),
            // Containers/sandboxes may forbid kobject-uevent netlink sockets.
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    || e.raw_os_error() == Some(libc::EPROTONOSUPPORT)
                    || e.raw_os_error() == Some(libc::EACCES) =>
            {
                eprintln!("SKIP netlink_source_opens: netlink uevent socket not allowed here: {e}");
            }
            Err(e) => panic!("cannot open the netlink uevent socket: {e}"),
        }
    }

    #[tokio::test]
    async fn unix_source_receives_datagrams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("uevent.sock");
        let mut source =
            UeventSource::open(&UeventSourceKind::UnixDatagram(path.clone())).expect("bind");
        let sender = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        let msg = encode_uevent("add@/x", &[("ACTION", "add")]);
        sender.send_to(&msg, &path).expect("send");
        let mut buf = vec![0u8; MAX_UEVENT_SIZE];
        let n = source.recv(&mut buf).await.expect("recv");
        assert_eq!(parse_uevent(&buf[..n]).get("ACTION"), Some("add"));
        // Re-opening over a stale socket file works.
        drop(source);
        UeventSource::open(&UeventSourceKind::UnixDatagram(path)).expect("rebind");
    }
}
