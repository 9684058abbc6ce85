//! Legacy `mime.types` text (garcon-service §6.1), and the user-file overlay. Input: the system
//! file, optionally followed by NUL and the user file.
#![no_main]

use garcon::mime::types::{parse_mime_types, parse_mime_types_into};
use libfuzzer_sys::fuzz_target;

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fuzz_target!(|data: &[u8]| {
    let (system, user) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut map = parse_mime_types(system);
    for (ext, mime) in &map {
        assert!(!ext.is_empty() && !mime.is_empty());
        assert!(
            !ext.contains(is_ws) && !mime.contains(is_ws),
            "{ext:?} {mime:?}"
        );
        assert!(!mime.starts_with('#'));
    }
    let user_map = parse_mime_types(user);
    parse_mime_types_into(user, &mut map);
    // The user's mappings override the system's.
    for (ext, mime) in &user_map {
        assert_eq!(map.get(ext), Some(mime));
    }
});
