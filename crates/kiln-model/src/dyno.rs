//! Dyno names, states and sizes.

use crate::procfile::validate_process_type;
use crate::{Invalid, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `web.1`, `worker.3`, `run.4821`: a process type and an index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DynoName {
    pub process_type: String,
    pub index: u32,
}

impl DynoName {
    pub fn new(process_type: impl Into<String>, index: u32) -> Self {
        DynoName {
            process_type: process_type.into(),
            index,
        }
    }

    pub fn parse(s: &str) -> Result<DynoName, Invalid> {
        let bad = || {
            Invalid::new(
                "dyno",
                format!("Invalid dyno name {s:?}: expected <type>.<number>, such as web.1"),
            )
        };
        let (t, n) = s.rsplit_once('.').ok_or_else(bad)?;
        validate_process_type(t).map_err(|_| bad())?;
        let index: u32 = n.parse().map_err(|_| bad())?;
        if index == 0 || n.starts_with('0') {
            return Err(bad());
        }
        Ok(DynoName::new(t, index))
    }
}

impl fmt::Display for DynoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.process_type, self.index)
    }
}

/// The Platform API's dyno states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Idle,
    Down,
}

impl DynoState {
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
            DynoState::Idle => "idle",
            DynoState::Down => "down",
        }
    }
}

impl fmt::Display for DynoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Heroku's dyno sizes and the memory each is allowed. The hard limit (R15) is twice the
/// quota, as on Heroku's Common Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynoSize {
    Eco,
    Basic,
    Standard1X,
    Standard2X,
    PerformanceM,
    PerformanceL,
}

impl DynoSize {
    pub const ALL: [DynoSize; 6] = [
        DynoSize::Eco,
        DynoSize::Basic,
        DynoSize::Standard1X,
        DynoSize::Standard2X,
        DynoSize::PerformanceM,
        DynoSize::PerformanceL,
    ];

    /// Heroku's spelling, as the API returns it.
    pub fn name(self) -> &'static str {
        match self {
            DynoSize::Eco => "Eco",
            DynoSize::Basic => "Basic",
            DynoSize::Standard1X => "Standard-1X",
            DynoSize::Standard2X => "Standard-2X",
            DynoSize::PerformanceM => "Performance-M",
            DynoSize::PerformanceL => "Performance-L",
        }
    }

    /// Accepts any case (`standard-1x`, `Standard-1X`), and the short forms `1X`, `2X`, `PX`.
    pub fn parse(s: &str) -> Result<DynoSize, Invalid> {
        let l = s.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "eco" | "free" => DynoSize::Eco,
            "basic" | "hobby" => DynoSize::Basic,
            "standard-1x" | "1x" => DynoSize::Standard1X,
            "standard-2x" | "2x" => DynoSize::Standard2X,
            "performance-m" | "px" => DynoSize::PerformanceM,
            "performance-l" => DynoSize::PerformanceL,
            _ => {
                let names: Vec<_> = DynoSize::ALL.iter().map(|s| s.name()).collect();
                return Err(Invalid::new(
                    "size",
                    format!("Unknown dyno size {s:?}; one of: {}", names.join(", ")),
                ));
            }
        })
    }

    /// The memory quota in MiB (R14 above it).
    pub fn memory_mb(self) -> u64 {
        match self {
            DynoSize::Eco | DynoSize::Basic | DynoSize::Standard1X => 512,
            DynoSize::Standard2X => 1024,
            DynoSize::PerformanceM => 2560,
            DynoSize::PerformanceL => 14336,
        }
    }

    /// Processes and threads a dyno may have.
    pub fn max_processes(self) -> u64 {
        match self {
            DynoSize::Eco | DynoSize::Basic | DynoSize::Standard1X => 256,
            DynoSize::Standard2X => 512,
            DynoSize::PerformanceM => 16384,
            DynoSize::PerformanceL => 32768,
        }
    }

    /// Relative CPU share (cgroup weight basis): bigger dynos get more of a contended CPU.
    pub fn cpu_share(self) -> u64 {
        match self {
            DynoSize::Eco | DynoSize::Basic => 512,
            DynoSize::Standard1X => 1024,
            DynoSize::Standard2X => 2048,
            DynoSize::PerformanceM => 8192,
            DynoSize::PerformanceL => 16384,
        }
    }
}

impl Default for DynoSize {
    fn default() -> Self {
        DynoSize::Standard1X
    }
}

impl fmt::Display for DynoSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = DynoName::parse("web.12").unwrap();
        assert_eq!(n, DynoName::new("web", 12));
        assert_eq!(n.to_string(), "web.12");
        for bad in ["web", "web.0", "web.01", ".1", "web.-1", "we b.1", "web.x"] {
            assert!(DynoName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_any_case() {
        assert_eq!(
            DynoSize::parse("standard-2x").unwrap(),
            DynoSize::Standard2X
        );
        assert_eq!(DynoSize::parse("Performance-L").unwrap().memory_mb(), 14336);
        assert!(DynoSize::parse("huge").is_err());
    }
}

/// A dyno as `ps` and the API show it.
#[derive(Debug, Clone)]
pub struct DynoInfo {
    pub id: String,
    pub name: String,
    pub process_type: String,
    pub state: DynoState,
    pub command: String,
    pub size: DynoSize,
    pub release_id: String,
    pub release_version: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why a dyno is crashed and when it will be tried again, for `ps`.
    pub detail: Option<String>,
}

/// Which dynos `ps:restart` means.
#[derive(Debug, Clone)]
pub enum RestartTarget {
    All,
    Type(String),
    Dyno(String),
}
