//! LXD operation progress (tremplin §4.4): the `download_progress` text against the regex it
//! implements, the `progress` object, and the report throttle (0..=100, never decreasing
//! within a stage). Input: progress text, then NUL-separated (stage, percent, speed) triples.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crostini_lxd::progress::{
    download_progress, parse_download_progress, parse_progress_object, DownloadProgress,
    ProgressThrottle,
};
use libfuzzer_sys::fuzz_target;
use regex::Regex;

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"([[:alpha:]]+): ([[:digit:]]+)% [0-9A-Za-z /.()]*$").expect("valid regex")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let progress_text = parts.next().unwrap_or_default();

    let ours = parse_download_progress(progress_text);
    let expected = pattern().captures(progress_text).and_then(|c| {
        Some(DownloadProgress {
            stage: c[1].to_string(),
            percent: c[2].parse().ok()?,
        })
    });
    assert_eq!(ours, expected, "{progress_text:?}");
    if let Some(p) = &ours {
        assert!(p.percent >= 0 && p.reported_percent() >= 0);
    }
    let meta = serde_json::json!({ "download_progress": progress_text });
    assert_eq!(download_progress(&meta), ours);

    let rest: Vec<&str> = parts.collect();
    let t0 = Instant::now();
    let mut throttle = ProgressThrottle::with_limits(Duration::from_millis(250), 1);
    let mut last: Option<(String, u32)> = None;
    for (step, triple) in rest.chunks(3).take(64).enumerate() {
        let stage = triple[0];
        let percent = triple.get(1).copied().unwrap_or("0");
        let speed = triple.get(2).copied().unwrap_or("0");
        let object = serde_json::json!({
            "progress": { "stage": stage, "percent": percent, "speed": speed }
        });
        let Some(p) = parse_progress_object(&object) else {
            continue;
        };
        assert_eq!(
            p.percent.to_string(),
            percent.trim_start_matches('0').max("0")
        );
        let now = t0 + Duration::from_millis(100 * step as u64);
        if let Some(report) = throttle.observe(&p.stage, p.percent, p.speed, now) {
            assert!(report.percent <= 100);
            if let Some((stage, percent)) = &last {
                if *stage == report.stage {
                    assert!(report.percent >= *percent, "went back within {stage:?}");
                }
            }
            last = Some((report.stage.clone(), report.percent));
        }
    }
    if let Some(report) = throttle.flush(t0 + Duration::from_secs(60)) {
        assert!(report.percent <= 100);
    }
    if let Some(report) = throttle.finish() {
        assert!(report.percent <= 100);
    }
});
