//! GetIcon against the fixture theme tree `tests/fixtures/icons` (see its README.md) and
//! against temporary trees for cache invalidation and bad input.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use garcon::desktop::XdgDirs;
use garcon::icons::{IconConfig, IconError, IconService};
use image::RgbaImage;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/icons")
}

/// The fixture service: data dir `share`, home `home`, no system pixmaps.
fn fixture_service() -> IconService {
    let root = fixture();
    let xdg = XdgDirs::from_data_dirs(vec![root.join("share")]);
    let mut service = IconService::new(xdg, Some(&root.join("home")), IconConfig::default());
    // Keep the machine's /usr/share/pixmaps out of the results.
    let mut paths = service.search_paths().clone();
    paths.pixmap_dirs.retain(|d| d.starts_with(&root));
    service = IconService::with_paths(
        XdgDirs::from_data_dirs(vec![root.join("share")]),
        paths,
        IconConfig::default(),
    );
    service
}

fn decode(png: &[u8]) -> RgbaImage {
    image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .expect("returned icon is a PNG")
        .into_rgba8()
}

fn rel(path: &Path) -> String {
    let root = fixture().canonicalize().unwrap();
    let parent = path.parent().unwrap().canonicalize().unwrap();
    parent
        .join(path.file_name().unwrap())
        .strip_prefix(&root)
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn each_name_size_and_scale_selects_the_expected_file() {
    let service = fixture_service();
    let cases: &[(&str, u32, u32, &str)] = &[
        // Exact matches (pass 1).
        (
            "app-png",
            16,
            1,
            "share/icons/hicolor/16x16/apps/app-png.png",
        ),
        (
            "app-png",
            48,
            1,
            "share/icons/hicolor/48x48/apps/app-png.png",
        ),
        (
            "app-png",
            48,
            2,
            "share/icons/hicolor/48x48@2/apps/app-png.png",
        ),
        (
            "app-png",
            64,
            1,
            "share/icons/hicolor/64x64/apps/app-png.png",
        ),
        (
            "app-png",
            17,
            1,
            "share/icons/hicolor/16x16/apps/app-png.png",
        ),
        // Closest directory in scaled pixels (pass 2).
        (
            "app-png",
            96,
            1,
            "share/icons/hicolor/48x48@2/apps/app-png.png",
        ),
        (
            "app-png",
            24,
            1,
            "share/icons/hicolor/16x16/apps/app-png.png",
        ),
        (
            "app-png",
            40,
            1,
            "share/icons/hicolor/48x48/apps/app-png.png",
        ),
        (
            "app-png",
            128,
            1,
            "share/icons/hicolor/48x48@2/apps/app-png.png",
        ),
        (
            "app-png",
            32,
            2,
            "share/icons/hicolor/64x64/apps/app-png.png",
        ),
        // Scalable directory matches inside MinSize..MaxSize; listing order decides ties.
        (
            "app-svg",
            48,
            1,
            "share/icons/hicolor/scalable/apps/app-svg.svg",
        ),
        (
            "app-svg",
            512,
            2,
            "share/icons/hicolor/scalable/apps/app-svg.svg",
        ),
        (
            "app-mixed",
            16,
            1,
            "share/icons/hicolor/16x16/apps/app-mixed.png",
        ),
        (
            "app-mixed",
            18,
            1,
            "share/icons/hicolor/16x16/apps/app-mixed.png",
        ),
        (
            "app-mixed",
            48,
            1,
            "share/icons/hicolor/scalable/apps/app-mixed.svg",
        ),
        // Fixed directory: exact size only, else closest.
        ("app-22", 22, 1, "share/icons/hicolor/22x22/apps/app-22.png"),
        ("app-22", 24, 1, "share/icons/hicolor/22x22/apps/app-22.png"),
        // XPM.
        (
            "app-xpm",
            32,
            1,
            "share/icons/hicolor/32x32/apps/app-xpm.xpm",
        ),
        // The configured theme beats hicolor even at a worse size; parents via Inherits
        // (with an inheritance loop gnome -> Parent -> gnome).
        (
            "app-themed",
            48,
            1,
            "share/icons/gnome/256x256/apps/app-themed.png",
        ),
        (
            "app-inherited",
            48,
            1,
            "share/icons/Parent/32x32/apps/app-inherited.png",
        ),
        // $HOME/.icons comes before the data dirs.
        (
            "app-home",
            48,
            1,
            "home/.icons/hicolor/48x48/apps/app-home.png",
        ),
        // Fallbacks: directly in a base dir, then pixmaps.
        ("app-basedir", 48, 1, "share/icons/app-basedir.png"),
        ("app-pixmap", 48, 1, "share/pixmaps/app-pixmap.png"),
        // Found by the lookup even though it will fail to decode.
        (
            "app-corrupt",
            48,
            1,
            "share/icons/hicolor/48x48/apps/app-corrupt.png",
        ),
    ];
    for &(name, size, scale, want) in cases {
        let found = service
            .find_icon(name, size, scale)
            .unwrap_or_else(|| panic!("{name} {size}@{scale}: not found"));
        assert_eq!(rel(&found), want, "{name} {size}@{scale}");
    }
}

#[test]
fn missing_looping_and_unsafe_names_are_not_found() {
    let service = fixture_service();
    for name in [
        "does-not-exist",
        "app-loop",
        "app-dirloop",
        "../hicolor/48x48/apps/app-png",
        "",
    ] {
        assert_eq!(service.find_icon(name, 48, 1), None, "{name:?}");
    }
    assert_eq!(service.find_icon("app-png", 0, 1), None);
    assert_eq!(service.find_icon("app-png", 48, 0), None);
}

/// `(id, size, scale, expected RGBA at the center)` for every ID that yields an icon.
#[test]
fn get_icons_returns_pngs_of_size_times_scale_with_the_chosen_file_pixels() {
    let service = fixture_service();
    let cases: &[(&str, i32, i32, [u8; 4])] = &[
        ("app-png", 16, 1, [255, 0, 0, 255]),
        ("app-png", 48, 1, [0, 255, 0, 255]),
        ("app-png", 48, 2, [0, 0, 255, 255]),
        ("app-png", 24, 1, [255, 0, 0, 255]),
        ("app-png", 32, 2, [255, 255, 0, 255]),
        ("app-svg", 48, 1, [255, 0, 255, 255]),
        ("app-svg", 64, 2, [255, 0, 255, 255]),
        ("app-mixed", 16, 1, [0, 255, 255, 255]),
        ("app-mixed", 48, 1, [255, 0, 255, 255]),
        ("app-xpm", 32, 1, [0, 128, 128, 255]),
        ("app-xpm", 48, 1, [0, 128, 128, 255]),
        ("app-22", 22, 1, [255, 128, 0, 255]),
        ("app-themed", 48, 1, [128, 0, 128, 255]),
        ("app-inherited", 48, 1, [128, 128, 0, 255]),
        ("app-home", 48, 1, [255, 255, 255, 255]),
        ("app-basedir", 48, 1, [0, 0, 128, 255]),
        ("app-pixmap", 48, 1, [128, 64, 0, 255]),
        ("app-ext", 48, 1, [0, 255, 0, 255]),
    ];
    for &(id, size, scale, center) in cases {
        let icons = service.get_icons(&[id.to_owned()], size, scale);
        assert_eq!(icons.len(), 1, "{id} {size}@{scale}");
        assert_eq!(icons[0].desktop_file_id, id);
        let image = decode(&icons[0].png);
        let px = (size * scale) as u32;
        assert_eq!(image.dimensions(), (px, px), "{id} {size}@{scale}");
        let got = image.get_pixel(px / 2, px / 2).0;
        let close = got.iter().zip(center).all(|(a, b)| a.abs_diff(b) <= 2);
        assert!(
            close,
            "{id} {size}@{scale}: center {got:?}, want {center:?}"
        );
    }
}

#[test]
fn exact_size_png_goes_out_byte_for_byte() {
    let service = fixture_service();
    let icons = service.get_icons(&["app-png".to_owned()], 48, 1);
    let file = fs::read(fixture().join("share/icons/hicolor/48x48/apps/app-png.png")).unwrap();
    assert_eq!(*icons[0].png, file);
}

#[test]
fn non_square_pixmap_is_centered_on_transparency() {
    let service = fixture_service();
    let icons = service.get_icons(&["app-pixmap".to_owned()], 48, 1);
    let image = decode(&icons[0].png);
    assert_eq!(image.get_pixel(24, 2).0[3], 0);
    assert_eq!(image.get_pixel(24, 45).0[3], 0);
    assert_eq!(image.get_pixel(2, 24).0, [128, 64, 0, 255]);
}

#[test]
fn failing_ids_are_omitted_and_order_is_preserved() {
    let service = fixture_service();
    let ids: Vec<String> = [
        "app-png",
        "unknown-id",
        "app-corrupt",
        "app-loop",
        "app-dirloop",
        "app-missing",
        "app-traversal",
        "app-noicon",
        "app-svg",
        "app-png",
    ]
    .map(String::from)
    .to_vec();
    let icons = service.get_icons(&ids, 48, 1);
    let got: Vec<&str> = icons.iter().map(|i| i.desktop_file_id.as_str()).collect();
    assert_eq!(got, ["app-png", "app-svg", "app-png"]);
}

#[test]
fn failure_reasons_say_why() {
    let service = fixture_service();
    let reason = |id: &str, size, scale| service.icon_for_id(id, size, scale).unwrap_err();
    assert!(matches!(reason("nope", 48, 1), IconError::NoDesktopFile(_)));
    assert!(matches!(
        reason("app-noicon", 48, 1),
        IconError::NoIconKey(_)
    ));
    assert!(matches!(
        reason("app-missing", 48, 1),
        IconError::NotFound { .. }
    ));
    assert!(matches!(reason("app-corrupt", 48, 1), IconError::Render(_)));
    assert!(matches!(reason("app-png", 0, 1), IconError::BadSize { .. }));
}

#[test]
fn zero_negative_and_huge_sizes_yield_no_icons_without_panicking() {
    let service = fixture_service();
    let ids = vec!["app-png".to_owned(), "app-svg".to_owned()];
    for (size, scale) in [
        (0, 1),
        (48, 0),
        (-48, 1),
        (48, -2),
        (i32::MAX, i32::MAX),
        (1025, 1),
        (513, 2),
    ] {
        assert!(
            service.get_icons(&ids, size, scale).is_empty(),
            "{size}@{scale}"
        );
    }
    assert_eq!(service.get_icons(&ids, 512, 2).len(), 2);
}

/// A temporary data dir with `applications/` and `icons/hicolor/`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.share().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        path
    }

    fn app(&self, id: &str, icon: &str) {
        self.write(
            &format!("applications/{id}.desktop"),
            format!("[Desktop Entry]\nType=Application\nName={id}\nExec=true\nIcon={icon}\n"),
        );
    }

    fn png(&self, rel: &str, size: u32, rgba: [u8; 4]) -> PathBuf {
        let image = RgbaImage::from_pixel(size, size, image::Rgba(rgba));
        let mut bytes = Vec::new();
        image
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        self.write(rel, bytes)
    }

    fn service(&self, revalidate: Duration) -> IconService {
        let xdg = XdgDirs::from_data_dirs(vec![self.share()]);
        let mut paths =
            garcon::icons::lookup::SearchPaths::new(&xdg, None, vec!["gnome".to_owned()]);
        paths.pixmap_dirs.retain(|d| d.starts_with(self.dir.path()));
        let config = IconConfig {
            revalidate_interval: revalidate,
            ..IconConfig::default()
        };
        IconService::with_paths(xdg, paths, config)
    }
}

const INDEX: &str = "[Icon Theme]\nName=Hicolor\nDirectories=48x48/apps,64x64/apps\n\
                     [48x48/apps]\nSize=48\nType=Fixed\n[64x64/apps]\nSize=64\nType=Fixed\n";

#[test]
fn icons_that_appear_after_their_desktop_file_are_picked_up() {
    let tree = Tree::new();
    tree.write("icons/hicolor/index.theme", INDEX);
    fs::create_dir_all(tree.share().join("icons/hicolor/48x48/apps")).unwrap();
    tree.app("late", "late");
    let service = tree.service(Duration::ZERO);
    let ids = ["late".to_owned()];
    assert!(service.get_icons(&ids, 48, 1).is_empty());

    // A new file in an existing directory.
    tree.png("icons/hicolor/48x48/apps/late.png", 48, [1, 2, 3, 255]);
    let icons = service.get_icons(&ids, 64, 1);
    assert_eq!(icons.len(), 1);
    assert!(icons[0].source.ends_with("48x48/apps/late.png"));

    // A size directory that did not exist at the first scan.
    tree.png("icons/hicolor/64x64/apps/late.png", 64, [4, 5, 6, 255]);
    let icons = service.get_icons(&ids, 64, 1);
    assert!(icons[0].source.ends_with("64x64/apps/late.png"));
    assert_eq!(decode(&icons[0].png).get_pixel(0, 0).0, [4, 5, 6, 255]);
}

#[test]
fn a_theme_and_base_dir_created_later_are_picked_up() {
    let tree = Tree::new();
    tree.app("app", "app");
    let service = tree.service(Duration::ZERO);
    let ids = ["app".to_owned()];
    assert!(service.get_icons(&ids, 48, 1).is_empty());
    tree.write(
        "icons/gnome/index.theme",
        "[Icon Theme]\nDirectories=apps48\n[apps48]\nSize=48\n",
    );
    tree.png("icons/gnome/apps48/app.png", 48, [9, 9, 9, 255]);
    let icons = service.get_icons(&ids, 48, 1);
    assert_eq!(icons.len(), 1);
    assert!(icons[0].source.ends_with("gnome/apps48/app.png"));
}

#[test]
fn editing_index_theme_in_place_is_noticed() {
    let tree = Tree::new();
    tree.write(
        "icons/hicolor/index.theme",
        "[Icon Theme]\nDirectories=48x48/apps\n[48x48/apps]\nSize=48\nType=Fixed\n",
    );
    tree.png("icons/hicolor/48x48/apps/app.png", 48, [1, 1, 1, 255]);
    tree.png("icons/hicolor/96x96/apps/app.png", 96, [2, 2, 2, 255]);
    tree.app("app", "app");
    let service = tree.service(Duration::ZERO);
    let first = service.find_icon("app", 96, 1).unwrap();
    assert!(first.ends_with("48x48/apps/app.png"));
    tree.write(
        "icons/hicolor/index.theme",
        "[Icon Theme]\nDirectories=48x48/apps,96x96/apps\n[48x48/apps]\nSize=48\nType=Fixed\n\
         [96x96/apps]\nSize=96\nType=Fixed\n",
    );
    let second = service.find_icon("app", 96, 1).unwrap();
    assert!(second.ends_with("96x96/apps/app.png"), "{second:?}");
}

#[test]
fn replacing_a_file_in_place_refreshes_the_rendered_png() {
    let tree = Tree::new();
    tree.write("icons/hicolor/index.theme", INDEX);
    tree.png("icons/hicolor/48x48/apps/app.png", 48, [10, 0, 0, 255]);
    tree.app("app", "app");
    let service = tree.service(Duration::ZERO);
    let ids = ["app".to_owned()];
    let before = service.get_icons(&ids, 32, 1);
    assert_eq!(decode(&before[0].png).get_pixel(16, 16).0, [10, 0, 0, 255]);
    // Different size so the stamp changes even on coarse-timestamp filesystems.
    let image = RgbaImage::from_pixel(40, 40, image::Rgba([0, 20, 0, 255]));
    image
        .save(tree.share().join("icons/hicolor/48x48/apps/app.png"))
        .unwrap();
    let after = service.get_icons(&ids, 32, 1);
    assert_eq!(decode(&after[0].png).get_pixel(16, 16).0, [0, 20, 0, 255]);
}

#[test]
fn warm_lookups_and_renders_come_from_the_cache() {
    let tree = Tree::new();
    tree.write("icons/hicolor/index.theme", INDEX);
    tree.png("icons/hicolor/64x64/apps/app.png", 64, [1, 2, 3, 255]);
    tree.app("app", "app");
    let service = tree.service(Duration::from_secs(3600));
    let ids = ["app".to_owned()];
    let first = service.get_icons(&ids, 48, 1);
    let second = service.get_icons(&ids, 48, 1);
    assert_eq!(first, second);
    let stats = service.stats();
    assert_eq!(stats.scans, 1);
    assert_eq!((stats.lookup_misses, stats.lookup_hits), (1, 1));
    assert_eq!((stats.render_misses, stats.render_hits), (1, 1));
    assert!(Arc::ptr_eq(&first[0].png, &second[0].png));

    // Within the revalidation interval a new icon is not seen; invalidate() forces a rescan.
    tree.png("icons/hicolor/48x48/apps/app.png", 48, [7, 7, 7, 255]);
    assert!(service.get_icons(&ids, 48, 1)[0]
        .source
        .ends_with("64x64/apps/app.png"));
    service.invalidate();
    assert!(service.get_icons(&ids, 48, 1)[0]
        .source
        .ends_with("48x48/apps/app.png"));
    assert_eq!(service.stats().scans, 2);
}

#[test]
fn theme_without_index_uses_the_size_directories_it_has() {
    let tree = Tree::new();
    tree.png("icons/hicolor/48x48/apps/app.png", 48, [1, 0, 0, 255]);
    tree.png("icons/hicolor/256x256/apps/app.png", 256, [2, 0, 0, 255]);
    tree.write(
        "icons/hicolor/scalable/apps/vec.svg",
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="red"/></svg>"#,
    );
    tree.png("icons/hicolor/48x48/apps/vec.png", 48, [3, 0, 0, 255]);
    let service = tree.service(Duration::ZERO);
    let found = |name: &str, size| service.find_icon(name, size, 1).unwrap();
    assert!(found("app", 48).ends_with("48x48/apps/app.png"));
    assert!(found("app", 200).ends_with("256x256/apps/app.png"));
    // Exact-size raster beats the scalable directory; other sizes take the SVG.
    assert!(found("vec", 48).ends_with("48x48/apps/vec.png"));
    assert!(found("vec", 100).ends_with("scalable/apps/vec.svg"));
}

#[test]
fn oversized_file_is_omitted_without_falling_back() {
    let tree = Tree::new();
    tree.write("icons/hicolor/index.theme", INDEX);
    tree.png("icons/hicolor/64x64/apps/app.png", 64, [1, 2, 3, 255]);
    tree.write(
        "icons/hicolor/48x48/apps/app.png",
        vec![0u8; 2 * 1024 * 1024],
    );
    tree.app("app", "app");
    let service = tree.service(Duration::ZERO);
    assert!(service.get_icons(&["app".to_owned()], 48, 1).is_empty());
    assert_eq!(service.get_icons(&["app".to_owned()], 64, 1).len(), 1);
}

#[test]
fn absolute_icon_paths_are_rendered_or_omitted() {
    let tree = Tree::new();
    let svg = tree.write(
        "elsewhere/logo.svg",
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="blue"/></svg>"#,
    );
    let xpm = tree.write(
        "elsewhere/logo.xpm",
        "/* XPM */\nstatic char *x[] = {\"2 2 1 1\", \"a c #00ff00\", \"aa\", \"aa\"};\n",
    );
    tree.app("abs-svg", &svg.display().to_string());
    tree.app("abs-xpm", &xpm.display().to_string());
    tree.app("abs-missing", "/nonexistent/icon.png");
    tree.app("abs-dev", "/dev/zero");
    let service = tree.service(Duration::ZERO);
    let ids = ["abs-svg", "abs-missing", "abs-dev", "abs-xpm"].map(String::from);
    let icons = service.get_icons(&ids, 16, 2);
    let got: Vec<&str> = icons.iter().map(|i| i.desktop_file_id.as_str()).collect();
    assert_eq!(got, ["abs-svg", "abs-xpm"]);
    assert_eq!(decode(&icons[0].png).get_pixel(16, 16).0, [0, 0, 255, 255]);
    assert_eq!(decode(&icons[1].png).dimensions(), (32, 32));
    assert_eq!(decode(&icons[1].png).get_pixel(16, 16).0, [0, 255, 0, 255]);
}

#[test]
fn response_is_capped_below_the_host_limit() {
    let tree = Tree::new();
    tree.write("icons/hicolor/index.theme", INDEX);
    tree.png("icons/hicolor/48x48/apps/app.png", 48, [1, 2, 3, 255]);
    tree.app("app", "app");
    let xdg = XdgDirs::from_data_dirs(vec![tree.share()]);
    let one = tree
        .service(Duration::ZERO)
        .get_icons(&["app".to_owned()], 48, 1)[0]
        .png
        .len();
    let config = IconConfig {
        max_response_bytes: one * 2,
        ..IconConfig::default()
    };
    let service = IconService::new(xdg, None, config);
    let ids = vec!["app".to_owned(); 5];
    assert_eq!(service.get_icons(&ids, 48, 1).len(), 2);
}

#[tokio::test]
async fn grpc_reply_carries_png_format_and_bytes() {
    use crostini_proto::vm_tools::container::{desktop_icon::Format, IconRequest};
    let service = Arc::new(fixture_service());
    let request = IconRequest {
        desktop_file_ids: vec!["app-svg".into(), "nope".into(), "app-png".into()],
        icon_size: 48,
        scale: 1,
    };
    let reply = garcon::service::icons::get_icon_with(service, request)
        .await
        .unwrap();
    let ids: Vec<&str> = reply
        .desktop_icons
        .iter()
        .map(|i| i.desktop_file_id.as_str())
        .collect();
    assert_eq!(ids, ["app-svg", "app-png"]);
    for icon in &reply.desktop_icons {
        assert_eq!(icon.format, Format::Png as i32);
        assert_eq!(decode(&icon.icon).dimensions(), (48, 48));
    }
}

/// issue 9 #2, in-process: a FIFO `index.theme` (the theme falls back to its size-named
/// directories) and a FIFO where an icon is expected cost no wait and no icon.
#[test]
fn fifo_index_theme_and_fifo_icon_are_refused_promptly() {
    let tree = Tree::new();
    let fifo = |rel: &str| {
        let path = tree.share().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        path
    };
    fifo("icons/hicolor/index.theme");
    tree.png("icons/hicolor/48x48/apps/app.png", 48, [5, 6, 7, 255]);
    let absolute = fifo("elsewhere/fifo.png");
    tree.app("app", "app");
    tree.app("fifo", &absolute.display().to_string());
    let service = tree.service(Duration::ZERO);
    let started = std::time::Instant::now();
    let icons = service.get_icons(&["fifo".to_owned(), "app".to_owned()], 48, 1);
    assert!(started.elapsed() < Duration::from_secs(1));
    let ids: Vec<&str> = icons.iter().map(|i| i.desktop_file_id.as_str()).collect();
    assert_eq!(ids, ["app"]);
    assert!(matches!(
        service.icon_for_id("fifo", 48, 1),
        Err(IconError::Render(
            garcon::icons::render::RenderError::NotAFile { .. }
        ))
    ));
}
