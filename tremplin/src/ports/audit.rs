//! The audit trigger of the listening-port reports (§9.3): a rule "always,exit,arch=A,
//! syscall=listen" per architecture of the build, and the `SYSCALL` records of successful
//! `listen()`s read from the read-only multicast group `AUDIT_NLGRP_READLOG`.
//!
//! Deviation from the spec's "registers itself as the audit daemon": joining the multicast
//! group never displaces a running auditd and never makes the kernel wait on tremplin (a
//! registered daemon that stalls makes audited processes block up to `backlog_wait_time`).
//! Measured on this kernel (6.18): records reach the group with no daemon registered, but
//! only while audit is enabled; then the kernel also prints each record to its log
//! (rate-limited), as it does whenever no daemon is registered. So audit is enabled when it
//! was off, and dropping [`Armed`] restores everything arming changed: the rules it added are
//! deleted and the enabled flag is set back (see [`super::audit_rules`] for several tremplins
//! and killed ones).

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::audit_rules::{listen_rule, owner_alive, rule_owner, Owner};
use super::netlink;

const NETLINK_AUDIT: i32 = 9;
const AUDIT_GET: u16 = 1000;
const AUDIT_SET: u16 = 1001;
const AUDIT_ADD_RULE: u16 = 1011;
const AUDIT_DEL_RULE: u16 = 1012;
const AUDIT_LIST_RULES: u16 = 1013;
/// Record type of a syscall event.
pub const AUDIT_SYSCALL: u16 = 1300;
/// Multicast group bit of `AUDIT_NLGRP_READLOG` (group 1).
const READLOG_GROUPS: u32 = 1;
const AUDIT_STATUS_ENABLED: u32 = 1;

/// (audit arch, listen syscall number) pairs the rules cover.
#[cfg(target_arch = "x86_64")]
pub const LISTEN_SYSCALLS: &[(u32, u32)] = &[(0xC000_003E, 50), (0x4000_0003, 363)];
#[cfg(target_arch = "aarch64")]
pub const LISTEN_SYSCALLS: &[(u32, u32)] = &[(0xC000_00B7, 201), (0x4000_0028, 284)];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const LISTEN_SYSCALLS: &[(u32, u32)] = &[];

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit netlink: kernel error {0} on request {1}")]
    Kernel(i32, u16),
    #[error("audit netlink: {0}")]
    Malformed(#[from] netlink::Malformed),
    #[error("audit is locked (enabled=2): rules cannot change")]
    Locked,
    #[error("no audit rule could be added for this architecture")]
    NoRule,
}

/// The fields of a `SYSCALL` record the trigger looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallRecord {
    pub arch: u32,
    pub syscall: u32,
    pub success: bool,
    pub pid: Option<u32>,
}

/// Parses the text of a `SYSCALL` record (`audit(…): arch=c000003e syscall=50 success=yes
/// … pid=123 …`). Only the first occurrence of each key counts: the kernel writes them
/// before any process-controlled field (`comm`, `exe`, which it hex-encodes when they hold
/// spaces or quotes).
pub fn parse_syscall_record(text: &str) -> Option<SyscallRecord> {
    let (mut arch, mut syscall, mut success, mut pid) = (None, None, None, None);
    for word in text.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "arch" if arch.is_none() => arch = u32::from_str_radix(value, 16).ok(),
            "syscall" if syscall.is_none() => syscall = value.parse().ok(),
            "success" if success.is_none() => success = Some(value == "yes"),
            "pid" if pid.is_none() => pid = value.parse().ok(),
            "comm" | "exe" => break,
            _ => {}
        }
    }
    Some(SyscallRecord {
        arch: arch?,
        syscall: syscall?,
        success: success?,
        pid,
    })
}

/// Whether a record of type `kind` is a successful `listen()` of a covered architecture.
pub fn is_listen_success(kind: u16, text: &str) -> bool {
    kind == AUDIT_SYSCALL
        && parse_syscall_record(text)
            .is_some_and(|r| r.success && LISTEN_SYSCALLS.contains(&(r.arch, r.syscall)))
}

/// The machine's audit state, for restoring it and for tests that assert they left it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSnapshot {
    pub enabled: u32,
    pub pid: u32,
    /// Every rule as the kernel lists it (raw `audit_rule_data`).
    pub rules: Vec<Vec<u8>>,
}

/// Request/response over a unicast audit socket.
struct Control {
    fd: OwnedFd,
    seq: u32,
}

impl Control {
    fn open() -> Result<Control, AuditError> {
        let fd = netlink::open(NETLINK_AUDIT, 0, false)?;
        netlink::set_recv_timeout(&fd, Duration::from_secs(2))?;
        Ok(Control { fd, seq: 0 })
    }

    /// Sends a request and collects the replies of its sequence number until `done` says so.
    fn call(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        mut done: impl FnMut(u16, &[u8]) -> bool,
    ) -> Result<(), AuditError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        netlink::send(&self.fd, &netlink::request(kind, flags, seq, payload))?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = netlink::recv(&self.fd, &mut buf)?;
            for m in netlink::messages(&buf[..n])? {
                if m.seq != seq {
                    continue;
                }
                if m.kind == netlink::NLMSG_ERROR {
                    match netlink::error_code(m.payload) {
                        Some(0) if flags & netlink::NLM_F_ACK != 0 => return Ok(()),
                        Some(0) => {}
                        Some(e) => return Err(AuditError::Kernel(e, kind)),
                        None => return Err(netlink::Malformed(0).into()),
                    }
                } else if done(m.kind, m.payload) {
                    return Ok(());
                }
            }
        }
    }

    fn ack(&mut self, kind: u16, payload: &[u8]) -> Result<(), AuditError> {
        self.call(
            kind,
            netlink::NLM_F_REQUEST | netlink::NLM_F_ACK,
            payload,
            |_, _| false,
        )
    }

    fn snapshot(&mut self) -> Result<AuditSnapshot, AuditError> {
        let mut status = None;
        self.call(AUDIT_GET, netlink::NLM_F_REQUEST, &[], |kind, p| {
            if kind == AUDIT_GET && p.len() >= 16 {
                let w = |i: usize| u32::from_ne_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
                status = Some((w(4), w(12)));
                return true;
            }
            false
        })?;
        let (enabled, pid) = status.ok_or(netlink::Malformed(0))?;
        let mut rules = Vec::new();
        self.call(
            AUDIT_LIST_RULES,
            netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP,
            &[],
            |kind, p| {
                if kind == AUDIT_LIST_RULES {
                    rules.push(p.to_vec());
                }
                kind == netlink::NLMSG_DONE
            },
        )?;
        Ok(AuditSnapshot {
            enabled,
            pid,
            rules,
        })
    }

    fn set_enabled(&mut self, enabled: u32) -> Result<(), AuditError> {
        let mut status = [0u8; 40];
        status[0..4].copy_from_slice(&AUDIT_STATUS_ENABLED.to_ne_bytes());
        status[4..8].copy_from_slice(&enabled.to_ne_bytes());
        self.ack(AUDIT_SET, &status)
    }
}

/// The machine's current audit status and rules.
pub fn snapshot() -> Result<AuditSnapshot, AuditError> {
    Control::open()?.snapshot()
}

/// The multicast reader of an armed trigger.
pub struct AuditTrigger {
    records: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

/// The rules this tremplin added; dropping it deletes them and, when no other running
/// tremplin still has rules, sets the enabled flag back to what it was before any tremplin.
pub struct Armed {
    control: Control,
    added: Vec<Vec<u8>>,
    enabled_before: u32,
}

/// Tells apart several triggers of one process (in-process tests).
static INSTANCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl AuditTrigger {
    /// Joins the multicast group, enables audit if it is off and adds the listen rules
    /// ("rule exists" is fine: that rule is then not ours to delete). Needs a tokio runtime.
    pub fn arm() -> Result<(AuditTrigger, Armed), AuditError> {
        let records = netlink::open(NETLINK_AUDIT, READLOG_GROUPS, true)?;
        // SAFETY: `records` is an open socket owned by the AsyncFd from here on; OwnedFd
        // always returns that same descriptor and closes it only on drop.
        let records = unsafe { AsyncFd::register(records) }.map_err(std::io::Error::from)?;
        let trigger = AuditTrigger {
            records,
            buf: vec![0u8; 64 * 1024],
        };
        let mut control = Control::open()?;
        let before = control.snapshot()?;
        if before.enabled == 2 {
            return Err(AuditError::Locked);
        }
        // Rules of other tremplins: the earliest enabled flag is the machine's own; the rules
        // of killed ones are removed.
        let mut enabled_before = before.enabled;
        for rule in &before.rules {
            let Some(owner) = rule_owner(rule) else {
                continue;
            };
            enabled_before = enabled_before.min(owner.enabled_before);
            if !owner_alive(&owner) {
                tracing::info!(
                    "removing the audit rule of a tremplin that is gone ({})",
                    owner.pid
                );
                let _ = control.ack(AUDIT_DEL_RULE, rule);
            }
        }
        let owner = Owner {
            pid: std::process::id(),
            instance: INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            enabled_before,
        };
        let mut armed = Armed {
            control,
            added: Vec::new(),
            enabled_before,
        };
        if before.enabled == 0 {
            armed.control.set_enabled(1)?;
        }
        let key = owner.key();
        for &(arch, nr) in LISTEN_SYSCALLS {
            let rule = listen_rule(arch, nr, &key);
            match armed.control.ack(AUDIT_ADD_RULE, &rule) {
                Ok(()) => armed.added.push(rule),
                Err(e) => tracing::debug!("audit rule arch={arch:#x} syscall={nr}: {e}"),
            }
        }
        if armed.added.is_empty() {
            // `armed` drops here: audit goes back to how it was.
            return Err(AuditError::NoRule);
        }
        Ok((trigger, armed))
    }

    /// Waits for at least one successful `listen()` record, then drains what else is queued.
    /// A receive overrun (records lost) counts as a trigger.
    pub async fn wait(&mut self) -> Result<(), AuditError> {
        loop {
            let mut guard = self.records.readable().await?;
            let mut hit = false;
            loop {
                match netlink::recv(guard.get_inner(), &mut self.buf) {
                    Ok(n) => {
                        for m in netlink::messages(&self.buf[..n])? {
                            let text = String::from_utf8_lossy(m.payload);
                            hit |= is_listen_success(m.kind, &text);
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => hit = true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if hit {
                return Ok(());
            }
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        for rule in std::mem::take(&mut self.added) {
            if let Err(e) = self.control.ack(AUDIT_DEL_RULE, &rule) {
                tracing::warn!("cannot delete tremplin's audit rule: {e}");
            }
        }
        let now = match self.control.snapshot() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot read the audit status to restore it: {e}");
                return;
            }
        };
        let others = now
            .rules
            .iter()
            .filter_map(|r| rule_owner(r))
            .any(|o| owner_alive(&o));
        if !others && now.enabled != self.enabled_before {
            if let Err(e) = self.control.set_enabled(self.enabled_before) {
                tracing::warn!("cannot restore audit enabled={}: {e}", self.enabled_before);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "audit(1796410583.898:2): arch=c000003e syscall=50 success=yes exit=0 a0=3 a1=80 a2=0 a3=7fc47c55cb70 items=0 ppid=31541 pid=31590 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"python3\" exe=\"/usr/bin/python3.11\" key=(null)";

    #[test]
    fn parses_a_kernel_syscall_record() {
        assert_eq!(
            parse_syscall_record(RECORD),
            Some(SyscallRecord {
                arch: 0xC000_003E,
                syscall: 50,
                success: true,
                pid: Some(31590)
            })
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn only_successful_listens_trigger() {
        assert!(is_listen_success(AUDIT_SYSCALL, RECORD));
        let failed = RECORD.replace("success=yes", "success=no");
        assert!(!is_listen_success(AUDIT_SYSCALL, &failed));
        let other = RECORD.replace("syscall=50", "syscall=49");
        assert!(!is_listen_success(AUDIT_SYSCALL, &other));
        let i386 = RECORD.replace("arch=c000003e syscall=50", "arch=40000003 syscall=363");
        assert!(is_listen_success(AUDIT_SYSCALL, &i386));
        // The same text as a PROCTITLE or CONFIG_CHANGE record is not a syscall event.
        assert!(!is_listen_success(1327, RECORD));
    }

    #[test]
    fn process_controlled_fields_cannot_fake_keys() {
        // A comm or exe holding "syscall=50 success=yes" is after the kernel's own keys;
        // a record without them is not a syscall event.
        let fake = "audit(1.1:1): comm=\"x syscall=50 success=yes arch=c000003e\"";
        assert_eq!(parse_syscall_record(fake), None);
        assert_eq!(parse_syscall_record("arch=zz syscall=50 success=yes"), None);
        assert_eq!(parse_syscall_record(""), None);
    }

    /// Real kernel (root): a listen() of a thread born after arming wakes the trigger, and
    /// dropping the trigger leaves the audit status and rules as they were.
    /// The machine's audit state is one: its tests run one at a time.
    static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn arm_sees_a_listen_and_drop_restores_the_machine() {
        let _machine = MACHINE.lock().await;
        // Rules left by killed tremplins are removed by the first arm: start from after that.
        let (cleanup_trigger, cleanup_armed) = AuditTrigger::arm().expect("arm to clean up");
        drop(cleanup_armed);
        drop(cleanup_trigger);
        let before = snapshot().expect("audit snapshot");
        let (mut trigger, armed) = AuditTrigger::arm().expect("arm");
        let now = snapshot().expect("snapshot");
        assert_ne!(now.enabled, 0);
        assert_eq!(now.rules.len(), before.rules.len() + armed.added.len());
        assert!(!armed.added.is_empty());
        let listener = std::thread::spawn(|| std::net::TcpListener::bind("127.0.0.1:0"))
            .join()
            .expect("thread")
            .expect("bind");
        tokio::time::timeout(Duration::from_secs(2), trigger.wait())
            .await
            .expect("listen record within 2 s")
            .expect("trigger");
        drop(listener);
        drop(armed);
        drop(trigger);
        assert_eq!(snapshot().expect("snapshot"), before);
    }

    /// Real kernel (root): the rule of a tremplin that was killed (its pid gone) is removed by
    /// the next one, which then restores the enabled flag that killed one recorded.
    #[tokio::test]
    async fn rules_of_a_killed_tremplin_are_removed_and_its_enabled_flag_restored() {
        let _machine = MACHINE.lock().await;
        let before = snapshot().expect("audit snapshot");
        let mut control = Control::open().expect("control");
        // A pid that does not exist: above the kernel's pid_max.
        let dead = Owner {
            pid: 4_194_305,
            instance: 0,
            enabled_before: before.enabled,
        };
        let (arch, nr) = LISTEN_SYSCALLS[0];
        let stale = listen_rule(arch, nr, &dead.key());
        control.ack(AUDIT_ADD_RULE, &stale).expect("add stale rule");
        control.set_enabled(1).expect("enable");
        let (_trigger, armed) = AuditTrigger::arm().expect("arm");
        let now = snapshot().expect("snapshot");
        assert!(!now.rules.contains(&stale), "stale rule removed");
        assert_eq!(armed.enabled_before, before.enabled);
        drop(armed);
        assert_eq!(snapshot().expect("snapshot"), before);
    }
}
