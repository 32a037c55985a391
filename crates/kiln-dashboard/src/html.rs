//! HTML by hand, with one rule: every value from outside (an app name, a config var, a log
//! line, an email) reaches a page only through [`esc`] (text and attribute values alike,
//! since it escapes both quotes). Pages are built with `write!` into a `String`; there is no
//! template engine to learn and nothing is parsed at run time.

use std::fmt::{self, Display, Write};

/// A value escaped for HTML text and for a double- or single-quoted attribute.
pub struct Esc<'a>(pub &'a str);

pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, b) in self.0.bytes().enumerate() {
            let rep = match b {
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'&' => "&amp;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

/// A path segment for a link (app names, add-on names and ids are already URL-safe by their
/// rules; anything else is percent-encoded so that it cannot leave the segment).
pub struct Seg<'a>(pub &'a str);

impl Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                f.write_char(b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// "3 minutes ago", for lists; the exact time is in the element's `title`.
pub fn ago(t: kiln_model::Timestamp) -> String {
    let secs = (kiln_model::Timestamp::now().0 - t.0).max(0) / 1_000_000;
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => plural(secs / 60, "minute"),
        3600..=86_399 => plural(secs / 3600, "hour"),
        _ => plural(secs / 86_400, "day"),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// `<time>` with the relative form shown and the exact one on hover.
pub fn time(t: kiln_model::Timestamp) -> String {
    let exact = t.rfc3339();
    format!(
        r#"<time datetime="{exact}" title="{exact}">{}</time>"#,
        ago(t)
    )
}

/// Bytes as people read them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_leave_text_or_an_attribute() {
        let s = esc(r#"<script>alert("x")</script>&'"#).to_string();
        assert_eq!(
            s,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(esc("plain").to_string(), "plain");
        assert_eq!(esc("é<").to_string(), "é&lt;");
    }

    #[test]
    fn a_segment_cannot_leave_its_place_in_a_path() {
        assert_eq!(Seg("web.1").to_string(), "web.1");
        assert_eq!(Seg("../x?y#z").to_string(), "..%2Fx%3Fy%23z");
    }
}
