//! `--borealis-shader-cache` switches (garcon-host.md §14; Borealis only, the host rejects it on
//! other VMs).

use crate::cmdline::CommandLine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShaderCacheAction {
    Install { mount: bool, wait: bool },
    Unmount { wait: bool },
    Uninstall,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShaderCacheError {
    #[error("--borealis-shader-cache needs --app-id=<non-zero unsigned number>, got {0:?}")]
    BadAppId(Option<String>),
    #[error("--borealis-shader-cache needs exactly one of --install, --unmount, --uninstall")]
    Action,
}

pub(super) fn parse(line: &CommandLine) -> Result<(u64, ShaderCacheAction), ShaderCacheError> {
    let raw = line.value("app-id");
    let app_id = raw
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|id| *id != 0)
        .ok_or_else(|| ShaderCacheError::BadAppId(raw.map(str::to_string)))?;
    let actions = ["install", "unmount", "uninstall"]
        .iter()
        .filter(|a| line.has(a))
        .count();
    if actions != 1 {
        return Err(ShaderCacheError::Action);
    }
    let action = if line.has("install") {
        ShaderCacheAction::Install {
            mount: line.has("mount"),
            wait: line.has("wait"),
        }
    } else if line.has("unmount") {
        ShaderCacheAction::Unmount {
            wait: line.has("wait"),
        }
    } else {
        ShaderCacheAction::Uninstall
    };
    Ok((app_id, action))
}
