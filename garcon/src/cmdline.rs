//! Command-line grammar: libchrome `base::CommandLine` (POSIX) semantics (garcon-host.md §15.1).
//!
//! * Every element after argv[0] is trimmed of ASCII whitespace.
//! * Until the first bare `--`, an element that starts with `--` or `-` and is longer than that
//!   prefix is a switch: name = text after the prefix up to the first `=`, value = text after the
//!   `=` (possibly empty). Names are case-sensitive; a repeated switch keeps its last value;
//!   unknown switches are accepted here and ignored by the callers.
//! * Everything else is positional, in order. A lone `-` is positional. The first bare `--` ends
//!   switch parsing and is dropped; later `--` elements are positional.
//!
//! Extension (not upstream): the switches named in `value_switches` (our own, non-upstream flags
//! such as `--host-address`) also accept their value as the next element (`--listen unix:///x`),
//! because tooling invokes them that way. When the next element is missing or is itself a switch,
//! the value is empty and the caller reports it. Upstream switches never take this form, so the
//! upstream grammar is unchanged for them.

use std::collections::HashMap;

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    switches: HashMap<String, String>,
    args: Vec<String>,
}

impl CommandLine {
    /// Parses `argv` (including argv[0], which is skipped).
    pub fn parse<I, S>(argv: I, value_switches: &[&str]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut line = CommandLine::default();
        let mut parse_switches = true;
        let mut elements = argv
            .into_iter()
            .skip(1)
            .map(|e| {
                e.as_ref()
                    .trim_matches(|c: char| c.is_ascii_whitespace())
                    .to_string()
            })
            .peekable();
        while let Some(element) = elements.next() {
            if parse_switches && element == "--" {
                parse_switches = false;
                continue;
            }
            let switch_body = if !parse_switches {
                None
            } else if let Some(rest) = element.strip_prefix("--") {
                (!rest.is_empty()).then_some(rest)
            } else if let Some(rest) = element.strip_prefix('-') {
                (!rest.is_empty()).then_some(rest)
            } else {
                None
            };
            let Some(body) = switch_body else {
                line.args.push(element);
                continue;
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None if value_switches.contains(&body) => {
                    let next_is_value = elements
                        .peek()
                        .is_some_and(|next| !looks_like_switch(next) && next != "--");
                    let value = if next_is_value {
                        elements.next().unwrap_or_default()
                    } else {
                        String::new()
                    };
                    (body.to_string(), value)
                }
                None => (body.to_string(), String::new()),
            };
            line.switches.insert(name, value);
        }
        line
    }

    /// Whether the switch is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.switches.contains_key(name)
    }

    /// The switch value; `None` when absent, `Some("")` when present without a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.switches.get(name).map(String::as_str)
    }

    /// Positional arguments, in order.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

fn looks_like_switch(element: &str) -> bool {
    element.len() > 1 && element.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> CommandLine {
        let argv = std::iter::once("garcon").chain(args.iter().copied());
        CommandLine::parse(argv, &["listen", "host-address"])
    }

    #[test]
    fn switches_with_and_without_values() {
        let line = parse(&["--client", "--type=folder", "--title=", "-x"]);
        assert!(line.has("client"));
        assert_eq!(line.value("client"), Some(""));
        assert_eq!(line.value("type"), Some("folder"));
        assert_eq!(line.value("title"), Some(""));
        assert!(line.has("x"));
        assert!(line.args().is_empty());
    }

    #[test]
    fn value_after_first_equals_sign_only() {
        let line = parse(&["--url=https://a/?b=c"]);
        assert_eq!(line.value("url"), Some("https://a/?b=c"));
        assert!(line.args().is_empty());
    }

    #[test]
    fn names_are_case_sensitive_and_last_value_wins() {
        let line = parse(&["--type=a", "--Type=b", "--type=c"]);
        assert_eq!(line.value("type"), Some("c"));
        assert_eq!(line.value("Type"), Some("b"));
    }

    #[test]
    fn switches_anywhere_positionals_in_order() {
        let line = parse(&["https://a", "--client", "b", "--url", "c"]);
        assert!(line.has("client") && line.has("url"));
        assert_eq!(line.args(), ["https://a", "b", "c"]);
    }

    #[test]
    fn lone_dash_is_positional() {
        let line = parse(&["-", "--terminal"]);
        assert_eq!(line.args(), ["-"]);
    }

    #[test]
    fn first_double_dash_ends_switches_and_is_dropped() {
        let line = parse(&["--url", "https://a", "--", "-x", "--", "--y=1"]);
        assert_eq!(line.args(), ["https://a", "-x", "--", "--y=1"]);
        assert!(!line.has("x"));
        assert!(!line.has("y"));
    }

    #[test]
    fn elements_are_trimmed_of_ascii_whitespace() {
        let line = parse(&["  --client\t", " a b \n"]);
        assert!(line.has("client"));
        assert_eq!(line.args(), ["a b"]);
    }

    #[test]
    fn single_dash_switch_takes_value_after_equals() {
        let line = parse(&["-e=vim", "notes.txt"]);
        assert_eq!(line.value("e"), Some("vim"));
        assert_eq!(line.args(), ["notes.txt"]);
    }

    #[test]
    fn value_switches_take_the_next_element() {
        let line = parse(&[
            "--listen",
            "unix:///tmp/g.sock",
            "--host-address=tcp://h:1",
            "x",
        ]);
        assert_eq!(line.value("listen"), Some("unix:///tmp/g.sock"));
        assert_eq!(line.value("host-address"), Some("tcp://h:1"));
        assert_eq!(line.args(), ["x"]);
    }

    #[test]
    fn value_switch_followed_by_switch_or_nothing_has_empty_value() {
        let line = parse(&["--listen", "--server"]);
        assert_eq!(line.value("listen"), Some(""));
        assert!(line.has("server"));
        let line = parse(&["--host-address"]);
        assert_eq!(line.value("host-address"), Some(""));
    }

    #[test]
    fn ordinary_switches_never_take_the_next_element() {
        let line = parse(&["--url", "https://a"]);
        assert_eq!(line.value("url"), Some(""));
        assert_eq!(line.args(), ["https://a"]);
    }

    #[test]
    fn value_switches_after_double_dash_are_positional() {
        let line = parse(&["--", "--listen", "x"]);
        assert!(!line.has("listen"));
        assert_eq!(line.args(), ["--listen", "x"]);
    }
}
