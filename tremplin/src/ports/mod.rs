//! Listening TCP ports of running containers (§9.3).
//!
//! - Enumeration ([`sock_diag`]): for each running container, a `SOCK_DIAG_BY_FAMILY` dump of
//!   TCP listeners (IPv4 and IPv6) inside its network namespace. Listeners bound to an
//!   unspecified or loopback address are kept; IPv6 listeners are included in the "tcp4"
//!   list.
//! - Trigger ([`audit`]): every successful `listen()` on the machine (audit rule + the
//!   read-only multicast group), plus the unconditional 60 s resend. When the audit trigger
//!   cannot be armed (or dies), a poll every `--ports-poll-seconds` stands in for it, and the
//!   log says so.
//!
//! An update is sent when the set changed, and always at the 60 s resend.

pub mod audit;
pub mod audit_rules;
pub mod netlink;
pub mod sock_diag;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crostini_lxd::Client;
use crostini_proto::vm_tools::tremplin::{
    listening_port_info::ContainerPortInfo, ListeningPortInfo,
};
use tokio::time::Instant;

use crate::daemon::Daemon;
use sock_diag::{DiagSocket, TCP_LISTEN};

/// Unconditional resend interval.
const RESEND: Duration = Duration::from_secs(60);

/// Unspecified or loopback (`0.0.0.0`, `127.0.0.0/8`, `::`, `::1`, and their v4-mapped forms).
pub fn is_reportable(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_loopback(),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return v4.is_unspecified() || v4.is_loopback();
            }
            a.is_unspecified() || a.is_loopback()
        }
    }
}

/// Sorted, deduplicated LISTEN ports on reportable addresses.
pub fn listening_ports(sockets: &[DiagSocket]) -> Vec<u32> {
    let set: BTreeSet<u32> = sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN && is_reportable(&s.local))
        .map(|s| u32::from(s.port))
        .collect();
    set.into_iter().collect()
}

/// Reads the listening ports of the network namespace of `pid`.
pub fn ports_of_pid(pid: i64) -> Result<Vec<u32>, String> {
    let sockets = sock_diag::listeners_of_pid(pid).map_err(|e| e.to_string())?;
    Ok(listening_ports(&sockets))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning only means a panic elsewhere; an Option of a guard is always valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What wakes the reporter besides the 60 s resend.
enum Trigger {
    Audit(audit::AuditTrigger),
    Poll(Duration),
}

impl Trigger {
    /// Arms the audit trigger; what it changed on the machine is kept in `armed` (the daemon's,
    /// so that stopping tremplin undoes it at once).
    fn start(
        use_audit: bool,
        poll: Duration,
        armed: &std::sync::Mutex<Option<audit::Armed>>,
    ) -> Trigger {
        if !use_audit {
            tracing::info!(
                "listening ports: audit trigger disabled by flag; polling every {}s",
                poll.as_secs()
            );
            return Trigger::Poll(poll);
        }
        // An earlier arming (LXD started again) is undone first, so that its restore cannot
        // later undo this one.
        drop(lock(armed).take());
        match audit::AuditTrigger::arm() {
            Ok((t, a)) => {
                *lock(armed) = Some(a);
                tracing::info!("listening ports: audit trigger armed (listen() rule)");
                Trigger::Audit(t)
            }
            Err(e) => {
                tracing::warn!(
                    "listening ports: audit trigger unavailable ({e}); polling every {}s instead",
                    poll.as_secs()
                );
                Trigger::Poll(poll)
            }
        }
    }

    /// Returns when an update is due: a listen() record, the poll, or `deadline`.
    async fn wait(
        &mut self,
        deadline: Instant,
        poll: Duration,
        armed: &std::sync::Mutex<Option<audit::Armed>>,
    ) {
        match self {
            Trigger::Audit(t) => {
                tokio::select! {
                    r = t.wait() => if let Err(e) = r {
                        tracing::warn!(
                            "listening ports: audit trigger stopped ({e}); polling every {}s instead",
                            poll.as_secs()
                        );
                        *self = Trigger::Poll(poll);
                        // Removes the rules and restores audit.
                        drop(lock(armed).take());
                    },
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            Trigger::Poll(every) => {
                let at = deadline.min(Instant::now() + *every);
                tokio::time::sleep_until(at).await;
            }
        }
    }
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
            let pid = state.pid;
            // setns + netlink: blocking, off the async workers.
            let ports = tokio::task::spawn_blocking(move || ports_of_pid(pid))
                .await
                .map_err(|e| e.to_string())??;
            out.insert(instance.name.clone(), ports);
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
        let poll = self.config.ports_poll;
        let mut trigger = Trigger::start(self.config.ports_audit, poll, &self.audit_armed);
        self.update_ports(true).await;
        let mut last_sent = Instant::now();
        loop {
            trigger
                .wait(last_sent + RESEND, poll, &self.audit_armed)
                .await;
            let force = last_sent.elapsed() >= RESEND;
            if force {
                last_sent = Instant::now();
            }
            self.update_ports(force).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(addr: &str, port: u16, state: u8) -> DiagSocket {
        DiagSocket {
            state,
            local: addr.parse().expect("ip"),
            port,
        }
    }

    #[test]
    fn keeps_loopback_and_unspecified_listeners_only_deduplicated() {
        let sockets = [
            sock("127.0.0.1", 8123, TCP_LISTEN),
            sock("0.0.0.0", 22, TCP_LISTEN),
            sock("100.115.92.2", 8080, TCP_LISTEN),
            sock("127.0.0.1", 80, 1),
            sock("::1", 3000, TCP_LISTEN),
            sock("::", 22, TCP_LISTEN),
            sock("::ffff:127.0.0.1", 5000, TCP_LISTEN),
            sock("fe80::100:ff:504:302", 10000, TCP_LISTEN),
            sock("127.9.9.9", 8123, TCP_LISTEN),
        ];
        assert_eq!(listening_ports(&sockets), vec![22, 3000, 5000, 8123]);
    }

    #[test]
    fn reportable_addresses() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.1",
            "::",
            "::1",
            "::ffff:0.0.0.0",
        ] {
            assert!(is_reportable(&a.parse().expect("ip")), "{a}");
        }
        for a in ["100.115.92.2", "::ffff:10.0.0.1", "fe80::1", "2001:db8::1"] {
            assert!(!is_reportable(&a.parse().expect("ip")), "{a}");
        }
    }
}
