//! StartLxd (§5): adopt a running LXD or launch and supervise one, then the initial setup
//! (server config, storage pool, network, profile) and the background watchers.
//!
//! Adoption: when `GET /internal/ready` answers on the socket at StartLxd time, that LXD is
//! used as is — never killed, signalled, restarted or DB-reset. Otherwise (Termina) stale
//! Termina LXD processes are stopped and tremplin launches `--lxd-binary --lxd-args` itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crostini_lxd::types::{
    NetworkPut, NetworksPost, ProfilePut, ProfilesPost, RecoverImport, ServerPut, StoragePoolsPost,
};
use crostini_lxd::Client;
use crostini_proto::vm_tools::tremplin as pb;
use nix::sys::signal::Signal;

use crate::daemon::Daemon;
use crate::devices::{is_vm_device, scan_char_devices};
use crate::profile::{
    network_config, profile_config, profile_devices, raw_idmap, usable_identity_ids, NETWORK, POOL,
};
use crate::supervisor::{stop_stale_termina_lxd, Supervisor, READY_TIMEOUT};

/// How long the "is the adopted/known LXD still alive" probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest run of `lxd import --force penguin` (DB recovery on LXD ≤ 4.0.8); killed after.
const LXD_IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default container name (§1.1).
pub const DEFAULT_CONTAINER: &str = "penguin";

/// How tremplin came to use the LXD it talks to.
#[derive(Debug, Clone)]
pub enum Ownership {
    /// Was already answering on the socket: never signalled.
    Adopted,
    /// Started and supervised by tremplin.
    Supervised(Supervisor),
}

/// A usable LXD.
#[derive(Debug, Clone)]
pub struct RunningLxd {
    pub client: Client,
    pub ownership: Ownership,
}

/// Where LXD stands from tremplin's point of view.
#[derive(Debug, Clone, Default)]
pub enum LxdState {
    #[default]
    NotStarted,
    Initializing,
    Running(RunningLxd),
}

/// Why init failed; the text goes into `StartLxdProgress.failure_reason`.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    StaleLxd(String),
    #[error("failed to connect to LXD daemon: {0}")]
    Connect(String),
    #[error("failed to lxd import container: {0}")]
    Recover(String),
    #[error("failed initialSetup: {0}")]
    Setup(String),
}

fn setup_err(step: &str, e: impl std::fmt::Display) -> InitError {
    InitError::Setup(format!("{step}: {e}"))
}

impl Daemon {
    /// StartLxd RPC (§5.1).
    pub async fn start_lxd(self: &Arc<Self>, request: pb::StartLxdRequest) -> pb::StartLxdResponse {
        use pb::start_lxd_response::Status;
        let known = {
            let mut state = self.lxd_state();
            match &*state {
                LxdState::Initializing => {
                    return pb::StartLxdResponse {
                        status: Status::Starting as i32,
                        failure_reason: String::new(),
                    }
                }
                LxdState::Running(r) => Some(r.clone()),
                LxdState::NotStarted => {
                    *state = LxdState::Initializing;
                    None
                }
            }
        };
        if let Some(running) = known {
            // [deviation, allowed by §14] probe the known LXD; re-run init if it is gone.
            let probe = running.client.clone().with_timeout(PROBE_TIMEOUT);
            if probe.ready().await.is_ok() {
                return pb::StartLxdResponse {
                    status: Status::AlreadyRunning as i32,
                    failure_reason: String::new(),
                };
            }
            let mut state = self.lxd_state();
            match &*state {
                LxdState::Running(_) => *state = LxdState::Initializing,
                // Someone else restarted init meanwhile.
                _ => {
                    return pb::StartLxdResponse {
                        status: Status::Starting as i32,
                        failure_reason: String::new(),
                    }
                }
            }
            tracing::warn!("LXD no longer answers; re-running LXD initialization");
            self.stop_background();
        }
        let daemon = self.clone();
        let reset = request.reset_lxd_db;
        tokio::spawn(async move {
            let progress = match daemon.init_lxd(reset).await {
                Ok(running) => {
                    daemon.start_watchers(running.client.clone()).await;
                    *daemon.lxd_state() = LxdState::Running(running.clone());
                    tracing::info!("LXD is running");
                    pb::StartLxdProgress {
                        status: pb::start_lxd_progress::Status::Started as i32,
                        failure_reason: String::new(),
                    }
                }
                Err(e) => {
                    tracing::error!("Starting LXD failed: {e}");
                    *daemon.lxd_state() = LxdState::NotStarted;
                    pb::StartLxdProgress {
                        status: pb::start_lxd_progress::Status::Failed as i32,
                        failure_reason: format!("Starting LXD failed: {e}"),
                    }
                }
            };
            let _ = daemon.listener.update_start_lxd_status(progress).await;
        });
        pb::StartLxdResponse {
            status: Status::Starting as i32,
            failure_reason: String::new(),
        }
    }

    /// SIGPWR handling: a supervised LXD gets SIGPWR and is not restarted; an adopted one is
    /// left alone.
    pub fn power_off_lxd(&self) {
        if let LxdState::Running(RunningLxd {
            ownership: Ownership::Supervised(sup),
            ..
        }) = &*self.lxd_state()
        {
            sup.stop(Signal::SIGPWR);
        }
    }

    /// The init sequence (§5.2).
    async fn init_lxd(&self, reset_requested: bool) -> Result<RunningLxd, InitError> {
        let socket = self.config.lxd_socket.clone();
        let client = Client::new(&socket);
        let probe = client.clone().with_timeout(PROBE_TIMEOUT);
        let ownership = if probe.ready().await.is_ok() {
            tracing::info!(
                "adopting the LXD already answering on {} (it will never be stopped by tremplin)",
                socket.display()
            );
            if reset_requested {
                tracing::warn!("ignoring reset_lxd_db: LXD was not started by tremplin");
            }
            Ownership::Adopted
        } else {
            self.launch_lxd(reset_requested).await?
        };
        self.initial_setup(&client).await?;
        Ok(RunningLxd { client, ownership })
    }

    /// Launches LXD under supervision, with the DB reset / recovery of §5.2 steps 3–6.
    async fn launch_lxd(&self, reset_requested: bool) -> Result<Ownership, InitError> {
        // A supervisor from an earlier init that is still restarting LXD: wait for it.
        if let LxdState::Running(RunningLxd {
            ownership: Ownership::Supervised(sup),
            ..
        }) = &*self.lxd_state()
        {
            sup.stop(Signal::SIGTERM);
        }
        stop_stale_termina_lxd()
            .await
            .map_err(InitError::StaleLxd)?;
        let lxd_dir = self.config.paths.lxd_dir.clone();
        let reset = reset_requested || should_reset_db(&lxd_dir);
        if reset {
            tracing::info!("resetting the LXD database");
            move_aside(&lxd_dir).map_err(InitError::Connect)?;
        }
        let socket = self.config.lxd_socket.clone();
        let supervisor = Supervisor::spawn(
            self.config.lxd_binary.clone(),
            self.config.lxd_args.clone(),
            socket.clone(),
            self.listener.clone(),
        );
        if let Err(e) = supervisor.wait_ready(&socket, READY_TIMEOUT).await {
            supervisor.stop(Signal::SIGTERM);
            if reset {
                if let Err(re) = restore_aside(&lxd_dir) {
                    tracing::error!("restoring the LXD database failed: {re}");
                }
            }
            return Err(InitError::Connect(e));
        }
        if reset {
            if let Err(e) = self.recover_container(&Client::new(&socket)).await {
                tracing::error!(
                    "recovering {DEFAULT_CONTAINER} failed: {e}; restoring the old database"
                );
                supervisor.stop(Signal::SIGTERM);
                tokio::time::sleep(Duration::from_secs(1)).await;
                restore_aside(&lxd_dir).map_err(InitError::Recover)?;
                let again = Supervisor::spawn(
                    self.config.lxd_binary.clone(),
                    self.config.lxd_args.clone(),
                    socket.clone(),
                    self.listener.clone(),
                );
                again
                    .wait_ready(&socket, READY_TIMEOUT)
                    .await
                    .map_err(|e2| InitError::Recover(format!("{e}; relaunch failed: {e2}")))?;
                tracing::info!("old LXD database restored after the failed recovery");
                return Ok(Ownership::Supervised(again));
            }
        }
        Ok(Ownership::Supervised(supervisor))
    }

    /// §5.2 step 6: re-import `penguin` after a DB reset.
    async fn recover_container(&self, client: &Client) -> Result<(), String> {
        let token = self
            .config
            .paths
            .tokens_dir
            .join(format!("{DEFAULT_CONTAINER}_token"));
        if !token.exists() {
            if let Some(parent) = token.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::write(&token, b"")
                .map_err(|e| format!("creating {}: {e}", token.display()))?;
        }
        let (server, _) = client.server().await.map_err(|e| e.to_string())?;
        if version_newer_than(&server.environment.server_version, (4, 0, 8)) {
            client
                .recover_import(&RecoverImport {
                    pools: vec![self.pool_definition()],
                })
                .await
                .map_err(|e| e.to_string())
        } else {
            let mut command = tokio::process::Command::new(&self.config.lxd_binary);
            command.args(["import", "--force", DEFAULT_CONTAINER]);
            let out = run_with_timeout(command, LXD_IMPORT_TIMEOUT).await?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{} import --force {DEFAULT_CONTAINER} ({}): {}",
                    self.config.lxd_binary.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }

    fn pool_definition(&self) -> StoragePoolsPost {
        StoragePoolsPost {
            name: POOL.to_string(),
            driver: self.config.storage_driver.clone(),
            description: String::new(),
            config: [(
                "source".to_string(),
                self.config.storage_source.display().to_string(),
            )]
            .into(),
        }
    }

    /// Initial setup (§5.4).
    async fn initial_setup(&self, client: &Client) -> Result<(), InitError> {
        tracing::info!(
            "USB manager: not available in this build; USB RPCs answer \"USB manager not ready\""
        );
        self.write_milestone_file()?;
        // Server config.
        let (server, etag) = client
            .server()
            .await
            .map_err(|e| setup_err("GET /1.0", e))?;
        let mut config = server.config.clone();
        config.insert(
            "core.shutdown_timeout".to_string(),
            serde_json::Value::String("0".to_string()),
        );
        if config != server.config {
            client
                .update_server(&ServerPut { config }, etag.as_deref())
                .await
                .map_err(|e| setup_err("setting core.shutdown_timeout", e))?;
        }
        self.legacy_device_fixup(client).await?;
        // Storage pool.
        if let Err(e) = client.storage_pool(POOL).await {
            tracing::info!("storage pool {POOL} not found ({e}); creating it");
            if let Err(create_err) = client.create_storage_pool(&self.pool_definition()).await {
                let version = client
                    .server()
                    .await
                    .map(|(s, _)| s.environment.server_version)
                    .unwrap_or_default();
                if version_newer_than(&version, (4, 0, 8)) {
                    client
                        .recover_import(&RecoverImport {
                            pools: vec![self.pool_definition()],
                        })
                        .await
                        .map_err(|e| setup_err("recovering storage pool", e))?;
                } else {
                    return Err(setup_err("creating storage pool", create_err));
                }
            }
        }
        // Network.
        let desired = network_config(&self.config.lxd_subnet, &self.config.paths);
        match client.network(NETWORK).await {
            Ok((network, etag)) => {
                if network.config != desired {
                    let put = NetworkPut {
                        description: network.description.clone(),
                        config: desired,
                    };
                    client
                        .update_network(NETWORK, &put, etag.as_deref())
                        .await
                        .map_err(|e| setup_err("updating network lxdbr0", e))?;
                }
            }
            Err(_) => client
                .create_network(&NetworksPost {
                    name: NETWORK.to_string(),
                    description: String::new(),
                    kind: "bridge".to_string(),
                    config: desired,
                })
                .await
                .map_err(|e| setup_err("creating network lxdbr0", e))?,
        }
        // Profile.
        let vm_devices = scan_char_devices(&self.config.paths.dev_dir, is_vm_device);
        let (devices, omitted) = profile_devices(&self.config.paths, &vm_devices);
        for o in &omitted {
            tracing::warn!(
                "profile device {} left out: its source {} does not exist on this machine",
                o.device,
                o.source
            );
        }
        let name = self.config.lxd_profile.as_str();
        let subuid = std::fs::read_to_string("/etc/subuid").ok();
        let subgid = std::fs::read_to_string("/etc/subgid").ok();
        let (identity, dropped) = usable_identity_ids(subuid.as_deref(), subgid.as_deref());
        if !dropped.is_empty() {
            tracing::warn!(
                "raw.idmap: not identity-mapping {dropped:?}: root has no dedicated sub-id \
                 delegation for them in /etc/subuid and /etc/subgid (e.g. root:1000:1), so \
                 LXD/newuidmap would refuse to start containers"
            );
        }
        let idmap = raw_idmap(&identity);
        *self.identity_ids.lock().unwrap_or_else(|p| p.into_inner()) = identity;
        let config = profile_config(&idmap);
        match client.profile(name).await {
            Ok((profile, etag)) => {
                if profile.config != config || profile.devices != devices {
                    let put = ProfilePut {
                        description: profile.description.clone(),
                        config,
                        devices,
                    };
                    client
                        .update_profile(name, &put, etag.as_deref())
                        .await
                        .map_err(|e| setup_err(&format!("updating profile {name}"), e))?;
                }
            }
            Err(_) => client
                .create_profile(&ProfilesPost {
                    name: name.to_string(),
                    description: "Crostini containers (written by tremplin)".to_string(),
                    config,
                    devices,
                })
                .await
                .map_err(|e| setup_err(&format!("creating profile {name}"), e))?,
        }
        self.prepare_lxd_conf_dir()?;
        Ok(())
    }

    /// §5.4 step 2.
    fn write_milestone_file(&self) -> Result<(), InitError> {
        let path = &self.config.paths.milestone_file;
        let Some(milestone) = self.milestone else {
            tracing::warn!(
                "milestone unknown; not writing {} (containers get no /dev/.cros_milestone)",
                path.display()
            );
            return Ok(());
        };
        write_file_mode(path, milestone.to_string().as_bytes(), 0o644)
            .map_err(|e| setup_err(&format!("writing {}", path.display()), e))
    }

    /// §5.4 step 4: mark legacy per-instance devices optional.
    async fn legacy_device_fixup(&self, client: &Client) -> Result<(), InitError> {
        let names = client
            .legacy_container_names()
            .await
            .map_err(|e| setup_err("listing containers", e))?;
        for name in names {
            let (instance, etag) = match client.instance(&name).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("legacy fix-up: cannot read {name}: {e}");
                    continue;
                }
            };
            let mut put = instance.writable();
            let mut changed = false;
            for key in ["container_token", "ssh_authorized_keys", "ssh_host_key"] {
                if let Some(dev) = put.devices.get_mut(key) {
                    if dev.get("required").map(String::as_str) != Some("false") {
                        dev.insert("required".to_string(), "false".to_string());
                        changed = true;
                    }
                }
            }
            if changed {
                let op = client
                    .update_instance(&name, &put, etag.as_deref())
                    .await
                    .map_err(|e| setup_err(&format!("updating devices of {name}"), e))?;
                client
                    .wait(&op, Duration::from_secs(60))
                    .await
                    .map_err(|e| setup_err(&format!("updating devices of {name}"), e))?;
            }
        }
        Ok(())
    }

    /// §5.4 step 8: `lxd_conf` directory owned by `chronos`; skipped (logged) where the parent
    /// directory or the user does not exist (an ordinary Linux machine).
    fn prepare_lxd_conf_dir(&self) -> Result<(), InitError> {
        let dir = &self.config.paths.lxd_conf_dir;
        if dir.as_os_str().is_empty() {
            return Ok(());
        }
        if !dir.parent().is_some_and(Path::exists) {
            tracing::warn!("not creating {}: its parent does not exist", dir.display());
            return Ok(());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| setup_err(&format!("mkdir {}", dir.display()), e))?;
        set_mode(dir, 0o755).map_err(|e| setup_err(&format!("chmod {}", dir.display()), e))?;
        let owner = &self.config.lxd_conf_owner;
        let user = nix::unistd::User::from_name(owner).ok().flatten();
        let group = nix::unistd::Group::from_name(owner).ok().flatten();
        match (user, group) {
            (Some(u), Some(g)) => nix::unistd::chown(dir, Some(u.uid), Some(g.gid))
                .map_err(|e| setup_err(&format!("chown {}", dir.display()), e)),
            _ => {
                tracing::warn!(
                    "user/group {owner:?} not found; leaving {} owned by root",
                    dir.display()
                );
                Ok(())
            }
        }
    }
}

/// §5.2 step 3: the automatic DB reset rule.
pub fn should_reset_db(lxd_dir: &Path) -> bool {
    let containers = lxd_dir.join("containers");
    let Ok(entries) = std::fs::read_dir(&containers) else {
        return false;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names != [DEFAULT_CONTAINER] {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(containers.join(DEFAULT_CONTAINER).join("backup.yaml"))
    else {
        return false;
    };
    crate::yaml::nested_value(&text, "container", "name").as_deref() == Some(DEFAULT_CONTAINER)
        && crate::yaml::nested_value(&text, "volume", "name").as_deref() == Some(DEFAULT_CONTAINER)
}

fn aside_dirs(lxd_dir: &Path) -> [(PathBuf, PathBuf); 2] {
    ["database", "networks"].map(|d| {
        let p = lxd_dir.join(d);
        let old = lxd_dir.join(format!("{d}.old"));
        (p, old)
    })
}

/// Moves `database` and `networks` to `<dir>.old` (§5.2 step 4).
fn move_aside(lxd_dir: &Path) -> Result<(), String> {
    for (dir, old) in aside_dirs(lxd_dir) {
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .map_err(|e| format!("removing {}: {e}", old.display()))?;
        }
        match std::fs::rename(&dir, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("moving {} aside: {e}", dir.display())),
        }
    }
    Ok(())
}

/// Undoes [`move_aside`].
fn restore_aside(lxd_dir: &Path) -> Result<(), String> {
    for (dir, old) in aside_dirs(lxd_dir) {
        if !old.exists() {
            continue;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("removing {}: {e}", dir.display()))?;
        }
        std::fs::rename(&old, &dir).map_err(|e| format!("restoring {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// True when `version` ("5.0.2", "4.0.9") is newer than `than`.
pub fn version_newer_than(version: &str, than: (u32, u32, u32)) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v > than
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Writes `content` to `path` (creating parents) and sets `mode`.
pub(crate) fn write_file_mode(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)?;
    set_mode(path, mode)
}

/// Runs `command` (stdin closed, output captured) and waits at most `timeout` for it; on expiry
/// the child is killed (SIGKILL) and an error naming the command is returned.
async fn run_with_timeout(
    mut command: tokio::process::Command,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    let shown = {
        let std = command.as_std();
        std::iter::once(std.get_program())
            .chain(std.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Dropping the wait below on timeout drops the child, which kills it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("waiting for {shown}: {e}")),
        Err(_) => Err(format!(
            "{shown} did not finish within {timeout:?}; killed it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_with_timeout_returns_output_of_a_quick_command() {
        let mut c = tokio::process::Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_with_timeout(c, Duration::from_secs(10))
            .await
            .expect("runs");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn run_with_timeout_kills_a_hung_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let mut c = tokio::process::Command::new("sh");
        // Killing the shell at the deadline means the `touch` after the sleep never runs.
        c.arg("-c")
            .arg(format!("sleep 1; touch {}", marker.display()));
        let started = std::time::Instant::now();
        let err = run_with_timeout(c, Duration::from_millis(200))
            .await
            .expect_err("times out");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "returned at the deadline"
        );
        assert!(err.contains("did not finish within 200ms"), "{err}");
        assert!(err.contains("sh -c sleep 1"), "{err}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the child was killed, not left running");
    }

    #[tokio::test]
    async fn run_with_timeout_reports_a_missing_binary() {
        let c = tokio::process::Command::new("/nonexistent/lxd");
        let err = run_with_timeout(c, Duration::from_secs(1))
            .await
            .expect_err("no binary");
        assert!(err.starts_with("cannot run /nonexistent/lxd"), "{err}");
    }

    #[test]
    fn version_comparison() {
        assert!(version_newer_than("5.0.2", (4, 0, 8)));
        assert!(version_newer_than("4.0.9", (4, 0, 8)));
        assert!(!version_newer_than("4.0.8", (4, 0, 8)));
        assert!(!version_newer_than("3.0", (4, 0, 8)));
        assert!(!version_newer_than("", (4, 0, 8)));
    }

    #[test]
    fn reset_rule_requires_exactly_penguin_with_matching_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!should_reset_db(dir.path()), "no containers dir");
        let penguin = dir.path().join("containers/penguin");
        std::fs::create_dir_all(&penguin).expect("mkdir");
        assert!(!should_reset_db(dir.path()), "no backup.yaml");
        std::fs::write(
            penguin.join("backup.yaml"),
            "container:\n  name: penguin\n  architecture: x86_64\nvolume:\n  name: penguin\n",
        )
        .expect("write");
        assert!(should_reset_db(dir.path()));
        std::fs::write(
            penguin.join("backup.yaml"),
            "container:\n  name: penguin\nvolume:\n  name: other\n",
        )
        .expect("write");
        assert!(!should_reset_db(dir.path()), "volume name differs");
        std::fs::write(
            penguin.join("backup.yaml"),
            "container:\n  name: penguin\nvolume:\n  name: penguin\n",
        )
        .expect("write");
        std::fs::create_dir_all(dir.path().join("containers/other")).expect("mkdir");
        assert!(!should_reset_db(dir.path()), "two containers");
    }

    #[test]
    fn move_aside_and_restore_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("database")).expect("mkdir");
        std::fs::write(dir.path().join("database/x"), "1").expect("write");
        move_aside(dir.path()).expect("aside");
        assert!(!dir.path().join("database").exists());
        assert!(dir.path().join("database.old/x").exists());
        std::fs::create_dir_all(dir.path().join("database")).expect("new db");
        restore_aside(dir.path()).expect("restore");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("database/x")).expect("read"),
            "1"
        );
        assert!(!dir.path().join("database.old").exists());
    }
}
