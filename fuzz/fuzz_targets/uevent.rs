//! Kernel uevent messages (tremplin §9.2, USB): bounded parse; what parses re-encodes to the
//! same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tremplin::usb::uevent::{encode_uevent, parse_uevent, MAX_UEVENT_SIZE};

fuzz_target!(|data: &[u8]| {
    let event = parse_uevent(data);
    assert!(!event.header.contains('\0'));
    for (key, value) in &event.vars {
        assert!(!key.is_empty() && !key.contains(['\0', '=']), "{key:?}");
        assert!(!value.contains('\0'));
    }
    let vars: Vec<(&str, &str)> = event
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let encoded = encode_uevent(&event.header, &vars);
    if encoded.len() <= MAX_UEVENT_SIZE {
        assert_eq!(parse_uevent(&encoded), event);
    }
});
