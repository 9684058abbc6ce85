//! `crostini-host garcon ...`: one-shot calls into garcon.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use crostini_common::Address;
use crostini_proto::vm_tools::container as ct;

use std::time::Duration;

use serde_json::Value;

use super::output::{enum_name, print};
use super::reports::{number, rpc, text};
use crate::clients::{self, with_deadline, DEFAULT_DEADLINE};
use crate::state_dir::{EventFollower, StateDir};

#[derive(Debug, Args)]
pub struct GarconArgs {
    /// Where garcon serves (its --listen).
    #[arg(long, env = "CROSTINI_GARCON_ADDRESS")]
    pub address: Address,
    #[command(subcommand)]
    pub rpc: GarconRpc,
}

#[derive(Debug, Subcommand)]
pub enum GarconRpc {
    /// Print garcon's debug information.
    DebugInfo,
    /// Print garcon's session information.
    SessionInfo,
    /// Fetch the icon of a desktop file id and write it to a file.
    Icon {
        desktop_file_id: String,
        #[arg(long, default_value_t = 48)]
        size: i32,
        #[arg(long, default_value_t = 1)]
        scale: i32,
        /// Output file (PNG, or SVG when garcon sends SVG).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Launch an application by desktop file id.
    Launch {
        desktop_file_id: String,
        /// Files (container paths) to open with it.
        files: Vec<String>,
    },
    /// Show the container's applications, as garcon last reported them (needs --state-dir).
    Apps {
        #[arg(long, default_value = "penguin")]
        container: String,
    },
    /// Show the container's extension → MIME type table, as garcon last reported it (needs --state-dir).
    MimeTypes {
        #[arg(long, default_value = "penguin")]
        container: String,
    },
    /// Show what a .deb file (a container path) would install.
    PackageInfo { file: String },
    /// Install a .deb file (a container path) and follow its progress (with --state-dir).
    Install {
        file: String,
        #[arg(long, default_value = "penguin")]
        container: String,
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Uninstall the package owning a desktop file id and follow its progress (with --state-dir).
    Uninstall {
        desktop_file_id: String,
        #[arg(long, default_value = "penguin")]
        container: String,
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Watch a directory (relative to the container user's home) and print each change garcon
    /// reports (needs --state-dir).
    Watch {
        path: String,
        #[arg(long, default_value = "penguin")]
        container: String,
        /// Stop after this many changes (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u32,
    },
}

pub async fn run(args: GarconArgs, state_dir: Option<&StateDir>, json: bool) -> anyhow::Result<()> {
    let mut client = clients::garcon(&args.address)?;
    match args.rpc {
        GarconRpc::Apps { container } => {
            let list = recorded(
                state_dir,
                "the app list",
                &container,
                StateDir::app_list_path,
            )?;
            if json {
                println!("{list}");
            } else {
                print_app_table(&list);
            }
        }
        GarconRpc::MimeTypes { container } => {
            let table = recorded(
                state_dir,
                "MIME types",
                &container,
                StateDir::mime_types_path,
            )?;
            if json {
                println!("{table}");
            } else if let Some(map) = table["mime_type_mappings"].as_object() {
                let mut rows: Vec<_> = map.iter().collect();
                rows.sort_by(|a, b| a.0.cmp(b.0));
                for (ext, mime) in rows {
                    println!("{ext:<12} {}", mime.as_str().unwrap_or_default());
                }
            }
        }
        GarconRpc::PackageInfo { file } => {
            let reply = client
                .get_linux_package_info(with_deadline(
                    ct::LinuxPackageInfoRequest {
                        file_path: file.clone(),
                        ..Default::default()
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("GetLinuxPackageInfo")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "package: {}\nsummary: {}\nlicense: {}\nurl: {}\nsize: {}\n\n{}",
                    reply.package_id,
                    reply.summary,
                    reply.license,
                    reply.project_url,
                    reply.size,
                    reply.description
                )
            });
            if !reply.success {
                bail!("GetLinuxPackageInfo {file}: {}", reply.failure_reason);
            }
        }
        GarconRpc::Install {
            file,
            container,
            timeout,
        } => {
            let mut follower = state_dir.map(StateDir::follow);
            let reply = client
                .install_linux_package(with_deadline(
                    ct::InstallLinuxPackageRequest {
                        file_path: file.clone(),
                        ..Default::default()
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("InstallLinuxPackage")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "InstallLinuxPackage: {} {}",
                    enum_name::<ct::install_linux_package_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            if reply.status() != ct::install_linux_package_response::Status::Started {
                bail!("InstallLinuxPackage {file}: {}", reply.failure_reason);
            }
            use ct::install_linux_package_progress_info::Status as P;
            follow_package_progress::<P>(
                follower.as_mut(),
                "InstallLinuxPackageProgress",
                &container,
                [P::Succeeded as i32, P::Failed as i32],
                P::Succeeded as i32,
                Duration::from_secs(timeout),
                json,
            )
            .await?;
        }
        GarconRpc::Uninstall {
            desktop_file_id,
            container,
            timeout,
        } => {
            let mut follower = state_dir.map(StateDir::follow);
            let reply = client
                .uninstall_package_owning_file(with_deadline(
                    ct::UninstallPackageOwningFileRequest {
                        desktop_file_id: desktop_file_id.clone(),
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("UninstallPackageOwningFile")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "UninstallPackageOwningFile: {} {}",
                    enum_name::<ct::uninstall_package_owning_file_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            if reply.status() != ct::uninstall_package_owning_file_response::Status::Started {
                bail!(
                    "UninstallPackageOwningFile {desktop_file_id}: {}",
                    reply.failure_reason
                );
            }
            use ct::uninstall_package_progress_info::Status as P;
            follow_package_progress::<P>(
                follower.as_mut(),
                "UninstallPackageProgress",
                &container,
                [P::Succeeded as i32, P::Failed as i32],
                P::Succeeded as i32,
                Duration::from_secs(timeout),
                json,
            )
            .await?;
        }
        GarconRpc::Watch {
            path,
            container,
            count,
        } => {
            let dir = state_dir.context(
                "changes are recorded by `serve --state-dir`: pass the same --state-dir",
            )?;
            let mut follower = dir.follow();
            let reply = client
                .add_file_watch(with_deadline(
                    ct::AddFileWatchRequest { path: path.clone() },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("AddFileWatch")?
                .into_inner();
            print(json, &reply, || {
                format!(
                    "AddFileWatch {path}: {} {}",
                    enum_name::<ct::add_file_watch_response::Status>(reply.status),
                    reply.failure_reason
                )
            });
            if reply.status() != ct::add_file_watch_response::Status::Succeeded {
                bail!("AddFileWatch {path}: {}", reply.failure_reason);
            }
            let mut seen = 0;
            while count == 0 || seen < count {
                let Ok(record) = follower
                    .next_matching(
                        |r| {
                            rpc(r) == "FileWatchTriggered"
                                && r["container"].as_str() == Some(container.as_str())
                        },
                        Duration::from_secs(3600),
                    )
                    .await
                else {
                    continue;
                };
                seen += 1;
                if json {
                    println!("{record}");
                } else {
                    println!("changed: {}", text(&record, "path"));
                }
            }
        }
        GarconRpc::DebugInfo => {
            let reply = client
                .get_debug_information(with_deadline(
                    ct::GetDebugInformationRequest {},
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("GetDebugInformation")?
                .into_inner();
            print(json, &reply, || reply.debug_information.clone());
        }
        GarconRpc::SessionInfo => {
            let reply = client
                .get_garcon_session_info(with_deadline(
                    ct::GetGarconSessionInfoRequest {},
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("GetGarconSessionInfo")?
                .into_inner();
            print(json, &reply, || format!("{reply:#?}"));
        }
        GarconRpc::Icon {
            desktop_file_id,
            size,
            scale,
            output,
        } => {
            let reply = client
                .get_icon(with_deadline(
                    ct::IconRequest {
                        desktop_file_ids: vec![desktop_file_id.clone()],
                        icon_size: size,
                        scale,
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("GetIcon")?
                .into_inner();
            let Some(icon) = reply
                .desktop_icons
                .into_iter()
                .find(|i| i.desktop_file_id == desktop_file_id && !i.icon.is_empty())
            else {
                bail!("garcon has no icon for {desktop_file_id:?}");
            };
            write_atomically(&output, &icon.icon)?;
            let format = if icon.format == ct::desktop_icon::Format::Svg as i32 {
                "svg"
            } else {
                "png"
            };
            print(
                json,
                &serde_json::json!({"desktop_file_id": desktop_file_id, "format": format, "bytes": icon.icon.len(), "path": output}),
                || {
                    format!(
                        "{} bytes of {format} written to {}",
                        icon.icon.len(),
                        output.display()
                    )
                },
            );
        }
        GarconRpc::Launch {
            desktop_file_id,
            files,
        } => {
            let reply = client
                .launch_application(with_deadline(
                    ct::LaunchApplicationRequest {
                        desktop_file_id,
                        files,
                        ..Default::default()
                    },
                    DEFAULT_DEADLINE,
                ))
                .await
                .context("LaunchApplication")?
                .into_inner();
            print(json, &reply, || {
                if reply.success {
                    "launched".to_string()
                } else {
                    format!("failed: {}", reply.failure_reason)
                }
            });
            if !reply.success {
                bail!("LaunchApplication failed: {}", reply.failure_reason);
            }
        }
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a failure leaves no partial file.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The latest snapshot of `what` that `serve --state-dir` recorded for `container`.
fn recorded(
    state_dir: Option<&StateDir>,
    what: &str,
    container: &str,
    path_of: fn(&StateDir, &str) -> std::path::PathBuf,
) -> anyhow::Result<Value> {
    let dir = state_dir.with_context(|| {
        format!("{what} is recorded by `serve --state-dir`: pass the same --state-dir")
    })?;
    let path = path_of(dir, container);
    dir.read_json(&path)?.with_context(|| {
        format!(
            "no {what} recorded for {container:?} yet ({})",
            path.display()
        )
    })
}

/// Prints the applications of an UpdateApplicationList record as a table.
fn print_app_table(list: &Value) {
    let apps = list["application"].as_array().cloned().unwrap_or_default();
    let unlocalized = |field: &Value| -> String {
        field["values"]
            .as_array()
            .and_then(|values| values.iter().find(|v| v["locale"].as_str() == Some("")))
            .and_then(|v| v["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    println!(
        "{:<40} {:<30} {:<8} PACKAGE",
        "DESKTOP FILE ID", "NAME", "HIDDEN"
    );
    for app in &apps {
        println!(
            "{:<40} {:<30} {:<8} {}",
            app["desktop_file_id"].as_str().unwrap_or_default(),
            unlocalized(&app["name"]),
            if app["no_display"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                ""
            },
            app["package_id"].as_str().unwrap_or_default()
        );
    }
    println!("({} applications)", apps.len());
}

/// Follows package progress records for `container` until a final status; an error unless it
/// is `success`.
async fn follow_package_progress<E: TryFrom<i32> + std::fmt::Debug>(
    follower: Option<&mut EventFollower>,
    rpc_name: &str,
    container: &str,
    finished: [i32; 2],
    success: i32,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let Some(follower) = follower else {
        eprintln!("(no --state-dir: not following progress)");
        return Ok(());
    };
    let bar = (!json).then(|| {
        let bar = indicatif::ProgressBar::new(100);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:<12} [{bar:40}] {pos:>3}%")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    loop {
        let record = follower
            .next_matching(
                |r| rpc(r) == rpc_name && r["container"].as_str() == Some(container),
                timeout,
            )
            .await
            .with_context(|| format!("waiting for {rpc_name}"))?;
        let status = i32::try_from(number(&record, "status")).unwrap_or(-1);
        let name = enum_name::<E>(status);
        if finished.contains(&status) {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let details = text(&record, "failure_details");
            if json {
                println!("{record}");
            } else if status == success {
                // garcon puts "Exit Code: 1" in the details of a success too (the spec's
                // wire behaviour); it only confuses a person.
                println!("{rpc_name}: {name}");
            } else {
                println!("{rpc_name}: {name} {details}");
            }
            if status != success {
                bail!("{rpc_name}: {name}: {details}");
            }
            return Ok(());
        }
        if json {
            println!("{record}");
        } else if let Some(bar) = &bar {
            bar.set_message(name.to_lowercase());
            bar.set_position(
                u64::try_from(number(&record, "progress_percent").clamp(0, 100)).unwrap_or(0),
            );
        }
    }
}
