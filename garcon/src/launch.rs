//! LaunchApplication (garcon-service §5.1): desktop-file lookup, argv, environment overlay and
//! the detached spawn shared by every RPC that starts a process (§5.1.5).
//!
//! Nothing here goes through a shell: argv comes from [`crate::exec`] and is handed to
//! `execvp` directly.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::desktop::{find_file_for_desktop_id, DesktopEntry, DesktopEntryError, XdgDirs};
use crate::exec::expand_entry_exec;

/// Set to the requested desktop-file ID for `StartupNotify=true` entries.
pub const STARTUP_ID_VAR: &str = "DESKTOP_STARTUP_ID";

/// `(low-density variable garcon inherited, variable the child gets)` for SCALED launches.
pub const LOW_DENSITY_VARS: [(&str, &str); 3] = [
    ("DISPLAY_LOW_DENSITY", "DISPLAY"),
    ("WAYLAND_DISPLAY_LOW_DENSITY", "WAYLAND_DISPLAY"),
    ("XCURSOR_SIZE_LOW_DENSITY", "XCURSOR_SIZE"),
];

/// garcon's inherited environment, as the child would inherit it.
pub type Environment = BTreeMap<OsString, OsString>;

/// `LaunchApplicationRequest.DisplayScaling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisplayScaling {
    /// UNSCALED = 0: the default display variables.
    #[default]
    Unscaled,
    /// SCALED = 1: the low-density display (the `*_LOW_DENSITY` variables).
    Scaled,
}

impl DisplayScaling {
    /// Wire value -> scaling; anything but 1 is UNSCALED (proto3 open enum).
    pub fn from_wire(value: i32) -> Self {
        if value == 1 {
            Self::Scaled
        } else {
            Self::Unscaled
        }
    }
}

/// `ContainerFeature`; unknown wire values are kept so they can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerFeature {
    /// ENABLE_GTK3_IME_SUPPORT = 1.
    Gtk3Ime,
    /// ENABLE_VIRTUAL_KEYBOARD_SUPPORT = 2.
    VirtualKeyboard,
    /// ENABLE_QT_IME_SUPPORT = 3.
    QtIme,
    /// UNKNOWN = 0 or any value this build does not know.
    Unknown(i32),
}

impl ContainerFeature {
    /// Wire value -> feature.
    pub fn from_wire(value: i32) -> Self {
        match value {
            1 => Self::Gtk3Ime,
            2 => Self::VirtualKeyboard,
            3 => Self::QtIme,
            other => Self::Unknown(other),
        }
    }
}

/// A LaunchApplication request in plain types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The desktop-file ID to launch (also the `DESKTOP_STARTUP_ID` value).
    pub desktop_file_id: String,
    /// Files/URLs for the Exec field codes, verbatim.
    pub files: Vec<String>,
    /// Which display the app should use.
    pub display_scaling: DisplayScaling,
    /// Container features, in request order.
    pub features: Vec<ContainerFeature>,
}

/// A successful launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The desktop file that was launched.
    pub desktop_file: PathBuf,
    /// The argv that was executed.
    pub argv: Vec<String>,
    /// The process id of the program (it is not our child: see [`spawn_detached`]).
    pub pid: u32,
}

/// Why a launch failed. [`LaunchError::failure_reason`] is the in-band text for the host.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Empty `desktop_file_id`: the only case answered with gRPC INVALID_ARGUMENT.
    #[error("missing desktop_file_id")]
    MissingDesktopFileId,
    /// No file for the ID (also: IDs with `/`, NUL or a `..` component).
    #[error("no desktop file for ID {id:?}")]
    NotFound {
        /// The requested ID.
        id: String,
    },
    /// The file could not be read or is not a valid desktop entry.
    #[error(transparent)]
    Invalid(#[from] DesktopEntryError),
    /// `Type` is not `Application`.
    #[error("desktop file {path} has Type={entry_type}, not Application")]
    NotApplication {
        /// The desktop file.
        path: PathBuf,
        /// Its `Type`.
        entry_type: String,
    },
    /// `Exec` is missing or expands to nothing.
    #[error("Exec of {path} expands to an empty argv")]
    EmptyArgv {
        /// The desktop file.
        path: PathBuf,
    },
    /// The program could not be started.
    #[error("launching {path}: {source}")]
    Spawn {
        /// The desktop file.
        path: PathBuf,
        /// What failed.
        source: SpawnError,
    },
}

impl LaunchError {
    /// The reference's in-band `failure_reason` (garcon-service §5.1.1) for this error.
    pub fn failure_reason(&self) -> &'static str {
        match self {
            Self::MissingDesktopFileId => "missing desktop_file_id",
            Self::NotFound { .. } => "Desktop file does not exist",
            Self::Invalid(_) => "Desktop file contents are invalid",
            Self::NotApplication { .. } => "Desktop file is not for an application",
            Self::EmptyArgv { .. } => "Failure in generating argv list for application",
            Self::Spawn { .. } => "Failure in execution of application",
        }
    }

    /// True when the service must answer with gRPC INVALID_ARGUMENT instead of in-band.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::MissingDesktopFileId)
    }
}

/// Launches desktop applications (garcon-service §5.1).
#[derive(Debug, Clone)]
pub struct Launcher {
    /// Where desktop files are looked up.
    pub xdg: XdgDirs,
    /// garcon's environment: read for the overlay and given to the child as its base.
    pub env: Environment,
    /// False with `--no_startup_notify`: never set `DESKTOP_STARTUP_ID`.
    pub startup_notify: bool,
}

impl Launcher {
    /// A launcher using this process's environment and XDG directories.
    pub fn from_process(startup_notify: bool) -> Self {
        Self {
            xdg: XdgDirs::from_env(),
            env: std::env::vars_os().collect(),
            startup_notify,
        }
    }

    /// Runs LaunchApplication steps 1-7. Blocking (filesystem and fork/exec): call it from
    /// `spawn_blocking`.
    pub fn launch(&self, request: &LaunchRequest) -> Result<Launched, LaunchError> {
        let id = &request.desktop_file_id;
        if id.is_empty() {
            return Err(LaunchError::MissingDesktopFileId);
        }
        let path = find_file_for_desktop_id(id, &self.xdg.application_dirs())
            .ok_or_else(|| LaunchError::NotFound { id: id.clone() })?;
        let entry = DesktopEntry::from_file(&path)?;
        if entry.entry_type != "Application" {
            return Err(LaunchError::NotApplication {
                path,
                entry_type: entry.entry_type,
            });
        }
        let argv = expand_entry_exec(&entry, &path, &request.files);
        if argv.is_empty() {
            return Err(LaunchError::EmptyArgv { path });
        }
        let overlay = environment_overlay(&entry, request, &self.env, self.startup_notify);
        let working_dir = (!entry.path.is_empty()).then(|| Path::new(&entry.path));
        let spawn = SpawnOptions {
            argv: &argv,
            base_env: Some(&self.env),
            overlay: &overlay,
            working_dir,
            ..SpawnOptions::default()
        };
        match spawn_detached(spawn) {
            Ok(pid) => {
                tracing::info!(id = %id, path = %path.display(), pid, "launched application");
                Ok(Launched {
                    desktop_file: path,
                    argv,
                    pid,
                })
            }
            Err(source) => Err(LaunchError::Spawn { path, source }),
        }
    }
}

/// The environment overlay of garcon-service §5.1.4 for `entry` launched by `request`, given
/// garcon's own environment `env`.
pub fn environment_overlay(
    entry: &DesktopEntry,
    request: &LaunchRequest,
    env: &Environment,
    startup_notify: bool,
) -> Vec<(OsString, OsString)> {
    let mut overlay = Vec::new();
    if entry.startup_notify && startup_notify {
        overlay.push((
            STARTUP_ID_VAR.into(),
            OsString::from(&request.desktop_file_id),
        ));
    }
    if request.display_scaling == DisplayScaling::Scaled {
        for (source, target) in LOW_DENSITY_VARS {
            match env.get(OsStr::new(source)) {
                Some(value) => overlay.push((target.into(), value.clone())),
                // The reference has undefined behavior here; keep the inherited value.
                None => tracing::warn!(
                    source,
                    target,
                    "SCALED launch but {source} is not set; leaving {target} as inherited"
                ),
            }
        }
    }
    overlay.extend(container_feature_overlay(&request.features, env));
    overlay
}

/// The container-feature variables (garcon-service §5.1.4), also used by LaunchVshd (§5.3).
/// An IME module variable is only set when garcon's own environment lacks it (set but empty
/// counts as present).
pub fn container_feature_overlay(
    features: &[ContainerFeature],
    env: &Environment,
) -> Vec<(OsString, OsString)> {
    let mut overlay = Vec::new();
    let absent = |name: &str| !env.contains_key(OsStr::new(name));
    for feature in features {
        match feature {
            ContainerFeature::Gtk3Ime if absent("GTK_IM_MODULE") => {
                overlay.push(("GTK_IM_MODULE".into(), "cros".into()))
            }
            ContainerFeature::QtIme if absent("QT_IM_MODULE") => {
                overlay.push(("QT_IM_MODULE".into(), "cros".into()))
            }
            ContainerFeature::Gtk3Ime | ContainerFeature::QtIme => {}
            ContainerFeature::VirtualKeyboard => {
                overlay.push(("CROS_IM_VIRTUAL_KEYBOARD".into(), "1".into()))
            }
            ContainerFeature::Unknown(value) => {
                tracing::warn!(value, "ignoring unknown container feature")
            }
        }
    }
    overlay
}

/// Why a detached spawn failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// argv was empty.
    #[error("empty argv")]
    EmptyArgv,
    /// Opening `/dev/null` or creating the pid pipe failed.
    #[error("preparing to spawn {program:?}: {source}")]
    Setup {
        /// argv[0].
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// fork, setsid, chdir, exec, ... failed (reported synchronously by the child).
    #[error("spawning {program:?} (working dir {working_dir:?}): {source}")]
    Exec {
        /// argv[0].
        program: String,
        /// The requested working directory.
        working_dir: Option<PathBuf>,
        /// The error the child reported.
        source: std::io::Error,
    },
}

/// How to start a detached program.
#[derive(Debug, Default)]
pub struct SpawnOptions<'a> {
    /// argv; argv[0] is resolved through the child's `PATH` (execvp semantics).
    pub argv: &'a [String],
    /// The child's base environment; `None` inherits this process's environment.
    pub base_env: Option<&'a Environment>,
    /// Variables set on top of the base environment (overwriting).
    pub overlay: &'a [(OsString, OsString)],
    /// Working directory; `None` keeps ours.
    pub working_dir: Option<&'a Path>,
    /// stdin; `None` = `/dev/null`.
    pub stdin: Option<Stdio>,
    /// stdout; `None` = `/dev/null`.
    pub stdout: Option<Stdio>,
    /// stderr; `None` = `/dev/null`.
    pub stderr: Option<Stdio>,
}

/// Starts a program detached (garcon-service §5.1.5) and returns its pid once it has exec'd.
///
/// The program runs in a new session (`setsid`, so no controlling terminal), with umask 022,
/// every signal (1-64, a superset of the reference's 1-31) reset to `SIG_DFL`, an empty signal
/// mask, and stdio on `/dev/null` unless given. Failures up to and including `exec` are
/// reported synchronously.
///
/// Deviation from the reference (same observable contract): the program is started through
/// an intermediate child that exits at once (double fork), so the program is re-parented to
/// init and can never become garcon's zombie, whatever garcon's `SIGCHLD` disposition or
/// child-reaping strategy is. The intermediate child is reaped here before returning.
pub fn spawn_detached(options: SpawnOptions<'_>) -> Result<u32, SpawnError> {
    let Some((program, args)) = options.argv.split_first() else {
        return Err(SpawnError::EmptyArgv);
    };
    let setup = |source| SpawnError::Setup {
        program: program.clone(),
        source,
    };
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(setup)?;
    let stdio = |given: Option<Stdio>| -> Result<Stdio, SpawnError> {
        match given {
            Some(stdio) => Ok(stdio),
            None => Ok(Stdio::from(null.try_clone().map_err(setup)?)),
        }
    };

    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(stdio(options.stdin)?)
        .stdout(stdio(options.stdout)?)
        .stderr(stdio(options.stderr)?);
    if let Some(env) = options.base_env {
        command.env_clear().envs(env);
    }
    command.envs(options.overlay.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = options.working_dir {
        command.current_dir(dir);
    }

    let (pid_read, pid_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| setup(e.into()))?;
    let pid_write_fd = pid_write.as_raw_fd();
    // SAFETY: the closure runs in the forked child of a possibly multi-threaded process, so it
    // only makes async-signal-safe calls (fork, _exit, setsid, umask, rt_sigaction, sigprocmask,
    // getpid, write) and allocates nothing. `pid_write_fd` stays open in the parent until
    // `spawn` returns, so it is valid in the child.
    unsafe {
        command.pre_exec(move || detach_in_child(pid_write_fd));
    }
    let spawned = command.spawn();
    drop(pid_write);
    let mut intermediate = spawned.map_err(|source| SpawnError::Exec {
        program: program.clone(),
        working_dir: options.working_dir.map(Path::to_path_buf),
        source,
    })?;
    // The intermediate child exits right after forking. With SIGCHLD ignored the kernel reaps
    // it and wait() reports ECHILD, which is fine.
    if let Err(e) = intermediate.wait() {
        tracing::debug!(error = %e, "intermediate child already reaped");
    }
    let mut pid_bytes = [0u8; 4];
    let mut pid_read = std::fs::File::from(pid_read);
    match pid_read.read_exact(&mut pid_bytes) {
        Ok(()) => Ok(u32::from_ne_bytes(pid_bytes)),
        // The program did exec (spawn succeeded), so its pid must have been written; a
        // short read would mean the write itself failed.
        Err(source) => Err(setup(source)),
    }
}

/// Highest signal number on Linux (`_NSIG - 1`).
const MAX_SIGNAL: libc::c_int = 64;
/// Size of the kernel's signal set (`_NSIG / 8`).
const KERNEL_SIGSET_SIZE: libc::size_t = 8;

/// Runs in the child between fork and exec: double fork, new session, umask, signal reset.
fn detach_in_child(pid_write_fd: libc::c_int) -> std::io::Result<()> {
    // SAFETY (whole function): async-signal-safe libc calls on valid arguments only.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            // The intermediate child leaves at once; the grandchild carries on to exec.
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(std::io::Error::last_os_error());
        }
        libc::umask(0o022);
        // Every signal, not only 1-31: an ignored disposition survives exec, and garcon may
        // itself have inherited ignored real-time signals. The raw syscall reaches 32 and 33,
        // which glibc's sigaction() refuses; an all-zero kernel sigaction is SIG_DFL with no
        // flags on every architecture.
        let default_action = [0u64; 8];
        for signal in 1..=MAX_SIGNAL {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let result = libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_SIGSET_SIZE,
            );
            if result == -1 && signal < 32 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::other("pthread_sigmask failed"));
        }
        let pid = (libc::getpid() as u32).to_ne_bytes();
        if libc::write(pid_write_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn overlay_map(overlay: Vec<(OsString, OsString)>) -> BTreeMap<String, String> {
        overlay
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    fn entry(startup_notify: bool) -> DesktopEntry {
        DesktopEntry {
            startup_notify,
            ..DesktopEntry::default()
        }
    }

    fn request(scaling: DisplayScaling, features: &[i32]) -> LaunchRequest {
        LaunchRequest {
            desktop_file_id: "org-x-App".into(),
            files: vec![],
            display_scaling: scaling,
            features: features
                .iter()
                .copied()
                .map(ContainerFeature::from_wire)
                .collect(),
        }
    }

    #[test]
    fn startup_id_needs_startup_notify_and_permission() {
        let e = Environment::new();
        let req = request(DisplayScaling::Unscaled, &[]);
        let got = overlay_map(environment_overlay(&entry(true), &req, &e, true));
        assert_eq!(
            got,
            BTreeMap::from([(STARTUP_ID_VAR.into(), "org-x-App".into())])
        );
        assert!(environment_overlay(&entry(true), &req, &e, false).is_empty());
        assert!(environment_overlay(&entry(false), &req, &e, true).is_empty());
    }

    #[test]
    fn scaled_uses_low_density_variables_and_unscaled_changes_nothing() {
        let e = env(&[
            ("DISPLAY", ":0"),
            ("DISPLAY_LOW_DENSITY", ":1"),
            ("WAYLAND_DISPLAY_LOW_DENSITY", "wayland-1"),
            ("XCURSOR_SIZE_LOW_DENSITY", "12"),
        ]);
        let got = overlay_map(environment_overlay(
            &entry(false),
            &request(DisplayScaling::Scaled, &[]),
            &e,
            true,
        ));
        let want = env(&[
            ("DISPLAY", ":1"),
            ("WAYLAND_DISPLAY", "wayland-1"),
            ("XCURSOR_SIZE", "12"),
        ]);
        assert_eq!(got, overlay_map(want.into_iter().collect()));
        let unscaled = request(DisplayScaling::Unscaled, &[]);
        assert!(environment_overlay(&entry(false), &unscaled, &e, true).is_empty());
    }

    #[test]
    fn scaled_with_missing_low_density_variable_leaves_it_inherited() {
        let e = env(&[("DISPLAY_LOW_DENSITY", ":1")]);
        let got = overlay_map(environment_overlay(
            &entry(false),
            &request(DisplayScaling::Scaled, &[]),
            &e,
            true,
        ));
        assert_eq!(got, BTreeMap::from([("DISPLAY".into(), ":1".into())]));
    }

    #[test]
    fn features_set_ime_variables_unless_already_present() {
        let none = Environment::new();
        let got = overlay_map(container_feature_overlay(
            &[1, 2, 3, 0, 99].map(ContainerFeature::from_wire),
            &none,
        ));
        let want = [
            ("CROS_IM_VIRTUAL_KEYBOARD", "1"),
            ("GTK_IM_MODULE", "cros"),
            ("QT_IM_MODULE", "cros"),
        ];
        assert_eq!(got, overlay_map(env(&want).into_iter().collect()));

        let present = env(&[("GTK_IM_MODULE", ""), ("QT_IM_MODULE", "fcitx")]);
        let got = overlay_map(container_feature_overlay(
            &[ContainerFeature::Gtk3Ime, ContainerFeature::QtIme],
            &present,
        ));
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn wire_values_map_to_scaling_and_features() {
        assert_eq!(DisplayScaling::from_wire(1), DisplayScaling::Scaled);
        assert_eq!(DisplayScaling::from_wire(0), DisplayScaling::Unscaled);
        assert_eq!(DisplayScaling::from_wire(7), DisplayScaling::Unscaled);
        assert_eq!(ContainerFeature::from_wire(0), ContainerFeature::Unknown(0));
        assert_eq!(ContainerFeature::from_wire(3), ContainerFeature::QtIme);
    }

    #[test]
    fn spawn_rejects_empty_argv() {
        assert!(matches!(
            spawn_detached(SpawnOptions::default()),
            Err(SpawnError::EmptyArgv)
        ));
    }

    #[test]
    fn empty_id_is_the_only_invalid_argument() {
        let launcher = Launcher {
            xdg: XdgDirs::from_data_dirs(vec![]),
            env: Environment::new(),
            startup_notify: true,
        };
        let err = launcher.launch(&LaunchRequest::default()).unwrap_err();
        assert!(err.is_invalid_argument());
        let err = launcher
            .launch(&LaunchRequest {
                desktop_file_id: "nope".into(),
                ..LaunchRequest::default()
            })
            .unwrap_err();
        assert!(!err.is_invalid_argument());
        assert_eq!(err.failure_reason(), "Desktop file does not exist");
    }
}
