//! GetDebugInformation (garcon-service.md §5.8): installed cros-* packages, system and user unit
//! lists, a day of journal for the garcon and sommelier units, with `$USER` redacted.
//!
//! Only stdout is used; failing or missing commands just contribute no lines. Each command is
//! bounded by a timeout and the whole text by a size cap so the reply fits the host's deadline
//! (60 s) and message limit (4 MiB).

use std::time::Duration;

use futures::future::BoxFuture;

/// Per-command timeout.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The text is cut at this many bytes (well under the host's 4 MiB receive limit).
pub const MAX_DEBUG_TEXT: usize = 3 * 1024 * 1024;

/// The journal units, in order.
pub const JOURNAL_UNITS: [&str; 5] = [
    "cros-garcon",
    "sommelier@0",
    "sommelier@1",
    "sommelier-x@0",
    "sommelier-x@1",
];

/// Runs a program and returns its stdout (empty when it fails to run or times out).
pub trait CommandRunner: Send + Sync {
    fn stdout(&self, argv: Vec<String>) -> BoxFuture<'_, String>;
}

/// Runs real programs with [`COMMAND_TIMEOUT`], keeping at most [`MAX_DEBUG_TEXT`] bytes of
/// stdout: a day of journal spammed by a program in the container must not bloat garcon (the
/// rest would be cut anyway). A program still writing past the cap is killed.
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn stdout(&self, argv: Vec<String>) -> BoxFuture<'_, String> {
        Box::pin(async move {
            let Some((program, args)) = argv.split_first() else {
                return String::new();
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, capped_stdout(program, args)).await {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                Ok(Err(error)) => {
                    tracing::info!(program, "debug information command failed: {error}");
                    String::new()
                }
                Err(_) => {
                    tracing::warn!(program, "debug information command timed out");
                    String::new()
                }
            }
        })
    }
}

/// The first [`MAX_DEBUG_TEXT`] bytes of `program`'s stdout; the child is killed when dropped.
async fn capped_stdout(program: &str, args: &[String]) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("stdout was not captured"))?;
    let mut bytes = Vec::new();
    stdout
        .take(MAX_DEBUG_TEXT as u64)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() < MAX_DEBUG_TEXT {
        // Reap it (EOF came first, so it is exiting); at the cap, dropping `child` kills it.
        child.wait().await?;
    }
    Ok(bytes)
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn indented_lines(out: &mut String, stdout: &str) {
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.push('\t');
        out.push_str(line);
        out.push('\n');
    }
}

/// Builds the debug text. `user` is `$USER` (None or empty: no redaction).
pub async fn build(runner: &dyn CommandRunner, user: Option<&str>) -> String {
    let mut text = String::from("Installed Crostini Packages:\n");
    let dpkg = runner.stdout(argv(&["dpkg", "-l", "cros-*"])).await;
    for line in dpkg.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
        if tokens.len() < 3 || tokens[0] != "ii" {
            continue;
        }
        text.push_str(&format!("\t{}-{}\n", tokens[1], tokens[2]));
    }
    text.push_str("systemctl status:\n");
    indented_lines(
        &mut text,
        &runner.stdout(argv(&["systemctl", "--no-legend"])).await,
    );
    text.push_str("systemctl user status:\n");
    indented_lines(
        &mut text,
        &runner
            .stdout(argv(&["systemctl", "--user", "--no-legend"]))
            .await,
    );
    for unit in JOURNAL_UNITS {
        text.push_str(&format!("Filtered journalctl for {unit}:\n"));
        let journal = runner
            .stdout(argv(&[
                "journalctl",
                "--user-unit",
                unit,
                "--since",
                "1 day ago",
            ]))
            .await;
        indented_lines(&mut text, &journal);
        if text.len() > MAX_DEBUG_TEXT {
            break;
        }
    }
    match user.filter(|u| !u.is_empty()) {
        Some(user) => text = text.replace(user, "$USERNAME"),
        None => tracing::info!("USER is not set; debug information is not redacted"),
    }
    if text.len() > MAX_DEBUG_TEXT {
        let mut cut = MAX_DEBUG_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[truncated]\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    struct Canned {
        outputs: HashMap<Vec<String>, String>,
        seen: Mutex<Vec<Vec<String>>>,
    }

    impl CommandRunner for Canned {
        fn stdout(&self, argv: Vec<String>) -> BoxFuture<'_, String> {
            self.seen.lock().unwrap().push(argv.clone());
            let out = self.outputs.get(&argv).cloned().unwrap_or_default();
            Box::pin(async move { out })
        }
    }

    #[tokio::test]
    async fn builds_every_section_in_order_and_redacts_user() {
        let mut outputs = HashMap::new();
        outputs.insert(
            argv(&["dpkg", "-l", "cros-*"]),
            "Desired=Unknown/Install\n||/ Name Version Arch\n\
             ii  cros-garcon  0.29  all  Chrome OS garcon\n\
             rc  cros-old  1.0  all  removed\n\
             ii  cros-sommelier  0.29  all  sommelier\n\
             ii short\n"
                .to_string(),
        );
        outputs.insert(
            argv(&["systemctl", "--no-legend"]),
            "  a.service loaded active\n\n".to_string(),
        );
        outputs.insert(
            argv(&["systemctl", "--user", "--no-legend"]),
            "cros-garcon.service loaded active running for alice\n".to_string(),
        );
        outputs.insert(
            argv(&[
                "journalctl",
                "--user-unit",
                "sommelier@1",
                "--since",
                "1 day ago",
            ]),
            "alice logged in\n".to_string(),
        );
        let runner = Canned {
            outputs,
            seen: Mutex::new(Vec::new()),
        };
        let text = build(&runner, Some("alice")).await;
        assert_eq!(
            text,
            "Installed Crostini Packages:\n\
             \tcros-garcon-0.29\n\
             \tcros-sommelier-0.29\n\
             systemctl status:\n\
             \ta.service loaded active\n\
             systemctl user status:\n\
             \tcros-garcon.service loaded active running for $USERNAME\n\
             Filtered journalctl for cros-garcon:\n\
             Filtered journalctl for sommelier@0:\n\
             Filtered journalctl for sommelier@1:\n\
             \t$USERNAME logged in\n\
             Filtered journalctl for sommelier-x@0:\n\
             Filtered journalctl for sommelier-x@1:\n"
        );
        assert_eq!(runner.seen.lock().unwrap().len(), 8);
    }

    #[tokio::test]
    async fn missing_tools_give_headers_only_and_no_user_means_no_redaction() {
        let text = build(&SystemRunnerMissing, None).await;
        assert!(text.starts_with("Installed Crostini Packages:\nsystemctl status:\n"));
        assert!(text.ends_with("Filtered journalctl for sommelier-x@1:\n"));
    }

    struct SystemRunnerMissing;
    impl CommandRunner for SystemRunnerMissing {
        fn stdout(&self, mut argv: Vec<String>) -> BoxFuture<'_, String> {
            argv[0] = format!("/nonexistent/{}", argv[0]);
            Box::pin(async move { SystemRunner.stdout(argv).await })
        }
    }

    #[tokio::test]
    async fn endless_command_output_is_cut_at_the_cap_without_waiting_for_the_timeout() {
        let started = std::time::Instant::now();
        let out = SystemRunner.stdout(argv(&["yes"])).await;
        assert_eq!(out.len(), MAX_DEBUG_TEXT);
        assert!(out.starts_with("y\ny\n"));
        assert!(
            started.elapsed() < COMMAND_TIMEOUT / 2,
            "{:?}",
            started.elapsed()
        );
        let out = SystemRunner.stdout(argv(&["echo", "short"])).await;
        assert_eq!(out, "short\n");
    }

    #[tokio::test]
    async fn huge_output_is_capped() {
        struct Flood;
        impl CommandRunner for Flood {
            fn stdout(&self, _argv: Vec<String>) -> BoxFuture<'_, String> {
                Box::pin(async { "x\n".repeat(1024 * 1024) })
            }
        }
        let text = build(&Flood, None).await;
        assert!(text.len() <= MAX_DEBUG_TEXT + 20);
        assert!(text.ends_with("[truncated]\n"));
    }
}
