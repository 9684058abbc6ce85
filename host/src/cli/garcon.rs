//! `crostini-host garcon ...`: one-shot calls into garcon.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use crostini_common::Address;
use crostini_proto::vm_tools::container as ct;

use super::output::print;
use crate::clients::{self, with_deadline, DEFAULT_DEADLINE};

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
}

pub async fn run(args: GarconArgs, json: bool) -> anyhow::Result<()> {
    let mut client = clients::garcon(&args.address)?;
    match args.rpc {
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
