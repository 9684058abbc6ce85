//! The container token (garcon-host.md §3.2).
//!
//! At most [`TOKEN_MAX_BYTES`] bytes are read, verbatim: no trimming and no validation, stopping
//! at the first NUL. A 36-character UUID followed by a newline therefore yields the bare UUID.
//! An empty or unreadable file means "no token". The server polls for the file; clients fail
//! fast.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Upstream reads at most this many bytes (the length of a UUID string).
pub const TOKEN_MAX_BYTES: usize = 36;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the container token from {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("the container token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("no container token in {path} after waiting {waited:?} (last problem: {last})")]
    NotAvailable {
        path: PathBuf,
        waited: Duration,
        last: Box<TokenError>,
    },
}

/// Reads the token once.
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    let unreadable = |source| TokenError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
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

/// Polls for the token every `interval` for at most `max_wait` (server mode).
pub async fn wait_for_token(
    path: &Path,
    interval: Duration,
    max_wait: Duration,
) -> Result<String, TokenError> {
    let start = tokio::time::Instant::now();
    let mut logged = false;
    loop {
        match read_token(path) {
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
                if !logged {
                    tracing::info!(%error, "waiting up to {max_wait:?} for the container token");
                    logged = true;
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
