//! `Exec` field-code expansion (garcon-service §5.1.3), alone and after the entry parser.
//!
//! Input: the `Exec` value, then NUL-separated files, icon and name.
#![no_main]

use std::path::Path;

use garcon::desktop::DesktopEntry;
use garcon::exec::{expand_entry_exec, expand_exec, ExecContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let exec = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.map(str::to_owned).collect();
    let (icon, name) = (
        rest.first().map_or("", String::as_str),
        rest.get(1).map_or("", String::as_str),
    );
    let files: Vec<String> = rest.iter().skip(2).take(8).cloned().collect();
    let ctx = ExecContext {
        files: &files,
        icon,
        name,
        desktop_file: "/usr/share/applications/fuzz.desktop",
    };
    let argv = expand_exec(exec, &ctx);
    // Only `%F`/`%U` copy files verbatim; every other argument is non-empty.
    if files.iter().all(|f| !f.is_empty()) {
        assert!(argv.iter().all(|a| !a.is_empty()), "{exec:?} -> {argv:?}");
    }
    // Without field codes or quotes nothing is substituted: the words of the value.
    if !exec.contains(['%', '"']) {
        let words: Vec<&str> = exec.split(' ').filter(|w| !w.is_empty()).collect();
        assert_eq!(argv, words);
    }
    // The same value as a desktop-file line (unescaped by the parser first).
    let file =
        format!("[Desktop Entry]\nType=Application\nName={name}\nIcon={icon}\nExec={exec}\n");
    if let Ok(entry) = DesktopEntry::parse_text(&file) {
        let _ = expand_entry_exec(&entry, Path::new("/x/applications/f.desktop"), &files);
    }
});
