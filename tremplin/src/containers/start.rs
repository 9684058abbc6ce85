//! StartContainer (§8.4): privilege changes, os-release, token device, microphones, optional id
//! remap (§8.14), start, `tremplinSetupFinished`, heartbeats and one final report.

use std::sync::Arc;
use std::time::Duration;

use crostini_lxd::types::{Devices, Instance, InstancePut};
use crostini_lxd::{Client, ExecRequest, LxdError, OperationState};
use crostini_proto::vm_tools::tremplin as pb;
use pb::container_start_progress::Status as Progress;
use pb::start_container_request::PrivilegeLevel;
use pb::start_container_response::Status;
use serde::Deserialize;

use super::create::SETUP_FINISHED_KEY;
use super::{
    check_container_name, lookup_with_recovery, wait_op, OP_TIMEOUT, RECOVER_SUFFIX, REMAP_SUFFIX,
};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::devices::{is_capture_device, scan_char_devices};
use crate::os_release::{cros_list, parse_os_release, OsRelease};

/// Container path of the token (§7).
pub const TOKEN_PATH: &str = "/dev/.container_token";
const PRIVILEGED_KEY: &str = "security.privileged";

fn reply(status: Status, reason: impl Into<String>) -> pb::StartContainerResponse {
    pb::StartContainerResponse {
        status: status as i32,
        failure_reason: reason.into(),
        os_release: None,
    }
}

/// `security.privileged` value for a privilege level; `Ok(None)` = unchanged.
pub fn privileged_value(level: i32) -> Result<Option<&'static str>, String> {
    match PrivilegeLevel::try_from(level) {
        Ok(PrivilegeLevel::Unchanged) => Ok(None),
        Ok(PrivilegeLevel::Unprivileged) => Ok(Some("false")),
        Ok(PrivilegeLevel::Privileged) => Ok(Some("true")),
        Err(_) => Err(format!("bad privilege level value: {level}")),
    }
}

/// One LXD idmap entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdmapEntry {
    #[serde(rename = "Isuid", default)]
    pub isuid: bool,
    #[serde(rename = "Isgid", default)]
    pub isgid: bool,
    #[serde(rename = "Hostid", default)]
    pub hostid: i64,
    #[serde(rename = "Nsid", default)]
    pub nsid: i64,
    #[serde(rename = "Maprange", default)]
    pub maprange: i64,
}

fn idmap(config: &crostini_lxd::types::Config, key: &str) -> Result<Vec<IdmapEntry>, String> {
    let text = config.get(key).ok_or_else(|| format!("{key} is not set"))?;
    serde_json::from_str::<Option<Vec<IdmapEntry>>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("{key} is not a valid idmap: {e}"))
}

/// Remap needed iff the last map is non-empty and differs from the next one (§8.4).
pub fn remap_needed(expanded_config: &crostini_lxd::types::Config) -> Result<bool, String> {
    let last = idmap(expanded_config, "volatile.last_state.idmap")?;
    let next = idmap(expanded_config, "volatile.idmap.next")?;
    Ok(!last.is_empty() && last != next)
}

/// Converts to the wire form.
pub fn to_proto(os: &OsRelease) -> pb::OsRelease {
    pb::OsRelease {
        pretty_name: os.pretty_name.clone(),
        name: os.name.clone(),
        version: os.version.clone(),
        version_id: os.version_id.clone(),
        id: os.id.clone(),
    }
}

impl Daemon {
    pub async fn start_container(
        self: &Arc<Self>,
        request: pb::StartContainerRequest,
    ) -> pb::StartContainerResponse {
        let name = request.container_name.clone();
        if let Err(e) = check_container_name(&name) {
            return reply(Status::Failed, format!("failed to find container: {e}"));
        }
        let Some(client) = self.lxd() else {
            return reply(Status::Failed, LXD_NOT_RUNNING);
        };
        let (instance, etag) = match lookup_with_recovery(&client, &name).await {
            Ok(v) => v,
            Err(e) => return reply(Status::Failed, format!("failed to find container: {e}")),
        };
        if instance.is_running() {
            return match privileged_value(request.privilege_level) {
                Err(e) => reply(Status::Failed, e),
                Ok(None) => reply(Status::Running, ""),
                Ok(Some(value)) => {
                    let mut put = instance.writable();
                    put.config
                        .insert(PRIVILEGED_KEY.to_string(), value.to_string());
                    let r = async {
                        let op = client.update_instance(&name, &put, etag.as_deref()).await?;
                        wait_op(&client, &op).await
                    }
                    .await;
                    match r {
                        Ok(_) => reply(Status::Running, ""),
                        Err(e) => reply(
                            Status::Failed,
                            format!("failed to update privilege level: {e}"),
                        ),
                    }
                }
            };
        }
        let mut response = reply(Status::Starting, "");
        match self.guest_os_release(&name) {
            Ok(os) => {
                if os.id == "debian" {
                    self.write_cros_list(&name, &os);
                }
                response.os_release = Some(to_proto(&os));
            }
            Err(e) => tracing::warn!("cannot read os-release of {name}: {e}"),
        }
        let remap = match remap_needed(&instance.expanded_config) {
            Ok(r) => r,
            Err(e) => {
                return reply(
                    Status::Failed,
                    format!("failed to check if id remap required: {e}"),
                )
            }
        };
        if remap {
            response.status = Status::Remapping as i32;
        }
        let daemon = self.clone();
        tokio::spawn(async move {
            let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
            let heartbeat = {
                let daemon = daemon.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let interval = daemon.config.start_heartbeat;
                    loop {
                        tokio::select! {
                            _ = &mut done_rx => return,
                            _ = tokio::time::sleep(interval) => {}
                        }
                        let _ = daemon
                            .listener
                            .update_start_status(pb::ContainerStartProgress {
                                status: Progress::Starting as i32,
                                container_name: name.clone(),
                                failure_reason: String::new(),
                            })
                            .await;
                    }
                })
            };
            let outcome = daemon
                .run_start(&client, &name, instance, etag, &request, remap)
                .await;
            let _ = done_tx.send(());
            // The final report goes out after the last heartbeat.
            let _ = heartbeat.await;
            let (status, reason) = match outcome {
                Ok(()) => (Progress::Started, String::new()),
                Err((status, reason)) => {
                    tracing::warn!("starting {name} failed: {reason}");
                    (status, reason)
                }
            };
            let _ = daemon
                .listener
                .update_start_status(pb::ContainerStartProgress {
                    status: status as i32,
                    container_name: name.clone(),
                    failure_reason: reason,
                })
                .await;
            if status == Progress::Started && daemon.config.apt_key_refresh {
                daemon.schedule_apt_key_refresh(client, name);
            }
        });
        response
    }

    fn guest_os_release(&self, name: &str) -> Result<OsRelease, String> {
        let fs = self.container_fs(name).map_err(|e| e.to_string())?;
        let text = fs
            .read("/etc/os-release")
            .or_else(|_| fs.read("/usr/lib/os-release"))
            .map_err(|e| e.to_string())?;
        parse_os_release(&String::from_utf8_lossy(&text))
    }

    fn write_cros_list(&self, name: &str, os: &OsRelease) {
        let Some(milestone) = self.milestone else {
            tracing::info!("milestone unknown; not writing cros.list in {name}");
            return;
        };
        let result = self.container_fs(name).and_then(|fs| {
            fs.mkdir("/etc/apt/sources.list.d", 0o755, 0, 0)?;
            fs.write(
                "/etc/apt/sources.list.d/cros.list",
                cros_list(os, milestone).as_bytes(),
                0o644,
                0,
                0,
            )
        });
        if let Err(e) = result {
            tracing::warn!("cannot write cros.list in {name}: {e}");
        }
    }

    /// Asynchronous part (steps 2–9); `Err` carries the final status and reason.
    async fn run_start(
        &self,
        client: &Client,
        name: &str,
        instance: Instance,
        etag: Option<String>,
        request: &pb::StartContainerRequest,
        remap: bool,
    ) -> Result<(), (Progress, String)> {
        let failed = |reason: String| (Progress::Failed, reason);
        let mut put: InstancePut = instance.writable();
        put.devices = Devices::new();
        if !request.token.is_empty() {
            let token_file = self.write_token(name, &request.token).map_err(failed)?;
            put.devices.insert(
                "container_token".to_string(),
                [
                    ("type", "disk"),
                    ("source", token_file.as_str()),
                    ("path", TOKEN_PATH),
                    ("required", "false"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            );
        }
        if !request.disable_audio_capture {
            for d in scan_char_devices(&self.config.paths.dev_dir, is_capture_device) {
                let (key, entry) = d.lxd_entry();
                put.devices.insert(key, entry);
            }
        }
        match privileged_value(request.privilege_level) {
            Err(e) => return Err(failed(e)),
            Ok(Some(v)) => {
                put.config.insert(PRIVILEGED_KEY.to_string(), v.to_string());
            }
            Ok(None) => {}
        }
        let op = client
            .update_instance(name, &put, etag.as_deref())
            .await
            .map_err(|e| failed(format!("failed to set up devices: {e}")))?;
        wait_op(client, &op)
            .await
            .map_err(|e| failed(format!("failed to wait for container update: {e}")))?;
        if remap {
            self.remap(client, name)
                .await
                .map_err(|e| failed(format!("failed to remap: {e}")))?;
        }
        let op = client
            .start_instance(name)
            .await
            .map_err(|e| failed(format!("failed to start container: {e}")))?;
        let done = client
            .wait_final(&op.id, OP_TIMEOUT)
            .await
            .map_err(|e| failed(format!("failed to wait for container startup: {e}")))?;
        match done.state() {
            OperationState::Success => {}
            OperationState::Cancelled => return Err((Progress::Cancelled, done.err)),
            _ => return Err(failed(done.err)),
        }
        client
            .set_instance_metadata_property(name, SETUP_FINISHED_KEY, "true")
            .await
            .map_err(|e| failed(format!("Error marking setup finished on container: {e}")))?;
        tracing::info!("started container {name}");
        Ok(())
    }

    /// Writes `<tokens_dir>/<name>_token` (0644, no newline); returns its path.
    fn write_token(&self, name: &str, token: &str) -> Result<String, String> {
        let dir = &self.config.paths.tokens_dir;
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .and_then(|()| crate::lxd_setup::set_mode(dir, 0o1777))
                .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
        }
        let path = dir.join(format!("{name}_token"));
        crate::lxd_setup::write_file_mode(&path, token.as_bytes(), 0o644)
            .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
        Ok(path.display().to_string())
    }

    /// Id remap by copy-and-swap (§8.14).
    async fn remap(&self, client: &Client, name: &str) -> Result<(), LxdError> {
        if let Ok(op) = client.delete_snapshot(name, "rootfs-shift").await {
            let _ = wait_op(client, &op).await;
        }
        let remap = format!("{name}{REMAP_SUFFIX}");
        let recover = format!("{name}{RECOVER_SUFFIX}");
        self.delete_helper(client, &remap).await?;
        self.delete_helper(client, &recover).await?;
        let op = client.copy_instance(name, &remap).await?;
        wait_op(client, &op).await?;
        let op = client.start_instance(&remap).await?;
        wait_op(client, &op).await?;
        let op = client.stop_instance(&remap, true).await?;
        wait_op(client, &op).await?;
        if let Ok(fs) = self.container_fs(&remap) {
            if let Err(e) = fs.write("/etc/hostname", format!("{name}\n").as_bytes(), 0o644, 0, 0) {
                tracing::warn!("writing /etc/hostname of {remap}: {e}");
            }
        }
        let op = client.rename_instance(name, &recover).await?;
        wait_op(client, &op).await?;
        let op = client.rename_instance(&remap, name).await?;
        wait_op(client, &op).await?;
        let op = client.delete_instance(&recover).await?;
        wait_op(client, &op).await?;
        Ok(())
    }

    /// §9.4: refresh apt keys 60 s after a successful start (failures only logged).
    fn schedule_apt_key_refresh(self: &Arc<Self>, client: Client, name: String) {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let req = ExecRequest::new(&[
                "apt-key",
                "adv",
                "--refresh-keys",
                "--keyserver",
                "keyserver.ubuntu.com",
                "EB4C1BFD4F042F6DDDCCEC917721F63BD38B4796",
            ])
            .timeout(Duration::from_secs(120));
            match client.exec(&name, &req).await {
                Ok(out) if out.exit_code == 0 => tracing::info!("refreshed apt keys in {name}"),
                Ok(out) => tracing::info!("apt key refresh in {name} exited {}", out.exit_code),
                Err(e) => tracing::info!("apt key refresh in {name} failed: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_levels() {
        assert_eq!(privileged_value(0), Ok(None));
        assert_eq!(privileged_value(1), Ok(Some("false")));
        assert_eq!(privileged_value(2), Ok(Some("true")));
        assert_eq!(
            privileged_value(7),
            Err("bad privilege level value: 7".to_string())
        );
        assert!(privileged_value(-1).is_err());
    }

    fn config(pairs: &[(&str, &str)]) -> crostini_lxd::types::Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn remap_rules() {
        let a = r#"[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":1000}]"#;
        let b = r#"[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":1000}]"#;
        let key_last = "volatile.last_state.idmap";
        let key_next = "volatile.idmap.next";
        assert_eq!(
            remap_needed(&config(&[(key_last, "[]"), (key_next, a)])),
            Ok(false),
            "empty last map"
        );
        assert_eq!(
            remap_needed(&config(&[(key_last, a), (key_next, a)])),
            Ok(false)
        );
        assert_eq!(
            remap_needed(&config(&[(key_last, a), (key_next, b)])),
            Ok(true)
        );
        assert!(
            remap_needed(&config(&[(key_next, a)])).is_err(),
            "missing key"
        );
        assert!(
            remap_needed(&config(&[(key_last, "{"), (key_next, a)])).is_err(),
            "bad JSON"
        );
        assert_eq!(
            remap_needed(&config(&[(key_last, "null"), (key_next, a)])),
            Ok(false)
        );
    }
}
