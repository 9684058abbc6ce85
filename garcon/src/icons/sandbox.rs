//! Runs one piece of untrusted-input work (an SVG render) in a forked child with a CPU, memory
//! and wall-clock budget, so that no input can keep a core busy past its budget, bloat the
//! daemon, or take it down with a panic.
//!
//! Why a child and not a complexity pre-check alone: resvg's cost depends on every filter
//! primitive, region, blur radius, pattern and nesting level, and a pre-check that misses one
//! combination leaves an unbounded render *in the daemon*, where a thread cannot be stopped.
//! A child can: the kernel enforces `RLIMIT_CPU` and `RLIMIT_AS`, and the parent `SIGKILL`s it at
//! the wall deadline. A panic (resvg panics on some inputs) or an allocation failure kills only
//! the child, whatever the profile's `panic` setting.
//!
//! The child is a plain `fork()` without `exec`, so it works in the daemon, in tests and in
//! benches alike and costs about a millisecond (see the `get_icon_48/svg_render` bench). Only
//! the forking thread exists in the child; other threads' locks may be held forever there. The
//! child therefore does as little as possible: it silences `tracing` for its thread (usvg logs
//! through `log`, which `tracing` forwards to a writer another thread may hold), installs a
//! silent panic hook, closes every inherited descriptor but its pipe, sets its limits, runs the
//! work under `catch_unwind`, writes the result, and `_exit`s without running destructors.
//! glibc's `malloc` is fork-safe. Should the child still block on an inherited lock, the wall
//! deadline kills it and the render is reported as timed out.
//!
//! The result travels over a pipe as `[status: u8][length: u64 LE][payload]`; the parent stops
//! reading once the announced length arrived, so a descriptor inherited by a concurrently forked
//! sibling cannot delay it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// The budget of one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildBudget {
    /// Wall-clock time after which the child is killed.
    pub wall: Duration,
    /// CPU seconds (`RLIMIT_CPU` soft limit; the hard limit, one second more, is `SIGKILL`).
    pub cpu_seconds: u64,
    /// Address space the child may add to what it inherits (`RLIMIT_AS`).
    pub extra_memory: u64,
    /// Largest result accepted.
    pub max_output: usize,
}

/// Why the child produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChildError {
    /// The work itself returned an error.
    #[error("{0}")]
    Failed(String),
    /// The work panicked (in the child).
    #[error("panicked")]
    Panicked,
    /// The wall-clock budget ran out; the child was killed.
    #[error("gave up after {0:?}")]
    TimedOut(Duration),
    /// The child died without a complete result (CPU limit, memory limit, crash).
    #[error("child died without a result ({0})")]
    Died(String),
    /// The result was larger than [`ChildBudget::max_output`].
    #[error("result larger than {0} bytes")]
    TooLarge(usize),
    /// pipe/fork/poll failed.
    #[error("cannot run the child: {0}")]
    Spawn(String),
}

const OK: u8 = 0;
const FAILED: u8 = 1;
const PANICKED: u8 = 2;
const HEADER: usize = 9;

/// Runs `work` in a forked child under `budget` and returns its bytes.
pub fn run_limited<F>(budget: &ChildBudget, work: F) -> Result<Vec<u8>, ChildError>
where
    F: FnOnce() -> Result<Vec<u8>, String>,
{
    let spawn = |e: nix::Error| ChildError::Spawn(e.to_string());
    let address_limit = current_address_space().saturating_add(budget.extra_memory);
    let (read_end, write_end) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(spawn)?;
    // SAFETY: the child only runs `child_main`, which never returns; see the module comment for
    // what it does (and avoids) between fork and _exit.
    match unsafe { fork() }.map_err(spawn)? {
        ForkResult::Child => child_main(write_end, budget, address_limit, work),
        ForkResult::Parent { child } => {
            drop(write_end);
            let outcome = collect(read_end, budget);
            // Killing a child that already exited (but is not reaped) is harmless; a child that
            // is still running (timed out, or wedged after writing) must not outlive the call.
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let status = reap(child);
            match outcome {
                Ok(message) => decode(message),
                Err(Incomplete::TimedOut) => Err(ChildError::TimedOut(budget.wall)),
                Err(Incomplete::TooLarge) => Err(ChildError::TooLarge(budget.max_output)),
                Err(Incomplete::Eof) => Err(ChildError::Died(status)),
                Err(Incomplete::Io(e)) => Err(ChildError::Spawn(e)),
            }
        }
    }
}

enum Incomplete {
    TimedOut,
    TooLarge,
    Eof,
    Io(String),
}

/// Reads one complete message or fails at the deadline.
fn collect(read_end: OwnedFd, budget: &ChildBudget) -> Result<Vec<u8>, Incomplete> {
    let deadline = Instant::now() + budget.wall;
    let fd = read_end.as_raw_fd();
    let mut file = std::fs::File::from(read_end);
    let mut message = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(len) = announced_len(&message) {
            if len > budget.max_output as u64 {
                return Err(Incomplete::TooLarge);
            }
            if message.len() as u64 >= HEADER as u64 + len {
                message.truncate(HEADER + len as usize);
                return Ok(message);
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Incomplete::TimedOut);
        }
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = remaining.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Incomplete::Io(err.to_string()));
        }
        if ready == 0 {
            continue;
        }
        match file.read(&mut chunk) {
            Ok(0) => return Err(Incomplete::Eof),
            Ok(n) => message.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Incomplete::Io(e.to_string())),
        }
    }
}

fn announced_len(message: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = message.get(1..HEADER)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn decode(mut message: Vec<u8>) -> Result<Vec<u8>, ChildError> {
    let status = message[0];
    let payload = message.split_off(HEADER);
    match status {
        OK => Ok(payload),
        FAILED => Err(ChildError::Failed(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        PANICKED => Err(ChildError::Panicked),
        other => Err(ChildError::Died(format!("unknown status {other}"))),
    }
}

/// Waits for the (killed or exited) child and describes how it ended.
fn reap(child: Pid) -> String {
    loop {
        match waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(status) => return format!("{status:?}"),
            Err(e) => return format!("waitpid: {e}"),
        }
    }
}

/// The child: limits, work, result, `_exit`. Never returns.
fn child_main<F>(write_end: OwnedFd, budget: &ChildBudget, address_limit: u64, work: F) -> !
where
    F: FnOnce() -> Result<Vec<u8>, String>,
{
    let _silent = tracing::dispatcher::set_default(&tracing::Dispatch::none());
    std::panic::set_hook(Box::new(|_| {}));
    let fd = keep_only(write_end);
    set_limits(budget, address_limit);
    let (status, payload) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(Ok(bytes)) => (OK, bytes),
        Ok(Err(message)) => (FAILED, message.into_bytes()),
        Err(_) => (PANICKED, Vec::new()),
    };
    // SAFETY: `fd` is the pipe's write end, owned by nothing else in this process.
    let mut out = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut header = [0u8; HEADER];
    header[0] = status;
    header[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let code = match out
        .write_all(&header)
        .and_then(|()| out.write_all(&payload))
    {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: _exit ends the process without running atexit handlers or destructors, which
    // belong to the parent's threads.
    unsafe { libc::_exit(code) }
}

/// Moves the pipe to descriptor 3 and closes every other inherited descriptor above 2 (client
/// connections, other renders' pipes), so the child holds nothing of the daemon's open.
fn keep_only(write_end: OwnedFd) -> i32 {
    const TARGET: i32 = 3;
    let close_range = |first: i32, last: libc::c_uint| {
        // SAFETY: closes descriptors of this (child) process only. ENOSYS before Linux 5.9:
        // then they simply stay open until _exit.
        unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last, 0) };
    };
    let fd = write_end.into_raw_fd();
    // SAFETY: dup2 on a descriptor this process owns.
    let fd = if fd != TARGET && unsafe { libc::dup2(fd, TARGET) } == TARGET {
        TARGET
    } else {
        fd
    };
    if fd > TARGET {
        close_range(TARGET, (fd - 1) as libc::c_uint);
    }
    close_range(fd.max(TARGET) + 1, libc::c_uint::MAX);
    fd
}

fn set_limits(budget: &ChildBudget, address_limit: u64) {
    let set = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: a valid rlimit struct. Failure leaves the wall deadline as the bound.
        unsafe { libc::setrlimit(resource, &limit) };
    };
    set(libc::RLIMIT_CORE, 0, 0);
    set(
        libc::RLIMIT_CPU,
        budget.cpu_seconds.max(1),
        budget.cpu_seconds.max(1) + 1,
    );
    set(libc::RLIMIT_AS, address_limit, address_limit);
    // SAFETY: restoring the default action (terminate) of SIGXCPU for this process only.
    unsafe { libc::signal(libc::SIGXCPU, libc::SIG_DFL) };
}

/// This process's virtual size (what a forked child starts with), from `/proc/self/statm`.
fn current_address_space() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(wall_ms: u64) -> ChildBudget {
        ChildBudget {
            wall: Duration::from_millis(wall_ms),
            cpu_seconds: 1,
            extra_memory: 256 * 1024 * 1024,
            max_output: 1024,
        }
    }

    #[test]
    fn result_error_and_panic_come_back() {
        assert_eq!(
            run_limited(&budget(5000), || Ok(vec![1, 2, 3])),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(
            run_limited(&budget(5000), || Err("bad svg".into())),
            Err(ChildError::Failed("bad svg".into()))
        );
        assert_eq!(
            run_limited(&budget(5000), || panic!("inside resvg")),
            Err(ChildError::Panicked)
        );
    }

    #[test]
    fn a_spinning_child_is_killed_at_the_wall_deadline() {
        let started = Instant::now();
        let result = run_limited(&budget(300), || loop {
            std::hint::black_box(0u64);
        });
        assert_eq!(
            result,
            Err(ChildError::TimedOut(Duration::from_millis(300)))
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn cpu_and_memory_limits_kill_the_child() {
        // The CPU limit alone (wall budget far away) ends a spinning child after ~1 s of CPU.
        let started = Instant::now();
        let result = run_limited(&budget(30_000), || loop {
            std::hint::black_box(0u64);
        });
        assert!(matches!(result, Err(ChildError::Died(_))), "{result:?}");
        println!("CPU-limited child ended after {:?}", started.elapsed());
        // 512 MiB is over the 256 MiB the child may add: the allocation fails in the child.
        let result = run_limited(&budget(30_000), || {
            let mut big = Vec::<u8>::new();
            big.try_reserve_exact(512 * 1024 * 1024)
                .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        });
        assert!(matches!(result, Err(ChildError::Failed(_))), "{result:?}");
        // The same allocation is fine in the parent (the limit was the child's alone).
        let mut big = Vec::<u8>::new();
        assert!(big.try_reserve_exact(512 * 1024 * 1024).is_ok());
    }

    #[test]
    fn oversized_result_is_refused() {
        let result = run_limited(&budget(5000), || Ok(vec![0u8; 4096]));
        assert_eq!(result, Err(ChildError::TooLarge(1024)));
    }
}
