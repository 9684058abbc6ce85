//! Icon file bytes -> PNG of the requested square (PNG and other rasters, XPM, SVG; SVG
//! complexity-checked, in-process). The first byte picks the file kind (by extension) and the
//! target size; the rest is the file. A success is always a PNG of exactly that size.
#![no_main]

use std::path::Path;

use garcon::icons::render::render_icon_bytes;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["icon.png", "icon.xpm", "icon.svg", "icon"];
const TARGETS: [u32; 8] = [1, 16, 24, 32, 48, 64, 96, 128];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let path = Path::new(NAMES[usize::from(selector & 3)]);
    let target = TARGETS[usize::from(selector >> 2) & 7];
    let Ok(png) = render_icon_bytes(path, bytes, target) else {
        return;
    };
    let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("a rendered icon is a valid PNG");
    assert_eq!((decoded.width(), decoded.height()), (target, target));
});
