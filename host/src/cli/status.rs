//! `crostini-host status`: every VM and container `serve` recorded in the state directory.

use anyhow::Context;
use serde_json::Value;

use crate::state_dir::StateDir;

/// One row: VM, container, state, IPv4, user, garcon endpoint, app list time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub vm: String,
    pub container: String,
    pub state: String,
    pub ipv4: Option<String>,
    pub username: String,
    pub garcon_endpoint: Option<String>,
    /// Seconds since the epoch.
    pub app_list_time: Option<u64>,
}

pub fn rows(dir: &StateDir) -> anyhow::Result<Vec<Row>> {
    let status = dir
        .read_json(&dir.status_path())?
        .unwrap_or(Value::Array(Vec::new()));
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let mut rows = Vec::new();
    for vm in status.as_array().into_iter().flatten() {
        let vm_name = text(vm, "vm").unwrap_or_default();
        let containers = vm.get("containers").and_then(Value::as_array);
        if containers.is_none_or(|c| c.is_empty()) {
            // A VM without containers still gets its row.
            rows.push(Row {
                vm: vm_name.clone(),
                container: String::new(),
                state: String::new(),
                ipv4: None,
                username: String::new(),
                garcon_endpoint: None,
                app_list_time: None,
            });
        }
        for c in containers.into_iter().flatten() {
            let name = text(c, "name").unwrap_or_default();
            rows.push(Row {
                vm: vm_name.clone(),
                app_list_time: dir.app_list_time(&name),
                container: name,
                state: text(c, "state").unwrap_or_default(),
                ipv4: text(c, "ipv4"),
                username: text(c, "username").unwrap_or_default(),
                garcon_endpoint: text(c, "garcon_endpoint"),
            });
        }
    }
    Ok(rows)
}

pub fn run(state_dir: Option<&StateDir>, json: bool) -> anyhow::Result<()> {
    let dir = state_dir.context("status reads what `serve` recorded: pass --state-dir")?;
    let rows = rows(dir)?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.vm.clone(),
                dash(&r.container),
                dash(&r.state),
                r.ipv4.clone().unwrap_or_else(|| "-".into()),
                dash(&r.username),
                r.garcon_endpoint.clone().unwrap_or_else(|| "-".into()),
                r.app_list_time.map_or_else(|| "-".into(), utc),
            ]
        })
        .collect();
    let header = [
        "VM",
        "CONTAINER",
        "STATE",
        "IPV4",
        "USER",
        "GARCON",
        "APP LIST",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    if table.is_empty() {
        println!("(no VM or container recorded yet)");
    }
    Ok(())
}

fn dash(cell: &str) -> String {
    if cell.is_empty() {
        "-".into()
    } else {
        cell.to_string()
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch (civil-from-days, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_410_496), "2026-12-04 18:54:56 UTC");
    }
}
