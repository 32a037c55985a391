//! Response times as a log-linear histogram, HdrHistogram's shape: values under 16 µs have a
//! bucket each; above, every power of two is cut into 16 buckets, so a bucket is at most
//! 1/16 (6.25%) of the values it holds wide, and a percentile read back from the histogram is
//! within 3.2% of the true one (the middle of its bucket). Recording is one relaxed atomic
//! add; a step's histogram is taken by swapping every bucket to zero.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// The largest power of two kept: 2^40 µs is about 12.7 days; longer is counted there.
const MAX_EXP: u32 = 40;
/// How many buckets there are.
pub const BUCKETS: usize = (SUB + (MAX_EXP + 1 - SUB_BITS) as u64 * SUB) as usize;

/// The bucket of a value (microseconds).
pub fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP && v >> MAX_EXP > 1 {
        return BUCKETS - 1;
    }
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + (exp - SUB_BITS) as u64 * SUB + sub) as usize
}

/// The values a bucket holds: `[low, low + width)`.
pub fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let exp = (i - SUB) / SUB + SUB_BITS as u64;
    let sub = (i - SUB) % SUB;
    let width = 1u64 << (exp - SUB_BITS as u64);
    ((SUB + sub) * width, width)
}

/// The live histogram of one app's current step.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    pub fn record(&self, micros: u64) {
        self.buckets[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far, as `(bucket, count)` for the buckets that have any, and zero again.
    pub fn take(&self) -> Vec<(u16, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                if b.load(Ordering::Relaxed) == 0 {
                    return None;
                }
                let n = b.swap(0, Ordering::Relaxed);
                (n > 0).then_some((i as u16, n))
            })
            .collect()
    }
}

/// Adds the sparse counts `b` into `a` (both sorted by bucket).
pub fn merge(a: &mut Vec<(u16, u64)>, b: &[(u16, u64)]) {
    for &(i, n) in b {
        match a.binary_search_by_key(&i, |x| x.0) {
            Ok(at) => a[at].1 += n,
            Err(at) => a.insert(at, (i, n)),
        }
    }
}

/// The `q` quantile (0..=1) of sparse counts, in microseconds: the middle of its bucket.
pub fn quantile(counts: &[(u16, u64)], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().map(|c| c.1).sum();
    if total == 0 {
        return None;
    }
    // The rank of the value wanted, 1-based: the smallest with at least q of all at or below.
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for &(i, n) in counts {
        seen += n;
        if seen >= rank {
            let (low, width) = bounds(i as usize);
            return Some(low as f64 + (width as f64 - 1.0) / 2.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_within_a_sixteenth() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 39, (1 << 40) - 1, 1 << 40, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "{v}");
            last = b;
            let (low, width) = bounds(b);
            if v < 1 << 41 {
                assert!(
                    low <= v && v < low + width,
                    "{v} not in bucket {b} ({low}, {width})"
                );
                assert!(width * 16 <= low.max(16), "{v}: bucket too wide");
            }
        }
    }

    #[test]
    fn quantiles_are_within_the_resolution() {
        let h = Histogram::default();
        // 1,000 requests: 1 ms .. 1,000 ms.
        for ms in 1..=1000u64 {
            h.record(ms * 1000);
        }
        let counts = h.take();
        assert!(h.take().is_empty(), "taken means zero again");
        for (q, want) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = quantile(&counts, q).unwrap();
            assert!((got - want).abs() / want < 0.033, "q{q}: {got} for {want}");
        }
        let mut a = counts.clone();
        merge(&mut a, &counts);
        assert_eq!(a.iter().map(|c| c.1).sum::<u64>(), 2000);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
