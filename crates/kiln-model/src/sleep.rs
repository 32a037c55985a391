//! Sleeping apps: whether an app's dynos sleep when no request has come for a while, and
//! after how long. Heroku's eco dynos always sleep after 30 minutes; Kiln lets any app opt in
//! or out (`ps:autosleep`) and set its own idle time.

use crate::Invalid;
use std::time::Duration;

/// The shortest and longest idle time an app may set.
pub const MIN_AFTER: Duration = Duration::from_secs(1);
pub const MAX_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// Whether the app sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SleepMode {
    /// As Heroku: when its web dynos are eco.
    #[default]
    Default,
    On,
    Off,
}

impl SleepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SleepMode::Default => "default",
            SleepMode::On => "on",
            SleepMode::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Result<SleepMode, Invalid> {
        match s.trim() {
            "default" => Ok(SleepMode::Default),
            "on" => Ok(SleepMode::On),
            "off" => Ok(SleepMode::Off),
            other => Err(Invalid::new(
                "mode",
                format!(
                    "Unknown sleep mode {}: use on, off or default",
                    crate::records::shown(other)
                ),
            )),
        }
    }
}

/// An app's sleep setting, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SleepSetting {
    pub mode: SleepMode,
    /// Its own idle time; `None`: the server's.
    pub after: Option<Duration>,
    /// Worker dynos keep running while the web dynos sleep.
    pub workers_stay: bool,
}

impl SleepSetting {
    /// Whether an app with this setting sleeps, given whether its web dynos are eco.
    pub fn sleeps(&self, eco: bool) -> bool {
        match self.mode {
            SleepMode::Default => eco,
            SleepMode::On => true,
            SleepMode::Off => false,
        }
    }

    pub fn check(&self) -> Result<(), Invalid> {
        match self.after {
            Some(a) if a < MIN_AFTER || a > MAX_AFTER => Err(Invalid::new(
                "after",
                "The idle time must be between 1 second and 7 days",
            )),
            _ => Ok(()),
        }
    }
}

/// `30m`, `90s`, `2h`, `1d`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, Invalid> {
    let s = s.trim();
    let bad = || {
        Invalid::new(
            "after",
            format!(
                "{} is not a duration: use seconds, or a number with s, m, h or d (30m)",
                crate::records::shown(s)
            ),
        )
    };
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    if digits.is_empty() || digits.len() > 9 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration(" 2h ").unwrap(), Duration::from_secs(7200));
        for bad in ["", "m", "1x", "-5", "1.5h", "99999999999999s", "1 m", "🕐"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn eco_sleeps_by_default_and_a_setting_overrides() {
        let d = SleepSetting::default();
        assert!(d.sleeps(true) && !d.sleeps(false));
        let on = SleepSetting {
            mode: SleepMode::On,
            ..d
        };
        assert!(on.sleeps(false));
        let off = SleepSetting {
            mode: SleepMode::Off,
            ..d
        };
        assert!(!off.sleeps(true));
        assert!(
            SleepSetting {
                after: Some(Duration::ZERO),
                ..d
            }
            .check()
            .is_err()
        );
        assert!(
            SleepSetting {
                after: Some(Duration::from_secs(8 * 86_400)),
                ..d
            }
            .check()
            .is_err()
        );
        assert_eq!(SleepMode::parse("on").unwrap(), SleepMode::On);
        assert!(SleepMode::parse("sometimes").is_err());
    }
}
