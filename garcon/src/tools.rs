//! LaunchVshd and ConnectChunnel (garcon-service.md §5.3, §5.9): validate, build argv, spawn
//! detached with stdio on `/dev/null` (the shared spawn of §5.1.5, [`crate::launch`]).

use std::ffi::OsString;
use std::path::Path;

use crate::launch::{
    container_feature_overlay, spawn_detached, ContainerFeature, Environment, SpawnOptions,
};

/// The host's vsock CID, where chunneld listens.
pub const HOST_CID: u32 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    /// gRPC INVALID_ARGUMENT with this text.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// In-band failure (`success=false`) with this text.
    #[error("{0}")]
    SpawnFailed(&'static str),
}

/// argv of vshd for `port`.
pub fn vshd_argv(vshd: &Path, port: u32) -> Vec<String> {
    vec![
        vshd.to_string_lossy().into_owned(),
        "--inherit_env".to_string(),
        format!("--forward_to_host_port={port}"),
    ]
}

/// argv of chunnel connecting chunneld's `chunneld_port` on the host to local `target_port`.
pub fn chunnel_argv(chunnel: &Path, chunneld_port: u32, target_port: u32) -> Vec<String> {
    vec![
        chunnel.to_string_lossy().into_owned(),
        "--remote".to_string(),
        format!("vsock:{HOST_CID}:{chunneld_port}"),
        "--local".to_string(),
        format!("localhost:{target_port}"),
    ]
}

/// LaunchVshd: port 0 is invalid; the overlay carries only the container-feature variables.
/// Blocking (fork/exec).
pub fn launch_vshd(
    vshd: &Path,
    port: u32,
    features: &[i32],
    env: &Environment,
) -> Result<u32, ToolError> {
    if port == 0 {
        return Err(ToolError::InvalidArgument("vshd port cannot be 0"));
    }
    let features: Vec<ContainerFeature> = features
        .iter()
        .copied()
        .map(ContainerFeature::from_wire)
        .collect();
    let overlay: Vec<(OsString, OsString)> = container_feature_overlay(&features, env);
    let argv = vshd_argv(vshd, port);
    spawn_detached(SpawnOptions {
        argv: &argv,
        overlay: &overlay,
        ..Default::default()
    })
    .map_err(|error| {
        tracing::error!("cannot start {}: {error}", vshd.display());
        ToolError::SpawnFailed("Failed to spawn vshd")
    })
}

/// ConnectChunnel: both ports must be non-zero (no upper bound check). Blocking (fork/exec).
pub fn connect_chunnel(
    chunnel: &Path,
    chunneld_port: u32,
    target_port: u32,
) -> Result<u32, ToolError> {
    if chunneld_port == 0 {
        return Err(ToolError::InvalidArgument("invalid chunneld port"));
    }
    if target_port == 0 {
        return Err(ToolError::InvalidArgument("invalid target TCP4 port"));
    }
    let argv = chunnel_argv(chunnel, chunneld_port, target_port);
    spawn_detached(SpawnOptions {
        argv: &argv,
        ..Default::default()
    })
    .map_err(|error| {
        tracing::error!("cannot start {}: {error}", chunnel.display());
        ToolError::SpawnFailed("Failed to spawn chunnel")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn vshd_argv_is_exact() {
        assert_eq!(
            vshd_argv(Path::new("/opt/google/cros-containers/bin/vshd"), 4242),
            [
                "/opt/google/cros-containers/bin/vshd",
                "--inherit_env",
                "--forward_to_host_port=4242"
            ]
        );
    }

    #[test]
    fn chunnel_argv_is_exact() {
        assert_eq!(
            chunnel_argv(
                Path::new("/opt/google/cros-containers/bin/chunnel"),
                7,
                8080
            ),
            [
                "/opt/google/cros-containers/bin/chunnel",
                "--remote",
                "vsock:2:7",
                "--local",
                "localhost:8080"
            ]
        );
    }

    #[test]
    fn zero_ports_are_invalid_arguments() {
        let env = Environment::new();
        assert_eq!(
            launch_vshd(Path::new("/bin/true"), 0, &[], &env),
            Err(ToolError::InvalidArgument("vshd port cannot be 0"))
        );
        assert_eq!(
            connect_chunnel(Path::new("/bin/true"), 0, 1),
            Err(ToolError::InvalidArgument("invalid chunneld port"))
        );
        assert_eq!(
            connect_chunnel(Path::new("/bin/true"), 1, 0),
            Err(ToolError::InvalidArgument("invalid target TCP4 port"))
        );
    }

    #[test]
    fn missing_binaries_are_spawn_failures() {
        let missing = PathBuf::from("/nonexistent/vshd");
        assert_eq!(
            launch_vshd(&missing, 5, &[1, 99], &Environment::new()),
            Err(ToolError::SpawnFailed("Failed to spawn vshd"))
        );
        assert_eq!(
            connect_chunnel(Path::new("/nonexistent/chunnel"), 5, 70000),
            Err(ToolError::SpawnFailed("Failed to spawn chunnel"))
        );
    }

    /// A stand-in vshd records its argv and environment; the IME variable comes from the
    /// container feature, unknown features are ignored.
    #[test]
    fn vshd_runs_with_feature_overlay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = dir.path().join("vshd");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" > {out}.tmp\necho \"GTK=$GTK_IM_MODULE\" >> {out}.tmp\nmv {out}.tmp {out}\n",
                out = out.display()
            ),
        )
        .expect("write script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        launch_vshd(&script, 9000, &[1, 42], &Environment::new()).expect("spawned");
        for _ in 0..200 {
            if out.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&out).expect("stand-in ran");
        assert_eq!(
            text,
            "--inherit_env --forward_to_host_port=9000\nGTK=cros\n"
        );
    }
}
