//! The container token (garcon-host.md §3.2).
//!
//! At most [`TOKEN_MAX_BYTES`] bytes are read, verbatim: no trimming and no validation, stopping
//! at the first NUL. A 36-character UUID followed by a newline therefore yields the bare UUID.
//! An empty or unreadable file means "no token". The server polls for the file; clients fail
//! fast.
//!
//! The file is container-controlled, so it is opened through [`crostini_common::untrusted_file`]:
//! a FIFO, device or directory is refused at once (a plain `open` of a FIFO blocks until a writer
//! appears), and so is a file over [`TOKEN_FILE_MAX_BYTES`]. The server's wait keeps polling after
//! a refusal (the bind mount may still be replaced), logs each new problem, and does every read
//! on the blocking pool under its own deadline, so the 60 s limit and SIGTERM always hold.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crostini_common::untrusted_file::{self, UntrustedReadError};

/// Upstream reads at most this many bytes (the length of a UUID string).
pub const TOKEN_MAX_BYTES: usize = 36;

/// A token file larger than this is refused: cicerone writes 36 or 37 bytes, so anything near
/// 4 KiB is not a token file (deviation: upstream would read the first 36 bytes of anything).
pub const TOKEN_FILE_MAX_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the container token from {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    /// Not a regular file, or larger than [`TOKEN_FILE_MAX_BYTES`].
    #[error("container token file refused: {0}")]
    Refused(#[source] UntrustedReadError),
    #[error("the container token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("no container token in {path} after waiting {waited:?} (last problem: {last})")]
    NotAvailable {
        path: PathBuf,
        waited: Duration,
        last: Box<TokenError>,
    },
}

/// Reads the token once. Never blocks on a FIFO; bounded by one `read` of ≤ 36 bytes.
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    let unreadable = |source| TokenError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let (file, metadata) = untrusted_file::open_regular(path).map_err(|error| match error {
        UntrustedReadError::Open { source, .. } | UntrustedReadError::Read { source, .. } => {
            unreadable(source)
        }
        refusal => TokenError::Refused(refusal),
    })?;
    if metadata.len() > TOKEN_FILE_MAX_BYTES {
        return Err(TokenError::Refused(UntrustedReadError::TooLarge {
            path: path.to_path_buf(),
            size: metadata.len(),
            cap: TOKEN_FILE_MAX_BYTES,
        }));
    }
    let mut bytes = Vec::with_capacity(TOKEN_MAX_BYTES);
    file.take(TOKEN_MAX_BYTES as u64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if let Some(nul) = bytes.iter().position(|b| *b == 0) {
        bytes.truncate(nul);
    }
    if bytes.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_path_buf(),
        });
    }
    // The token is a proto3 string; upstream copies raw bytes. Invalid UTF-8 cannot be sent
    // as a Rust String, so it is replaced (the host would not know such a token anyway).
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One read on the blocking pool, abandoned after `limit` (a stuck filesystem then costs one
/// pool thread, never the executor, the wait limit or SIGTERM).
async fn read_token_off_executor(path: &Path, limit: Duration) -> Result<String, TokenError> {
    let owned = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || read_token(&owned));
    let unreadable = |source| TokenError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(unreadable(io::Error::other(join.to_string()))),
        Err(_) => Err(unreadable(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("reading it took over {limit:?}"),
        ))),
    }
}

/// Polls for the token every `interval` for at most `max_wait` (server mode). Each distinct
/// problem is logged once: refusals (FIFO, device, oversized) as errors, absence as info.
pub async fn wait_for_token(
    path: &Path,
    interval: Duration,
    max_wait: Duration,
) -> Result<String, TokenError> {
    let start = tokio::time::Instant::now();
    let mut last_logged: Option<String> = None;
    loop {
        let remaining = max_wait.saturating_sub(start.elapsed());
        // A floor so the last attempt can still succeed on a normal disk.
        let limit = remaining.max(Duration::from_millis(100));
        match read_token_off_executor(path, limit).await {
            Ok(token) => return Ok(token),
            Err(error) => {
                let waited = start.elapsed();
                if waited >= max_wait {
                    return Err(TokenError::NotAvailable {
                        path: path.to_path_buf(),
                        waited,
                        last: Box::new(error),
                    });
                }
                let text = error.to_string();
                if last_logged.as_deref() != Some(text.as_str()) {
                    if matches!(error, TokenError::Refused(_)) {
                        tracing::error!(%error, "waiting up to {max_wait:?} for a usable token file");
                    } else {
                        tracing::info!(%error, "waiting up to {max_wait:?} for the container token");
                    }
                    last_logged = Some(text);
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, content).expect("write token");
        (dir, path)
    }

    #[test]
    fn uuid_with_newline_yields_bare_uuid() {
        let (_dir, path) = token_file(b"aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa\n");
        let token = read_token(&path).expect("token");
        assert_eq!(token, "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa");
        assert_eq!(token.len(), 36);
    }

    #[test]
    fn short_token_keeps_its_newline() {
        let (_dir, path) = token_file(b"abc\n");
        assert_eq!(read_token(&path).expect("token"), "abc\n");
    }

    #[test]
    fn stops_at_first_nul() {
        let (_dir, path) = token_file(b"abc\0def");
        assert_eq!(read_token(&path).expect("token"), "abc");
    }

    #[test]
    fn empty_and_missing_files_are_errors_naming_the_path() {
        let (_dir, path) = token_file(b"");
        let err = read_token(&path).expect_err("empty");
        assert!(matches!(err, TokenError::Empty { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));

        let missing = path.with_file_name("missing");
        let err = read_token(&missing).expect_err("missing");
        assert!(matches!(err, TokenError::Unreadable { .. }));
        assert!(err.to_string().contains("missing"));
    }

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn fifo_and_directory_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("token");
        mkfifo(&fifo);
        let started = std::time::Instant::now();
        let err = read_token(&fifo).expect_err("fifo");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(err, TokenError::Refused(_)), "{err}");
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(err.to_string().contains("token"), "{err}");
        let err = read_token(dir.path()).expect_err("directory");
        assert!(matches!(err, TokenError::Refused(_)), "{err}");
    }

    #[test]
    fn oversized_file_is_refused_and_the_cap_itself_is_read() {
        let mut content = b"aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa\n".to_vec();
        content.resize(TOKEN_FILE_MAX_BYTES as usize, b'x');
        let (_dir, path) = token_file(&content);
        assert_eq!(read_token(&path).expect("token").len(), 36);
        content.push(b'x');
        std::fs::write(&path, &content).expect("rewrite");
        let err = read_token(&path).expect_err("oversized");
        assert!(matches!(err, TokenError::Refused(_)), "{err}");
        assert!(err.to_string().contains("4096"), "{err}");
    }

    #[tokio::test]
    async fn wait_on_a_fifo_keeps_its_limit_and_names_the_refusal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        mkfifo(&path);
        let start = std::time::Instant::now();
        let err = wait_for_token(&path, Duration::from_millis(20), Duration::from_millis(300))
            .await
            .expect_err("no token");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[tokio::test]
    async fn wait_picks_up_a_token_written_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let writer_path = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::write(writer_path, "late-token").expect("write");
        });
        let start = std::time::Instant::now();
        let token = wait_for_token(&path, Duration::from_millis(20), Duration::from_secs(10))
            .await
            .expect("token");
        assert_eq!(token, "late-token");
        assert!(start.elapsed() >= Duration::from_millis(250));
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn wait_gives_up_after_max_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("never");
        let start = std::time::Instant::now();
        let err = wait_for_token(&path, Duration::from_millis(20), Duration::from_millis(200))
            .await
            .expect_err("no token");
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(matches!(err, TokenError::NotAvailable { .. }));
        assert!(err.to_string().contains("never"));
    }
}
