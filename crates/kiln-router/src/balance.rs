//! Choosing a dyno: least outstanding requests between two random choices ("power of two
//! choices"), skipping dynos this request already tried and, while others remain, dynos in
//! quarantine.
//!
//! Why not Heroku's uniform random choice: a random router keeps sending work to a dyno
//! that is stuck on a slow request, which is what made requests queue inside dynos in the
//! 2013 RapGenius affair. Comparing two random dynos' outstanding counts avoids the busy one
//! almost always, at O(1) cost and without the herd effect of always picking the global
//! minimum (every router — or every concurrent request — piling onto the same idle dyno).

use crate::backend::BackendState;
use crate::wire::clock_ms;
use std::sync::Arc;

/// Heroku retries a request on at most 10 dynos.
pub(crate) const MAX_ATTEMPTS: usize = 10;

/// The dynos one request has been sent to, by index in the app's backend list.
#[derive(Debug, Default)]
pub(crate) struct Tried {
    indexes: [usize; MAX_ATTEMPTS],
    len: usize,
}

impl Tried {
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.indexes[..self.len].contains(&i)
    }

    pub(crate) fn insert(&mut self, i: usize) {
        if self.len < MAX_ATTEMPTS {
            self.indexes[self.len] = i;
            self.len += 1;
        }
    }

    fn is_full(&self) -> bool {
        self.len == MAX_ATTEMPTS
    }
}

/// The dyno for the next attempt, or `None` when every dyno (or the retry budget) is spent.
pub(crate) fn pick(backends: &[Arc<BackendState>], tried: &Tried) -> Option<usize> {
    if tried.is_full() {
        return None;
    }
    if backends.len() == 1 {
        // One web dyno (a common case) leaves no choice, quarantined or not: the same
        // answer as below, without the draws.
        return (!tried.contains(0)).then_some(0);
    }
    let now = clock_ms();
    two_choices(backends, |i| {
        !tried.contains(i) && !backends[i].is_quarantined(now)
    })
    // All untried dynos are quarantined: trying one beats failing without trying.
    .or_else(|| two_choices(backends, |i| !tried.contains(i)))
}

fn two_choices(backends: &[Arc<BackendState>], eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let n = backends.len();
    let a = random_where(n, &eligible)?;
    let Some(b) = random_where(n, |i| i != a && eligible(i)) else {
        return Some(a);
    };
    Some(if backends[b].outstanding() < backends[a].outstanding() {
        b
    } else {
        a
    })
}

/// A uniformly random index satisfying `ok`. A few blind draws find one quickly when most
/// indexes qualify (the usual case); a scan from a random start settles the rest without
/// allocating a candidate list.
fn random_where(n: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    if n == 0 {
        return None;
    }
    for _ in 0..4 {
        let i = fastrand::usize(..n);
        if ok(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..n);
    (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::route::Backend;

    fn backends(n: usize) -> Vec<Arc<BackendState>> {
        (0..n)
            .map(|i| {
                BackendState::new(Backend {
                    dyno: format!("web.{}", i + 1),
                    addr: ([127, 0, 0, 1], 1000 + i as u16).into(),
                })
            })
            .collect()
    }

    #[test]
    fn avoids_the_busiest_dyno() {
        let b = backends(2);
        let _busy: Vec<_> = (0..5).map(|_| b[0].begin()).collect();
        // With two dynos both choices are always drawn, so the idle one always wins.
        for _ in 0..100 {
            assert_eq!(pick(&b, &Tried::default()), Some(1));
        }
    }

    #[test]
    fn spreads_over_idle_dynos() {
        let b = backends(3);
        let mut hits = [0; 3];
        for _ in 0..300 {
            hits[pick(&b, &Tried::default()).unwrap()] += 1;
        }
        assert!(hits.iter().all(|&h| h > 30), "{hits:?}");
    }

    #[test]
    fn skips_tried_then_gives_up() {
        let b = backends(3);
        let mut tried = Tried::default();
        for _ in 0..3 {
            let i = pick(&b, &tried).unwrap();
            assert!(!tried.contains(i));
            tried.insert(i);
        }
        assert_eq!(pick(&b, &tried), None);
        assert_eq!(pick(&[], &Tried::default()), None);
    }

    #[test]
    fn prefers_unquarantined_dynos() {
        let b = backends(3);
        b[0].quarantine();
        b[2].quarantine();
        for _ in 0..50 {
            assert_eq!(pick(&b, &Tried::default()), Some(1));
        }
        let mut tried = Tried::default();
        tried.insert(1);
        assert!(
            matches!(pick(&b, &tried), Some(0 | 2)),
            "quarantined dynos are still tried last"
        );
    }

    #[test]
    fn caps_attempts() {
        let b = backends(20);
        let mut tried = Tried::default();
        let mut n = 0;
        while let Some(i) = pick(&b, &tried) {
            tried.insert(i);
            n += 1;
        }
        assert_eq!(n, MAX_ATTEMPTS);
    }
}
