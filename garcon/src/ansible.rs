//! ApplyAnsiblePlaybook (garcon-service.md §5.10) and its ApplyAnsiblePlaybookProgress messages.
//!
//! Deviations recommended by the spec: a second request while one runs is refused ("another
//! playbook is being applied") instead of silently replacing the first; progress chunks are split
//! on `\n` with empty pieces dropped.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;

use crate::host::HostClient;
use crate::launch::{spawn_detached, SpawnOptions};

/// How long a playbook may run before it is terminated.
pub const ANSIBLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Marker the garcon Ansible callback plugin prints for a failed task.
pub const TASK_FAILED_MARKER: &str = "MESSAGE TO GARCON: TASK_FAILED";
pub const CALLBACK_PLUGINS: &str = "/usr/share/ansible/plugins/callback";
/// Upstream reads at most this much per progress message.
const READ_CHUNK: usize = 1000;

/// Progress of one run, as sent to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    InProgress(Vec<String>),
    Succeeded,
    Failed(String),
}

/// Where progress goes (the host in production, a recorder in tests).
pub trait ProgressSink: Send + Sync + 'static {
    fn progress(&self, progress: Progress) -> BoxFuture<'_, ()>;
}

impl ProgressSink for HostClient {
    fn progress(&self, progress: Progress) -> BoxFuture<'_, ()> {
        use crostini_proto::vm_tools::container::apply_ansible_playbook_progress_info::Status;
        use crostini_proto::vm_tools::container::ApplyAnsiblePlaybookProgressInfo;
        let message = match progress {
            Progress::InProgress(lines) => ApplyAnsiblePlaybookProgressInfo {
                status: Status::InProgress as i32,
                status_string: lines,
                ..Default::default()
            },
            Progress::Succeeded => ApplyAnsiblePlaybookProgressInfo {
                status: Status::Succeeded as i32,
                ..Default::default()
            },
            Progress::Failed(details) => ApplyAnsiblePlaybookProgressInfo {
                status: Status::Failed as i32,
                failure_details: details,
                ..Default::default()
            },
        };
        Box::pin(async move {
            if let Err(status) = self.apply_ansible_playbook_progress(message).await {
                tracing::warn!(
                    code = ?status.code(),
                    "ApplyAnsiblePlaybookProgress failed: {}",
                    status.message()
                );
            }
        })
    }
}

/// Why a playbook did not start (the rpc answers FAILED with this text, or INVALID_ARGUMENT).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnsibleError {
    #[error("playbook cannot be empty")]
    EmptyPlaybook,
    #[error("another playbook is being applied")]
    Busy,
    #[error("Failed to create file for Ansible playbook")]
    PlaybookFile,
    #[error("Failed to spawn ansible-playbook process")]
    Spawn,
}

/// The single playbook runner of a garcon process.
#[derive(Default)]
pub struct AnsibleRunner {
    busy: Arc<AtomicBool>,
}

/// Settings for a run.
#[derive(Debug, Clone)]
pub struct AnsibleConfig {
    /// `ansible-playbook` (looked up in `PATH` when bare).
    pub program: PathBuf,
    /// Where the private playbook directory is created (`$TMPDIR` or `/tmp`).
    pub temp_dir: PathBuf,
    pub timeout: Duration,
}

/// argv for a playbook file.
pub fn ansible_argv(program: &Path, playbook: &Path) -> Vec<String> {
    vec![
        program.to_string_lossy().into_owned(),
        "--become".into(),
        "--connection=local".into(),
        "--inventory".into(),
        "127.0.0.1,".into(),
        playbook.to_string_lossy().into_owned(),
        "-e".into(),
        "ansible_python_interpreter=/usr/bin/python3".into(),
    ]
}

/// The final progress for the collected output.
pub fn completion(stdout: &str, stderr: &str) -> Progress {
    if stdout.contains(TASK_FAILED_MARKER) || !stderr.is_empty() {
        Progress::Failed(format!(
            "Ansible playbook application stdout:\n{stdout}\n\
             Ansible playbook application stderr:\n{stderr}\n"
        ))
    } else {
        Progress::Succeeded
    }
}

/// A chunk of output as status lines.
pub fn status_lines(chunk: &str) -> Vec<String> {
    chunk
        .split('\n')
        .filter(|piece| !piece.is_empty())
        .map(str::to_string)
        .collect()
}

impl AnsibleRunner {
    /// Starts applying `playbook`; returns once the process runs (the rpc then answers STARTED).
    /// Progress and exactly one completion go to `sink`. Must be called in a tokio runtime.
    pub async fn start(
        &self,
        playbook: &str,
        config: &AnsibleConfig,
        sink: Arc<dyn ProgressSink>,
    ) -> Result<(), AnsibleError> {
        if playbook.is_empty() {
            return Err(AnsibleError::EmptyPlaybook);
        }
        if self.busy.swap(true, Ordering::SeqCst) {
            return Err(AnsibleError::Busy);
        }
        match self.spawn(playbook, config, sink).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.busy.store(false, Ordering::SeqCst);
                Err(error)
            }
        }
    }

    async fn spawn(
        &self,
        playbook: &str,
        config: &AnsibleConfig,
        sink: Arc<dyn ProgressSink>,
    ) -> Result<(), AnsibleError> {
        let file = write_playbook(&config.temp_dir, playbook).map_err(|error| {
            tracing::error!(
                temp_dir = %config.temp_dir.display(),
                "cannot write the Ansible playbook: {error}"
            );
            AnsibleError::PlaybookFile
        })?;
        let argv = ansible_argv(&config.program, &file);
        let (out_read, out_write) = pipe().map_err(|_| AnsibleError::Spawn)?;
        let (err_read, err_write) = pipe().map_err(|_| AnsibleError::Spawn)?;
        let overlay: Vec<(OsString, OsString)> = vec![
            ("ANSIBLE_STDOUT_CALLBACK".into(), "garcon".into()),
            ("ANSIBLE_CALLBACK_PLUGINS".into(), CALLBACK_PLUGINS.into()),
        ];
        let pid = tokio::task::spawn_blocking(move || {
            spawn_detached(SpawnOptions {
                argv: &argv,
                overlay: &overlay,
                stdout: Some(Stdio::from(out_write)),
                stderr: Some(Stdio::from(err_write)),
                ..Default::default()
            })
        })
        .await
        .map_err(|_| AnsibleError::Spawn)?
        .map_err(|error| {
            tracing::error!("cannot start ansible-playbook: {error}");
            AnsibleError::Spawn
        })?;
        let stdout = receiver(out_read).map_err(|_| AnsibleError::Spawn)?;
        let stderr = receiver(err_read).map_err(|_| AnsibleError::Spawn)?;
        let busy = self.busy.clone();
        let timeout = config.timeout;
        tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(timeout, collect(stdout, stderr, sink.as_ref())).await;
            let final_progress = match outcome {
                Ok((out, err)) => completion(&out, &err),
                Err(_) => {
                    // The program is a detached grandchild: signal it by pid.
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    Progress::Failed("ansible process timed out".to_string())
                }
            };
            // Release first, then report: a host may start the next playbook the moment it
            // sees the final status (issue 9 defect 7).
            busy.store(false, Ordering::SeqCst);
            sink.progress(final_progress).await;
        });
        Ok(())
    }
}

fn write_playbook(temp_dir: &Path, playbook: &str) -> std::io::Result<PathBuf> {
    // A new private directory (mode 0700). It is not deleted afterwards (upstream keeps it).
    let dir = nix::unistd::mkdtemp(&temp_dir.join("garcon-ansible-XXXXXX"))
        .map_err(std::io::Error::from)?;
    let file = dir.join("playbook.yaml");
    std::fs::write(&file, playbook)?;
    Ok(file)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn receiver(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// Reads both pipes to EOF, sending each chunk as progress; returns the full outputs.
async fn collect(
    mut stdout: tokio::net::unix::pipe::Receiver,
    mut stderr: tokio::net::unix::pipe::Receiver,
    sink: &dyn ProgressSink,
) -> (String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut out_open = true;
    let mut err_open = true;
    let mut out_buf = [0u8; READ_CHUNK];
    let mut err_buf = [0u8; READ_CHUNK];
    while out_open || err_open {
        let (chunk, is_out) = tokio::select! {
            read = stdout.read(&mut out_buf), if out_open => (read, true),
            read = stderr.read(&mut err_buf), if err_open => (read, false),
        };
        match chunk {
            Ok(0) | Err(_) => {
                if is_out {
                    out_open = false;
                } else {
                    err_open = false;
                }
            }
            Ok(n) => {
                let bytes = if is_out { &out_buf[..n] } else { &err_buf[..n] };
                if is_out {
                    out.extend_from_slice(bytes);
                } else {
                    err.extend_from_slice(bytes);
                }
                let lines = status_lines(&String::from_utf8_lossy(bytes));
                if !lines.is_empty() {
                    sink.progress(Progress::InProgress(lines)).await;
                }
            }
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    struct Recorder(UnboundedSender<Progress>);
    impl ProgressSink for Recorder {
        fn progress(&self, progress: Progress) -> BoxFuture<'_, ()> {
            let _ = self.0.send(progress);
            Box::pin(async {})
        }
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("ansible-playbook");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    async fn run(
        body: &str,
        timeout: Duration,
    ) -> (
        tempfile::TempDir,
        UnboundedReceiver<Progress>,
        Arc<AnsibleRunner>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AnsibleConfig {
            program: script(dir.path(), body),
            temp_dir: dir.path().to_path_buf(),
            timeout,
        };
        let (tx, rx) = unbounded_channel();
        let runner = Arc::new(AnsibleRunner::default());
        runner
            .start("- hosts: all\n", &config, Arc::new(Recorder(tx)))
            .await
            .expect("started");
        (dir, rx, runner)
    }

    async fn until_final(rx: &mut UnboundedReceiver<Progress>) -> (Vec<String>, Progress) {
        let mut lines = Vec::new();
        loop {
            let progress = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("progress within 20 s")
                .expect("sink open");
            match progress {
                Progress::InProgress(chunk) => lines.extend(chunk),
                other => return (lines, other),
            }
        }
    }

    #[test]
    fn argv_and_status_lines() {
        assert_eq!(
            ansible_argv(
                Path::new("ansible-playbook"),
                Path::new("/tmp/x/playbook.yaml")
            ),
            [
                "ansible-playbook",
                "--become",
                "--connection=local",
                "--inventory",
                "127.0.0.1,",
                "/tmp/x/playbook.yaml",
                "-e",
                "ansible_python_interpreter=/usr/bin/python3"
            ]
        );
        assert_eq!(status_lines("a\n\nb\n"), ["a", "b"]);
        assert!(status_lines("\n").is_empty());
    }

    #[test]
    fn completion_rules() {
        assert_eq!(completion("ok", ""), Progress::Succeeded);
        assert_eq!(
            completion("x MESSAGE TO GARCON: TASK_FAILED y", ""),
            Progress::Failed(
                "Ansible playbook application stdout:\nx MESSAGE TO GARCON: TASK_FAILED y\n\
                 Ansible playbook application stderr:\n\n"
                    .to_string()
            )
        );
        assert!(matches!(completion("ok", "warning"), Progress::Failed(_)));
    }

    #[tokio::test]
    async fn successful_run_streams_progress_then_succeeds() {
        let (dir, mut rx, runner) = run(
            "test \"$ANSIBLE_STDOUT_CALLBACK\" = garcon || exit 3\n\
             cat \"$5\"\necho TASK ok",
            Duration::from_secs(30),
        )
        .await;
        let (lines, last) = until_final(&mut rx).await;
        assert_eq!(last, Progress::Succeeded);
        assert_eq!(lines, ["- hosts: all", "TASK ok"]);
        // The private playbook directory stays behind, as upstream.
        let kept = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .any(|e| e.path().join("playbook.yaml").exists());
        assert!(kept);
        // The runner is free again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!runner.busy.load(Ordering::SeqCst));
    }

    /// On the final status, at once starts the next playbook (as a host may) and records whether
    /// it was accepted.
    struct StartNextOnFinal {
        runner: Arc<AnsibleRunner>,
        config: AnsibleConfig,
        accepted: UnboundedSender<Result<(), AnsibleError>>,
    }
    impl ProgressSink for StartNextOnFinal {
        fn progress(&self, progress: Progress) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                if !matches!(progress, Progress::InProgress(_)) {
                    let (tx, _rx) = unbounded_channel();
                    let next = self
                        .runner
                        .start("- x\n", &self.config, Arc::new(Recorder(tx)));
                    let _ = self.accepted.send(next.await);
                }
            })
        }
    }

    /// Issue 9 defect 7: the busy flag is released before the final status is reported.
    #[tokio::test]
    async fn the_next_playbook_is_accepted_as_soon_as_the_final_status_arrives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AnsibleConfig {
            program: script(dir.path(), "echo failing >&2"),
            temp_dir: dir.path().to_path_buf(),
            timeout: Duration::from_secs(30),
        };
        let runner = Arc::new(AnsibleRunner::default());
        let (tx, mut accepted) = unbounded_channel();
        let sink = Arc::new(StartNextOnFinal {
            runner: runner.clone(),
            config: config.clone(),
            accepted: tx,
        });
        runner
            .start("- hosts: all\n", &config, sink)
            .await
            .expect("started");
        let next = tokio::time::timeout(Duration::from_secs(20), accepted.recv())
            .await
            .expect("final status within 20 s");
        assert_eq!(
            next,
            Some(Ok(())),
            "next playbook refused after the final status"
        );
    }

    #[tokio::test]
    async fn stderr_output_fails_the_run() {
        let (_dir, mut rx, _runner) =
            run("echo fine\necho warning >&2", Duration::from_secs(30)).await;
        let (_, last) = until_final(&mut rx).await;
        let Progress::Failed(details) = last else {
            panic!("expected failure, got {last:?}");
        };
        assert!(details.contains("stdout:\nfine\n"), "{details}");
        assert!(details.contains("stderr:\nwarning\n"), "{details}");
    }

    #[tokio::test]
    async fn second_request_while_running_is_refused_and_timeout_fails_once() {
        let (dir, mut rx, runner) = run("sleep 30", Duration::from_millis(500)).await;
        let (tx2, _rx2) = unbounded_channel();
        let config = AnsibleConfig {
            program: dir.path().join("ansible-playbook"),
            temp_dir: dir.path().to_path_buf(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            runner.start("x", &config, Arc::new(Recorder(tx2))).await,
            Err(AnsibleError::Busy)
        );
        let (_, last) = until_final(&mut rx).await;
        assert_eq!(last, Progress::Failed("ansible process timed out".into()));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.recv())
                .await
                .map(|p| p.is_none())
                .unwrap_or(true),
            "completion reported once"
        );
    }

    #[tokio::test]
    async fn synchronous_failures() {
        let runner = AnsibleRunner::default();
        let (tx, _rx) = unbounded_channel();
        let sink: Arc<dyn ProgressSink> = Arc::new(Recorder(tx));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = AnsibleConfig {
            program: PathBuf::from("/nonexistent/ansible-playbook"),
            temp_dir: dir.path().to_path_buf(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            runner.start("", &config, sink.clone()).await,
            Err(AnsibleError::EmptyPlaybook)
        );
        assert_eq!(
            runner.start("x", &config, sink.clone()).await,
            Err(AnsibleError::Spawn)
        );
        config.temp_dir = dir.path().join("missing");
        assert_eq!(
            runner.start("x", &config, sink).await,
            Err(AnsibleError::PlaybookFile)
        );
        assert!(!runner.busy.load(Ordering::SeqCst));
    }
}
