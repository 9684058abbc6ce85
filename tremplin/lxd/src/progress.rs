//! Progress metadata of LXD operations (§4.4) and a report throttle.
//!
//! Two forms exist:
//! - the text key `download_progress`, e.g. `"rootfs: 23% (358.09kB/s)"`, parsed like the
//!   (search, not full-match) pattern `([[:alpha:]]+): ([[:digit:]]+)% [0-9A-Za-z /.()]*$`;
//! - the object key `progress` = `{stage, percent, speed}` (all strings) of newer LXD.

use std::time::{Duration, Instant};

/// Stage names of the instance-from-local-image unpack step.
pub const UNPACK_STAGES: [&str; 2] = [
    "create_instance_from_image_unpack",
    "create_container_from_image_unpack",
];

/// A parsed `download_progress` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Group 1 of the pattern (`metadata`, `rootfs`, ...).
    pub stage: String,
    /// Group 2 of the pattern, as parsed.
    pub percent: i32,
}

impl DownloadProgress {
    /// The percentage to report: 0 for the `metadata` stage (the rootfs still has to
    /// download), else `percent`.
    pub fn reported_percent(&self) -> i32 {
        if self.stage == "metadata" {
            0
        } else {
            self.percent
        }
    }
}

fn in_tail_class(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b' ' | b'/' | b'.' | b'(' | b')')
}

/// Parses a `download_progress` text. Returns `None` when the pattern does not match
/// anywhere or the percentage does not fit an i32.
pub fn parse_download_progress(text: &str) -> Option<DownloadProgress> {
    let b = text.as_bytes();
    // The tail `[0-9A-Za-z /.()]*$` must reach the end: find where the trailing run of
    // tail-class bytes starts; a match's "% " must end at or after it.
    let mut tail_start = b.len();
    while tail_start > 0 && in_tail_class(b[tail_start - 1]) {
        tail_start -= 1;
    }
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        // Leftmost start of an alpha run; greedy run end.
        let start = i;
        let mut j = i;
        while j < b.len() && b[j].is_ascii_alphabetic() {
            j += 1;
        }
        if let Some(m) = match_at(b, start, j, tail_start) {
            return Some(m);
        }
        // A later start inside the same run yields the same run end, so skip the run.
        i = j;
    }
    None
}

fn match_at(
    b: &[u8],
    start: usize,
    alpha_end: usize,
    tail_start: usize,
) -> Option<DownloadProgress> {
    let mut k = alpha_end;
    if b.get(k) != Some(&b':') || b.get(k + 1) != Some(&b' ') {
        return None;
    }
    k += 2;
    let digits_start = k;
    while k < b.len() && b[k].is_ascii_digit() {
        k += 1;
    }
    if k == digits_start {
        return None;
    }
    let digits_end = k;
    if b.get(k) != Some(&b'%') || b.get(k + 1) != Some(&b' ') {
        return None;
    }
    k += 2;
    if k < tail_start {
        return None;
    }
    // All bytes are ASCII here (alpha and digits), so slicing on these indices is valid.
    let stage = std::str::from_utf8(&b[start..alpha_end]).ok()?.to_string();
    let percent = std::str::from_utf8(&b[digits_start..digits_end])
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(DownloadProgress { stage, percent })
}

/// `metadata["download_progress"]` parsed; `None` when absent, not a string, or no match.
pub fn download_progress(metadata: &serde_json::Value) -> Option<DownloadProgress> {
    parse_download_progress(metadata.get("download_progress")?.as_str()?)
}

/// The structured `progress` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageProgress {
    pub stage: String,
    pub percent: u32,
    pub speed: u64,
}

impl StageProgress {
    /// True for the unpack stages of instance creation from a local image.
    pub fn is_unpack(&self) -> bool {
        is_unpack_stage(&self.stage)
    }
}

/// True for `create_instance_from_image_unpack` / `create_container_from_image_unpack`.
pub fn is_unpack_stage(stage: &str) -> bool {
    UNPACK_STAGES.contains(&stage)
}

fn parse_unsigned<T: std::str::FromStr>(s: &str) -> Option<T> {
    // Like Go's strconv.ParseUint base 10: digits only (no sign, no spaces).
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `metadata["progress"]` = `{stage, percent, speed}`: all three must be strings;
/// percent must parse as u32 and speed as u64, else `None`.
pub fn parse_progress_object(metadata: &serde_json::Value) -> Option<StageProgress> {
    let p = metadata.get("progress")?;
    let stage = p.get("stage")?.as_str()?;
    let percent = parse_unsigned::<u32>(p.get("percent")?.as_str()?)?;
    let speed = parse_unsigned::<u64>(p.get("speed")?.as_str()?)?;
    Some(StageProgress {
        stage: stage.to_string(),
        percent,
        speed,
    })
}

/// A report emitted by [`ProgressThrottle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
    pub stage: String,
    /// 0..=100, never decreasing within a stage.
    pub percent: u32,
    pub speed: u64,
}

/// Turns raw observations into reports:
/// - percent is clamped to 100 and never goes back within a stage;
/// - a stage change is reported at once (percent may restart);
/// - otherwise a report is emitted when percent advanced by at least `min_step` (1) since
///   the last report, or when at least `min_interval` (250 ms) passed and the speed changed;
/// - [`ProgressThrottle::flush`] returns the latest state if it was not reported yet and
///   [`ProgressThrottle::finish`] always returns the final state (if anything was observed).
#[derive(Debug, Clone)]
pub struct ProgressThrottle {
    min_interval: Duration,
    min_step: u32,
    latest: Option<ProgressReport>,
    reported: Option<(ProgressReport, Instant)>,
}

impl Default for ProgressThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressThrottle {
    /// 250 ms / 1 %.
    pub fn new() -> Self {
        ProgressThrottle {
            min_interval: Duration::from_millis(250),
            min_step: 1,
            latest: None,
            reported: None,
        }
    }

    /// Overrides the interval and step.
    pub fn with_limits(min_interval: Duration, min_step: u32) -> Self {
        ProgressThrottle {
            min_interval,
            min_step: min_step.max(1),
            ..Self::new()
        }
    }

    /// Feeds one observation taken at `now`; returns a report when one is due.
    pub fn observe(
        &mut self,
        stage: &str,
        percent: u32,
        speed: u64,
        now: Instant,
    ) -> Option<ProgressReport> {
        let mut percent = percent.min(100);
        if let Some(latest) = &self.latest {
            if latest.stage == stage {
                percent = percent.max(latest.percent);
            }
        }
        let current = ProgressReport {
            stage: stage.to_string(),
            percent,
            speed,
        };
        self.latest = Some(current.clone());
        let due = match &self.reported {
            None => true,
            Some((last, at)) => {
                last.stage != current.stage
                    || current.percent >= last.percent.saturating_add(self.min_step)
                    || (now.saturating_duration_since(*at) >= self.min_interval
                        && current.speed != last.speed)
            }
        };
        if due {
            self.reported = Some((current.clone(), now));
            Some(current)
        } else {
            None
        }
    }

    /// The latest state when it differs from the last report (marks it reported).
    pub fn flush(&mut self, now: Instant) -> Option<ProgressReport> {
        let latest = self.latest.clone()?;
        if matches!(&self.reported, Some((last, _)) if *last == latest) {
            return None;
        }
        self.reported = Some((latest.clone(), now));
        Some(latest)
    }

    /// The final state (latest observation), whether or not it was reported already.
    pub fn finish(self) -> Option<ProgressReport> {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dp(s: &str) -> Option<(String, i32)> {
        parse_download_progress(s).map(|p| (p.stage, p.percent))
    }

    #[test]
    fn spec_vectors() {
        assert_eq!(
            dp("metadata: 100% (5.23MB/s)"),
            Some(("metadata".into(), 100))
        );
        assert_eq!(dp("rootfs: 23% (358.09kB/s)"), Some(("rootfs".into(), 23)));
        assert_eq!(dp("rootfs: 45% (12.30MB/s)"), Some(("rootfs".into(), 45)));
        assert_eq!(
            parse_download_progress("metadata: 100% (5.23MB/s)")
                .unwrap()
                .reported_percent(),
            0
        );
        assert_eq!(
            parse_download_progress("rootfs: 23% (358.09kB/s)")
                .unwrap()
                .reported_percent(),
            23
        );
    }

    #[test]
    fn search_semantics() {
        // Prefix garbage is allowed (search), the tail must reach the end.
        assert_eq!(
            dp("Downloading image rootfs: 7% (1.00MB/s)"),
            Some(("rootfs".into(), 7))
        );
        assert_eq!(dp("x-rootfs: 7% "), Some(("rootfs".into(), 7)));
        assert_eq!(dp("rootfs: 7% "), Some(("rootfs".into(), 7)));
        assert_eq!(
            dp("rootfs: 7% (1MB/s)!"),
            None,
            "'!' is outside the tail class"
        );
        assert_eq!(dp("rootfs: 7%"), None, "needs '% '");
        assert_eq!(dp("rootfs:7% x"), None);
        assert_eq!(dp("rootfs: % x"), None);
        assert_eq!(dp("root fs: 7% x"), Some(("fs".into(), 7)));
        assert_eq!(
            dp("a: 1% b: 2% (x)"),
            Some(("b".into(), 2)),
            "leftmost match that reaches the end"
        );
        assert_eq!(dp("rootfs: 7% (1MB/s)\n"), None, "$ is end of text");
        assert_eq!(
            dp("rootfs2: 7% x"),
            None,
            "digit breaks the alpha run before ':'"
        );
    }

    #[test]
    fn garbage_and_edge_cases() {
        for s in [
            "",
            "garbage",
            "100%",
            ": 5% x",
            "rootfs: -5% x",
            "rootfs: 5%\t(x)",
        ] {
            assert_eq!(dp(s), None, "{s:?}");
        }
        assert_eq!(
            dp("rootfs: 250% (1MB/s)"),
            Some(("rootfs".into(), 250)),
            "parser keeps > 100"
        );
        assert_eq!(dp("rootfs: 99999999999% x"), None, "i32 overflow");
        assert_eq!(dp("rootfs: 007% x"), Some(("rootfs".into(), 7)));
        assert_eq!(
            dp("rootfś: 5% x"),
            None,
            "non-ASCII letter is not [[:alpha:]] and breaks ': '"
        );
        assert_eq!(dp("ünï: rootfs: 5% (é)"), None, "non-ASCII in tail");
        assert_eq!(dp("ü rootfs: 5% (ok)"), Some(("rootfs".into(), 5)));
    }

    #[test]
    fn download_progress_from_metadata() {
        assert_eq!(
            download_progress(&json!({"download_progress": "rootfs: 23% (358.09kB/s)"}))
                .map(|p| p.reported_percent()),
            Some(23)
        );
        assert_eq!(download_progress(&json!({})), None);
        assert_eq!(download_progress(&json!({"download_progress": 23})), None);
        assert_eq!(download_progress(&json!(null)), None);
    }

    #[test]
    fn progress_object_rules() {
        let ok = json!({"progress": {"stage": "create_instance_from_image_unpack", "percent": "42", "speed": "1048576"}});
        let p = parse_progress_object(&ok).unwrap();
        assert_eq!(p.stage, "create_instance_from_image_unpack");
        assert_eq!((p.percent, p.speed), (42, 1_048_576));
        assert!(p.is_unpack());
        assert!(is_unpack_stage("create_container_from_image_unpack"));
        assert!(!is_unpack_stage("unpack"));
        for bad in [
            json!({}),
            json!({"progress": "42"}),
            json!({"progress": {"stage": "s", "percent": "42"}}),
            json!({"progress": {"stage": "s", "percent": 42, "speed": "1"}}),
            json!({"progress": {"stage": 1, "percent": "42", "speed": "1"}}),
            json!({"progress": {"stage": "s", "percent": "-1", "speed": "1"}}),
            json!({"progress": {"stage": "s", "percent": "+1", "speed": "1"}}),
            json!({"progress": {"stage": "s", "percent": " 1", "speed": "1"}}),
            json!({"progress": {"stage": "s", "percent": "4294967296", "speed": "1"}}),
            json!({"progress": {"stage": "s", "percent": "1", "speed": "1.5"}}),
            json!({"progress": {"stage": "s", "percent": "", "speed": "1"}}),
        ] {
            assert_eq!(parse_progress_object(&bad), None, "{bad}");
        }
        let big = json!({"progress": {"stage": "s", "percent": "4294967295", "speed": "18446744073709551615"}});
        assert_eq!(parse_progress_object(&big).unwrap().speed, u64::MAX);
    }

    #[test]
    fn throttle_is_monotonic_stage_aware_and_rate_limited() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = ProgressThrottle::new();
        assert_eq!(t.observe("rootfs", 10, 5, ms(0)).unwrap().percent, 10);
        assert_eq!(t.observe("rootfs", 10, 5, ms(10)), None, "no change");
        assert_eq!(t.observe("rootfs", 5, 5, ms(20)), None, "never goes back");
        assert_eq!(t.observe("rootfs", 11, 5, ms(30)).unwrap().percent, 11);
        assert_eq!(
            t.observe("rootfs", 11, 6, ms(40)),
            None,
            "speed change too soon"
        );
        let r = t.observe("rootfs", 11, 7, ms(300)).unwrap();
        assert_eq!((r.percent, r.speed), (11, 7), "speed change after 250 ms");
        assert_eq!(
            t.observe("rootfs", 150, 7, ms(310)).unwrap().percent,
            100,
            "clamped"
        );
        assert_eq!(t.observe("rootfs", 150, 7, ms(320)), None);
        let r = t.observe("unpack", 3, 0, ms(330)).unwrap();
        assert_eq!(
            (r.stage.as_str(), r.percent),
            ("unpack", 3),
            "new stage restarts"
        );
        assert_eq!(t.observe("unpack", 2, 0, ms(340)), None);
        let fin = t.clone().finish().unwrap();
        assert_eq!((fin.stage.as_str(), fin.percent), ("unpack", 3));
    }

    #[test]
    fn throttle_step_and_flush() {
        let t0 = Instant::now();
        let mut t = ProgressThrottle::with_limits(Duration::from_secs(10), 5);
        assert!(t.observe("upload", 0, 0, t0).is_some());
        assert!(t.observe("upload", 4, 0, t0).is_none());
        assert_eq!(t.flush(t0).unwrap().percent, 4, "pending state flushed");
        assert_eq!(t.flush(t0), None, "nothing pending");
        assert_eq!(t.observe("upload", 9, 0, t0).unwrap().percent, 9);
        assert_eq!(
            t.finish().unwrap().percent,
            9,
            "finish always yields final state"
        );
        assert_eq!(ProgressThrottle::new().finish(), None);
    }

    #[test]
    fn fuzz_random_input_never_panics_and_matches_the_regex() {
        let re = regex::Regex::new(r"([[:alpha:]]+): ([[:digit:]]+)% [0-9A-Za-z /.()]*$").unwrap();
        let alphabet: &[u8] = b"rootfsmetadata: %0123456789 ()/.kMB!\n\xc3\xa9\xff";
        let mut rng = crostini_common::test_rng::XorShift64::new(0x9E37_79B9_7F4A_7C15);
        let t0 = Instant::now();
        let mut throttle = ProgressThrottle::new();
        for round in 0..20_000u64 {
            let len = (rng.next_u64() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.next_u64().is_multiple_of(4) {
                        rng.next_u64() as u8
                    } else {
                        alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let ours = parse_download_progress(&text);
            let expected = re.captures(&text).and_then(|c| {
                Some(DownloadProgress {
                    stage: c[1].to_string(),
                    percent: c[2].parse().ok()?,
                })
            });
            assert_eq!(ours, expected, "input {text:?}");
            let meta = json!({"progress": {"stage": text, "percent": String::from_utf8_lossy(&bytes[..len.min(3)]), "speed": "1"}});
            let _ = parse_progress_object(&meta);
            let stage = if rng.next_u64().is_multiple_of(50) {
                "b"
            } else {
                "a"
            };
            let before = throttle.clone().finish();
            let pct = (rng.next_u64() % 130) as u32;
            if let Some(r) = throttle.observe(
                stage,
                pct,
                rng.next_u64() % 3,
                t0 + Duration::from_millis(round),
            ) {
                assert!(r.percent <= 100);
                if let Some(b) = before {
                    if b.stage == r.stage {
                        assert!(r.percent >= b.percent, "monotonic within stage");
                    }
                }
            }
        }
    }
}
