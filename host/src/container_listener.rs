//! `vm_tools.container.ContainerListener` as cicerone serves it (garcon-host §16): caller
//! validation by peer and token, the shared rate limits, and the statuses cicerone returns.

use std::sync::Arc;

use crostini_common::Peer;
use crostini_proto::vm_tools::container::{
    self as ct, container_listener_server::ContainerListener,
};
use crostini_proto::vm_tools::EmptyMessage;
use tonic::{Request, Response, Status};

use crate::handlers as handler_values;
use crate::registry::{ContainerFacts, ContainerRecord, LOCAL_VM_CID};
use crate::state::{handle, HostState};
use crate::url::UrlContext;

/// The metric names Termina's default container may report (garcon-host §13).
const KNOWN_METRICS: [&str; 4] = [
    "crostini-swap-kb-read",
    "crostini-swap-kb-written",
    "crostini-disk-kb-read",
    "crostini-disk-kb-written",
];
const MAX_METRICS: usize = 32;

/// The caller-independent OpenUrl checks ([`crate::url::check`]). Public for the fuzz target.
#[doc(hidden)]
pub fn url_is_acceptable(url: &str) -> bool {
    crate::url::check(url).is_ok()
}

pub struct ContainerListenerService {
    state: Arc<HostState>,
}

impl ContainerListenerService {
    pub fn new(state: Arc<HostState>) -> Self {
        ContainerListenerService { state }
    }

    fn vm(&self, peer: &Peer) -> Result<u32, Status> {
        self.state
            .registry
            .vm_cid(peer)
            .ok_or_else(|| Status::failed_precondition("Cannot find VM for ContainerListener"))
    }

    /// The checks shared by most rpcs: known VM, non-empty token, active container.
    fn active_container(&self, peer: &Peer, token: &str) -> Result<ContainerRecord, Status> {
        let cid = self.vm(peer)?;
        if token.is_empty() {
            return Err(Status::invalid_argument("`token` cannot be empty"));
        }
        self.state
            .registry
            .active(cid, token)
            .ok_or_else(|| Status::failed_precondition("Could not find container for token"))
    }

    /// OpenUrl and OpenTerminal validate the caller first and only then count it against the
    /// shared budget (a deviation from cicerone, which counts first: there, calls with a wrong
    /// token from any VM use up the real container's budget). Issue 9 defect 11.
    async fn open_url(
        &self,
        peer: &Peer,
        req: &ct::OpenUrlRequest,
    ) -> Result<EmptyMessage, Status> {
        let failure = || Status::failed_precondition("Failure in OpenUrl");
        let container = self
            .active_container(peer, &req.token)
            .map_err(|_| failure())?;
        if !self.state.url_terminal_limiter.allow() {
            return Err(Status::resource_exhausted("OpenUrl rate limit exceeded"));
        }
        let (values, facts) = self.handler_values(peer, &container);
        let desktop = &self.state.desktop;
        let context = UrlContext {
            container_ipv4: facts.ipv4,
            shares: &desktop.shares,
        };
        let url = crate::url::translate(&req.url, &context).map_err(|refusal| {
            tracing::info!(url = %req.url, %refusal, "OpenUrl refused");
            failure()
        })?;
        tracing::info!(from = %req.url, to = %url, "OpenUrl");
        match &desktop.url_handler {
            Some(_) if crate::url::outside_shares(&req.url, &desktop.shares) => {
                tracing::info!(url = %req.url, "OpenUrl: file URL outside every share not opened");
                return Err(failure());
            }
            Some(handler) => {
                let values = handler_values::Values {
                    url: Some(url),
                    ..values
                };
                handler.spawn(&values).await.map_err(|e| {
                    tracing::warn!(error = %e, "url handler");
                    failure()
                })?;
            }
            None if desktop.print => eprintln!("OpenUrl: {url}"),
            None => {}
        }
        Ok(EmptyMessage {})
    }

    async fn open_terminal(
        &self,
        peer: &Peer,
        req: &ct::OpenTerminalRequest,
    ) -> Result<EmptyMessage, Status> {
        let failure = || Status::failed_precondition("Failure in OpenTerminal");
        let container = self
            .active_container(peer, &req.token)
            .map_err(|_| failure())?;
        if !self.state.url_terminal_limiter.allow() {
            return Err(Status::resource_exhausted(
                "OpenTerminal rate limit exceeded",
            ));
        }
        let (values, _) = self.handler_values(peer, &container);
        tracing::info!(container = %container.name, params = ?req.params, "OpenTerminal");
        let desktop = &self.state.desktop;
        match &desktop.terminal_handler {
            Some(handler) => {
                let values = handler_values::Values {
                    params: req.params.clone(),
                    ..values
                };
                handler.spawn(&values).await.map_err(|e| {
                    tracing::warn!(error = %e, "terminal handler");
                    failure()
                })?;
            }
            None if desktop.print => eprintln!(
                "OpenTerminal: container {} params {:?}",
                container.name, req.params
            ),
            None => {}
        }
        Ok(EmptyMessage {})
    }

    /// The placeholders' values for a handler run for `container`, and what is known of it.
    fn handler_values(
        &self,
        peer: &Peer,
        container: &ContainerRecord,
    ) -> (handler_values::Values, ContainerFacts) {
        let registry = &self.state.registry;
        let cid = registry.vm_cid(peer).unwrap_or(LOCAL_VM_CID);
        let facts = registry.facts(cid, &container.name).unwrap_or_default();
        let values = handler_values::Values {
            vm: registry.vm_name(cid).unwrap_or_default(),
            container: container.name.clone(),
            user: facts.username.clone(),
            ipv4: facts.ipv4.map(|ip| ip.to_string()).unwrap_or_default(),
            ..Default::default()
        };
        (values, facts)
    }

    fn metrics(
        &self,
        peer: &Peer,
        req: &ct::ReportMetricsRequest,
    ) -> Result<ct::ReportMetricsResponse, Status> {
        let cid = self.vm(peer)?;
        if req.metric.len() > MAX_METRICS {
            return Err(Status::failed_precondition("Too many metrics"));
        }
        let valid_name = |n: &str| {
            (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        if !req.metric.iter().all(|m| valid_name(&m.name)) {
            return Err(Status::failed_precondition("Invalid metric name"));
        }
        let error = if self.active_container(peer, &req.token).is_err()
            || !self.state.metrics_limiter.allow(cid)
            || !req
                .metric
                .iter()
                .all(|m| KNOWN_METRICS.contains(&m.name.as_str()))
        {
            1
        } else {
            0
        };
        Ok(ct::ReportMetricsResponse { error })
    }
}

fn known_status<E: TryFrom<i32>>(status: i32) -> Result<(), Status> {
    E::try_from(status)
        .map(|_| ())
        .map_err(|_| Status::failed_precondition("Invalid status field in protobuf request"))
}

#[tonic::async_trait]
impl ContainerListener for ContainerListenerService {
    async fn container_ready(
        &self,
        req: Request<ct::ContainerStartupInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, ContainerReady, |peer, msg| {
            crate::ready::container_ready(&self.state, &peer, &msg).await
        })
    }

    async fn container_shutdown(
        &self,
        req: Request<ct::ContainerShutdownInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, ContainerShutdown, |peer, msg| {
            self.active_container(&peer, &msg.token).map(|_| {
                let registry = &self.state.registry;
                if let Some(cid) = registry.vm_cid(&peer) {
                    if let Some(gone) = registry.deactivate(cid, &msg.token) {
                        registry.update_facts(cid, &gone.name, |f| f.state = "shutdown".into());
                    }
                }
                EmptyMessage {}
            })
        })
    }

    async fn update_application_list(
        &self,
        req: Request<ct::UpdateApplicationListRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateApplicationList, |peer, msg| self
            .active_container(&peer, &msg.token)
            .map(|_| EmptyMessage {})
            .map_err(|_| Status::failed_precondition(
                "Failure in UpdateApplicationList"
            )))
    }

    async fn pending_update_application_list_calls(
        &self,
        req: Request<ct::PendingAppListUpdateCount>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, PendingUpdateApplicationListCalls, |peer, msg| {
            self.active_container(&peer, &msg.token)
                .map(|_| EmptyMessage {})
        })
    }

    async fn open_url(
        &self,
        req: Request<ct::OpenUrlRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, OpenUrl, |peer, msg| self
            .open_url(&peer, &msg)
            .await)
    }

    async fn install_linux_package_progress(
        &self,
        req: Request<ct::InstallLinuxPackageProgressInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, InstallLinuxPackageProgress, |peer, msg| {
            known_status::<ct::install_linux_package_progress_info::Status>(msg.status)
                .and_then(|()| self.active_container(&peer, &msg.token))
                .map(|_| EmptyMessage {})
        })
    }

    async fn uninstall_package_progress(
        &self,
        req: Request<ct::UninstallPackageProgressInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UninstallPackageProgress, |peer, msg| {
            known_status::<ct::uninstall_package_progress_info::Status>(msg.status)
                .and_then(|()| self.active_container(&peer, &msg.token))
                .map(|_| EmptyMessage {})
        })
    }

    async fn apply_ansible_playbook_progress(
        &self,
        req: Request<ct::ApplyAnsiblePlaybookProgressInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, ApplyAnsiblePlaybookProgress, |peer, msg| {
            known_status::<ct::apply_ansible_playbook_progress_info::Status>(msg.status)
                .and_then(|()| self.active_container(&peer, &msg.token))
                .map(|_| EmptyMessage {})
        })
    }

    async fn open_terminal(
        &self,
        req: Request<ct::OpenTerminalRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, OpenTerminal, |peer, msg| self
            .open_terminal(&peer, &msg)
            .await)
    }

    async fn update_mime_types(
        &self,
        req: Request<ct::UpdateMimeTypesRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateMimeTypes, |peer, msg| self
            .active_container(&peer, &msg.token)
            .map(|_| EmptyMessage {}))
    }

    async fn file_watch_triggered(
        &self,
        req: Request<ct::FileWatchTriggeredInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, FileWatchTriggered, |peer, msg| self
            .active_container(&peer, &msg.token)
            .map(|_| EmptyMessage {}))
    }

    async fn low_disk_space_triggered(
        &self,
        req: Request<ct::LowDiskSpaceTriggeredInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, LowDiskSpaceTriggered, |peer, msg| self
            .active_container(&peer, &msg.token)
            .map(|_| EmptyMessage {}))
    }

    async fn forward_security_key_message(
        &self,
        req: Request<ct::ForwardSecurityKeyMessageRequest>,
    ) -> Result<Response<ct::ForwardSecurityKeyMessageResponse>, Status> {
        handle!(self, req, ForwardSecurityKeyMessage, |_peer, _msg| Err(
            Status::failed_precondition("VM is not a Bruschetta VM")
        ))
    }

    async fn select_file(
        &self,
        req: Request<ct::SelectFileRequest>,
    ) -> Result<Response<ct::SelectFileResponse>, Status> {
        handle!(self, req, SelectFile, |peer, msg| {
            self.vm(&peer).map(|_| {
                // Every lookup failure still answers OK with an empty list, as cicerone does.
                let files = match self.active_container(&peer, &msg.token) {
                    Ok(_) => self
                        .state
                        .select_file_answer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                    Err(_) => Vec::new(),
                };
                ct::SelectFileResponse { files }
            })
        })
    }

    async fn report_metrics(
        &self,
        req: Request<ct::ReportMetricsRequest>,
    ) -> Result<Response<ct::ReportMetricsResponse>, Status> {
        handle!(self, req, ReportMetrics, |peer, msg| self
            .metrics(&peer, &msg))
    }

    async fn install_shader_cache(
        &self,
        req: Request<ct::InstallShaderCacheRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, InstallShaderCache, |peer, msg| self
            .active_container(&peer, &msg.token)
            .and_then(|_| Err(Status::internal(
                "Shader cache is only for Borealis VMs"
            ))))
    }

    async fn uninstall_shader_cache(
        &self,
        req: Request<ct::UninstallShaderCacheRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UninstallShaderCache, |peer, msg| self
            .active_container(&peer, &msg.token)
            .and_then(|_| Err(Status::internal(
                "Shader cache is only for Borealis VMs"
            ))))
    }

    async fn unmount_shader_cache(
        &self,
        req: Request<ct::UnmountShaderCacheRequest>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UnmountShaderCache, |peer, msg| self
            .active_container(&peer, &msg.token)
            .and_then(|_| Err(Status::internal(
                "Shader cache is only for Borealis VMs"
            ))))
    }

    async fn inhibit_screensaver(
        &self,
        req: Request<ct::InhibitScreensaverInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, InhibitScreensaver, |peer, msg| self
            .active_container(&peer, &msg.token)
            .map(|_| EmptyMessage {}))
    }

    async fn uninhibit_screensaver(
        &self,
        req: Request<ct::UninhibitScreensaverInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UninhibitScreensaver, |peer, msg| self
            .active_container(&peer, &msg.token)
            .map(|_| EmptyMessage {}))
    }
}
