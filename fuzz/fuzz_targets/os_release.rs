//! tremplin's os-release parser: values never keep quotes, the apt line is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tremplin::os_release::{cros_list, parse_os_release};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(os) = parse_os_release(&text) else {
        return;
    };
    for value in [
        &os.pretty_name,
        &os.name,
        &os.version,
        &os.version_id,
        &os.version_codename,
        &os.id,
    ] {
        assert!(!value.contains(['"', '\'', '\n']), "{value:?}");
    }
    let list = cros_list(&os, 120);
    assert!(list.starts_with("deb https://storage.googleapis.com/cros-packages/120 "));
    assert!(list.ends_with('\n'));
});
