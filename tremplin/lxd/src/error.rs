//! Error type of the LXD access layer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong when talking to LXD.
///
/// `what` always names the request (`"GET /1.0/instances/penguin"`) or the step
/// (`"waiting for operation <id>"`) that failed.
#[derive(Debug, thiserror::Error)]
pub enum LxdError {
    /// The socket is missing or refuses connections: LXD is not running.
    #[error("LXD is not running: cannot connect to {} for {what}: {source}", socket.display())]
    NotRunning {
        socket: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// The request or wait did not finish in time.
    #[error("{what} timed out after {seconds} s")]
    Timeout { what: String, seconds: u64 },
    /// LXD answered with an error (HTTP status or envelope `error_code`).
    #[error("{what} failed: LXD error {status_code}: {message}")]
    Api {
        status_code: u16,
        message: String,
        what: String,
    },
    /// LXD answered 404.
    #[error("{what} failed: not found: {message}")]
    NotFound { what: String, message: String },
    /// An operation ended with status Failure (400); `message` is LXD's `err`.
    #[error("operation {id} ({description}) failed: {message}")]
    Operation {
        id: String,
        description: String,
        message: String,
    },
    /// An operation ended with status Cancelled (401), or the caller cancelled a transfer.
    #[error("{what} was cancelled{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Cancelled { what: String, message: String },
    /// Local or socket I/O error.
    #[error("{what}: I/O error: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A response body could not be decoded.
    #[error("{what}: cannot decode JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Malformed HTTP / websocket exchange or unexpected response shape.
    #[error("{what}: protocol error: {message}")]
    Protocol { what: String, message: String },
    /// A response body that would be buffered in memory is larger than its limit (the
    /// connection is dropped as soon as the limit is passed).
    #[error("{what}: response body too large (over the {limit}-byte limit)")]
    BodyTooLarge { what: String, limit: u64 },
    /// A name that must not be sent to LXD (empty, or containing URL syntax).
    #[error("invalid LXD object name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
}

impl LxdError {
    /// True for HTTP 404 / "not found" answers.
    pub fn is_not_found(&self) -> bool {
        matches!(self, LxdError::NotFound { .. })
    }

    /// True when LXD could not be reached at all.
    pub fn is_not_running(&self) -> bool {
        matches!(self, LxdError::NotRunning { .. })
    }

    /// True when a buffered response body went over its size limit.
    pub fn is_body_too_large(&self) -> bool {
        matches!(self, LxdError::BodyTooLarge { .. })
    }

    /// True when an operation (or transfer) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, LxdError::Cancelled { .. })
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        LxdError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn protocol(what: impl Into<String>, message: impl Into<String>) -> Self {
        LxdError::Protocol {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn timeout(what: impl Into<String>, after: std::time::Duration) -> Self {
        LxdError::Timeout {
            what: what.into(),
            seconds: after.as_secs(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = LxdError> = std::result::Result<T, E>;

/// Checks a name used as a URL path component (instance, snapshot, image, backup, ...).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name == "." || name == ".." {
        "relative path component"
    } else if name
        .bytes()
        .any(|b| b <= b' ' || matches!(b, b'/' | b'?' | b'#' | b'%' | b'\\' | 0x7f))
    {
        "contains '/', '?', '#', '%', '\\', whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(LxdError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_name_rejects_empty_and_url_syntax() {
        for bad in ["", ".", "..", "a/b", "a?b", "a#b", "a%2f", "a b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?} must be rejected");
        }
        for good in [
            "penguin",
            "crostini-inprogress-create",
            "rootfs-backup",
            "a.b_c",
        ] {
            assert!(check_name(good).is_ok(), "{good:?} must be accepted");
        }
    }

    #[test]
    fn error_messages_name_the_request() {
        let e = LxdError::Api {
            status_code: 500,
            message: "boom".into(),
            what: "PUT /1.0/instances/penguin".into(),
        };
        assert_eq!(
            e.to_string(),
            "PUT /1.0/instances/penguin failed: LXD error 500: boom"
        );
        let e = LxdError::Cancelled {
            what: "operation 1".into(),
            message: String::new(),
        };
        assert_eq!(e.to_string(), "operation 1 was cancelled");
    }
}
