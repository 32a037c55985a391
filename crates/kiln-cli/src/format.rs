//! Output in the Heroku CLI's shapes: `=== header` blocks, `Key: value` lists aligned on the
//! values, borderless tables, `2026/11/21 12:00:00 +0000 (~ 5s ago)` times and `12 MB` sizes.
//! People and scripts that know `heroku` output can read `kiln` output the same way.

use kiln_model::Timestamp;
use serde_json::Value;

/// `=== title` and a blank line (oclif's styledHeader).
pub fn header(title: &str) -> String {
    format!("=== {title}\n\n")
}

/// `Key: value` lines with the values in one column (oclif's styledObject): each key gets
/// its colon, then spaces up to two past the longest key.
pub fn styled_object<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.as_ref().chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = String::new();
    for (k, v) in pairs {
        let k = k.as_ref();
        let pad = width - k.chars().count() - 1;
        out.push_str(k);
        out.push(':');
        out.push_str(&" ".repeat(pad));
        out.push_str(v.as_ref());
        out.push('\n');
    }
    out
}

/// Rows as columns separated by two spaces, each as wide as its widest cell; trailing
/// blanks are trimmed so the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2027-03-01T12:00:00Z` as the Heroku CLI shows certificate dates: `2027-03-01 12:00 UTC`.
pub fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => rfc3339.to_string(),
    }
}

/// The Heroku CLI's `ago`: an absolute UTC time, then roughly how long ago it was (for up to
/// a day; older times stand alone).
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    let rfc = at.rfc3339(); // 2012-01-01T12:00:00Z
    let absolute = format!("{} {} +0000", rfc[..10].replace('-', "/"), &rfc[11..19]);
    let elapsed = now.unix_seconds() - at.unix_seconds();
    match elapsed {
        i64::MIN..=0 => format!("{absolute} (~ 0s ago)"),
        1..=59 => format!("{absolute} (~ {elapsed}s ago)"),
        60..=3599 => format!("{absolute} (~ {}m ago)", elapsed / 60),
        3600..=89_999 => format!("{absolute} (~ {}h ago)", elapsed / 3600),
        _ => absolute,
    }
}

/// `ago` for an API timestamp string; an unreadable one is shown as it came.
pub fn ago_str(at: &str, now: Timestamp) -> String {
    match Timestamp::parse_rfc3339(at) {
        Some(t) => ago(t, now),
        None => at.to_string(),
    }
}

/// A byte count as the Heroku CLI shows sizes (`filesize` with JEDEC units, rounded to a
/// whole number): `0 B`, `512 KB`, `12 MB`.
pub fn filesize(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", value.round() as u64, UNITS[unit])
}

/// The Heroku CLI's note for a release that is not simply live.
pub fn release_status(status: &str) -> Option<&'static str> {
    match status {
        "pending" => Some("release command executing"),
        "failed" => Some("release command failed"),
        "expired" => Some("release expired"),
        _ => None,
    }
}

/// Pretty JSON, as `--json` prints it.
pub fn json(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    s.push('\n');
    s
}

/// A string field of a JSON object, or "" when missing or not a string.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A JSON value as display text: strings bare, null empty, anything else as JSON.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styled_object_aligns_values() {
        let s = styled_object(&[("RAILS_ENV", "staging"), ("RACK_ENV", "staging"), ("A", "")]);
        assert_eq!(s, "RAILS_ENV: staging\nRACK_ENV:  staging\nA:         \n");
    }

    #[test]
    fn header_has_a_blank_line() {
        assert_eq!(header("myapp Config Vars"), "=== myapp Config Vars\n\n");
    }

    #[test]
    fn table_pads_but_does_not_trail() {
        let rows = vec![
            vec!["v10".into(), "Deploy".into(), "a@b".into()],
            vec!["v9".into(), "Set FOO config vars".into(), "c@d".into()],
        ];
        assert_eq!(
            table(&rows),
            "v10  Deploy               a@b\nv9   Set FOO config vars  c@d\n"
        );
    }

    #[test]
    fn ago_matches_the_heroku_cli() {
        let at = Timestamp::parse_rfc3339("2026-11-21T12:00:00Z").unwrap();
        let plus = |s: i64| Timestamp::from_unix_seconds(at.unix_seconds() + s);
        assert_eq!(ago(at, plus(5)), "2026/11/21 12:00:00 +0000 (~ 5s ago)");
        assert_eq!(ago(at, plus(-3)), "2026/11/21 12:00:00 +0000 (~ 0s ago)");
        assert_eq!(ago(at, plus(125)), "2026/11/21 12:00:00 +0000 (~ 2m ago)");
        assert_eq!(ago(at, plus(7300)), "2026/11/21 12:00:00 +0000 (~ 2h ago)");
        assert_eq!(ago(at, plus(90_000)), "2026/11/21 12:00:00 +0000");
        assert_eq!(ago_str("yesterday", at), "yesterday");
    }

    #[test]
    fn sizes() {
        assert_eq!(filesize(0), "0 B");
        assert_eq!(filesize(1023), "1023 B");
        assert_eq!(filesize(1536), "2 KB");
        assert_eq!(filesize(45 * 1024 * 1024), "45 MB");
    }
}
