//! `index.theme` (Icon Theme Specification): parse, then the size-matching arithmetic on every
//! directory it yields.
#![no_main]

use garcon::icons::theme::{
    is_safe_relative_dir, is_safe_theme_name, DirectoryType, IndexTheme, MAX_DIRECTORY_VALUE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(theme) = IndexTheme::parse(data) else {
        return;
    };
    assert!(theme.inherits.iter().all(|t| is_safe_theme_name(t)));
    let max = MAX_DIRECTORY_VALUE as u32;
    let mut names = std::collections::HashSet::new();
    for dir in &theme.directories {
        // Directory names are usable path suffixes, each listed once.
        assert!(is_safe_relative_dir(&dir.name), "{:?}", dir.name);
        assert!(names.insert(dir.name.as_str()), "{:?} twice", dir.name);
        assert!((1..=max).contains(&dir.size) && (1..=max).contains(&dir.scale));
        assert!(dir.threshold <= max);
        assert!(1 <= dir.min_size && dir.min_size <= dir.max_size && dir.max_size <= max);
        for (size, scale) in [
            (1, 1),
            (16, 1),
            (48, 2),
            (dir.size, dir.scale),
            (u32::MAX, u32::MAX),
        ] {
            let distance = dir.size_distance(size, scale);
            if dir.matches_size(size, scale) {
                // A matching directory is at distance 0 (same scale, inside the range).
                assert_eq!(distance, 0, "{dir:?} at {size}x{scale}");
            }
        }
        assert!(dir.matches_size(dir.size, dir.scale) || dir.kind == DirectoryType::Scalable);
        assert!(dir.pixel_size() >= 1);
    }
});
