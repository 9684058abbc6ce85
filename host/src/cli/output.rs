//! Printing replies for people (text) or scripts (`--json`).

use serde::Serialize;

/// Prints `value` as one JSON line, or as `text` for people.
pub fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string(value) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("cannot print reply as JSON: {e}"),
        }
    } else {
        println!("{}", text());
    }
}

/// The name of a proto enum value, or its number when it is outside the enum.
pub fn enum_name<E: TryFrom<i32> + std::fmt::Debug>(value: i32) -> String {
    match E::try_from(value) {
        Ok(v) => format!("{v:?}"),
        Err(_) => format!("UNKNOWN({value})"),
    }
}
