//! Per-RPC container behaviour (§8). Each submodule adds `impl Daemon` methods for its RPCs;
//! this module holds the shared helpers of §8.13.

pub mod create;
pub mod delete;
pub mod devices;
pub mod export;
pub mod host;
pub mod import;
pub mod info;
pub mod start;
pub mod stop;
pub mod timezone;
pub mod usb;
pub mod user;

use std::time::Duration;

use crostini_lxd::types::Instance;
use crostini_lxd::{Client, ETag, EventStream, EventType, LxdError, Operation};
use crostini_proto::vm_tools::tremplin::ContainerShutdownInfo;

use crate::daemon::Daemon;

/// Longest wait for start/stop/delete/update operations.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest wait for a download + unpack.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);
/// Suffix of the recovery copy (§1.1).
pub const RECOVER_SUFFIX: &str = "-crostini-recover";
/// Suffix of the remap copy (§1.1).
pub const REMAP_SUFFIX: &str = "-crostini-remap";

/// LXD's instance name rules (a hostname label): 1–63 of `[A-Za-z0-9-]`, not starting with a
/// digit or `-`, not ending with `-`.
pub fn check_container_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty container name".to_string());
    }
    let valid = name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid container name {name:?}: must be 1-63 letters, digits or '-', \
             start with a letter and not end with '-'"
        ))
    }
}

/// Subscribes to operation events (before starting an operation to follow); `None` falls back
/// to polling.
pub(crate) async fn subscribe_operations(client: &Client) -> Option<EventStream> {
    match client.events(&[EventType::Operation]).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot subscribe to LXD operation events, will poll: {e}");
            None
        }
    }
}

/// Lookup with recovery (§8.13): a missing `<name>` with an existing `<name>-crostini-recover`
/// is restored by renaming the latter.
pub(crate) async fn lookup_with_recovery(
    client: &Client,
    name: &str,
) -> Result<(Instance, ETag), LxdError> {
    match client.instance(name).await {
        Err(e) if e.is_not_found() => {
            let recover = format!("{name}{RECOVER_SUFFIX}");
            match client.instance(&recover).await {
                Ok(_) => {
                    tracing::warn!("restoring {name} from {recover}");
                    let op = client.rename_instance(&recover, name).await?;
                    client.wait(&op, OP_TIMEOUT).await?;
                    client.instance(name).await
                }
                Err(_) => Err(e),
            }
        }
        other => other,
    }
}

/// Waits for an operation and turns its final state into `Ok`/`Err`.
pub(crate) async fn wait_op(client: &Client, op: &Operation) -> Result<Operation, LxdError> {
    client.wait(op, OP_TIMEOUT).await
}

impl Daemon {
    /// Internal delete helper (§8.13): absent → Ok; running (status neither 0 nor 102) →
    /// forced stop + `ContainerShutdown` report; then delete.
    pub(crate) async fn delete_helper(&self, client: &Client, name: &str) -> Result<(), LxdError> {
        let instance = match client.instance(name).await {
            Ok((i, _)) => i,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if instance.status_code != 0 && instance.status_code != 102 {
            let op = client.stop_instance(name, true).await?;
            wait_op(client, &op).await?;
            let _ = self
                .listener
                .container_shutdown(ContainerShutdownInfo {
                    container_name: name.to_string(),
                })
                .await;
        }
        let op = client.delete_instance(name).await?;
        wait_op(client, &op).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_name_rules() {
        for ok in ["penguin", "a", "my-container-2", &"a".repeat(63)] {
            assert!(check_container_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "1abc",
            "a_b",
            "a.b",
            "a/b",
            "a b",
            &"a".repeat(64),
            "pénguin",
        ] {
            assert!(check_container_name(bad).is_err(), "{bad}");
        }
    }
}
