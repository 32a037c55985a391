//! When a scheduled job runs (`kiln schedules:add "every 10 minutes" -- CMD`): the expression
//! language and the one question the scheduler asks of it, the next run after a moment.
//!
//! Heroku Scheduler offers "every 10 minutes", "every hour at :30" and "every day at 02:00
//! UTC". Kiln reads those, and beyond them any interval and standard five-field cron:
//!
//! - `every 10 minutes`, `every 2 hours`, `every minute`, `every 30 seconds` (intervals
//!   counted from the Unix epoch, so `every 10 minutes` runs at :00, :10, :20…);
//! - `hourly at :30` (`hourly` alone: at :00), `daily at 02:00 UTC` (`UTC` may be left out;
//!   no other zone is taken, so a schedule never shifts with daylight saving);
//! - cron: `*/15 * * * *`, `30 2 * * 1-5`, `0 9,17 1 * *` — minute, hour, day of month,
//!   month, day of week (0 or 7 is Sunday), with `*`, lists, ranges and steps, in UTC. When
//!   both days are restricted a day matching either runs, as in cron.
//!
//! Every expression is bounded (at most 100 bytes) and checked when it is added, with a
//! message that says what is wrong.

use crate::Invalid;
use crate::time::civil_from_days;

pub const MAX_EXPRESSION: usize = 100;
/// The shortest interval: a job every second would be a process, not a schedule.
pub const MIN_INTERVAL_SECS: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `n` seconds, aligned to the epoch.
    Every(u64),
    Cron(Box<Cron>),
}

/// A cron expression's fields as sets (bit i set: value i matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether each day field was `*` (cron's rule for combining them).
    any_day: bool,
    any_weekday: bool,
}

fn invalid(why: impl Into<String>) -> Invalid {
    Invalid::new("schedule", why)
}

impl Schedule {
    pub fn parse(input: &str) -> Result<Schedule, Invalid> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(
                "A schedule is required, such as \"every 10 minutes\"",
            ));
        }
        if s.len() > MAX_EXPRESSION {
            return Err(invalid(format!(
                "A schedule is at most {MAX_EXPRESSION} characters"
            )));
        }
        let lower = s.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        match words.as_slice() {
            ["every", unit] => Ok(Schedule::Every(unit_secs(unit, 1)?)),
            ["every", n, unit] => {
                let n: u64 = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0 && *n <= 1_000_000)
                    .ok_or_else(|| {
                        invalid(format!(
                            "{} is not a number of {unit}",
                            crate::records::shown(n)
                        ))
                    })?;
                Ok(Schedule::Every(unit_secs(unit, n)?))
            }
            ["hourly"] => cron_of(0, None),
            ["hourly", "at", at] => {
                let m = at
                    .strip_prefix(':')
                    .and_then(|m| m.parse::<u32>().ok())
                    .filter(|m| *m < 60 && at.len() == 3)
                    .ok_or_else(|| invalid("hourly at takes a minute such as :30"))?;
                cron_of(m, None)
            }
            ["daily", "at", time] | ["daily", "at", time, "utc"] => {
                let (h, m) = time
                    .split_once(':')
                    .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
                    .filter(|(h, m)| *h < 24 && *m < 60)
                    .ok_or_else(|| invalid("daily at takes a time such as 02:00 (UTC)"))?;
                cron_of(m, Some(h))
            }
            ["daily", "at", _, zone] => Err(invalid(format!(
                "Only UTC is taken, not {}: write the time in UTC",
                crate::records::shown(zone)
            ))),
            fields if fields.len() == 5 => Ok(Schedule::Cron(Box::new(Cron::parse(fields)?))),
            _ => Err(invalid(format!(
                "{} is not a schedule: use \"every 10 minutes\", \"hourly at :30\", \"daily at 02:00 UTC\" or cron (\"*/15 * * * *\")",
                crate::records::shown(s)
            ))),
        }
    }

    /// The first run strictly after `t` (Unix seconds); `None` if there is none in the next
    /// five years (a cron day that never comes, such as 31 February).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => {
                let n = *n as i64;
                Some((t.div_euclid(n) + 1) * n)
            }
            Schedule::Cron(c) => c.next_after(t),
        }
    }
}

fn unit_secs(unit: &str, n: u64) -> Result<u64, Invalid> {
    let per = match unit {
        "second" | "seconds" | "sec" | "secs" => 1,
        "minute" | "minutes" | "min" | "mins" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        other => {
            return Err(invalid(format!(
                "{} is not a unit: use seconds, minutes, hours or days",
                crate::records::shown(other)
            )));
        }
    };
    let secs = n * per;
    if secs < MIN_INTERVAL_SECS {
        return Err(invalid("The shortest interval is a second"));
    }
    Ok(secs)
}

fn cron_of(minute: u32, hour: Option<u32>) -> Result<Schedule, Invalid> {
    Ok(Schedule::Cron(Box::new(Cron {
        minutes: 1 << minute,
        hours: hour.map_or((1 << 24) - 1, |h| 1 << h),
        days: ((1u64 << 32) - 2) as u32,
        months: ((1u32 << 13) - 2) as u16,
        weekdays: 0x7f,
        any_day: true,
        any_weekday: true,
    })))
}

/// A field of `lo..=hi` as a bit set.
fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<u64, Invalid> {
    let bad = || {
        invalid(format!(
            "{} is not a valid {name} (use {lo}-{hi}, *, lists, ranges and /steps)",
            crate::records::shown(text)
        ))
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
        } else {
            let v: u32 = range.parse().map_err(|_| bad())?;
            // `5/15` means from 5 to the end, every 15.
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(bad());
        }
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

impl Cron {
    fn parse(f: &[&str]) -> Result<Cron, Invalid> {
        // Fields are checked in the order they are written, so the first mistake is named.
        let minutes = field(f[0], 0, 59, "minute")?;
        let hours = field(f[1], 0, 23, "hour")? as u32;
        let days = field(f[2], 1, 31, "day of month")? as u32;
        let months = field(f[3], 1, 12, "month")? as u16;
        let mut weekdays = field(f[4], 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays: weekdays as u8,
            any_day: f[2] == "*",
            any_weekday: f[4] == "*",
        })
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, m, d) = civil_from_days(day);
        if self.months & (1 << m) == 0 {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let wd = (day + 4).rem_euclid(7) as u32;
        let dom = self.days & (1 << d) != 0;
        let dow = self.weekdays & (1 << wd) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    fn next_after(&self, t: i64) -> Option<i64> {
        // From the next whole minute.
        let start = (t.div_euclid(60) + 1) * 60;
        let mut day = start.div_euclid(86_400);
        let mut minute_of_day = (start.rem_euclid(86_400) / 60) as u32;
        for _ in 0..(5 * 366) {
            if self.day_matches(day) {
                for m in minute_of_day..1440 {
                    if self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0 {
                        return Some(day * 86_400 + i64::from(m) * 60);
                    }
                }
            }
            day += 1;
            minute_of_day = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05T14:10:12Z
    const T: i64 = 1_796_479_812;

    fn next(expr: &str, t: i64) -> i64 {
        Schedule::parse(expr).unwrap().next_after(t).unwrap()
    }

    #[test]
    fn the_calendar_is_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(T / 86_400), (2026, 12, 5));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn herokus_three_schedules() {
        // 14:20:00 and 14:30:00.
        assert_eq!(next("every 10 minutes", T), 1_796_480_400);
        assert_eq!(next("hourly at :30", T), 1_796_481_000);
        assert_eq!(next("hourly", T), 1_796_482_800);
        let d = next("daily at 02:00 UTC", T);
        assert_eq!(d % 86_400, 7200);
        assert!(d > T && d - T < 86_400);
        assert_eq!(next("daily at 02:00", T), d);
        assert_eq!(next("Every Minute", T), T - 12 + 60);
        assert_eq!(next("every 2 seconds", T), T + 2);
    }

    #[test]
    fn cron_fields() {
        // 14:15 the same day.
        assert_eq!(next("*/15 * * * *", T), 1_796_480_100);
        // 30 2 on weekdays: 2026-12-05 is a Saturday, so Monday 7 December.
        let monday = next("30 2 * * 1-5", T);
        assert_eq!(civil_from_days(monday / 86_400), (2026, 12, 7));
        assert_eq!(monday % 86_400, 2 * 3600 + 30 * 60);
        // Sunday as 7 and as 0.
        assert_eq!(next("0 0 * * 7", T), next("0 0 * * 0", T));
        // Day of month OR day of week when both are given.
        let either = next("0 0 1 * 1", T);
        assert_eq!(civil_from_days(either / 86_400), (2026, 12, 7));
        // 31 February never comes.
        assert_eq!(Schedule::parse("0 0 31 2 *").unwrap().next_after(T), None);
        // Strictly after: at 14:15:00 exactly, the next is 14:30.
        let at = 1_796_480_100;
        assert_eq!(next("*/15 * * * *", at), at + 900);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (bad, says) in [
            ("", "required"),
            ("every", "not a schedule"),
            ("every 0 minutes", "not a number"),
            ("every -5 minutes", "not a number"),
            ("every 10 fortnights", "not a unit"),
            ("hourly at 30", ":30"),
            ("hourly at :60", ":30"),
            ("daily at 25:00", "02:00"),
            ("daily at 02:00 CET", "Only UTC"),
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "minute"),
            ("5-1 * * * *", "minute"),
            ("a b c d e", "minute"),
            ("* * * *", "not a schedule"),
        ] {
            let e = Schedule::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert!(
            Schedule::parse(&"* ".repeat(60))
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
    }
}
