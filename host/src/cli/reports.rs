//! Where a one-shot command reads the reports that follow its call: its own listener, the record
//! of a running `crostini-host serve --state-dir`, or nowhere.

use std::time::Duration;

use serde_json::Value;

use crate::server::RunningHost;
use crate::state_dir::EventFollower;

pub enum Reports {
    /// This process serves the listener itself.
    Listener { host: RunningHost, next_seq: u64 },
    /// A `serve --state-dir` process records them.
    StateDir(EventFollower),
    /// Nobody listens: the command prints the immediate reply only.
    Unavailable,
}

impl Reports {
    pub fn is_available(&self) -> bool {
        !matches!(self, Reports::Unavailable)
    }

    /// The next report (as its JSON record) that matches, or `None` when reports are unavailable.
    pub async fn next(
        &mut self,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Option<Value>> {
        match self {
            Reports::Listener { host, next_seq } => {
                let event = host
                    .wait_for_from(
                        *next_seq,
                        |e| {
                            serde_json::to_value(e)
                                .map(|v| matches(&v))
                                .unwrap_or(false)
                        },
                        timeout,
                    )
                    .await?;
                *next_seq = event.seq + 1;
                Ok(Some(serde_json::to_value(&event)?))
            }
            Reports::StateDir(follower) => {
                Ok(Some(follower.next_matching(matches, timeout).await?))
            }
            Reports::Unavailable => Ok(None),
        }
    }

    pub async fn close(self) {
        if let Reports::Listener { host, .. } = self {
            host.shutdown().await;
        }
    }
}

/// `record.rpc`
pub fn rpc(record: &Value) -> &str {
    record["rpc"].as_str().unwrap_or_default()
}

/// `record.message.<key>` as a string ("" when absent, as proto3 would have it).
pub fn text<'a>(record: &'a Value, key: &str) -> &'a str {
    record["message"][key].as_str().unwrap_or_default()
}

/// `record.message.<key>` as a number (0 when absent, as proto3 would have it).
pub fn number(record: &Value, key: &str) -> i64 {
    record["message"][key].as_i64().unwrap_or(0)
}

/// The report of `rpc_name` about container `name` (tremplin reports carry the name).
pub fn about(record: &Value, rpc_name: &str, name: &str) -> bool {
    rpc(record) == rpc_name && text(record, "container_name") == name
}
