//! garcon's `[Desktop Entry]` parser (garcon-service §4.1-§4.5) and the value decoders.
#![no_main]

use garcon::desktop::entry::{split_list, unescape};
use garcon::desktop::{DesktopEntry, InvalidEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = DesktopEntry::parse(data);
    // Bytes and their lossy text parse the same (§4.1: never reject non-UTF-8).
    assert_eq!(
        parsed,
        DesktopEntry::parse_text(&String::from_utf8_lossy(data))
    );
    match parsed {
        Ok(entry) => {
            // §4.5: accepted means a valid Type and an unlocalized Name key. (Its value may be
            // empty: `Name=\` unescapes to "", as in the reference.)
            assert!(["Application", "Link", "Directory"].contains(&entry.entry_type.as_str()));
            assert!(entry.name.contains_key(""));
            assert_eq!(entry.unlocalized_name(), entry.name[""]);
            // Raw values were trimmed of ASCII whitespace on both ends.
            for raw in [&entry.entry_type, &entry.icon] {
                assert_eq!(
                    raw.trim_matches(|c: char| c.is_ascii_whitespace()),
                    raw.as_str()
                );
            }
        }
        Err(InvalidEntry::BadType(Some(t))) => assert!(!t.is_empty()),
        Err(_) => {}
    }
    // The value decoders on the raw text: never panic, never grow the text.
    let text = String::from_utf8_lossy(data);
    let unescaped = unescape(&text);
    assert!(unescaped.len() <= text.len());
    let items = split_list(&text);
    assert!(items.iter().map(String::len).sum::<usize>() <= text.len());
    if !text.contains('\\') {
        assert_eq!(items.join(";"), text.strip_suffix(';').unwrap_or(&text));
    }
});
