//! `Exec` field-code expansion (garcon-service §5.1.3).
//!
//! The input is the `Exec` value **after** the desktop-entry string unescape (§4.3). The
//! grammar is garcon's, not the freedesktop one: quotes group text and always end an argument
//! when they close, a backslash escapes only inside quotes, field codes are expanded only
//! outside quotes, and a space (U+0020 only) separates arguments. The result must match the
//! reference byte for byte, quirks included; never a shell.

use std::path::Path;

use crate::desktop::DesktopEntry;

/// Everything a field code can expand to.
#[derive(Debug, Clone, Copy)]
pub struct ExecContext<'a> {
    /// Files or URLs passed by the host, verbatim. `%f`/`%u` use the first, `%F`/`%U` all.
    pub files: &'a [String],
    /// The raw `Icon` value (`%i` -> `--icon <Icon>` when non-empty).
    pub icon: &'a str,
    /// The unlocalized `Name` (`%c`).
    pub name: &'a str,
    /// The path of the desktop file as found (`%k`).
    pub desktop_file: &'a str,
}

/// Expands the `Exec` value of `entry` (found at `desktop_file`) with `files`.
///
/// Non-UTF-8 bytes in `desktop_file` are replaced by U+FFFD for `%k`.
pub fn expand_entry_exec(
    entry: &DesktopEntry,
    desktop_file: &Path,
    files: &[String],
) -> Vec<String> {
    let desktop_file = desktop_file.to_string_lossy();
    expand_exec(
        &entry.exec,
        &ExecContext {
            files,
            icon: &entry.icon,
            name: entry.unlocalized_name(),
            desktop_file: &desktop_file,
        },
    )
}

/// Splits an (already unescaped) `Exec` value into argv, expanding field codes from `ctx`.
///
/// An empty result means "no program" (the caller reports the argv failure).
pub fn expand_exec(exec: &str, ctx: &ExecContext<'_>) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escape_next = false;
    let mut field_code_next = false;

    // Moves a non-empty `current` into `argv`.
    fn finish(argv: &mut Vec<String>, current: &mut String) {
        if !current.is_empty() {
            argv.push(std::mem::take(current));
        }
    }

    for c in exec.chars() {
        if escape_next {
            escape_next = false;
            current.push(c);
            continue;
        }
        if c == '"' {
            // Closing a quote always ends the argument; `""` produces nothing. Note that a
            // pending `%` survives a quote (the reference checks quotes first).
            if in_quotes {
                finish(&mut argv, &mut current);
            }
            in_quotes = !in_quotes;
            continue;
        }
        if in_quotes {
            if c == '\\' {
                escape_next = true;
            } else {
                current.push(c);
            }
            continue;
        }
        if field_code_next {
            field_code_next = false;
            match c {
                '%' => current.push('%'),
                'f' | 'u' => {
                    if let Some(first) = ctx.files.first() {
                        current.push_str(first);
                    }
                }
                'F' | 'U' => {
                    finish(&mut argv, &mut current);
                    argv.extend(ctx.files.iter().cloned());
                }
                'i' => {
                    finish(&mut argv, &mut current);
                    if !ctx.icon.is_empty() {
                        argv.push("--icon".to_owned());
                        argv.push(ctx.icon.to_owned());
                    }
                }
                'c' => current.push_str(ctx.name),
                'k' => current.push_str(ctx.desktop_file),
                // Deprecated (d D n N v m) and unknown codes are dropped silently.
                _ => {}
            }
            continue;
        }
        match c {
            ' ' => finish(&mut argv, &mut current),
            '%' => field_code_next = true,
            _ => current.push(c),
        }
    }
    // An unterminated quote still yields its text; a dangling `%` is dropped.
    finish(&mut argv, &mut current);
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "My App";
    const DESKTOP: &str = "/usr/share/applications/my.desktop";

    fn expand(exec: &str, files: &[&str], icon: &str) -> Vec<String> {
        let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        expand_exec(
            exec,
            &ExecContext {
                files: &files,
                icon,
                name: NAME,
                desktop_file: DESKTOP,
            },
        )
    }

    /// Every vector of garcon-service §5.1.3 (files = [/a, /b] unless noted).
    #[test]
    fn spec_vectors_expand_byte_for_byte() {
        let ab = ["/a", "/b"];
        let cases: &[(&str, &[&str], &str, &[&str])] = &[
            ("app --x=%f %F", &ab, "", &["app", "--x=/a", "/a", "/b"]),
            ("app %U%u", &ab, "", &["app", "/a", "/b", "/a"]),
            ("app %%", &ab, "", &["app", "%"]),
            ("app 50%", &ab, "", &["app", "50"]),
            ("foo \"\" bar", &ab, "", &["foo", "bar"]),
            (
                "app \"A B %f %i C \\\" D \\\\ \"",
                &[],
                "",
                &["app", "A B %f %i C \" D \\ "],
            ),
            ("app %i", &ab, "ic", &["app", "--icon", "ic"]),
            ("app %i", &ab, "", &["app"]),
            (
                "app --name=%c %k",
                &ab,
                "",
                &["app", "--name=My App", DESKTOP],
            ),
            ("app\tx %f", &ab, "", &["app\tx", "/a"]),
            (
                "app \"unterminated arg",
                &ab,
                "",
                &["app", "unterminated arg"],
            ),
            ("app %d %D %n %N %v %m %z", &ab, "", &["app"]),
        ];
        for (exec, files, icon, want) in cases {
            assert_eq!(expand(exec, files, icon), *want, "Exec={exec:?}");
        }
    }

    /// §8.2: the two escaping layers (desktop-file unescape, then Exec quoting).
    #[test]
    fn file_level_vector_goes_through_both_escaping_layers() {
        let file = "[Desktop Entry]\nType=Application\nName=N\n\
                    Exec=prog %% \\\"A B %f %i C \\\\\" D \\\\\\\\ \\\" \\\"E F\\\"\n";
        let entry = DesktopEntry::parse(file.as_bytes()).unwrap();
        let argv = expand_entry_exec(&entry, Path::new(DESKTOP), &["/a".to_owned()]);
        assert_eq!(argv, ["prog", "%", "A B %f %i C \" D \\ ", "E F"]);
    }

    #[test]
    fn quotes_join_preceding_text_and_split_following_text() {
        assert_eq!(expand("a\"b c\"", &[], ""), ["ab c"]);
        assert_eq!(expand("\"x\"y", &[], ""), ["x", "y"]);
    }

    #[test]
    fn files_are_ignored_without_file_codes_and_empty_without_files() {
        assert_eq!(expand("app --flag", &["/a"], ""), ["app", "--flag"]);
        assert_eq!(expand("app %f %F %u %U", &[], ""), ["app"]);
    }

    #[test]
    fn only_field_codes_or_empty_exec_yield_empty_argv() {
        assert!(expand("", &[], "").is_empty());
        assert!(expand("%U", &[], "").is_empty());
        assert!(expand("  \"\"  %", &[], "").is_empty());
    }

    #[test]
    fn backslash_outside_quotes_is_ordinary_and_spaces_collapse() {
        assert_eq!(expand("a\\b   c", &[], ""), ["a\\b", "c"]);
    }

    #[test]
    fn percent_before_quote_stays_pending_after_the_quote() {
        // Reference order: the quote is handled before the pending field code, which then
        // applies to the first character after the closing quote.
        assert_eq!(expand("x%\"q\"f", &["/a"], ""), ["xq", "/a"]);
    }

    #[test]
    fn multibyte_text_is_kept_intact_even_when_escaped() {
        assert_eq!(expand("\"\\é ü\" ñ", &[], ""), ["é ü", "ñ"]);
    }
}
