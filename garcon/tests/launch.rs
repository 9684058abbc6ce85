//! LaunchApplication end to end: desktop files in a temp data dir launch the fixture program
//! `tests/fixtures/launch/record-launch.sh`, which records its argv, environment, cwd,
//! session, signal state and stdio into a directory named by its first argument.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use garcon::desktop::XdgDirs;
use garcon::launch::{
    ContainerFeature, DisplayScaling, Environment, LaunchError, LaunchRequest, Launcher,
};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/launch")
        .canonicalize()
        .unwrap()
}

fn recorder() -> String {
    fixture_dir().join("record-launch.sh").display().to_string()
}

struct Setup {
    dir: tempfile::TempDir,
    launcher: Launcher,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env: Environment = [
            ("PATH", format!("{}:/usr/bin:/bin", fixture_dir().display())),
            ("HOME", dir.path().display().to_string()),
            ("DISPLAY", ":0".into()),
            ("WAYLAND_DISPLAY", "wayland-0".into()),
            ("XCURSOR_SIZE", "24".into()),
            ("DISPLAY_LOW_DENSITY", ":1".into()),
            ("WAYLAND_DISPLAY_LOW_DENSITY", "wayland-1".into()),
            ("XCURSOR_SIZE_LOW_DENSITY", "12".into()),
            ("QT_IM_MODULE", "fcitx".into()),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let launcher = Launcher {
            xdg: XdgDirs::from_data_dirs(vec![dir.path().join("share")]),
            env,
            startup_notify: true,
        };
        Self { dir, launcher }
    }

    fn desktop(&self, id: &str, body: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join("share/applications")
            .join(format!("{id}.desktop"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("[Desktop Entry]\n{body}\n")).unwrap();
        path
    }

    fn app(&self, id: &str, extra: &str) -> PathBuf {
        self.desktop(
            id,
            &format!(
                "Type=Application\nName=Recorder\nIcon=rec-icon\nExec={} %f --name=%c \"quoted  arg\" %i %U\n{extra}",
                recorder()
            ),
        )
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, id: &str, out: &Path) -> LaunchRequest {
        LaunchRequest {
            desktop_file_id: id.into(),
            files: vec![out.display().to_string(), "/b".into()],
            ..LaunchRequest::default()
        }
    }
}

/// What the fixture program recorded.
struct Record {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    umask: String,
    pid: i32,
    ppid: i32,
    pgrp: i32,
    session: i32,
    status: String,
    fds: Vec<String>,
}

fn wait_for_record(out: &Path) -> Record {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out.join("done").exists() {
        assert!(
            Instant::now() < deadline,
            "launched program never wrote {out:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let read = |name: &str| fs::read_to_string(out.join(name)).unwrap();
    let split0 = |text: String| -> Vec<String> {
        text.split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let stat = read("stat");
    // "pid (comm) state ppid pgrp session ..."
    let after_comm: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let num = |i: usize| after_comm[i].parse::<i32>().unwrap();
    Record {
        argv: split0(read("argv")),
        env: split0(read("environ"))
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect(),
        cwd: PathBuf::from(read("cwd").trim_end()),
        umask: read("umask").trim().to_owned(),
        pid: stat.split(' ').next().unwrap().parse().unwrap(),
        ppid: num(1),
        pgrp: num(2),
        session: num(3),
        status: read("status"),
        fds: read("fds").lines().map(str::to_owned).collect(),
    }
}

fn expected_env(setup: &Setup, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = setup
        .launcher
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone().into_string().unwrap(),
                v.clone().into_string().unwrap(),
            )
        })
        .collect();
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    env
}

#[test]
fn launch_passes_argv_env_and_starts_a_detached_session() {
    let setup = Setup::new();
    let desktop = setup.app("rec", "StartupNotify=true");
    let out = setup.out("rec-out");
    let launched = setup.launcher.launch(&setup.request("rec", &out)).unwrap();
    assert_eq!(launched.desktop_file, desktop);
    let record = wait_for_record(&out);

    // argv: $1 (the first file, consumed by the script) is not recorded.
    assert_eq!(
        record.argv,
        [
            "--name=Recorder",
            "quoted  arg",
            "--icon",
            "rec-icon",
            &out.display().to_string(),
            "/b"
        ]
    );
    assert_eq!(launched.argv[0], recorder());
    assert_eq!(launched.pid as i32, record.pid);
    // Exactly the inherited environment plus the overlay.
    assert_eq!(
        record.env,
        expected_env(&setup, &[("DESKTOP_STARTUP_ID", "rec")])
    );
    // Detached: own session and process group, not our child, no controlling terminal.
    let our_sid = nix::unistd::getsid(None).unwrap().as_raw();
    assert_eq!(
        record.session, record.pid,
        "the program leads its own session"
    );
    assert_eq!(record.pgrp, record.pid);
    assert_ne!(record.session, our_sid);
    assert_ne!(
        record.ppid,
        std::process::id() as i32,
        "re-parented away from garcon"
    );
    assert_eq!(record.fds, ["/dev/null", "/dev/null", "/dev/null"]);
    assert_eq!(record.umask, "0022");
    assert!(
        record.status.contains("SigIgn:\t0000000000000000"),
        "{}",
        record.status
    );
    assert!(
        record.status.contains("SigBlk:\t0000000000000000"),
        "{}",
        record.status
    );
}

#[test]
fn working_directory_comes_from_path_and_defaults_to_ours() {
    let setup = Setup::new();
    let work = setup.out("work dir");
    fs::create_dir_all(&work).unwrap();
    setup.app("with-path", &format!("Path={}", work.display()));
    let out = setup.out("path-out");
    setup
        .launcher
        .launch(&setup.request("with-path", &out))
        .unwrap();
    assert_eq!(wait_for_record(&out).cwd, work.canonicalize().unwrap());

    setup.app("no-path", "");
    let out = setup.out("nopath-out");
    setup
        .launcher
        .launch(&setup.request("no-path", &out))
        .unwrap();
    let ours = std::env::current_dir().unwrap().canonicalize().unwrap();
    assert_eq!(wait_for_record(&out).cwd, ours);
}

#[test]
fn startup_id_is_absent_without_startup_notify_or_when_disabled() {
    let mut setup = Setup::new();
    setup.app("quiet", "");
    let out = setup.out("quiet-out");
    setup
        .launcher
        .launch(&setup.request("quiet", &out))
        .unwrap();
    assert!(!wait_for_record(&out).env.contains_key("DESKTOP_STARTUP_ID"));

    setup.app("notify", "StartupNotify=true");
    setup.launcher.startup_notify = false;
    let out = setup.out("disabled-out");
    setup
        .launcher
        .launch(&setup.request("notify", &out))
        .unwrap();
    assert!(!wait_for_record(&out).env.contains_key("DESKTOP_STARTUP_ID"));
}

#[test]
fn scaled_launch_and_features_overlay_the_environment() {
    let setup = Setup::new();
    setup.app("scaled", "");
    let out = setup.out("scaled-out");
    let request = LaunchRequest {
        display_scaling: DisplayScaling::Scaled,
        features: [1, 2, 3, 42].map(ContainerFeature::from_wire).to_vec(),
        ..setup.request("scaled", &out)
    };
    setup.launcher.launch(&request).unwrap();
    let record = wait_for_record(&out);
    let want = expected_env(
        &setup,
        &[
            ("DISPLAY", ":1"),
            ("WAYLAND_DISPLAY", "wayland-1"),
            ("XCURSOR_SIZE", "12"),
            ("GTK_IM_MODULE", "cros"),
            ("CROS_IM_VIRTUAL_KEYBOARD", "1"),
            // QT_IM_MODULE was already set in garcon's environment: kept.
        ],
    );
    assert_eq!(record.env, want);
}

#[test]
fn program_name_is_resolved_through_the_childs_path() {
    let setup = Setup::new();
    setup.desktop(
        "by-name",
        "Type=Application\nName=N\nExec=record-launch.sh %f x",
    );
    let out = setup.out("byname-out");
    setup
        .launcher
        .launch(&setup.request("by-name", &out))
        .unwrap();
    assert_eq!(wait_for_record(&out).argv, ["x"]);
}

#[test]
fn every_failure_has_the_reference_reason() {
    let setup = Setup::new();
    let dir = setup.dir.path();
    setup.desktop("invalid", "Name=No type");
    setup.desktop("link", "Type=Link\nName=L\nURL=https://example.invalid");
    setup.desktop("empty-exec", "Type=Application\nName=E\nExec=");
    setup.desktop("codes-only", "Type=Application\nName=E\nExec=%U %i");
    setup.desktop(
        "missing-binary",
        "Type=Application\nName=M\nExec=/nonexistent/bin/app",
    );
    setup.desktop(
        "unknown-binary",
        "Type=Application\nName=M\nExec=no-such-program-xyz",
    );
    let noexec = dir.join("noexec.sh");
    fs::write(&noexec, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&noexec, fs::Permissions::from_mode(0o644)).unwrap();
    setup.desktop(
        "not-executable",
        &format!("Type=Application\nName=X\nExec={}", noexec.display()),
    );
    setup.desktop(
        "bad-path",
        &format!(
            "Type=Application\nName=P\nExec={}\nPath=/nonexistent/dir",
            recorder()
        ),
    );
    fs::create_dir_all(dir.join("share/applications/dir.desktop")).unwrap();
    let cases = [
        ("unknown", "Desktop file does not exist"),
        ("a/../invalid", "Desktop file does not exist"),
        ("invalid", "Desktop file contents are invalid"),
        ("dir", "Desktop file contents are invalid"),
        ("link", "Desktop file is not for an application"),
        (
            "empty-exec",
            "Failure in generating argv list for application",
        ),
        (
            "codes-only",
            "Failure in generating argv list for application",
        ),
        ("missing-binary", "Failure in execution of application"),
        ("unknown-binary", "Failure in execution of application"),
        ("not-executable", "Failure in execution of application"),
        ("bad-path", "Failure in execution of application"),
    ];
    for (id, reason) in cases {
        let request = LaunchRequest {
            desktop_file_id: id.into(),
            ..LaunchRequest::default()
        };
        let err = setup.launcher.launch(&request).unwrap_err();
        assert_eq!(err.failure_reason(), reason, "{id}: {err}");
        assert!(!err.is_invalid_argument(), "{id}");
    }
    let err = setup
        .launcher
        .launch(&LaunchRequest::default())
        .unwrap_err();
    assert!(matches!(err, LaunchError::MissingDesktopFileId));
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Issue 9 #3: a FIFO named `x.desktop` used to block the launching thread in `open()` forever
/// (one leaked thread per call). Each launch runs on its own thread so that, without the fix, the
/// test fails on the first attempt's timeout instead of hanging.
#[test]
fn fifo_desktop_file_fails_fast_every_time_and_valid_launches_still_work() {
    let setup = Setup::new();
    setup.app("rec", "");
    mkfifo(&setup.dir.path().join("share/applications/x.desktop"));
    let started = Instant::now();
    for attempt in 0..50 {
        let launcher = setup.launcher.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let request = LaunchRequest {
                desktop_file_id: "x".into(),
                ..LaunchRequest::default()
            };
            let _ = tx.send(launcher.launch(&request).map(|_| ()));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_else(|_| panic!("attempt {attempt}: launching a FIFO desktop file blocked"));
        let err = result.unwrap_err();
        assert_eq!(err.failure_reason(), "Desktop file contents are invalid");
        let text = err.to_string();
        assert!(
            text.contains("FIFO") && text.contains("x.desktop"),
            "{text}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let out = setup.out("after-fifo");
    setup.launcher.launch(&setup.request("rec", &out)).unwrap();
    assert_eq!(wait_for_record(&out).argv[0], "--name=Recorder");
}

#[tokio::test]
async fn grpc_translation_maps_success_in_band_failures_and_invalid_argument() {
    use crostini_proto::vm_tools::container::LaunchApplicationRequest;
    use garcon::service::launch::launch_application_with;
    let setup = Setup::new();
    setup.app("rec", "");
    let out = setup.out("grpc-out");
    let ok = launch_application_with(
        setup.launcher.clone(),
        LaunchApplicationRequest {
            desktop_file_id: "rec".into(),
            files: vec![out.display().to_string()],
            display_scaling: 1,
            container_features: vec![2, 77],
        },
    )
    .await
    .unwrap();
    assert!(ok.success, "{}", ok.failure_reason);
    assert!(ok.failure_reason.is_empty());
    let record = wait_for_record(&out);
    assert_eq!(record.env.get("DISPLAY").map(String::as_str), Some(":1"));
    assert_eq!(
        record
            .env
            .get("CROS_IM_VIRTUAL_KEYBOARD")
            .map(String::as_str),
        Some("1")
    );

    let missing = launch_application_with(
        setup.launcher.clone(),
        LaunchApplicationRequest {
            desktop_file_id: "nope".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!missing.success);
    assert_eq!(missing.failure_reason, "Desktop file does not exist");

    let status = launch_application_with(setup.launcher.clone(), Default::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
