//! Timestamps in the two formats Heroku uses: RFC 3339 to the second in API objects
//! (`2012-01-01T12:00:00Z`) and with microseconds in log lines (`...T12:00:00.123456+00:00`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_micros() as i64)
    }

    pub fn from_unix_seconds(s: i64) -> Timestamp {
        Timestamp(s * 1_000_000)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn unix_millis(self) -> i64 {
        self.0.div_euclid(1_000)
    }

    fn parts(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = self.unix_seconds();
        let micros = self.0.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, micros)
    }

    /// `2012-01-01T12:00:00Z`, the API's format.
    pub fn rfc3339(self) -> String {
        let (y, mo, d, h, mi, s, _) = self.parts();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }

    /// `2012-01-01T12:00:00.123456+00:00`, the log format.
    pub fn log_format(self) -> String {
        let mut out = Vec::with_capacity(32);
        self.write_log_format(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The log format appended to `out`, without `format!`: drains write it for every line.
    pub fn write_log_format(self, out: &mut Vec<u8>) {
        let (y, mo, d, h, mi, s, us) = self.parts();
        // A year outside 0..=9999 is not a time a log line carries; clamp it to four digits.
        let y = y.clamp(0, 9999) as u32;
        let digits = |out: &mut Vec<u8>, v: u32, width: u32| {
            for i in (0..width).rev() {
                out.push(b'0' + (v / 10u32.pow(i) % 10) as u8);
            }
        };
        digits(out, y, 4);
        out.push(b'-');
        digits(out, mo, 2);
        out.push(b'-');
        digits(out, d, 2);
        out.push(b'T');
        digits(out, h, 2);
        out.push(b':');
        digits(out, mi, 2);
        out.push(b':');
        digits(out, s, 2);
        out.push(b'.');
        digits(out, us, 6);
        out.extend_from_slice(b"+00:00");
    }

    /// Parses the API format back (also accepts fractional seconds and `+00:00`).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d, h, mi, sec) = (
            num(0..4)?,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
        );
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut rest = &s[19..];
        let mut micros = 0i64;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut padded = digits.clone();
            padded.truncate(6);
            while padded.len() < 6 {
                padded.push('0');
            }
            micros = padded.parse().ok()?;
            rest = &frac[digits.len()..];
        }
        if rest != "Z" && rest != "+00:00" {
            return None;
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        Some(Timestamp(
            (days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + micros,
        ))
    }
}

// Howard Hinnant's algorithms: proleptic Gregorian calendar <-> days since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = Timestamp(1_427_041_338_251_123);
        assert_eq!(t.rfc3339(), "2015-03-22T16:22:18Z");
        assert_eq!(t.log_format(), "2015-03-22T16:22:18.251123+00:00");
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn parse_round_trips() {
        let t = Timestamp(1_700_000_000_000_000);
        assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()), Some(t));
        assert_eq!(
            Timestamp::parse_rfc3339(&Timestamp(1_700_000_000_123_456).log_format()),
            Some(Timestamp(1_700_000_000_123_456))
        );
        for bad in [
            "",
            "2015-13-01T00:00:00Z",
            "nonsense-and-more-text",
            "2015-03-22T16:22:18",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
