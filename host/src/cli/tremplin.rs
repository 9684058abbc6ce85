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
use super::reports::{about, number, rpc as rpc_name_of, text, Reports};
use crate::clients::{self, with_deadline, DEFAULT_DEADLINE, LONG_DEADLINE};
use crate::server::{HostConfig, RunningHost};
use crate::state_dir::StateDir;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct TremplinArgs {
    /// Where tremplin serves (its --listen).
    #[arg(long, env = "CROSTINI_TREMPLIN_ADDRESS")]
    pub address: Address,
    /// Serve TremplinListener here (tremplin's --host-address) to follow progress and wait for
    /// the final report of asynchronous operations. A unix socket gets mode 0600; tcp is for
    /// tests and development only.
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

/// Follows the reports about `name` from `rpc_name` until one whose status `is_final` says so,
/// calling `on_progress` for the others.
async fn follow(
    reports: &mut Reports,
    rpc_name: &str,
    name: &str,
    timeout: Duration,
    is_final: impl Fn(i32) -> bool,
    mut on_progress: impl FnMut(&Value),
) -> anyhow::Result<Option<Value>> {
    if !reports.is_available() {
        eprintln!("(no --listen or --state-dir: not waiting for tremplin's final report)");
        return Ok(None);
    }
    loop {
        let Some(record) = reports
            .next(|r| about(r, rpc_name, name), timeout)
            .await
            .with_context(|| format!("waiting for {rpc_name} about {name}"))?
        else {
            return Ok(None);
        };
        let status = i32::try_from(number(&record, "status")).unwrap_or(-1);
        if is_final(status) {
            return Ok(Some(record));
        }
        on_progress(&record);
    }
}

/// Prints the final report; an error when its status is not `success`.
fn final_report<E: TryFrom<i32> + std::fmt::Debug>(
    json: bool,
    record: Option<Value>,
    success: i32,
) -> anyhow::Result<()> {
    let Some(record) = record else { return Ok(()) };
    let status = i32::try_from(number(&record, "status")).unwrap_or(-1);
    let reason = text(&record, "failure_reason");
    let name = enum_name::<E>(status);
    if json {
        println!("{record}");
    } else {
        println!("{}: {name} {reason}", rpc_name_of(&record));
    }
    if status != success {
        bail!("{}: {name}: {reason}", rpc_name_of(&record));
    }
    Ok(())
}

pub async fn run(
    args: TremplinArgs,
    state_dir: Option<&StateDir>,
    json: bool,
) -> anyhow::Result<()> {
    let mut reports = match (&args.listen, state_dir) {
        (Some(listen), _) => Reports::Listener {
            host: RunningHost::start(HostConfig {
                tremplin_listener: Some(listen.clone()),
                ..HostConfig::default()
            })
            .await
            .with_context(|| format!("serving TremplinListener on {listen}"))?,
            next_seq: 0,
        },
        (None, Some(dir)) => Reports::StateDir(dir.follow()),
        (None, None) => Reports::Unavailable,
    };
    if let Some(dir) = state_dir {
        // `serve` asks this tremplin whether a container runs when its garcon reports.
        dir.set_tremplin_address(&args.address)?;
    }
    let client = clients::tremplin(&args.address)?;
    let result = call(
        client,
        &mut reports,
        state_dir,
        Duration::from_secs(args.timeout),
        args.rpc,
        json,
    )
    .await;
    reports.close().await;
    result
}

async fn call(
    mut client: TremplinClient<Channel>,
    reports: &mut Reports,
    state_dir: Option<&StateDir>,
    timeout: Duration,
    rpc: TremplinRpc,
    json: bool,
) -> anyhow::Result<()> {
    match rpc {
        TremplinRpc::StartLxd { reset_db } => {
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
            use tp::start_lxd_progress::Status as P;
            use tp::start_lxd_response::Status;
            match reply.status() {
                Status::AlreadyRunning => Ok(()),
                Status::Starting => {
                    // StartLxd reports carry no container name.
                    let done = if reports.is_available() {
                        reports
                            .next(
                                |r| {
                                    rpc_name_of(r) == "UpdateStartLxdStatus"
                                        && ![P::Starting as i64, P::Recovering as i64]
                                            .contains(&number(r, "status"))
                                },
                                timeout,
                            )
                            .await
                            .context("waiting for UpdateStartLxdStatus")?
                    } else {
                        None
                    };
                    final_report::<P>(json, done, P::Started as i32)
                }
                _ => bail!("StartLxd failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Create {
            name,
            image_server,
            alias,
        } => {
            let bar = (!json && reports.is_available())
                .then(|| progress_bar(&format!("downloading {alias}")));
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
            let line = format!(
                "CreateContainer: {} {}",
                enum_name::<tp::create_container_response::Status>(reply.status),
                reply.failure_reason
            );
            match &bar {
                Some(bar) => bar.println(line),
                None => print(json, &reply, || line),
            }
            use tp::container_creation_progress::Status as P;
            use tp::create_container_response::Status;
            match reply.status() {
                Status::Exists => {
                    if let Some(bar) = bar {
                        bar.finish_with_message(format!("{name} already exists"));
                    }
                    Ok(())
                }
                Status::Creating => {
                    let done = follow(
                        reports,
                        "UpdateCreateStatus",
                        &name,
                        timeout,
                        |s| s != P::Downloading as i32,
                        |r| {
                            if let Some(bar) = &bar {
                                bar.set_position(
                                    u64::try_from(number(r, "download_progress").clamp(0, 100))
                                        .unwrap_or(0),
                                );
                            }
                        },
                    )
                    .await;
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    final_report::<P>(json, done?, P::Created as i32)
                }
                _ => bail!("CreateContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Start { name, token } => {
            let token = token.unwrap_or_else(new_token);
            if let Some(dir) = state_dir {
                dir.add_token(&token, &name)?;
            }
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
            use tp::container_start_progress::Status as P;
            use tp::start_container_response::Status;
            match reply.status() {
                Status::Running | Status::Started => Ok(()),
                Status::Starting | Status::Remapping => {
                    let done = follow(
                        reports,
                        "UpdateStartStatus",
                        &name,
                        timeout,
                        |s| s != P::Starting as i32,
                        |_| {},
                    )
                    .await?;
                    final_report::<P>(json, done, P::Started as i32)
                }
                _ => bail!("StartContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Stop { name } => {
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
            use tp::container_stop_progress::Status as P;
            use tp::stop_container_response::Status;
            match reply.status() {
                Status::Stopped | Status::DoesNotExist => Ok(()),
                Status::Stopping => {
                    let done = follow(
                        reports,
                        "UpdateStopStatus",
                        &name,
                        timeout,
                        |s| s != P::Stopping as i32,
                        |_| {},
                    )
                    .await?;
                    final_report::<P>(json, done, P::Stopped as i32)
                }
                _ => bail!("StopContainer failed: {}", reply.failure_reason),
            }
        }
        TremplinRpc::Delete { name } => {
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
            use tp::container_deletion_progress::Status as P;
            use tp::delete_container_response::Status;
            match reply.status() {
                Status::DoesNotExist => Ok(()),
                Status::Deleting => {
                    let done = follow(
                        reports,
                        "UpdateDeletionStatus",
                        &name,
                        timeout,
                        |_| true,
                        |_| {},
                    )
                    .await?;
                    final_report::<P>(json, done, P::Deleted as i32)
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
            use tp::container_export_progress::Status as P;
            let finished = [P::Done as i32, P::Failed as i32, P::Cancelled as i32];
            let bar = (!json && reports.is_available()).then(|| progress_bar("exporting"));
            let done = follow(
                reports,
                "UpdateExportStatus",
                &name,
                timeout,
                |s| finished.contains(&s),
                |r| {
                    if let Some(bar) = &bar {
                        let total = number(r, "total_input_bytes").max(1);
                        let streamed = number(r, "input_bytes_streamed");
                        bar.set_position(
                            u64::try_from(streamed * 100 / total).unwrap_or(0).min(100),
                        );
                    }
                },
            )
            .await;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            final_report::<P>(json, done?, P::Done as i32)
        }
        TremplinRpc::Import { name, path } => {
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
            use tp::container_import_progress::Status as P;
            let in_progress = [
                P::ImportingUpload as i32,
                P::ImportingUnpack as i32,
                P::Unknown as i32,
            ];
            let bar = (!json && reports.is_available()).then(|| progress_bar("importing"));
            let done = follow(
                reports,
                "UpdateImportStatus",
                &name,
                timeout,
                |s| !in_progress.contains(&s),
                |r| {
                    if let Some(bar) = &bar {
                        bar.set_position(
                            u64::try_from(number(r, "progress_percent").clamp(0, 100)).unwrap_or(0),
                        );
                    }
                },
            )
            .await;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            final_report::<P>(json, done?, P::Done as i32)
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
