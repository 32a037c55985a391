//! The process's open-files limit, and how it is shared between the listeners.
//!
//! Service managers and shells commonly start a process with a soft limit of 1024 open
//! files while allowing far more (systemd's default hard limit is 524 288); every socket,
//! pipe and file counts against it, for the whole process at once. Kiln raises the soft limit
//! to the hard one at start ([`raise`]), then gives each listener a cap that fits what there
//! is ([`budgets`]), after a reserve for everything that is not a client connection.

use std::io;

/// The soft and hard open-files limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub soft: u64,
    pub hard: u64,
}

/// The current limits.
pub fn current() -> io::Result<Limits> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Limits {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Raises the soft limit to the hard limit; returns the limits now in force. Children
/// (dynos, builds, git) inherit the raised soft limit.
pub fn raise() -> io::Result<Limits> {
    let before = current()?;
    if before.soft >= before.hard {
        return Ok(before);
    }
    let lim = libc::rlimit {
        rlim_cur: before.hard,
        rlim_max: before.hard,
    };
    // SAFETY: setrlimit reads one rlimit we own; raising the soft limit up to the hard
    // limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    current()
}

/// A listener's wish: `wanted` connections, each costing `fds_per_connection` descriptors
/// (a router connection holds a client socket and a dyno socket: 2).
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub wanted: usize,
    pub fds_per_connection: usize,
}

/// What was decided for the listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Each listener's cap, in the order of the wishes: the wish, or less if they do not all
    /// fit (then each gets the same share of what it asked for).
    pub caps: Vec<usize>,
    /// Descriptors kept for everything else.
    pub reserve: u64,
    /// Whether some wish had to be cut.
    pub lowered: bool,
}

/// Divides `limit` descriptors between the listeners, after a reserve of an eighth of the
/// limit and at least 256: dyno pipes and log files, git processes, the database, the
/// listeners themselves and connections in the middle of being refused.
pub fn budgets(limit: u64, wants: &[Want]) -> Budget {
    let reserve = (limit / 8).max(256).min(limit);
    let available = limit - reserve;
    let needed: u64 = wants
        .iter()
        .map(|w| (w.wanted as u64).saturating_mul(w.fds_per_connection.max(1) as u64))
        .sum();
    if needed <= available {
        return Budget {
            caps: wants.iter().map(|w| w.wanted).collect(),
            reserve,
            lowered: false,
        };
    }
    // Every listener keeps the same fraction of its wish, and at least one connection.
    let caps = wants
        .iter()
        .map(|w| ((w.wanted as u128 * available as u128 / needed.max(1) as u128) as usize).max(1))
        .collect();
    Budget {
        caps,
        reserve,
        lowered: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wishes_that_fit_are_kept() {
        let b = budgets(
            1 << 20,
            &[
                Want {
                    wanted: 1000,
                    fds_per_connection: 1,
                },
                Want {
                    wanted: 10_000,
                    fds_per_connection: 2,
                },
            ],
        );
        assert_eq!(b.caps, [1000, 10_000]);
        assert!(!b.lowered);
    }

    #[test]
    fn a_small_limit_is_shared_and_never_exhausted() {
        let wants = [
            Want {
                wanted: 1000,
                fds_per_connection: 1,
            },
            Want {
                wanted: 10_000,
                fds_per_connection: 2,
            },
            Want {
                wanted: 10_000,
                fds_per_connection: 2,
            },
        ];
        let b = budgets(1024, &wants);
        assert!(b.lowered);
        assert_eq!(b.reserve, 256);
        let used: usize = b
            .caps
            .iter()
            .zip(&wants)
            .map(|(c, w)| c * w.fds_per_connection)
            .sum();
        assert!(used as u64 <= 1024 - 256, "{b:?}");
        assert!(b.caps.iter().all(|&c| c >= 1), "{b:?}");
        // Each keeps the same share of its wish.
        assert_eq!(b.caps[1], b.caps[2]);
        assert!(
            (b.caps[0] as f64 / 1000.0 - b.caps[1] as f64 / 10_000.0).abs() < 0.01,
            "{b:?}"
        );
    }

    #[test]
    fn raising_keeps_the_hard_limit() {
        let before = current().unwrap();
        let after = raise().unwrap();
        assert_eq!(after.hard, before.hard);
        assert_eq!(after.soft, before.hard);
    }
}
