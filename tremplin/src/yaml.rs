//! Just enough YAML reading for LXD's `backup.yaml` and image `metadata.yaml`: scalar values of
//! top-level keys and of keys one level below a top-level mapping. Not a YAML parser.

fn unquote(v: &str) -> String {
    let v = v.trim();
    let v = v.split(" #").next().unwrap_or(v).trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn split_key(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim();
    if trimmed.starts_with('#') || trimmed.starts_with('-') {
        return None;
    }
    let (k, v) = trimmed.split_once(':')?;
    if !(v.is_empty() || v.starts_with(' ')) {
        return None;
    }
    Some((k.trim(), v))
}

/// The scalar value of top-level `key`, if present and non-empty.
pub fn top_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter(|l| indent(l) == 0)
        .filter_map(split_key)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| unquote(v))
        .filter(|v| !v.is_empty())
}

/// The scalar value of `child` directly inside the top-level mapping `parent`.
pub fn nested_value(text: &str, parent: &str, child: &str) -> Option<String> {
    let mut inside = false;
    let mut child_indent: Option<usize> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let ind = indent(line);
        if ind == 0 {
            inside = matches!(split_key(line), Some((k, v)) if k == parent && v.trim().is_empty());
            child_indent = None;
            continue;
        }
        if !inside {
            continue;
        }
        let expected = *child_indent.get_or_insert(ind);
        if ind != expected {
            continue;
        }
        if let Some((k, v)) = split_key(line) {
            if k == child {
                let v = unquote(v);
                return (!v.is_empty()).then_some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKUP: &str = "container:\n  architecture: x86_64\n  config:\n    name: inner\n  name: penguin\nsnapshots: []\nvolume:\n  config: {}\n  name: \"penguin\"\n";

    #[test]
    fn nested_values_ignore_deeper_keys() {
        assert_eq!(
            nested_value(BACKUP, "container", "name").as_deref(),
            Some("penguin")
        );
        assert_eq!(
            nested_value(BACKUP, "volume", "name").as_deref(),
            Some("penguin")
        );
        assert_eq!(nested_value(BACKUP, "snapshots", "name"), None);
        assert_eq!(nested_value(BACKUP, "missing", "name"), None);
    }

    #[test]
    fn top_values() {
        let meta =
            "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  architecture: other\n";
        assert_eq!(top_value(meta, "architecture").as_deref(), Some("x86_64"));
        assert_eq!(top_value(meta, "properties"), None);
        assert_eq!(
            top_value("architecture: 'aarch64' # c\n", "architecture").as_deref(),
            Some("aarch64")
        );
        assert_eq!(top_value("garbage\n\x00:::", "architecture"), None);
    }
}
