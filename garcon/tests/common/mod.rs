//! Process-level plumbing for garcon's integration tests: a hermetic sandbox (token, HOME, XDG
//! data dir with one known-good app and icon, sockets), the `crostini-host` stand-in on a unix
//! socket, and a `garcon --server` child that is killed (by pid) when dropped.
//!
//! `server_startup.rs` and `icons_process.rs` still carry their own copies of this; moving them
//! here is the next step (one module, not three).
//!
//! When the tests run as root, garcon runs as `nobody` (65534): garcon normally runs as the
//! container's uid 1000, and a root garcon would read through `chmod 000`.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::{Event, HostConfig, Payload, RunningHost};
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::IconRequest;
use tonic::transport::Channel;

pub const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
pub const GARCON: &str = env!("CARGO_BIN_EXE_garcon");
/// Runs the tests against another garcon build (e.g. one from before a fix, to see a table
/// row fail there) instead of [`GARCON`].
pub const GARCON_OVERRIDE: &str = "GARCON_UNDER_TEST";
/// The known-good app and icon of every sandbox (`data/applications/good.desktop`, a 48 px PNG
/// in `data/icons/hicolor/48x48/apps`).
pub const GOOD: &str = "good";
/// The uid/gid garcon runs as when the tests run as root.
pub const UNPRIVILEGED: u32 = 65534;

const HICOLOR_INDEX: &str = "[Icon Theme]\nName=Hicolor\nDirectories=48x48/apps\n\
                             [48x48/apps]\nSize=48\nType=Fixed\nContext=Applications\n";

/// A temp dir: `token`, `home/` (HOME; XDG_DATA_HOME is `home/.local/share`), `data/`
/// (XDG_DATA_DIRS), `run/` (sockets), `garcon.log`.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = Sandbox { dir };
        sandbox.write("token", format!("{TOKEN}\n"));
        for sub in ["home/.local/share/applications", "data/applications", "run"] {
            std::fs::create_dir_all(sandbox.path(sub)).expect("mkdir");
        }
        sandbox.write("data/icons/hicolor/index.theme", HICOLOR_INDEX);
        sandbox.write(
            "data/icons/hicolor/48x48/apps/good.png",
            solid_png(48, [0, 160, 0, 255]),
        );
        sandbox.app("data/applications/good.desktop", "good", "good");
        // Everything but the sockets dir stays root-owned; garcon only needs to read it.
        set_mode(sandbox.dir.path(), 0o755);
        set_mode(&sandbox.path("run"), 0o777);
        sandbox
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `data` at `rel`, creating parents.
    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, data).expect("write");
        path
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(&path).expect("mkdir");
        path
    }

    pub fn fifo(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("fifo");
        path
    }

    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, &path).expect("symlink");
        path
    }

    /// A launchable desktop entry at `rel` (`Exec=/bin/true`).
    pub fn app(&self, rel: &str, name: &str, icon: &str) -> PathBuf {
        self.write(
            rel,
            format!(
                "[Desktop Entry]\nType=Application\nName={name}\nExec=/bin/true\nIcon={icon}\n"
            ),
        )
    }

    pub fn host_address(&self) -> Address {
        Address::unix(self.path("run/host.sock"))
    }

    pub fn garcon_socket(&self) -> PathBuf {
        self.path("run/garcon.sock")
    }

    /// The host stand-in on `run/host.sock`, knowing the sandbox token.
    pub async fn host(&self) -> RunningHost {
        let host = RunningHost::start(HostConfig {
            container_listener: Some(self.host_address()),
            ..HostConfig::default()
        })
        .await
        .expect("host starts");
        host.register_container(TOKEN, "penguin");
        set_mode(&self.path("run/host.sock"), 0o777);
        host
    }

    /// `garcon --server` on `run/garcon.sock` with a hermetic environment plus `env`.
    pub fn spawn(&self, env: &[(&str, String)]) -> Server {
        let log = self.path("garcon.log");
        let binary = std::env::var(GARCON_OVERRIDE).unwrap_or_else(|_| GARCON.to_string());
        let mut command = Command::new(binary);
        command
            .args(["--server", "--allow_any_user", "--log-stderr", "--listen"])
            .arg(format!("unix://{}", self.garcon_socket().display()))
            .arg("--host-address")
            .arg(self.host_address().to_string())
            .arg("--token-file")
            .arg(self.path("token"))
            .args(["--sftp-server", "/bin/cat"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .env("USER", "tester")
            .env("XDG_DATA_DIRS", self.path("data"))
            .env("XDG_DATA_HOME", self.path("home/.local/share"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/session")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.path("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if nix::unistd::getuid().is_root() {
            // std drops the supplementary groups when root changes uid.
            command.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
        }
        let child = command.spawn().expect("spawn garcon");
        Server { child, log }
    }

    /// A client for `run/garcon.sock`.
    pub fn client(&self) -> GarconClient<Channel> {
        let channel = crostini_common::lazy_channel(
            &Address::unix(self.garcon_socket()),
            Duration::from_secs(5),
        )
        .expect("channel");
        GarconClient::new(channel)
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A `size`x`size` PNG of one color.
pub fn solid_png(size: u32, rgba: [u8; 4]) -> Vec<u8> {
    let image = image::RgbaImage::from_pixel(size, size, image::Rgba(rgba));
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// A running garcon, killed when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(exit status)` once garcon has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `within` for garcon to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal garcon");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the first host event from `from` that `matches`; panics with the garcon log.
pub async fn wait_event(
    host: &RunningHost,
    server: &Server,
    from: u64,
    what: &str,
    within: Duration,
    matches: impl Fn(&Event) -> bool,
) -> Event {
    match host.wait_for_from(from, matches, within).await {
        Ok(event) => event,
        Err(error) => panic!("{what}: {error}; garcon log:\n{}", server.log()),
    }
}

/// Ids of an UpdateApplicationList event.
pub fn app_ids(event: &Event) -> Vec<String> {
    match &event.payload {
        Payload::UpdateApplicationList(list) => list
            .application
            .iter()
            .map(|a| a.desktop_file_id.clone())
            .collect(),
        other => panic!("not UpdateApplicationList: {other:?}"),
    }
}

/// GetIcon of the known-good app at 48 px: returns how long it took, panics unless the one
/// icon comes back within `within`.
pub async fn good_icon(
    client: &GarconClient<Channel>,
    server: &Server,
    within: Duration,
) -> Duration {
    let request = IconRequest {
        desktop_file_ids: vec![GOOD.to_string()],
        icon_size: 48,
        scale: 1,
    };
    let started = Instant::now();
    let reply = tokio::time::timeout(within, client.clone().get_icon(request)).await;
    let took = started.elapsed();
    match reply {
        Ok(Ok(reply)) => {
            let ids: Vec<String> = reply
                .into_inner()
                .desktop_icons
                .into_iter()
                .map(|i| i.desktop_file_id)
                .collect();
            assert_eq!(ids, [GOOD], "the known-good icon; log:\n{}", server.log());
        }
        Ok(Err(status)) => panic!("GetIcon {GOOD}: {status}; log:\n{}", server.log()),
        Err(_) => panic!(
            "GetIcon {GOOD} did not answer within {within:?}; log:\n{}",
            server.log()
        ),
    }
    took
}
