//! CreateContainer (§8.1): crash-safe creation under the temporary name
//! `crostini-inprogress-create`, metadata flag `createdByTremplin`, rename, progress reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crostini_lxd::progress::{download_progress, ProgressThrottle};
use crostini_lxd::types::{InstanceSource, InstancesPost};
use crostini_lxd::{CancelToken, Client, ImageUpload, LxdError, Operation, OperationState};
use crostini_proto::vm_tools::tremplin as pb;
use pb::container_creation_progress::Status as Progress;
use pb::create_container_response::Status;

use super::{
    check_container_name, lookup_with_recovery, subscribe_operations, wait_op, CREATE_TIMEOUT,
    OP_TIMEOUT,
};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::milestone::expand_image_server;
use crate::transactions::release_then_report;

/// Temporary instance name during creation (§1.1).
pub const IN_PROGRESS_NAME: &str = "crostini-inprogress-create";
/// Metadata property set once created (§1.1).
pub const CREATED_KEY: &str = "createdByTremplin";
/// Metadata property set after the first successful start (§1.1).
pub const SETUP_FINISHED_KEY: &str = "tremplinSetupFinished";

fn reply(status: Status, reason: impl Into<String>) -> pb::CreateContainerResponse {
    pb::CreateContainerResponse {
        status: status as i32,
        failure_reason: reason.into(),
    }
}

/// Turns an LXD error text into the failure reason of the step that failed.
type Classifier = Box<dyn Fn(&str) -> String + Send>;

/// Where the image comes from.
enum Source {
    Server { server: String, alias: String },
    Tarball { rootfs: PathBuf, metadata: PathBuf },
}

/// Names the failed step of an image-server creation from LXD's error text, like upstream's
/// own simplestreams resolution would ("failed to connect to simplestreams image server",
/// "failed to get alias").
pub fn classify_image_error(server: &str, alias: &str, error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("couldn't be found") || lower.contains("could not be found") {
        format!("failed to get alias {alias:?} from {server}: {error}")
    } else if lower.contains("dial tcp")
        || lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("timeout")
        || lower.contains("streams/v1")
    {
        format!("failed to connect to simplestreams image server {server}: {error}")
    } else if lower.contains("not found") {
        format!("failed to get alias {alias:?} from {server}: {error}")
    } else {
        format!("failed to create container from image {alias:?} on {server}: {error}")
    }
}

/// True when the instance metadata says tremplin created it but never finished a start.
pub fn is_unfinished(properties: &std::collections::BTreeMap<String, String>) -> bool {
    properties.get(CREATED_KEY).map(String::as_str) == Some("true")
        && properties.get(SETUP_FINISHED_KEY).map(String::as_str) != Some("true")
}

impl Daemon {
    pub async fn create_container(
        self: &Arc<Self>,
        request: pb::CreateContainerRequest,
    ) -> pb::CreateContainerResponse {
        let name = request.container_name.clone();
        if let Err(e) = check_container_name(&name) {
            return reply(Status::Failed, e);
        }
        let Some(client) = self.lxd() else {
            return reply(Status::Failed, LXD_NOT_RUNNING);
        };
        let Some(guard) = self.begin_create() else {
            return reply(Status::Failed, "creation already in progress");
        };
        match lookup_with_recovery(&client, &name).await {
            Ok(_) => {
                let unfinished = match client.instance_metadata(&name).await {
                    Ok((md, _)) => is_unfinished(&md.properties),
                    Err(e) => {
                        tracing::warn!("cannot read metadata of {name}: {e}");
                        false
                    }
                };
                if !unfinished {
                    return reply(Status::Exists, "");
                }
                tracing::info!("{name} was created by tremplin but never started; re-creating it");
                if let Err(e) = self.delete_helper(&client, &name).await {
                    tracing::warn!("deleting unfinished {name}: {e}");
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return reply(Status::Failed, format!("failed to find container: {e}")),
        }
        if let Err(e) = self.delete_helper(&client, IN_PROGRESS_NAME).await {
            tracing::warn!("deleting leftover {IN_PROGRESS_NAME}: {e}");
        }
        let source = if !request.rootfs_path.is_empty() && !request.metadata_path.is_empty() {
            let rootfs = PathBuf::from(&request.rootfs_path);
            let metadata = PathBuf::from(&request.metadata_path);
            for p in [&rootfs, &metadata] {
                if let Err(e) = std::fs::File::open(p) {
                    return reply(
                        Status::Failed,
                        format!("failed to open image rootfs/metadata: {}: {e}", p.display()),
                    );
                }
            }
            Source::Tarball { rootfs, metadata }
        } else {
            Source::Server {
                server: request.image_server.clone(),
                alias: request.image_alias.clone(),
            }
        };
        let daemon = self.clone();
        tokio::spawn(async move {
            let final_report = daemon.run_create(&client, &name, source).await;
            // Free the slot first: the host may start the next creation on the final status.
            let report = daemon.listener.update_create_status(final_report);
            let _ = release_then_report(|| drop(guard), report).await;
        });
        reply(Status::Creating, "")
    }

    /// Background part; returns the one final report.
    async fn run_create(
        &self,
        client: &Client,
        name: &str,
        source: Source,
    ) -> pb::ContainerCreationProgress {
        let failed = |reason: String| {
            tracing::warn!("creating {name} failed: {reason}");
            pb::ContainerCreationProgress {
                status: Progress::Failed as i32,
                container_name: name.to_string(),
                download_progress: 0,
                failure_reason: reason,
            }
        };
        let (instance_source, classify): (InstanceSource, Classifier) = match source {
            Source::Server { server, alias } => {
                let server = match expand_image_server(&server, self.milestone) {
                    Ok(s) => s,
                    Err(e) => return failed(e),
                };
                if server.is_empty() || alias.is_empty() {
                    return failed(format!(
                        "failed to get image for alias {alias:?} on image server {server:?}: \
                             image server and alias must both be set"
                    ));
                }
                let src = InstanceSource::simplestreams(&server, &alias);
                (
                    src,
                    Box::new(move |e: &str| classify_image_error(&server, &alias, e)),
                )
            }
            Source::Tarball { rootfs, metadata } => {
                match self.upload_split_image(client, &rootfs, &metadata).await {
                    Ok(fingerprint) => (
                        InstanceSource::local_fingerprint(&fingerprint),
                        Box::new(|e: &str| format!("failed to create container: {e}")),
                    ),
                    Err(reason) => return failed(reason),
                }
            }
        };
        let mut post = InstancesPost::new(IN_PROGRESS_NAME, instance_source);
        if self.config.lxd_profile != "default" {
            post.put.profiles = Some(vec![self.config.lxd_profile.clone()]);
        }
        // Subscribe before the operation exists so no progress update is missed.
        let events = subscribe_operations(client).await;
        let op = match client.create_instance(&post).await {
            Ok(op) => op,
            Err(e) => return failed(classify(&e.to_string())),
        };
        let mut updates = client.follow_operation(events, op, CREATE_TIMEOUT);
        let mut throttle = ProgressThrottle::new();
        let last = loop {
            match updates.next().await {
                None => return failed("LXD operation ended without a final state".to_string()),
                Some(Err(e)) => return failed(classify(&e.to_string())),
                Some(Ok(op)) if op.is_final() => break op,
                Some(Ok(op)) => {
                    if op.instance_resources().len() > 1 {
                        continue;
                    }
                    if let Some(p) = download_progress(&op.metadata) {
                        let percent = u32::try_from(p.reported_percent()).unwrap_or(0);
                        if let Some(r) = throttle.observe(&p.stage, percent, 0, Instant::now()) {
                            let _ = self
                                .listener
                                .update_create_status(pb::ContainerCreationProgress {
                                    status: Progress::Downloading as i32,
                                    container_name: name.to_string(),
                                    download_progress: i32::try_from(r.percent).unwrap_or(100),
                                    failure_reason: String::new(),
                                })
                                .await;
                        }
                    }
                }
            }
        };
        match last.state() {
            OperationState::Success => {}
            OperationState::Failure | OperationState::Cancelled => {
                return failed(classify(&last.err));
            }
            _ => {
                return pb::ContainerCreationProgress {
                    status: Progress::Unknown as i32,
                    container_name: name.to_string(),
                    download_progress: 0,
                    failure_reason: format!("unexpected operation status {}", last.status_code),
                }
            }
        }
        if let Err(e) = client
            .set_instance_metadata_property(IN_PROGRESS_NAME, CREATED_KEY, "true")
            .await
        {
            return failed(format!(
                "Error marking container as being a Tremplin container: {e}"
            ));
        }
        let renamed = async {
            let op = client.rename_instance(IN_PROGRESS_NAME, name).await?;
            client.wait(&op, OP_TIMEOUT).await
        };
        if let Err(e) = renamed.await {
            return failed(format!("Error renaming container to final name: {e}"));
        }
        tracing::info!("created container {name}");
        pb::ContainerCreationProgress {
            status: Progress::Created as i32,
            container_name: name.to_string(),
            download_progress: 0,
            failure_reason: String::new(),
        }
    }

    /// Tarball path (§8.1 step 4): uploads a split image and returns its fingerprint.
    async fn upload_split_image(
        &self,
        client: &Client,
        rootfs: &std::path::Path,
        metadata: &std::path::Path,
    ) -> Result<String, String> {
        let op: Operation = client
            .upload_split_image(
                metadata,
                rootfs,
                &ImageUpload::default(),
                |_| {},
                &CancelToken::new(),
            )
            .await
            .map_err(|e| format!("failed to import image: {e}"))?;
        let done = wait_op(client, &op)
            .await
            .map_err(|e: LxdError| format!("failed to import image: {e}"))?;
        done.metadata_str("fingerprint")
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .ok_or_else(|| "no fingerprint for imported image".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Defect 7: the creation slot is free when the final status goes out.
    #[tokio::test]
    async fn creation_slot_is_free_when_the_final_status_is_sent() {
        let config = crate::config::Config::from_args([
            "tremplin",
            "-lxd_subnet",
            "10.0.0.1/24",
            "--host-address",
            "tcp://127.0.0.1:1",
            "--crash-address",
            "none",
        ])
        .expect("config");
        let listener =
            crate::listener::HostListener::new(&config.host_address, None).expect("listener");
        let daemon = Daemon::new(config, None, listener);
        let guard = daemon.begin_create().expect("first creation");
        assert!(daemon.begin_create().is_none(), "serialized");
        let reporter = async { daemon.begin_create().is_some() };
        assert!(
            release_then_report(|| drop(guard), reporter).await,
            "the creation slot was still taken when the final status went out"
        );
    }

    #[test]
    fn unfinished_needs_created_without_setup() {
        let mut p = BTreeMap::new();
        assert!(!is_unfinished(&p));
        p.insert(CREATED_KEY.to_string(), "true".to_string());
        assert!(is_unfinished(&p));
        p.insert(SETUP_FINISHED_KEY.to_string(), "true".to_string());
        assert!(!is_unfinished(&p));
    }

    #[test]
    fn image_errors_name_the_step() {
        let r = classify_image_error(
            "https://127.0.0.1:1",
            "crostini-test",
            "Failed getting image: Get \"https://127.0.0.1:1/streams/v1/index.json\": dial tcp 127.0.0.1:1: connect: connection refused",
        );
        assert!(
            r.starts_with("failed to connect to simplestreams image server"),
            "{r}"
        );
        let r = classify_image_error(
            "s",
            "nope",
            "Failed getting image: The requested image couldn't be found",
        );
        assert!(r.starts_with("failed to get alias \"nope\""), "{r}");
        let r = classify_image_error("s", "a", "disk full");
        assert!(r.contains("disk full"), "{r}");
    }
}
