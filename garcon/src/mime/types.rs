//! Legacy `mime.types` text parser (garcon-service §6.1).
//!
//! Split on `\n`, trim, drop blank lines and lines starting with `#` (no inline comments).
//! Tokens split on ASCII whitespace: the first is the MIME type, each further one an extension
//! taken verbatim. Later lines override earlier ones.

use std::collections::HashMap;

use crate::desktop::xdg::is_ascii_ws;

/// Parses mime.types text (lossy UTF-8) into `extension -> MIME type`, inserting into `map`
/// so that a later file (the user's) overrides an earlier one.
pub fn parse_mime_types_into(bytes: &[u8], map: &mut HashMap<String, String>) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split('\n') {
        let line = line.trim_matches(is_ascii_ws);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut tokens = line.split(is_ascii_ws).filter(|t| !t.is_empty());
        let Some(mime_type) = tokens.next() else {
            continue;
        };
        for ext in tokens {
            map.insert(ext.to_owned(), mime_type.to_owned());
        }
    }
}

/// Parses one mime.types file's text into a fresh map.
pub fn parse_mime_types(bytes: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    parse_mime_types_into(bytes, &mut map);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn comments_single_tokens_and_inline_hashes() {
        let text = b"# comment\n\n  text/plain   txt  text \ntext/x-lonely\n\
                     text/x a # b\n\t# indented comment\r\nimage/PNG PNG\tpng\r\n";
        assert_eq!(
            parse_mime_types(text),
            map(&[
                ("txt", "text/plain"),
                ("text", "text/plain"),
                ("a", "text/x"),
                ("#", "text/x"),
                ("b", "text/x"),
                ("PNG", "image/PNG"),
                ("png", "image/PNG"),
            ])
        );
    }

    #[test]
    fn later_lines_and_later_files_override() {
        let mut m = parse_mime_types(b"a/one ext\na/two ext\n");
        assert_eq!(m, map(&[("ext", "a/two")]));
        parse_mime_types_into(b"user/type ext other\n", &mut m);
        assert_eq!(m, map(&[("ext", "user/type"), ("other", "user/type")]));
    }

    #[test]
    fn invalid_utf8_does_not_reject_the_file() {
        let m = parse_mime_types(b"x/\xff y\nok/type z\n");
        assert_eq!(m, map(&[("y", "x/\u{fffd}"), ("z", "ok/type")]));
    }
}
