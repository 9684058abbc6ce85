//! Icon lookup and GetIcon benchmarks on a synthetic hicolor theme (300 icon names, 3 raster
//! sizes each plus SVGs, 9 listed directories) in a temporary data dir.
//!
//! * `icon_lookup/cold`: drop every cache, rescan the tree, look one name up.
//! * `icon_lookup/index_only`: the theme algorithm on a scanned index, no result cache.
//! * `icon_lookup/warm`: a cached `(name, size, scale)` lookup.
//! * `get_icon_48/*_render`: read + decode + (resize/render) + encode of one file at 48 px
//!   (`svg_render` in a child process under the SVG budget, as the daemon does;
//!   `svg_render_in_process` without the child).
//! * `get_icon_48/*_warm`: a whole GetIcon for one ID (desktop lookup + parse + cached PNG).
//! * `get_icon_rpc/*`: the GetIcon gRPC round trip through the real [`GarconService`] on a unix
//!   socket (client and server in this process), against the fixture tree
//!   `tests/fixtures/icons`, warm; `in_process_*` is the same request on the same (shared)
//!   `IconService` without gRPC, for the rpc/in-process ratio.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use crostini_common::transport::Listener;
use crostini_common::Address;
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::garcon_server::GarconServer;
use crostini_proto::vm_tools::container::IconRequest;
use garcon::config::Paths;
use garcon::desktop::XdgDirs;
use garcon::host::HostClient;
use garcon::icons::lookup::{IconIndex, SearchPaths};
use garcon::icons::render::{render_icon_bytes, render_icon_file, MAX_ICON_FILE_SIZE};
use garcon::icons::{IconConfig, IconService};
use garcon::service::GarconService;
use garcon::state::GarconState;
use image::{Rgba, RgbaImage};

const NAMES: usize = 300;
const SIZES: [u32; 3] = [16, 48, 256];

const INDEX: &str = "[Icon Theme]\nName=Hicolor\n\
Directories=16x16/apps,22x22/apps,24x24/apps,32x32/apps,48x48/apps,64x64/apps,128x128/apps,256x256/apps,scalable/apps\n\
[16x16/apps]\nSize=16\nType=Threshold\n[22x22/apps]\nSize=22\nType=Threshold\n\
[24x24/apps]\nSize=24\nType=Threshold\n[32x32/apps]\nSize=32\nType=Threshold\n\
[48x48/apps]\nSize=48\nType=Threshold\n[64x64/apps]\nSize=64\nType=Threshold\n\
[128x128/apps]\nSize=128\nType=Threshold\n[256x256/apps]\nSize=256\nType=Threshold\n\
[scalable/apps]\nSize=128\nMinSize=8\nMaxSize=512\nType=Scalable\n";

/// A typical app-icon SVG: gradient background, circle, a couple of paths, a stroke.
const SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">
<defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1">
<stop offset="0" stop-color="#62a0ea"/><stop offset="1" stop-color="#1a5fb4"/></linearGradient></defs>
<rect x="8" y="8" width="112" height="112" rx="24" fill="url(#g)"/>
<circle cx="64" cy="60" r="30" fill="#ffffff" fill-opacity="0.9"/>
<path d="M40 100 Q64 76 88 100 Z" fill="#f6d32d" stroke="#e5a50a" stroke-width="3"/>
<path d="M52 52 L76 52 L64 72 Z" fill="#c01c28"/>
</svg>"##;

struct Fixture {
    _dir: tempfile::TempDir,
    share: PathBuf,
}

fn write_png(path: &Path, size: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A gradient so the encoder and the resampler do real work.
    let image = RgbaImage::from_fn(size, size, |x, y| {
        Rgba([(x * 255 / size) as u8, (y * 255 / size) as u8, seed, 255])
    });
    image.save(path).unwrap();
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let theme = share.join("icons/hicolor");
    std::fs::create_dir_all(&theme).unwrap();
    std::fs::write(theme.join("index.theme"), INDEX).unwrap();
    for i in 0..NAMES {
        for size in SIZES {
            write_png(
                &theme.join(format!("{size}x{size}/apps/app{i}.png")),
                size,
                i as u8,
            );
        }
    }
    let scalable = theme.join("scalable/apps");
    std::fs::create_dir_all(&scalable).unwrap();
    std::fs::write(scalable.join("vector.svg"), SVG).unwrap();
    let apps = share.join("applications");
    std::fs::create_dir_all(&apps).unwrap();
    for (id, icon) in [("png-app", "app7"), ("svg-app", "vector")] {
        std::fs::write(
            apps.join(format!("{id}.desktop")),
            format!("[Desktop Entry]\nType=Application\nName={id}\nExec=true\nIcon={icon}\n"),
        )
        .unwrap();
    }
    Fixture { _dir: dir, share }
}

fn service(f: &Fixture, revalidate: Duration) -> IconService {
    let config = IconConfig {
        revalidate_interval: revalidate,
        ..IconConfig::default()
    };
    IconService::new(XdgDirs::from_data_dirs(vec![f.share.clone()]), None, config)
}

fn lookup(c: &mut Criterion) {
    let f = fixture();
    let svc = service(&f, Duration::from_secs(1));
    let mut group = c.benchmark_group("icon_lookup");
    group.bench_function("cold", |b| {
        b.iter(|| {
            svc.invalidate();
            black_box(svc.find_icon("app150", 48, 1))
        })
    });
    let xdg = XdgDirs::from_data_dirs(vec![f.share.clone()]);
    let index = IconIndex::scan(&SearchPaths::new(&xdg, None, vec!["gnome".into()]));
    group.bench_function("index_only", |b| {
        b.iter(|| black_box(index.lookup(black_box("app150"), 40, 1)))
    });
    svc.find_icon("app150", 48, 1);
    group.bench_function("warm", |b| {
        b.iter(|| black_box(svc.find_icon(black_box("app150"), 48, 1)))
    });
    // A warm lookup that also pays the staleness check (one stat per tracked directory).
    let always = service(&f, Duration::ZERO);
    always.find_icon("app150", 48, 1);
    group.bench_function("warm_revalidating", |b| {
        b.iter(|| black_box(always.find_icon(black_box("app150"), 48, 1)))
    });
    group.finish();
}

fn get_icon(c: &mut Criterion) {
    let f = fixture();
    let theme = f.share.join("icons/hicolor");
    let png48 = theme.join("48x48/apps/app7.png");
    let png256 = theme.join("256x256/apps/app7.png");
    let svg = theme.join("scalable/apps/vector.svg");
    let mut group = c.benchmark_group("get_icon_48");
    group.bench_function("png_exact_render", |b| {
        b.iter(|| black_box(render_icon_file(&png48, 48, MAX_ICON_FILE_SIZE).unwrap()))
    });
    group.bench_function("png_from_256_render", |b| {
        b.iter(|| black_box(render_icon_file(&png256, 48, MAX_ICON_FILE_SIZE).unwrap()))
    });
    // The daemon's path: the SVG is rendered in a child process under the render budget.
    group.bench_function("svg_render", |b| {
        b.iter(|| black_box(render_icon_file(&svg, 48, MAX_ICON_FILE_SIZE).unwrap()))
    });
    // The same render in this process, for the cost of the child.
    let svg_bytes = std::fs::read(&svg).unwrap();
    group.bench_function("svg_render_in_process", |b| {
        b.iter(|| black_box(render_icon_bytes(&svg, &svg_bytes, 48).unwrap()))
    });
    let svc = service(&f, Duration::from_secs(1));
    for id in ["png-app", "svg-app"] {
        let ids = vec![id.to_owned()];
        assert_eq!(svc.get_icons(&ids, 48, 1).len(), 1);
        let name = format!("{}_warm", id.trim_end_matches("-app"));
        group.bench_function(name, |b| b.iter(|| black_box(svc.get_icons(&ids, 48, 1))));
    }
    group.finish();
}

/// The fixture tree shared with `garcon/tests/icons.rs` (see its README.md).
fn icon_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/icons")
}

/// Fixture desktop IDs that all resolve to an icon at 48 px (PNG, SVG, XPM, inherited, themed,
/// home theme, base dir, pixmap): the "10 IDs" request.
const TEN_IDS: [&str; 10] = [
    "app-png",
    "app-svg",
    "app-mixed",
    "app-22",
    "app-xpm",
    "app-themed",
    "app-inherited",
    "app-home",
    "app-basedir",
    "app-pixmap",
];

/// Points the process environment at the fixture tree. `GarconState` builds its one
/// `IconService` from `XDG_DATA_DIRS` / `XDG_DATA_HOME` / `HOME` on first use (there is no
/// injection point), so this must run before any thread exists: first thing in `main`.
fn point_environment_at_fixture() {
    let root = icon_fixture();
    std::env::set_var("XDG_DATA_DIRS", root.join("share"));
    std::env::set_var("HOME", root.join("home"));
    std::env::remove_var("XDG_DATA_HOME");
}

fn request(ids: &[&str]) -> IconRequest {
    IconRequest {
        desktop_file_ids: ids.iter().map(|id| id.to_string()).collect(),
        icon_size: 48,
        scale: 1,
    }
}

/// Runs `iters` sequential GetIcon calls inside the runtime and returns their total time, so the
/// figure is the round trip alone (no per-iteration `block_on`).
fn time_rpcs(
    rt: &tokio::runtime::Runtime,
    client: &GarconClient<tonic::transport::Channel>,
    req: &IconRequest,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let mut client = client.clone();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(client.get_icon(req.clone()).await.unwrap());
        }
        start.elapsed()
    })
}

fn get_icon_rpc(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, state) = rt.block_on(async {
        // GetIcon never talks to the host; the lazy channel never connects.
        let host =
            HostClient::new(&Address::unix(dir.path().join("no-host.sock")), "bench").unwrap();
        let state = Arc::new(GarconState::new(host, Paths::from_env(), false));
        let listener = Listener::bind(&Address::unix(dir.path().join("garcon.sock")))
            .await
            .unwrap();
        let address = listener.local_address().clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(GarconServer::new(GarconService::new(state.clone())))
                .serve_with_incoming(listener.into_incoming()),
        );
        let channel = crostini_common::lazy_channel(&address, Duration::from_secs(5)).unwrap();
        (GarconClient::new(channel), state)
    });
    let icons = state.extension::<IconService>();
    let one = request(&TEN_IDS[..1]);
    let ten = request(&TEN_IDS);

    // Warm the caches and check the service really serves the fixture tree: app-png at 48 px is
    // the green 48x48 hicolor file, and every one of the ten IDs has an icon.
    let reply = rt
        .block_on(client.clone().get_icon(one.clone()))
        .unwrap()
        .into_inner();
    assert_eq!(reply.desktop_icons.len(), 1);
    let png = image::load_from_memory(&reply.desktop_icons[0].icon)
        .unwrap()
        .into_rgba8();
    assert_eq!(
        (png.width(), png.get_pixel(24, 24).0),
        (48, [0, 255, 0, 255])
    );
    let reply = rt
        .block_on(client.clone().get_icon(ten.clone()))
        .unwrap()
        .into_inner();
    assert_eq!(reply.desktop_icons.len(), TEN_IDS.len());

    let mut group = c.benchmark_group("get_icon_rpc");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, req) in [("png48", &one), ("ten_ids", &ten)] {
        group.bench_function(format!("rpc_{name}"), |b| {
            b.iter_custom(|iters| time_rpcs(&rt, &client, req, iters))
        });
        group.bench_function(format!("in_process_{name}"), |b| {
            b.iter(|| black_box(icons.get_icons(&req.desktop_file_ids, 48, 1)))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, get_icon, get_icon_rpc);

// `criterion_main!` with the environment set up before anything else runs.
fn main() {
    point_environment_at_fixture();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
