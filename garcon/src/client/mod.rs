//! One-shot client modes (garcon-host.md §6, §7, §8.1, §13, §14, §15).
//!
//! [`ClientCommand::from_command_line`] picks the mode from the switches in upstream's priority
//! (`url` → `terminal` → `selectfile` → `metrics` → `borealis-shader-cache`) and validates its
//! arguments without any I/O towards the host; [`run`] performs the rpc(s) and returns the
//! process exit code. Client mode never checks the uid and never touches D-Bus.

use std::io::Write;
use std::path::Path;

use crostini_proto::vm_tools::container::{Metric, ReportMetricsRequest, SelectFileRequest};

use crate::cmdline::CommandLine;
use crate::host::HostClient;

mod metrics;
mod shader_cache;
mod url;

pub use metrics::{parse_metrics, MetricsError};
pub use shader_cache::{ShaderCacheAction, ShaderCacheError};
pub use url::url_for_argument;

/// Process exit codes of garcon (upstream returns -1, i.e. 255, for every error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Only `--metrics` uses it: the ReportMetrics rpc itself failed (callers may retry).
    RpcFailed,
    Failure,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::RpcFailed => 1,
            Exit::Failure => 255,
        }
    }
}

/// What a client invocation asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// One OpenUrl per URL, in order; arguments already rewritten by [`url_for_argument`].
    OpenUrl(Vec<String>),
    /// OpenTerminal with these params (may be empty).
    Terminal(Vec<String>),
    SelectFile(SelectFileRequest),
    /// ReportMetrics with these metrics, in order.
    Metrics(Vec<(String, u64)>),
    ShaderCache {
        app_id: u64,
        action: ShaderCacheAction,
    },
}

/// A client invocation that is rejected before any rpc (exit 255).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("Missing URL arguments (usage: garcon --client --url URL...)")]
    MissingUrl,
    #[error(
        "Missing client switch: one of --url, --terminal, --selectfile, --metrics, \
         --borealis-shader-cache is required with --client"
    )]
    MissingClientSwitch,
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    ShaderCache(#[from] ShaderCacheError),
}

impl ClientCommand {
    /// Chooses and validates the client mode. `cwd` resolves relative paths given to `--url`.
    pub fn from_command_line(line: &CommandLine, cwd: &Path) -> Result<Self, UsageError> {
        if line.has("url") {
            // `--url=X` sets a switch value and leaves no positional URL: upstream ignores the
            // value, and so do we.
            if line.args().is_empty() {
                return Err(UsageError::MissingUrl);
            }
            let urls = line
                .args()
                .iter()
                .map(|arg| url_for_argument(arg, cwd))
                .collect();
            return Ok(ClientCommand::OpenUrl(urls));
        }
        if line.has("terminal") {
            return Ok(ClientCommand::Terminal(line.args().to_vec()));
        }
        if line.has("selectfile") {
            let value = |name: &str| line.value(name).unwrap_or_default().to_string();
            return Ok(ClientCommand::SelectFile(SelectFileRequest {
                token: String::new(),
                r#type: value("type"),
                title: value("title"),
                default_path: value("path"),
                allowed_extensions: value("extensions"),
            }));
        }
        if line.has("metrics") {
            let first = line.args().first().ok_or(MetricsError::MissingArgument)?;
            return Ok(ClientCommand::Metrics(parse_metrics(first)?));
        }
        if line.has("borealis-shader-cache") {
            let (app_id, action) = shader_cache::parse(line)?;
            return Ok(ClientCommand::ShaderCache { app_id, action });
        }
        Err(UsageError::MissingClientSwitch)
    }
}

/// Performs the command against the host. `out` receives SelectFile's result lines.
pub async fn run(command: ClientCommand, host: &HostClient, out: &mut dyn Write) -> Exit {
    match command {
        ClientCommand::OpenUrl(urls) => {
            for url in urls {
                if let Err(status) = host.open_url(url.clone()).await {
                    tracing::error!(
                        url = %url,
                        code = ?status.code(),
                        "OpenUrl failed: {}",
                        status.message()
                    );
                    return Exit::Failure;
                }
            }
            Exit::Success
        }
        ClientCommand::Terminal(params) => match host.open_terminal(params).await {
            Ok(()) => Exit::Success,
            Err(status) => {
                tracing::error!(code = ?status.code(), "OpenTerminal failed: {}", status.message());
                Exit::Failure
            }
        },
        ClientCommand::SelectFile(request) => match host.select_file(request).await {
            Ok(response) => {
                for file in &response.files {
                    if let Err(error) = writeln!(out, "{file}") {
                        tracing::error!(%error, "cannot write the selected files to stdout");
                        return Exit::Failure;
                    }
                }
                if let Err(error) = out.flush() {
                    tracing::error!(%error, "cannot write the selected files to stdout");
                    return Exit::Failure;
                }
                Exit::Success
            }
            Err(status) => {
                tracing::error!(code = ?status.code(), "SelectFile failed: {}", status.message());
                Exit::Failure
            }
        },
        ClientCommand::Metrics(metrics) => {
            let request = ReportMetricsRequest {
                token: String::new(),
                metric: metrics
                    .into_iter()
                    // The proto field is int64; values above i64::MAX wrap as upstream's cast.
                    .map(|(name, value)| Metric {
                        name,
                        value: value as i64,
                    })
                    .collect(),
            };
            match host.report_metrics(request).await {
                Ok(response) if response.error == 0 => Exit::Success,
                Ok(response) => {
                    tracing::error!(error = response.error, "the host refused the metrics");
                    Exit::Failure
                }
                Err(status) => {
                    tracing::error!(
                        code = ?status.code(),
                        "ReportMetrics failed: {}",
                        status.message()
                    );
                    Exit::RpcFailed
                }
            }
        }
        ClientCommand::ShaderCache { app_id, action } => {
            let result = match action {
                ShaderCacheAction::Install { mount, wait } => {
                    host.install_shader_cache(app_id, mount, wait).await
                }
                ShaderCacheAction::Unmount { wait } => {
                    host.unmount_shader_cache(app_id, wait).await
                }
                ShaderCacheAction::Uninstall => host.uninstall_shader_cache(app_id).await,
            };
            match result {
                Ok(()) => Exit::Success,
                Err(status) => {
                    tracing::error!(
                        code = ?status.code(),
                        "shader cache request failed: {}",
                        status.message()
                    );
                    Exit::Failure
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
