//! tremplin's minimal YAML reader (backup.yaml, image metadata.yaml). Input: the document, then
//! NUL and the keys `parent` and `child` (NUL-separated; defaults `container`, `name`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tremplin::yaml::{nested_value, top_value};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let doc = parts.next().unwrap_or_default();
    let parent = parts.next().unwrap_or("container");
    let child = parts.next().unwrap_or("name");
    for (key, value) in [
        (parent, top_value(doc, parent)),
        (child, top_value(doc, child)),
        (child, nested_value(doc, parent, child)),
    ] {
        let Some(value) = value else {
            continue;
        };
        // A found value is one non-empty line of the document.
        assert!(!value.is_empty(), "{key:?}");
        assert!(!value.contains('\n'), "{key:?}: {value:?}");
        assert!(value.len() <= doc.len());
    }
});
