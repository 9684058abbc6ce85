//! Listening TCP ports of running containers (§9.3).
//!
//! Instead of sock_diag inside the container's network namespace, the socket tables of that
//! namespace are read from `/proc/<init pid>/net/tcp` and `/proc/<init pid>/net/tcp6` (procfs
//! shows the namespace of the given process) — same data, no setns. LISTEN sockets bound to an
//! unspecified or loopback address are kept; IPv6 listeners are included in the "tcp4" list.
//! The audit trigger is not implemented; a poll (`--ports-poll-seconds`, default 5 s) stands
//! in for it, and an update is sent when the set changed or at least every 60 s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crostini_lxd::Client;
use crostini_proto::vm_tools::tremplin::{
    listening_port_info::ContainerPortInfo, ListeningPortInfo,
};

use crate::daemon::Daemon;

/// TCP state LISTEN in `/proc/net/tcp`.
const TCP_LISTEN: u8 = 0x0A;
/// Unconditional resend interval.
const RESEND: Duration = Duration::from_secs(60);

/// One parsed socket line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: std::net::IpAddr,
    pub port: u16,
    pub state: u8,
}

fn parse_v4(hex: &str) -> Option<Ipv4Addr> {
    if hex.len() != 8 {
        return None;
    }
    let n = u32::from_str_radix(hex, 16).ok()?;
    // The kernel prints the network-order s_addr as a host-order (little-endian) integer.
    Some(Ipv4Addr::from(n.to_le_bytes()))
}

fn parse_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (word, chunk) in hex.as_bytes().chunks(8).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        let n = u32::from_str_radix(text, 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&n.to_le_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// Parses a `/proc/net/tcp` or `/proc/net/tcp6` table. The header and malformed lines are
/// skipped.
pub fn parse_proc_net_tcp(text: &str) -> Vec<TcpSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let local = match addr.len() {
                8 => std::net::IpAddr::V4(parse_v4(addr)?),
                32 => std::net::IpAddr::V6(parse_v6(addr)?),
                _ => return None,
            };
            Some(TcpSocket { local, port, state })
        })
        .collect()
}

/// Unspecified or loopback (`0.0.0.0`, `127.0.0.0/8`, `::`, `::1`, and their v4-mapped forms).
pub fn is_reportable(addr: &std::net::IpAddr) -> bool {
    match addr {
        std::net::IpAddr::V4(a) => a.is_unspecified() || a.is_loopback(),
        std::net::IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return v4.is_unspecified() || v4.is_loopback();
            }
            a.is_unspecified() || a.is_loopback()
        }
    }
}

/// Sorted, deduplicated LISTEN ports on reportable addresses.
pub fn listening_ports(tables: &[&str]) -> Vec<u32> {
    let set: BTreeSet<u32> = tables
        .iter()
        .flat_map(|t| parse_proc_net_tcp(t))
        .filter(|s| s.state == TCP_LISTEN && is_reportable(&s.local))
        .map(|s| u32::from(s.port))
        .collect();
    set.into_iter().collect()
}

/// Largest `/proc/<pid>/net/tcp{,6}` read (about 200 000 sockets).
const MAX_PROC_NET: u64 = 32 * 1024 * 1024;

/// Reads the listening ports of the network namespace of `pid`.
pub fn ports_of_pid(pid: i64) -> Result<Vec<u32>, String> {
    let read = |name: &str| {
        // The container decides how many sockets it has: bounded read (issue 9 #5).
        let path = format!("/proc/{pid}/net/{name}");
        crostini_common::untrusted_file::read_capped_string(
            std::path::Path::new(&path),
            MAX_PROC_NET,
        )
        .map_err(|e| e.to_string())
    };
    let v4 = read("tcp")?;
    // IPv6 may be disabled in the container.
    let v6 = read("tcp6").unwrap_or_default();
    Ok(listening_ports(&[&v4, &v6]))
}

impl Daemon {
    /// Collects the ports of every running container; any failure aborts (nothing sent).
    pub async fn collect_ports(client: &Client) -> Result<BTreeMap<String, Vec<u32>>, String> {
        let instances = client.instances().await.map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for instance in instances {
            if !instance.is_running() {
                continue;
            }
            let state = client
                .instance_state(&instance.name)
                .await
                .map_err(|e| e.to_string())?;
            if !state.is_running() || state.pid <= 0 {
                continue;
            }
            out.insert(instance.name.clone(), ports_of_pid(state.pid)?);
        }
        Ok(out)
    }

    /// The "update ports" procedure; `force` sends even when nothing changed.
    pub async fn update_ports(&self, force: bool) {
        let Some(client) = self.lxd() else {
            return;
        };
        let _serial = self.ports_lock.lock().await;
        let ports = match Self::collect_ports(&client).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("listening ports update skipped: {e}");
                return;
            }
        };
        {
            let mut last = self.last_ports.lock().unwrap_or_else(|p| p.into_inner());
            if !force && last.as_ref() == Some(&ports) {
                return;
            }
            *last = Some(ports.clone());
        }
        let info = ListeningPortInfo {
            container_ports: ports
                .into_iter()
                .map(|(name, listening_tcp4_ports)| {
                    (
                        name,
                        ContainerPortInfo {
                            listening_tcp4_ports,
                        },
                    )
                })
                .collect(),
        };
        let _ = self.listener.update_listening_ports(info).await;
    }

    pub(crate) async fn ports_loop(&self) {
        let mut last_sent = Instant::now();
        let mut first = true;
        loop {
            let force = first || last_sent.elapsed() >= RESEND;
            if force {
                last_sent = Instant::now();
            }
            first = false;
            self.update_ports(force).await;
            tokio::time::sleep(self.config.ports_poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1FBB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 100 0 0 10 0
   2: 025C7364:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12347 1 0000000000000000 100 0 0 10 0
   3: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 12348 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 000080FE00000000FF00000102030405:2710 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
";

    #[test]
    fn parses_v4_addresses_in_kernel_byte_order() {
        let socks = parse_proc_net_tcp(TCP);
        assert_eq!(socks.len(), 4);
        assert_eq!(
            socks[0].local,
            "127.0.0.1".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(socks[0].port, 8123);
        assert_eq!(
            socks[2].local,
            "100.115.92.2".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(socks[3].state, 1);
    }

    #[test]
    fn parses_v6_addresses() {
        let socks = parse_proc_net_tcp(TCP6);
        assert_eq!(
            socks[0].local,
            "::1".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(
            socks[2].local,
            "::ffff:127.0.0.1".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(
            socks[3].local,
            "fe80::100:ff:504:302"
                .parse::<std::net::IpAddr>()
                .expect("ip")
        );
    }

    #[test]
    fn keeps_loopback_and_unspecified_listeners_only_deduplicated() {
        // 8123 on 127.0.0.1, 22 on 0.0.0.0 and ::, 3000 on ::1, 5000 on ::ffff:127.0.0.1;
        // 8080 on the eth0 address and the link-local v6 listener are dropped, the
        // established socket too.
        assert_eq!(listening_ports(&[TCP, TCP6]), vec![22, 3000, 5000, 8123]);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "header\n garbage\n 0: XYZ:0016 0:0 0A\n 1: 0100007F:ZZZZ 0:0 0A\n 2: 0100007F:0016 00000000:0000 0A\n";
        assert_eq!(listening_ports(&[text]), vec![22]);
    }

    /// xorshift for the fuzz-style test.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn fuzz_random_tables_never_panic() {
        let alphabet = b"0123456789ABCDEFabcdef: \n\tXYZ\xff";
        let mut s = 0x1234_5678_9abc_def1u64;
        for _ in 0..5000 {
            let len = (next(&mut s) % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next(&mut s) % alphabet.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            for sock in parse_proc_net_tcp(&text) {
                let _ = is_reportable(&sock.local);
            }
            let _ = listening_ports(&[&text]);
        }
    }
}
