//! garcon's XPM3 decoder: bounded dimensions, and the image is exactly what the header said.
#![no_main]

use garcon::icons::xpm::{decode_xpm, MAX_XPM_DIMENSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = decode_xpm(data) else {
        return;
    };
    let (w, h) = image.dimensions();
    assert!(w >= 1 && h >= 1 && w <= MAX_XPM_DIMENSION && h <= MAX_XPM_DIMENSION);
    assert_eq!(image.as_raw().len(), w as usize * h as usize * 4);
});
