//! Guest os-release parsing (§11.2) and the Debian apt source for Crostini packages (§11.3).

use std::collections::BTreeMap;

/// Fields tremplin uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub pretty_name: String,
    pub name: String,
    pub version: String,
    pub version_id: String,
    pub version_codename: String,
    pub id: String,
}

/// Parses `KEY=VALUE` lines, removing every `'` and `"` from values. Blank and `#` lines are
/// skipped and lines split on the first `=` ([deviation] of §11.2); other lines without `=`
/// fail the parse.
pub fn parse_os_release(text: &str) -> Result<OsRelease, String> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("os-release line {}: no '=' in {line:?}", n + 1))?;
        let value: String = value.chars().filter(|c| *c != '"' && *c != '\'').collect();
        map.insert(key.trim().to_string(), value);
    }
    let get = |k: &str| map.get(k).cloned().unwrap_or_default();
    Ok(OsRelease {
        pretty_name: get("PRETTY_NAME"),
        name: get("NAME"),
        version: get("VERSION"),
        version_id: get("VERSION_ID"),
        version_codename: get("VERSION_CODENAME"),
        id: get("ID"),
    })
}

/// Content of `/etc/apt/sources.list.d/cros.list` for a Debian guest.
pub fn cros_list(os: &OsRelease, milestone: u32) -> String {
    let codename = if os.version_id.is_empty() {
        "bookworm".to_string()
    } else {
        os.version_codename.clone()
    };
    let mut out =
        format!("deb https://storage.googleapis.com/cros-packages/{milestone} {codename} main\n");
    if codename == "buster" || codename == "bullseye" {
        out.push_str(&format!(
            "deb https://deb.debian.org/debian {codename}-backports main\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n";

    #[test]
    fn parses_debian_bookworm() {
        let os = parse_os_release(BOOKWORM).expect("parses");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os.name, "Debian GNU/Linux");
        assert_eq!(os.version, "12 (bookworm)");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.version_codename, "bookworm");
        assert_eq!(os.id, "debian");
    }

    #[test]
    fn quotes_removed_comments_skipped_first_equals_splits() {
        let os = parse_os_release("# c\n\nNAME='A \"b\" c'\nPRETTY_NAME=x=y\n").expect("parses");
        assert_eq!(os.name, "A b c");
        assert_eq!(os.pretty_name, "x=y");
        assert!(parse_os_release("garbage line\n").is_err());
    }

    #[test]
    fn cros_list_per_codename() {
        let os = parse_os_release(BOOKWORM).expect("parses");
        assert_eq!(
            cros_list(&os, 120),
            "deb https://storage.googleapis.com/cros-packages/120 bookworm main\n"
        );
        let bullseye = OsRelease {
            version_id: "11".into(),
            version_codename: "bullseye".into(),
            ..Default::default()
        };
        assert_eq!(
            cros_list(&bullseye, 99),
            "deb https://storage.googleapis.com/cros-packages/99 bullseye main\ndeb https://deb.debian.org/debian bullseye-backports main\n"
        );
        let testing = OsRelease {
            version_codename: "trixie".into(),
            ..Default::default()
        };
        assert!(cros_list(&testing, 1).contains(" bookworm main"));
    }
}
