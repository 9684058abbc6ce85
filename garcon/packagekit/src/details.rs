//! The `Details(a{sv})` signal as a plain struct.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

/// Package details as reported by `GetDetails` / `GetDetailsLocal` (garcon-service §5.4: keys
/// `package-id`, `license`, `description`, `url`, `size`, `summary`; others ignored; a value of
/// the wrong type is skipped; missing keys leave the field empty or 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageDetails {
    /// `name;version;arch;data`.
    pub package_id: String,
    /// License text, `unknown` for most local `.deb` files.
    pub license: String,
    /// Extended description.
    pub description: String,
    /// Project URL (`url` key).
    pub url: String,
    /// Size in bytes (for a local file: the file size; absent for installed packages).
    pub size: u64,
    /// One-line summary.
    pub summary: String,
}

impl PackageDetails {
    /// Reads the recognised keys of a `Details` dictionary.
    pub fn from_dict(dict: &HashMap<String, OwnedValue>) -> Self {
        let mut details = Self::default();
        for (key, value) in dict {
            let value: &Value<'_> = value;
            match key.as_str() {
                "package-id" => set_string(&mut details.package_id, key, value),
                "license" => set_string(&mut details.license, key, value),
                "description" => set_string(&mut details.description, key, value),
                "url" => set_string(&mut details.url, key, value),
                "summary" => set_string(&mut details.summary, key, value),
                "size" => match unwrap_variant(value) {
                    Value::U64(size) => details.size = *size,
                    other => skip_wrong_type(key, other),
                },
                _ => {}
            }
        }
        details
    }
}

fn set_string(field: &mut String, key: &str, value: &Value<'_>) {
    match unwrap_variant(value) {
        Value::Str(text) => *field = text.as_str().to_owned(),
        other => skip_wrong_type(key, other),
    }
}

/// `a{sv}` values are variants already; a nested variant is looked through once.
fn unwrap_variant<'v>(value: &'v Value<'v>) -> &'v Value<'v> {
    match value {
        Value::Value(inner) => inner,
        other => other,
    }
}

fn skip_wrong_type(key: &str, value: &Value<'_>) {
    tracing::debug!(key, signature = %value.value_signature(), "Details value of unexpected type skipped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(value: Value<'_>) -> OwnedValue {
        value.try_to_owned().unwrap()
    }

    fn dict(entries: Vec<(&str, Value<'_>)>) -> HashMap<String, OwnedValue> {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), owned(v)))
            .collect()
    }

    #[test]
    fn from_dict_reads_every_recognised_key() {
        let details = PackageDetails::from_dict(&dict(vec![
            ("package-id", Value::from("p;1;all;local")),
            ("license", Value::from("unknown")),
            ("description", Value::from("long text")),
            ("url", Value::from("https://example.org")),
            ("size", Value::from(1234u64)),
            ("summary", Value::from("short")),
            ("group", Value::from(7u32)),
        ]));
        assert_eq!(
            details,
            PackageDetails {
                package_id: "p;1;all;local".into(),
                license: "unknown".into(),
                description: "long text".into(),
                url: "https://example.org".into(),
                size: 1234,
                summary: "short".into(),
            }
        );
    }

    #[test]
    fn from_dict_skips_values_of_the_wrong_type() {
        let details = PackageDetails::from_dict(&dict(vec![
            ("size", Value::from("12")),
            ("summary", Value::from(5u32)),
            ("license", Value::from("GPL")),
        ]));
        assert_eq!(details.size, 0);
        assert_eq!(details.summary, "");
        assert_eq!(details.license, "GPL");
    }

    #[test]
    fn from_dict_of_empty_dictionary_is_default() {
        assert_eq!(
            PackageDetails::from_dict(&HashMap::new()),
            PackageDetails::default()
        );
    }
}
