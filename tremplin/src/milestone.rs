//! The Chrome OS milestone (§11.1): `CHROMEOS_RELEASE_CHROME_MILESTONE=<n>` in `/etc/lsb-release`.

use std::path::Path;

/// Why the milestone could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MilestoneError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} has no CHROMEOS_RELEASE_CHROME_MILESTONE line")]
    Missing { path: String },
    #[error("{path}: CHROMEOS_RELEASE_CHROME_MILESTONE value {value:?} is not an integer")]
    NotANumber { path: String, value: String },
}

const KEY: &str = "CHROMEOS_RELEASE_CHROME_MILESTONE";

/// Parses lsb-release text. Blank and `#` lines are skipped and lines split on the first `=`
/// ([deviation] of §11.1); `'` and `"` are removed from the value.
pub fn parse_milestone(text: &str, path: &str) -> Result<u32, MilestoneError> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != KEY {
            continue;
        }
        let value: String = value.chars().filter(|c| *c != '\'' && *c != '"').collect();
        return value
            .trim()
            .parse::<u32>()
            .map_err(|_| MilestoneError::NotANumber {
                path: path.to_string(),
                value,
            });
    }
    Err(MilestoneError::Missing {
        path: path.to_string(),
    })
}

/// What startup decided about the milestone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilestoneSource {
    /// From `--milestone`.
    Flag(u32),
    /// From the lsb-release file.
    File(u32),
    /// The file does not exist (an ordinary Linux machine): unknown.
    Absent,
}

impl MilestoneSource {
    pub fn value(&self) -> Option<u32> {
        match self {
            MilestoneSource::Flag(m) | MilestoneSource::File(m) => Some(*m),
            MilestoneSource::Absent => None,
        }
    }
}

/// Largest lsb-release accepted.
const MAX_LSB_RELEASE: u64 = 64 * 1024;

/// Flag value if given; else the file; a missing file is `Absent`, a malformed one an error.
pub fn load_milestone(
    flag: Option<u32>,
    lsb_release: &Path,
) -> Result<MilestoneSource, MilestoneError> {
    if let Some(m) = flag {
        return Ok(MilestoneSource::Flag(m));
    }
    let shown = lsb_release.display().to_string();
    // Bounded, non-blocking and regular-only like every other file read (issue 9 #5).
    match crostini_common::untrusted_file::read_capped_string(lsb_release, MAX_LSB_RELEASE) {
        Ok(text) => parse_milestone(&text, &shown).map(MilestoneSource::File),
        Err(e) if e.is_not_found() => Ok(MilestoneSource::Absent),
        Err(e) => Err(MilestoneError::Read {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

/// Replaces the first `%d` of an image server URL with the milestone.
pub fn expand_image_server(server: &str, milestone: Option<u32>) -> Result<String, String> {
    if !server.contains("%d") {
        return Ok(server.to_string());
    }
    match milestone {
        Some(m) => Ok(server.replacen("%d", &m.to_string(), 1)),
        None => Err(format!(
            "image server {server:?} needs the Chrome OS milestone, which is unknown \
             (no lsb-release file; pass --milestone)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_value_and_skips_comments() {
        let text =
            "# comment\n\nCHROMEOS_RELEASE_BOARD=x\nCHROMEOS_RELEASE_CHROME_MILESTONE=\"120\"\n";
        assert_eq!(parse_milestone(text, "f"), Ok(120));
        assert_eq!(
            parse_milestone("CHROMEOS_RELEASE_CHROME_MILESTONE='99'", "f"),
            Ok(99)
        );
        assert_eq!(
            parse_milestone("A=b=c\nCHROMEOS_RELEASE_CHROME_MILESTONE=7", "f"),
            Ok(7)
        );
    }

    #[test]
    fn missing_key_and_bad_number_are_errors() {
        assert_eq!(
            parse_milestone("A=1\n", "f"),
            Err(MilestoneError::Missing { path: "f".into() })
        );
        assert!(matches!(
            parse_milestone("CHROMEOS_RELEASE_CHROME_MILESTONE=abc", "f"),
            Err(MilestoneError::NotANumber { .. })
        ));
    }

    #[test]
    fn flag_wins_and_missing_file_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("lsb-release");
        assert_eq!(
            load_milestone(Some(5), &missing),
            Ok(MilestoneSource::Flag(5))
        );
        assert_eq!(load_milestone(None, &missing), Ok(MilestoneSource::Absent));
        std::fs::write(&missing, "CHROMEOS_RELEASE_CHROME_MILESTONE=118\n").expect("write");
        assert_eq!(
            load_milestone(None, &missing),
            Ok(MilestoneSource::File(118))
        );
        std::fs::write(&missing, "nothing\n").expect("write");
        assert!(load_milestone(None, &missing).is_err());
    }

    #[test]
    fn image_server_expansion() {
        assert_eq!(
            expand_image_server("https://s/cros-containers/%d", Some(120)).as_deref(),
            Ok("https://s/cros-containers/120")
        );
        assert_eq!(
            expand_image_server("https://s/%d/%d", Some(1)).as_deref(),
            Ok("https://s/1/%d")
        );
        assert_eq!(
            expand_image_server("https://s/x", None).as_deref(),
            Ok("https://s/x")
        );
        assert!(expand_image_server("https://s/%d", None).is_err());
    }
}
