//! `crostini-host tremplin ...`: one-shot calls into tremplin. Operations that tremplin finishes
//! asynchronously wait for the final report when `--listen` names the address tremplin reports to.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use crostini_common::Address;
use crostini_proto::vm_tools::tremplin::{self as tp, tremplin_client::TremplinClient};
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::Channel;

use super::output::{enum_name, print};
use crate::clients::{self, with_deadline, DEFAULT_DEADLINE, LONG_DEADLINE};
use crate::events::{Event, Payload};
use crate::server::{HostConfig, RunningHost};

#[derive(Debug, Args)]
pub struct TremplinArgs {
    /// Where tremplin serves (its --listen).
    #[arg(long, env = "CROSTINI_TREMPLIN_ADDRESS")]
    pub address: Address,
    /// Serve TremplinListener here (tremplin's --host-address) to follow progress and wait for
    /// the final report of asynchronous operations.
    #[arg(long, env = "CROSTINI_TREMPLIN_LISTEN")]
    pub listen: Option<Address>,
    /// How long to wait for a final report, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    #[command(subcommand)]
    pub rpc: TremplinRpc,
}

#[derive(Debug, Subcommand)]
pub enum TremplinRpc {
    /// Start (or adopt) LXD.
    StartLxd {
        #[arg(long)]
        reset_db: bool,
    },
    /// Create a container from a simplestreams image (with a progress bar).
    Create {
        #[arg(long, default_value = "penguin")]
        name: String,
        #[arg(long)]
        image_server: String,
        #[arg(long)]
        alias: String,
    },
    /// Start a container, handing it a fresh token (or --token).
    Start {
        #[arg(long, default_value = "penguin")]
        name: String,
        #[arg(long)]
        token: Option<String>,
    },
    /// Stop a container.
    Stop {
        #[arg(long, default_value = "penguin")]
        name: String,
    },
    /// Delete a container.
    Delete {
        #[arg(long, default_value = "penguin")]
        name: String,
    },
    /// Show whether a container runs and its IPv4 address.
    Info {
        #[arg(long, default_value = "penguin")]
        name: String,
    },
    /// Show the container's primary user.
    Username {
        #[arg(long, default_value = "penguin")]
        name: String,
    },
    /// Create the container's primary user (uid 1000).
    SetupUser {
        #[arg(long, default_value = "penguin")]
        name: String,
        #[arg(long)]
        user: String,
    },
    /// Set the timezone of containers.
    Timezone {
        #[arg(long)]
        tz: String,
        #[arg(long, default_value = "")]
        posix: String,
        #[arg(long = "name", default_value = "penguin")]
        names: Vec<String>,
    },
    /// Export a container to a file (path relative to tremplin's shared root).
    Export {
        #[arg(long, default_value = "penguin")]
        name: String,
        #[arg(long)]
        path: String,
    },
    /// Cancel an export.
    CancelExport {
        #[arg(long, default_value = "penguin")]
        name: String,
    },
    /// Import a container from a backup file.
    Import {
        #[arg(long, default_value = "penguin")]
        name: String,
        #[arg(long)]
        path: String,
    },
    /// Cancel an import.
    CancelImport {
        #[arg(long, default_value = "penguin")]
        name: String,
    },
    /// Print tremplin's debug information.
    DebugInfo,
    /// Tell tremplin the host network changed.
    HostNetworkChanged,
}

/// A random token for StartContainer, as cicerone makes one per start.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        tracing::warn!(error = %e, "no /dev/urandom; token from the clock");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Session {
    client: TremplinClient<Channel>,
    host: Option<RunningHost>,
    timeout: Duration,
}

impl Session {
    async fn wait_final(
        &self,
        from: u64,
        matches: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Option<Event>> {
        let Some(host) = &self.host else {
            eprintln!("(no --listen: not waiting for tremplin's final report)");
            return Ok(None);
        };
        let event = host
            .wait_for_from(from, matches, self.timeout)
            .await
            .context("waiting for tremplin's final report")?;
        Ok(Some(event))
    }

    fn seq(&self) -> u64 {
        self.host.as_ref().map_or(0, |h| h.state.events.next_seq())
    }
}

pub async fn run(args: TremplinArgs, json: bool) -> anyhow::Result<()> {
    let host = match &args.listen {
        Some(listen) => Some(
            RunningHost::start(HostConfig {
                tremplin_listener: Some(listen.clone()),
                ..HostConfig::default()
            })
            .await
            .with_context(|| format!("serving TremplinListener on {listen}"))?,
        ),
        None => None,
    };
    let session = Session {
        client: clients::tremplin(&args.address)?,
        host,
        timeout: Duration::from_secs(args.timeout),
    };
    let result = call(&session, args.rpc, json).await;
    if let Some(host) = session.host {
        host.shutdown().await;
    }
    result
}

async fn call(s: &Session, rpc: TremplinRpc, json: bool) -> anyhow::Result<()> {
    let mut client = s.client.clone();
    match rpc {
        TremplinRpc::StartLxd { reset_db } => {
            let from = s.seq();
            let reply = client
                .start_lxd(with_deadline(
                    tp::StartLxdRequest {
                        reset_lxd_db: reset_db,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("StartLxd")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "StartLxd: {} {}",
                    enum_name::<tp::start_lxd_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            use tp::start_lxd_response::Status;
            match reply.status() {
                Status::AlreadyRunning => Ok(()),
                Status::Starting => {
                    let done = s
                        .wait_final(from, |e| matches!(&e.payload, Payload::UpdateStartLxdStatus(p) if p.status() != tp::start_lxd_progress::Status::Starting && p.status() != tp::start_lxd_progress::Status::Recovering))
                        .await?;
                    final_report(json, done, |p| match p {
                        Payload::UpdateStartLxdStatus(p) => Some((
                            p.status() == tp::start_lxd_progress::Status::Started,
                            enum_name::<tp::start_lxd_progress::Status>(p.status),
                            p.failure_reason.clone(),
                        )),
                        _ => None,
                    })
                }
                _ => bail!("StartLxd failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Create {
            name,
            image_server,
            alias,
        } => {
            let from = s.seq();
            let bar =
                (!json && s.host.is_some()).then(|| progress_bar(&format!("downloading {alias}")));
            let feed = s.host.as_ref().map(|h| h.state.events.subscribe());
            let reply = client
                .create_container(with_deadline(
                    tp::CreateContainerRequest {
                        container_name: name.clone(),
                        image_server,
                        image_alias: alias,
                        ..Default::default()
                    },
                    LONG_DEADLINE,
                ))
                .await
                .context("CreateContainer")?
                .into_inner();
            if !json {
                if let Some(bar) = &bar {
                    bar.println(format!(
                        "CreateContainer: {} {}",
                        enum_name::<tp::create_container_response::Status>(reply.status),
                        reply.failure_reason
                    ));
                }
            } else {
                print(json, &reply, String::new);
            }
            use tp::create_container_response::Status;
            match reply.status() {
                Status::Exists => {
                    if let Some(bar) = bar {
                        bar.finish_with_message(format!("{name} already exists"));
                    }
                    Ok(())
                }
                Status::Creating => {
                    let follow = follow_progress(feed, bar.clone(), name.clone());
                    let done = s
                        .wait_final(from, |e| matches!(&e.payload, Payload::UpdateCreateStatus(p) if p.container_name == name && p.status() != tp::container_creation_progress::Status::Downloading))
                        .await;
                    follow.abort();
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    final_report(json, done?, |p| match p {
                        Payload::UpdateCreateStatus(p) => Some((
                            p.status() == tp::container_creation_progress::Status::Created,
                            enum_name::<tp::container_creation_progress::Status>(p.status),
                            p.failure_reason.clone(),
                        )),
                        _ => None,
                    })
                }
                _ => bail!("CreateContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Start { name, token } => {
            let from = s.seq();
            let token = token.unwrap_or_else(new_token);
            let reply = client
                .start_container(with_deadline(
                    tp::StartContainerRequest {
                        container_name: name.clone(),
                        token: token.clone(),
                        ..Default::default()
                    },
                    LONG_DEADLINE,
                ))
                .await
                .context("StartContainer")?
                .into_inner();
            print(json, &reply, || {
                let os = reply
                    .os_release
                    .as_ref()
                    .map(|o| o.pretty_name.clone())
                    .unwrap_or_default();
                format!(
                    "StartContainer: {} {}\ntoken: {token}\nos: {os}",
                    enum_name::<tp::start_container_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            use tp::start_container_response::Status;
            match reply.status() {
                Status::Running | Status::Started => Ok(()),
                Status::Starting | Status::Remapping => {
                    let done = s
                        .wait_final(from, |e| matches!(&e.payload, Payload::UpdateStartStatus(p) if p.container_name == name && p.status() != tp::container_start_progress::Status::Starting))
                        .await?;
                    final_report(json, done, |p| match p {
                        Payload::UpdateStartStatus(p) => Some((
                            p.status() == tp::container_start_progress::Status::Started,
                            enum_name::<tp::container_start_progress::Status>(p.status),
                            p.failure_reason.clone(),
                        )),
                        _ => None,
                    })
                }
                _ => bail!("StartContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Stop { name } => {
            let from = s.seq();
            let reply = client
                .stop_container(with_deadline(
                    tp::StopContainerRequest {
                        container_name: name.clone(),
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("StopContainer")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "StopContainer: {} {}",
                    enum_name::<tp::stop_container_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            use tp::stop_container_response::Status;
            match reply.status() {
                Status::Stopped | Status::DoesNotExist => Ok(()),
                Status::Stopping => {
                    let done = s
                        .wait_final(from, |e| matches!(&e.payload, Payload::UpdateStopStatus(p) if p.container_name == name && p.status() != tp::container_stop_progress::Status::Stopping))
                        .await?;
                    final_report(json, done, |p| match p {
                        Payload::UpdateStopStatus(p) => Some((
                            p.status() == tp::container_stop_progress::Status::Stopped,
                            enum_name::<tp::container_stop_progress::Status>(p.status),
                            p.failure_reason.clone(),
                        )),
                        _ => None,
                    })
                }
                _ => bail!("StopContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Delete { name } => {
            let from = s.seq();
            let reply = client
                .delete_container(with_deadline(
                    tp::DeleteContainerRequest {
                        container_name: name.clone(),
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("DeleteContainer")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "DeleteContainer: {} {}",
                    enum_name::<tp::delete_container_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            use tp::delete_container_response::Status;
            match reply.status() {
                Status::DoesNotExist => Ok(()),
                Status::Deleting => {
                    let done = s
                        .wait_final(from, |e| matches!(&e.payload, Payload::UpdateDeletionStatus(p) if p.container_name == name))
                        .await?;
                    final_report(json, done, |p| match p {
                        Payload::UpdateDeletionStatus(p) => Some((
                            p.status() == tp::container_deletion_progress::Status::Deleted,
                            enum_name::<tp::container_deletion_progress::Status>(p.status),
                            p.failure_reason.clone(),
                        )),
                        _ => None,
                    })
                }
                _ => bail!("DeleteContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Info { name } => {
            let reply = client
                .get_container_info(with_deadline(
                    tp::GetContainerInfoRequest {
                        container_name: name,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("GetContainerInfo")?
                .into_inner();
            let ip = std::net::Ipv4Addr::from(reply.ipv4_address.to_le_bytes());
            print(json, &reply, || {
                format!(
                    "{} ipv4={ip} {}",
                    enum_name::<tp::get_container_info_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            Ok(())
        }
        TremplinRpc::Username { name } => {
            let reply = client
                .get_container_username(with_deadline(
                    tp::GetContainerUsernameRequest {
                        container_name: name,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("GetContainerUsername")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "{} user={} home={} {}",
                    enum_name::<tp::get_container_username_response::Status>(reply.status),
                    reply.username,
                    reply.homedir,
                    reply.failure_reason
                )
            });
            Ok(())
        }
        TremplinRpc::SetupUser { name, user } => {
            let reply = client
                .set_up_user(with_deadline(
                    tp::SetUpUserRequest {
                        container_name: name,
                        container_username: user,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("SetUpUser")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "{} user={} {}",
                    enum_name::<tp::set_up_user_response::Status>(reply.status),
                    reply.username,
                    reply.failure_reason
                )
            });
            if reply.status() == tp::set_up_user_response::Status::Failed {
                bail!("SetUpUser failed: {}", reply.failure_reason);
            }
            Ok(())
        }
        TremplinRpc::Timezone { tz, posix, names } => {
            let reply = client
                .set_timezone(with_deadline(
                    tp::SetTimezoneRequest {
                        timezone_name: tz,
                        posix_tz_string: posix,
                        container_names: names,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("SetTimezone")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "successes={} failures={:?}",
                    reply.successes, reply.failure_reasons
                )
            });
            if !reply.failure_reasons.is_empty() {
                bail!("SetTimezone failed for some containers");
            }
            Ok(())
        }
        TremplinRpc::Export { name, path } => {
            let from = s.seq();
            let reply = client
                .export_container(with_deadline(
                    tp::ExportContainerRequest {
                        container_name: name.clone(),
                        export_path: path,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("ExportContainer")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "ExportContainer: {} {}",
                    enum_name::<tp::export_container_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            if reply.status() != tp::export_container_response::Status::Exporting {
                bail!("ExportContainer failed: {}", reply.failure_reason);
            }
            use tp::container_export_progress::Status;
            let done = s
                .wait_final(from, |e| matches!(&e.payload, Payload::UpdateExportStatus(p) if p.container_name == name && matches!(p.status(), Status::Done | Status::Failed | Status::Cancelled)))
                .await?;
            final_report(json, done, |p| match p {
                Payload::UpdateExportStatus(p) => Some((
                    p.status() == Status::Done,
                    format!(
                        "{} ({} bytes)",
                        enum_name::<Status>(p.status),
                        p.bytes_exported
                    ),
                    p.failure_reason.clone(),
                )),
                _ => None,
            })
        }
        TremplinRpc::Import { name, path } => {
            let from = s.seq();
            let reply = client
                .import_container(with_deadline(
                    tp::ImportContainerRequest {
                        container_name: name.clone(),
                        import_path: path,
                        ..Default::default()
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("ImportContainer")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "ImportContainer: {} {}",
                    enum_name::<tp::import_container_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            if reply.status() != tp::import_container_response::Status::Importing {
                bail!("ImportContainer failed: {}", reply.failure_reason);
            }
            use tp::container_import_progress::Status;
            let done = s
                .wait_final(from, |e| matches!(&e.payload, Payload::UpdateImportStatus(p) if p.container_name == name && !matches!(p.status(), Status::ImportingUpload | Status::ImportingUnpack | Status::Unknown)))
                .await?;
            final_report(json, done, |p| match p {
                Payload::UpdateImportStatus(p) => Some((
                    p.status() == Status::Done,
                    enum_name::<Status>(p.status),
                    p.failure_reason.clone(),
                )),
                _ => None,
            })
        }
        TremplinRpc::CancelExport { name } => {
            let reply = client
                .cancel_export_container(with_deadline(
                    tp::CancelExportContainerRequest {
                        in_progress_container_name: name,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("CancelExportContainer")?
                .into_inner();
            print(json, &reply, || {
                enum_name::<tp::cancel_export_container_response::Status>(reply.status)
            });
            Ok(())
        }
        TremplinRpc::CancelImport { name } => {
            let reply = client
                .cancel_import_container(with_deadline(
                    tp::CancelImportContainerRequest {
                        in_progress_container_name: name,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("CancelImportContainer")?
                .into_inner();
            print(json, &reply, || {
                enum_name::<tp::cancel_import_container_response::Status>(reply.status)
            });
            Ok(())
        }
        TremplinRpc::DebugInfo => {
            let reply = client
                .get_debug_info(with_deadline(tp::GetDebugInfoRequest {}, LONG_DEADLINE))
                .await
                .context("GetDebugInfo")?
                .into_inner();
            print(json, &reply, || reply.debug_information.clone());
            Ok(())
        }
        TremplinRpc::HostNetworkChanged => {
            let reply = client
                .host_network_changed(with_deadline(
                    tp::HostNetworkChangedRequest {},
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("HostNetworkChanged")?
                .into_inner();
            print(json, &reply, || "ok".to_string());
            Ok(())
        }
    }
}

fn progress_bar(message: &str) -> ProgressBar {
    let bar = ProgressBar::new(100);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos:>3}% {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

/// Moves the bar with each DOWNLOADING report for `name`.
fn follow_progress(
    feed: Option<tokio::sync::broadcast::Receiver<Event>>,
    bar: Option<ProgressBar>,
    name: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (Some(mut feed), Some(bar)) = (feed, bar) else {
            return;
        };
        while let Ok(event) = feed.recv().await {
            if let Payload::UpdateCreateStatus(p) = &event.payload {
                if p.container_name == name
                    && p.status() == tp::container_creation_progress::Status::Downloading
                {
                    bar.set_position(u64::try_from(p.download_progress.clamp(0, 100)).unwrap_or(0));
                }
            }
        }
    })
}

/// Prints the final report; an error when it says the operation failed.
fn final_report(
    json: bool,
    event: Option<Event>,
    describe: impl Fn(&Payload) -> Option<(bool, String, String)>,
) -> anyhow::Result<()> {
    let Some(event) = event else { return Ok(()) };
    let Some((ok, status, reason)) = describe(&event.payload) else {
        bail!("unexpected report {}", event.payload.rpc());
    };
    if json {
        println!("{}", event.to_json_line());
    } else {
        println!("{}: {status} {reason}", event.payload.rpc());
    }
    if !ok {
        bail!("{}: {status}: {reason}", event.payload.rpc());
    }
    Ok(())
}
