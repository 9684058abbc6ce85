//! Icon lookup and GetIcon benchmarks on a synthetic hicolor theme (300 icon names, 3 raster
//! sizes each plus SVGs, 9 listed directories) in a temporary data dir.
//!
//! * `icon_lookup/cold`: drop every cache, rescan the tree, look one name up.
//! * `icon_lookup/index_only`: the theme algorithm on a scanned index, no result cache.
//! * `icon_lookup/warm`: a cached `(name, size, scale)` lookup.
//! * `get_icon_48/*_render`: read + decode + (resize/render) + encode of one file at 48 px.
//! * `get_icon_48/*_warm`: a whole GetIcon for one ID (desktop lookup + parse + cached PNG).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use garcon::desktop::XdgDirs;
use garcon::icons::lookup::{IconIndex, SearchPaths};
use garcon::icons::render::{render_icon_file, MAX_ICON_FILE_SIZE};
use garcon::icons::{IconConfig, IconService};
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
    group.bench_function("svg_render", |b| {
        b.iter(|| black_box(render_icon_file(&svg, 48, MAX_ICON_FILE_SIZE).unwrap()))
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

criterion_group!(benches, lookup, get_icon);
criterion_main!(benches);
