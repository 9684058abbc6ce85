//! GetIcon robustness at process level (issue 9 #2, #4, #6): the built `garcon --server` on a
//! unix socket, the `crostini-host` stand-in as its host, a hermetic HOME and XDG data dir.
//! Each test prints the figures it measures (`cargo test -p garcon --test icons_process --
//! --nocapture`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::{HostConfig, RunningHost};
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::{IconRequest, IconResponse};
use image::{Rgba, RgbaImage};
use tonic::transport::Channel;

const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const GARCON: &str = env!("CARGO_BIN_EXE_garcon");

/// A temp dir with the token, `home/`, `data/` (XDG_DATA_DIRS) and the sockets.
struct Sandbox {
    dir: tempfile::TempDir,
}

/// A running garcon, killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A field of /proc/<pid>/status in kB (VmHWM, VmRSS).
    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in status"))
    }

    /// utime + stime of the garcon process itself, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields 14 and 15 of stat(5), counted from field 3 (the state) here.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Processes whose parent is garcon (render children that outlived their call).
    fn children(&self) -> Vec<u32> {
        let me = self.pid().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().nth(1))
                        == Some(&me)
                })
            })
            .collect()
    }
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        for sub in ["home", "data/applications"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }

    fn app(&self, id: &str, icon: &str) {
        self.write(
            &format!("data/applications/{id}.desktop"),
            format!("[Desktop Entry]\nType=Application\nName={id}\nExec=true\nIcon={icon}\n"),
        );
    }

    fn png(&self, rel: &str, image: &RgbaImage) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image.save(&path).unwrap();
        path
    }

    /// Starts the host and garcon, waits for ContainerReady, returns a GetIcon client.
    async fn start(&self) -> (RunningHost, Server, GarconClient<Channel>) {
        let host_address = Address::unix(self.path("host.sock"));
        let host = RunningHost::start(HostConfig {
            container_listener: Some(host_address.clone()),
            ..HostConfig::default()
        })
        .await
        .unwrap();
        host.register_container(TOKEN, "penguin");
        let log = self.path("garcon.log");
        let garcon_socket = self.path("garcon.sock");
        let child = Command::new(GARCON)
            .args(["--server", "--allow_any_user", "--log-stderr", "--listen"])
            .arg(format!("unix://{}", garcon_socket.display()))
            .arg("--host-address")
            .arg(host_address.to_string())
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
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server { child, log };
        if let Err(e) = host
            .wait_for(
                |e| e.payload.rpc() == "ContainerReady",
                Duration::from_secs(30),
            )
            .await
        {
            panic!("no ContainerReady: {e}; log:\n{}", server.log());
        }
        let channel =
            crostini_common::lazy_channel(&Address::unix(garcon_socket), Duration::from_secs(5))
                .unwrap();
        (host, server, GarconClient::new(channel))
    }
}

/// One GetIcon with a deadline: (reply, elapsed). Panics (with the log) on timeout.
async fn get_icon(
    client: &GarconClient<Channel>,
    server: &Server,
    ids: &[&str],
    size: i32,
    within: Duration,
) -> (IconResponse, Duration) {
    let request = IconRequest {
        desktop_file_ids: ids.iter().map(|s| s.to_string()).collect(),
        icon_size: size,
        scale: 1,
    };
    let started = Instant::now();
    let mut client = client.clone();
    match tokio::time::timeout(within, client.get_icon(request)).await {
        Ok(Ok(reply)) => (reply.into_inner(), started.elapsed()),
        Ok(Err(status)) => panic!("GetIcon {ids:?}: {status}"),
        Err(_) => panic!(
            "GetIcon {ids:?} did not answer within {within:?}; log:\n{}",
            server.log()
        ),
    }
}

fn solid(size: u32, rgba: [u8; 4]) -> RgbaImage {
    RgbaImage::from_pixel(size, size, Rgba(rgba))
}

/// issue 9 #2: a FIFO `index.theme` in `~/.icons` used to block the scan (holding the cache
/// mutex) in `open()`, so this GetIcon and every later one hung, even after the FIFO was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_index_theme_neither_hangs_get_icon_nor_outlives_its_removal() {
    let sandbox = Sandbox::new();
    let index = sandbox.path("home/.icons/hicolor/index.theme");
    std::fs::create_dir_all(index.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&index, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Reachable only through a valid index (`apps48` is not a size-named directory).
    sandbox.png(
        "home/.icons/hicolor/apps48/probe.png",
        &solid(48, [200, 0, 0, 255]),
    );
    sandbox.app("probe", "probe");
    let (_host, server, client) = sandbox.start().await;

    for attempt in 0..3 {
        let (reply, took) =
            get_icon(&client, &server, &["probe"], 48, Duration::from_secs(5)).await;
        println!("GetIcon with a FIFO index.theme (call {attempt}): {took:?}");
        assert!(reply.desktop_icons.is_empty());
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    std::fs::remove_file(&index).unwrap();
    std::fs::write(
        &index,
        "[Icon Theme]\nName=Hicolor\nDirectories=apps48\n[apps48]\nSize=48\nType=Fixed\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (reply, _) = get_icon(&client, &server, &["probe"], 48, Duration::from_secs(5)).await;
        if let Some(icon) = reply.desktop_icons.first() {
            let png = image::load_from_memory(&icon.icon).unwrap().into_rgba8();
            assert_eq!(png.get_pixel(24, 24).0, [200, 0, 0, 255]);
            break;
        }
        assert!(Instant::now() < deadline, "the valid theme was never used");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A blur + morphology chain that passes the complexity pre-check (6 primitives, radius 30)
/// but renders for minutes at 256 px.
const FILTER_CHAIN: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><filter id="f" x="-1" y="-1" width="3" height="3"><feGaussianBlur stdDeviation="40"/><feMorphology operator="dilate" radius="30"/><feGaussianBlur stdDeviation="40"/><feMorphology operator="erode" radius="30"/><feGaussianBlur stdDeviation="40"/><feMorphology operator="dilate" radius="30"/></filter><rect width="256" height="256" fill="red" filter="url(#f)"/></svg>"#;
/// `numOctaves="1e6"`: refused by the pre-check; before it, 19 s of CPU and a resvg panic.
const TURBULENCE: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><filter id="t"><feTurbulence baseFrequency="0.05" numOctaves="1000000"/></filter><rect width="256" height="256" filter="url(#t)"/></svg>"#;
/// Large-radius morphology: refused by the pre-check.
const MORPHOLOGY: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><filter id="m" x="-1" y="-1" width="3" height="3"><feMorphology operator="dilate" radius="200"/></filter><rect width="256" height="256" fill="red" filter="url(#m)"/></svg>"#;

/// issue 9 #4: every hostile SVG yields no icon within the budget (asserted <= 3 s), leaves no
/// render child running and no CPU burning in garcon, and garcon answers a normal call after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_svgs_are_abandoned_within_the_budget_and_garcon_still_answers() {
    let sandbox = Sandbox::new();
    for (name, svg) in [
        ("chain", FILTER_CHAIN),
        ("turbulence", TURBULENCE),
        ("morphology", MORPHOLOGY),
    ] {
        let path = sandbox.write(&format!("data/svg/{name}.svg"), svg);
        sandbox.app(name, &path.display().to_string());
    }
    let normal = sandbox.png("data/png/normal.png", &solid(64, [0, 0, 200, 255]));
    sandbox.app("normal", &normal.display().to_string());
    let (_host, server, client) = sandbox.start().await;

    for name in ["chain", "turbulence", "morphology"] {
        let (reply, took) = get_icon(&client, &server, &[name], 256, Duration::from_secs(10)).await;
        println!("hostile SVG {name:?} at 256 px: no icon after {took:?}");
        assert!(reply.desktop_icons.is_empty(), "{name}");
        assert!(took <= Duration::from_secs(3), "{name}: {took:?}");
        assert_eq!(server.children(), Vec::<u32>::new(), "render child left");
        let (reply, took) =
            get_icon(&client, &server, &["normal"], 48, Duration::from_secs(1)).await;
        assert_eq!(reply.desktop_icons.len(), 1, "normal icon after {name}");
        println!("  then a normal GetIcon: {took:?}");
    }
    // Nothing keeps running in the daemon once the calls returned.
    let before = server.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burned = server.cpu_ticks() - before;
    println!("garcon CPU in the second after the hostile renders: {burned} ticks");
    assert!(burned < 30, "garcon still burns CPU: {burned} ticks/s");
}

/// issue 9 #6: 30 parallel GetIcon calls for one legitimate 2048x2048 PNG (88 KB here) used to
/// decode it 30 times at once (1.6 GB RSS). Peak RSS (VmHWM) must stay <= 200 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_parallel_get_icons_of_a_2048_px_png_stay_under_200_mb() {
    let sandbox = Sandbox::new();
    let big = RgbaImage::from_fn(2048, 2048, |x, y| {
        Rgba([(x / 8) as u8, (y / 8) as u8, ((x ^ y) / 64) as u8, 255])
    });
    let path = sandbox.png("data/png/big.png", &big);
    drop(big);
    println!(
        "source: 2048x2048 PNG of {} bytes",
        std::fs::metadata(&path).unwrap().len()
    );
    sandbox.app("big", &path.display().to_string());
    let (_host, server, client) = sandbox.start().await;
    let baseline = server.status_kb("VmHWM");

    let started = Instant::now();
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let client = client.clone();
            let request = IconRequest {
                desktop_file_ids: vec!["big".into()],
                icon_size: 48,
                scale: 1,
            };
            tokio::spawn(async move { client.clone().get_icon(request).await })
        })
        .collect();
    let mut icons = 0;
    for call in calls {
        let reply = tokio::time::timeout(Duration::from_secs(120), call)
            .await
            .expect("GetIcon answered")
            .unwrap()
            .expect("GetIcon ok")
            .into_inner();
        icons += reply.desktop_icons.len();
    }
    let peak = server.status_kb("VmHWM");
    println!(
        "30 parallel GetIcon of a 2048x2048 PNG: {icons} icons in {:?}, VmHWM {} MB (baseline {} MB)",
        started.elapsed(),
        peak / 1024,
        baseline / 1024
    );
    assert_eq!(icons, 30, "log:\n{}", server.log());
    assert!(peak <= 200 * 1024, "peak RSS {} MB", peak / 1024);
}
