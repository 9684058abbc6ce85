//! LXD background operations: type, get, wait, cancel.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::Method;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{check_name, LxdError, Result};

/// LXD status codes (§4.1).
pub mod status_code {
    pub const OPERATION_CREATED: i64 = 100;
    pub const STARTED: i64 = 101;
    pub const STOPPED: i64 = 102;
    pub const RUNNING: i64 = 103;
    pub const CANCELLING: i64 = 104;
    pub const PENDING: i64 = 105;
    pub const STARTING: i64 = 106;
    pub const STOPPING: i64 = 107;
    pub const ABORTING: i64 = 108;
    pub const FREEZING: i64 = 109;
    pub const FROZEN: i64 = 110;
    pub const THAWED: i64 = 111;
    pub const ERROR: i64 = 112;
    pub const SUCCESS: i64 = 200;
    pub const FAILURE: i64 = 400;
    pub const CANCELLED: i64 = 401;
}

/// An LXD background operation (`/1.0/operations/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Operation {
    pub id: String,
    pub class: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    pub status: String,
    pub status_code: i64,
    /// e.g. `{"instances": ["/1.0/instances/c1"], "containers": [...]}`.
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    /// Operation-specific metadata (`download_progress`, `progress`, `fingerprint`,
    /// `return`, `output`, ...). `Null` when absent.
    pub metadata: serde_json::Value,
    pub may_cancel: bool,
    pub err: String,
    pub location: String,
}

/// Coarse state of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationState {
    Pending,
    Running,
    Success,
    Failure,
    Cancelled,
    /// Any other code (e.g. 104 Cancelling).
    Other(i64),
}

impl Operation {
    /// The state derived from `status_code`.
    pub fn state(&self) -> OperationState {
        match self.status_code {
            status_code::PENDING | status_code::OPERATION_CREATED => OperationState::Pending,
            status_code::RUNNING => OperationState::Running,
            status_code::SUCCESS => OperationState::Success,
            status_code::FAILURE => OperationState::Failure,
            status_code::CANCELLED => OperationState::Cancelled,
            other => OperationState::Other(other),
        }
    }

    /// Success, Failure or Cancelled.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state(),
            OperationState::Success | OperationState::Failure | OperationState::Cancelled
        )
    }

    /// A metadata string value, if present.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }

    /// All resource URLs naming instances (`instances` and legacy `containers` keys), deduplicated.
    pub fn instance_resources(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(res) = &self.resources {
            for key in ["instances", "containers"] {
                for url in res.get(key).into_iter().flatten() {
                    let name = url.split('?').next().unwrap_or("").rsplit('/').next();
                    if let Some(name) = name {
                        if !name.is_empty() && !out.iter().any(|n| n == name) {
                            out.push(name.to_string());
                        }
                    }
                }
            }
        }
        out
    }

    /// Converts a final operation into `Ok(self)` on Success or the matching error.
    /// Non-final operations are returned as `Ok` too.
    pub fn into_result(self) -> Result<Operation> {
        match self.state() {
            OperationState::Failure => Err(LxdError::Operation {
                id: self.id,
                description: self.description,
                message: self.err,
            }),
            OperationState::Cancelled => Err(LxdError::Cancelled {
                what: format!("operation {} ({})", self.id, self.description),
                message: self.err,
            }),
            _ => Ok(self),
        }
    }

    /// `updated_at` as nanoseconds since the epoch (for ordering updates).
    pub fn updated_at_nanos(&self) -> Option<i128> {
        parse_rfc3339_nanos(&self.updated_at)
    }
}

/// Parses an RFC 3339 timestamp (`2023-05-01T10:00:00.123456789+02:00` or `...Z`)
/// into nanoseconds since the Unix epoch. Returns `None` on malformed input.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded: String = digits.chars().take(9).collect();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().ok()?;
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let v = oh * 3600 + om * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// Longest single long-poll sent to LXD while waiting.
const WAIT_CHUNK: Duration = Duration::from_secs(30);

impl Client {
    /// `GET /1.0/operations/{id}`.
    pub async fn operation(&self, id: &str) -> Result<Operation> {
        check_name(id)?;
        let path = format!("/1.0/operations/{id}");
        self.sync_json(Method::GET, &path, None, None)
            .await
            .map(|(op, _)| op)
    }

    /// `DELETE /1.0/operations/{id}`: asks LXD to cancel the operation.
    pub async fn cancel_operation(&self, id: &str) -> Result<()> {
        check_name(id)?;
        let path = format!("/1.0/operations/{id}");
        self.sync_unit(Method::DELETE, &path, None, None).await
    }

    /// Waits until the operation is final (or `timeout` elapses) and returns it whatever its
    /// final status (use [`Operation::into_result`] or [`Client::wait`] to get errors).
    ///
    /// Loops `GET /1.0/operations/{id}/wait?timeout=N` with N ≤ 30 s.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Result<Operation> {
        check_name(id)?;
        let deadline = Instant::now() + timeout;
        let what_wait = format!("waiting for operation {id}");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(LxdError::timeout(what_wait, timeout));
            }
            let chunk = remaining.min(WAIT_CHUNK);
            let secs = chunk.as_secs().max(1);
            let path = format!("/1.0/operations/{id}/wait?timeout={secs}");
            let http_timeout = Duration::from_secs(secs) + self.timeout();
            let asked_at = Instant::now();
            let res = self
                .request_envelope(Method::GET, &path, None, None, http_timeout)
                .await;
            match res {
                Ok((env, _)) => {
                    let op: Operation =
                        serde_json::from_value(env.metadata).map_err(|e| LxdError::Json {
                            what: format!("GET {path}"),
                            source: e,
                        })?;
                    if op.is_final() {
                        return Ok(op);
                    }
                }
                // Newer LXD answers an expired long-poll with an error instead of the
                // still-running operation.
                Err(LxdError::Api {
                    status_code,
                    message,
                    ..
                }) if status_code == 504
                    || message.contains("deadline exceeded")
                    || message.contains("timed out") => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(LxdError::timeout(what_wait, timeout));
            }
            // Never spin if a server answers a long-poll early without a final state.
            if asked_at.elapsed() < Duration::from_millis(200) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Waits for the operation; Failure → [`LxdError::Operation`], Cancelled →
    /// [`LxdError::Cancelled`], timeout → [`LxdError::Timeout`].
    pub async fn wait(&self, op: &Operation, timeout: Duration) -> Result<Operation> {
        if op.is_final() {
            return op.clone().into_result();
        }
        self.wait_final(&op.id, timeout).await?.into_result()
    }

    /// Cancels the operation (`DELETE /1.0/operations/{id}`).
    pub async fn cancel(&self, op: &Operation) -> Result<()> {
        self.cancel_operation(&op.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(code: i64) -> Operation {
        Operation {
            id: "x".into(),
            description: "Creating instance".into(),
            status_code: code,
            err: "boom".into(),
            ..Default::default()
        }
    }

    #[test]
    fn state_and_finality_follow_status_code() {
        assert_eq!(op(105).state(), OperationState::Pending);
        assert_eq!(op(103).state(), OperationState::Running);
        assert!(!op(103).is_final());
        assert!(op(200).is_final() && op(400).is_final() && op(401).is_final());
        assert_eq!(op(104).state(), OperationState::Other(104));
    }

    #[test]
    fn into_result_maps_failure_and_cancel() {
        assert!(op(200).into_result().is_ok());
        match op(400).into_result().unwrap_err() {
            LxdError::Operation { id, message, .. } => {
                assert_eq!(id, "x");
                assert_eq!(message, "boom");
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(op(401).into_result().unwrap_err().is_cancelled());
    }

    #[test]
    fn instance_resources_extracts_names() {
        let mut o = op(103);
        let mut res = BTreeMap::new();
        res.insert(
            "containers".to_string(),
            vec!["/1.0/containers/c1".to_string()],
        );
        res.insert(
            "instances".to_string(),
            vec!["/1.0/instances/c1?project=default".to_string()],
        );
        o.resources = Some(res);
        assert_eq!(o.instance_resources(), vec!["c1".to_string()]);
    }

    #[test]
    fn rfc3339_parses_and_orders() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T01:00:00+01:00"),
            Some(0),
            "offset is subtracted"
        );
        let a = parse_rfc3339_nanos("2023-03-01T10:00:00.9Z").unwrap();
        let b = parse_rfc3339_nanos("2023-03-01T10:00:00.123456789Z").unwrap();
        assert!(a > b);
        assert_eq!(
            parse_rfc3339_nanos("2000-03-01T00:00:00Z"),
            Some(951_868_800_000_000_000)
        );
        for bad in [
            "",
            "garbage",
            "2023-13-01T00:00:00Z",
            "2023-01-01T00:00:00",
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00Zx",
            "２０２３-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad:?}");
        }
    }
}
