//! SVG icons through the renderer with its complexity limits (issue 9 #4), in-process: parse,
//! budget check, render. A success is a PNG of exactly the target size. Keep inputs small
//! (run-ci.sh / run-long.sh pass -max_len) so that one render stays in milliseconds.
#![no_main]

use std::path::Path;

use garcon::icons::render::render_icon_bytes;
use libfuzzer_sys::fuzz_target;

const TARGETS: [u32; 4] = [16, 32, 48, 64];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let target = TARGETS[usize::from(selector & 3)];
    let Ok(png) = render_icon_bytes(Path::new("icon.svg"), bytes, target) else {
        return;
    };
    let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("a rendered icon is a valid PNG");
    assert_eq!((decoded.width(), decoded.height()), (target, target));
});
