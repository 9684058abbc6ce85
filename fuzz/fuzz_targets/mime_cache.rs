//! shared-mime-info `mime.cache` reader (garcon-service §6.2): bounds-checked, bounded work.
#![no_main]

use garcon::mime::parse_mime_cache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = parse_mime_cache(data) else {
        return;
    };
    // Suffixes longer than 100 bytes are skipped; each mapping cost at least one 12-byte leaf.
    assert!(map.len() <= data.len() / 12);
    for (ext, mime) in &map {
        assert!(ext.len() < 100, "{ext:?}");
        assert!(!mime.contains('\0') && mime.len() < data.len());
    }
});
