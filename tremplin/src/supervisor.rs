//! Supervision of an LXD daemon tremplin started itself (§5.3): restart on exit unless 10
//! failures happened within 30 s, failure reports to the host, SIGTERM/SIGPWR on request.
//!
//! Only used when no LXD answered on the socket at StartLxd time (Termina). An LXD that was
//! already running is adopted and never supervised, signalled or killed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::listener::HostListener;

/// Give up after this many exits within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(30);
/// Readiness polling (§5.3): every 500 ms for up to 2 minutes.
pub const READY_POLL: Duration = Duration::from_millis(500);
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct State {
    pid: Option<i32>,
    stop_requested: bool,
    gave_up: bool,
    ready: bool,
    /// How the last run ended (for the StartLxd failure reason).
    last_exit: Option<String>,
}

/// Handle on the supervision loop.
#[derive(Debug, Clone)]
pub struct Supervisor {
    state: Arc<Mutex<State>>,
    /// Becomes true when the supervisor gives up, so waiters stop at once.
    gave_up_tx: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Restart bookkeeping (pure, unit-tested).
#[derive(Debug, Default)]
pub struct RestartPolicy {
    exits: VecDeque<Instant>,
}

impl RestartPolicy {
    /// Records an exit at `now`; true when the daemon may be restarted.
    pub fn record_exit(&mut self, now: Instant) -> bool {
        self.exits.push_back(now);
        while let Some(first) = self.exits.front() {
            if now.saturating_duration_since(*first) > FAILURE_WINDOW {
                self.exits.pop_front();
            } else {
                break;
            }
        }
        self.exits.len() < MAX_FAILURES
    }
}

impl Supervisor {
    /// Starts `binary args...` and keeps it running.
    pub fn spawn(
        binary: PathBuf,
        args: Vec<String>,
        socket: PathBuf,
        listener: HostListener,
    ) -> Supervisor {
        let state = Arc::new(Mutex::new(State::default()));
        let sup = Supervisor {
            state: state.clone(),
            gave_up_tx: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let this = sup.clone();
        tokio::spawn(async move { this.run(binary, args, socket, listener).await });
        sup
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the restart budget was exhausted (LXD stays down).
    pub fn gave_up(&self) -> bool {
        self.lock().gave_up
    }

    /// Waits until LXD answers on `socket` (like [`wait_ready`]), but fails as soon as the
    /// supervisor gives up on a crashing LXD instead of polling on until `timeout`.
    pub async fn wait_ready(
        &self,
        socket: &std::path::Path,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut gave_up = self.gave_up_tx.subscribe();
        tokio::select! {
            r = wait_ready(socket, timeout) => r,
            _ = gave_up.wait_for(|g| *g) => {
                let last = self.lock().last_exit.clone().unwrap_or_else(|| "unknown".to_string());
                Err(format!(
                    "LXD exited {MAX_FAILURES} times within {FAILURE_WINDOW:?}; the supervisor \
                     gave up (last exit: {last})"
                ))
            }
        }
    }

    /// True when the supervision loop ended (stop requested or gave up).
    pub fn finished(&self) -> bool {
        let s = self.lock();
        s.gave_up || s.stop_requested
    }

    /// Stops supervising and sends `signal` to LXD (SIGTERM: keep containers; SIGPWR: full
    /// shutdown). Returns at once.
    pub fn stop(&self, signal: Signal) {
        let pid = {
            let mut s = self.lock();
            s.stop_requested = true;
            s.pid
        };
        if let Some(pid) = pid {
            tracing::info!("sending {signal} to LXD (pid {pid})");
            if let Err(e) = kill(Pid::from_raw(pid), signal) {
                tracing::warn!("cannot send {signal} to LXD pid {pid}: {e}");
            }
        }
    }

    async fn run(
        self,
        binary: PathBuf,
        args: Vec<String>,
        socket: PathBuf,
        listener: HostListener,
    ) {
        let mut policy = RestartPolicy::default();
        loop {
            if self.lock().stop_requested {
                return;
            }
            tracing::info!("starting LXD: {} {}", binary.display(), args.join(" "));
            let mut child = match Command::new(&binary)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(false)
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("cannot start LXD ({}): {e}", binary.display());
                    self.lock().last_exit = Some(format!("cannot start {}: {e}", binary.display()));
                    if !self.exited(&mut policy, &listener).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let pid = child.id().and_then(|p| i32::try_from(p).ok());
            {
                let mut s = self.lock();
                s.pid = pid;
                s.ready = false;
            }
            if let Some(out) = child.stdout.take() {
                tokio::spawn(log_lines(BufReader::new(out), "lxd stdout:"));
            }
            if let Some(err) = child.stderr.take() {
                tokio::spawn(log_lines(BufReader::new(err), "lxd stderr:"));
            }
            let watcher = {
                let this = self.clone();
                let socket = socket.clone();
                tokio::spawn(async move {
                    if wait_ready(&socket, READY_TIMEOUT).await.is_ok() {
                        this.lock().ready = true;
                    }
                })
            };
            let status = child.wait().await;
            watcher.abort();
            {
                let mut s = self.lock();
                s.pid = None;
                s.last_exit = Some(match &status {
                    Ok(st) => st.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                });
            }
            tracing::warn!("LXD exited: {status:?}");
            if self.lock().stop_requested {
                return;
            }
            if !self.exited(&mut policy, &listener).await {
                return;
            }
        }
    }

    /// Handles one exit; false when supervision ends.
    async fn exited(&self, policy: &mut RestartPolicy, listener: &HostListener) -> bool {
        let was_ready = std::mem::take(&mut self.lock().ready);
        let may_restart = policy.record_exit(Instant::now());
        if !may_restart {
            tracing::error!("LXD failed {MAX_FAILURES} times within {FAILURE_WINDOW:?}; giving up");
            self.lock().gave_up = true;
            // Before the failure report: StartLxd must not wait on the report's timeout.
            self.gave_up_tx.send_replace(true);
        }
        if was_ready || !may_restart {
            listener.send_failure_report("lxd").await;
        }
        may_restart
    }
}

async fn log_lines<R: tokio::io::AsyncBufRead + Unpin>(reader: R, prefix: &'static str) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!("{prefix} {line}");
    }
}

/// Polls `GET /internal/ready` every 500 ms until it succeeds or `timeout` passes.
pub async fn wait_ready(socket: &std::path::Path, timeout: Duration) -> Result<(), String> {
    let client = crostini_lxd::Client::new(socket).with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match client.ready().await {
            Ok(()) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "LXD did not become ready within {timeout:?}: {last_error}"
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Termina's LXD processes (exe `/usr/sbin/lxd` or `/opt/google/lxd-next/usr/bin/lxd`,
/// cmdline exactly `lxd --group lxd --syslog`). Anything else — e.g. a developer's LXD — never
/// matches.
pub fn termina_lxd_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok();
            is_termina_lxd(exe.as_deref(), cmdline.as_deref())
        })
        .collect()
}

pub fn is_termina_lxd(exe: Option<&std::path::Path>, cmdline: Option<&[u8]>) -> bool {
    let exe_ok = matches!(
        exe.and_then(|p| p.to_str()),
        Some("/usr/sbin/lxd") | Some("/opt/google/lxd-next/usr/bin/lxd")
    );
    exe_ok && cmdline == Some(b"lxd\0--group\0lxd\0--syslog\0".as_slice())
}

/// Stops stale Termina LXD processes (§5.2 step 1): wait 2 s, SIGTERM + 5 s, SIGKILL + 5 s.
pub async fn stop_stale_termina_lxd() -> Result<(), String> {
    let wait_gone = |limit: Duration| async move {
        let deadline = Instant::now() + limit;
        loop {
            if termina_lxd_pids().is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if wait_gone(Duration::from_secs(2)).await {
        return Ok(());
    }
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        for pid in termina_lxd_pids() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        if wait_gone(Duration::from_secs(5)).await {
            return Ok(());
        }
    }
    Err("LXD is already running, but failed to stop".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn restart_policy_gives_up_on_the_tenth_exit_within_30s() {
        let mut p = RestartPolicy::default();
        let t0 = Instant::now();
        for i in 0..9 {
            assert!(p.record_exit(t0 + Duration::from_secs(i)), "exit {i}");
        }
        assert!(!p.record_exit(t0 + Duration::from_secs(9)));
    }

    #[test]
    fn restart_policy_forgets_old_exits() {
        let mut p = RestartPolicy::default();
        let t0 = Instant::now();
        for i in 0..9 {
            assert!(p.record_exit(t0 + Duration::from_secs(i)));
        }
        assert!(
            p.record_exit(t0 + Duration::from_secs(40)),
            "old exits expired"
        );
    }

    #[test]
    fn only_termina_lxd_signature_matches() {
        let cmd = b"lxd\0--group\0lxd\0--syslog\0".as_slice();
        assert!(is_termina_lxd(Some(Path::new("/usr/sbin/lxd")), Some(cmd)));
        assert!(is_termina_lxd(
            Some(Path::new("/opt/google/lxd-next/usr/bin/lxd")),
            Some(cmd)
        ));
        assert!(!is_termina_lxd(Some(Path::new("/usr/bin/lxd")), Some(cmd)));
        assert!(!is_termina_lxd(
            Some(Path::new("/usr/sbin/lxd")),
            Some(b"lxd\0--group\0root\0--logfile\0/var/log/x\0".as_slice())
        ));
        assert!(!is_termina_lxd(None, Some(cmd)));
    }

    #[tokio::test]
    async fn wait_ready_times_out_on_missing_socket() {
        let err = wait_ready(
            Path::new("/nonexistent/unix.socket"),
            Duration::from_millis(600),
        )
        .await
        .expect_err("no LXD there");
        assert!(err.contains("did not become ready"), "{err}");
    }
}
