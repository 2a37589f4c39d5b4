//! Latency of successful requests in fixed memory: a log-linear histogram per worker,
//! merged after the run, instead of a list of samples that grows with the run.
use std::time::Duration;

use super::report::Latency;

/// Sub-buckets per power of two: values are kept to within ~3%.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any u64 microsecond count.
const BUCKETS: usize = (65 - SUB_BITS as usize) * SUB;

/// Fixed-size log-linear histogram of microsecond latencies.
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: Duration,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: Duration::ZERO,
        }
    }

    fn index(us: u64) -> usize {
        if us < 2 * SUB as u64 {
            return us as usize;
        }
        let log2 = 63 - us.leading_zeros();
        let shift = log2 - SUB_BITS;
        let mantissa = (us >> shift) as usize - SUB;
        (shift as usize + 1) * SUB + mantissa
    }

    /// Midpoint of the bucket, in microseconds.
    fn value(index: usize) -> u64 {
        if index < 2 * SUB {
            return index as u64;
        }
        let shift = (index / SUB - 1) as u32;
        let low = ((index % SUB + SUB) as u64) << shift;
        low + (1u64 << shift) / 2
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[Self::index(us)] += 1;
        self.total += 1;
        self.max = self.max.max(d);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Value at quantile `q` (0..=1), never above the exact maximum.
    fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(Self::value(i)).min(self.max);
            }
        }
        self.max
    }

    pub fn latency(&self) -> Latency {
        Latency {
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut prev = 0;
        for us in [0u64, 1, 63, 64, 65, 127, 128, 1000, 123_456, u64::MAX] {
            let i = Histogram::index(us);
            assert!(i >= prev, "index must not decrease at {us}");
            assert!(i < BUCKETS);
            prev = i;
            let v = Histogram::value(i);
            let err = v.abs_diff(us) as f64 / (us.max(1) as f64);
            assert!(err <= 0.04, "{us} -> bucket value {v}");
        }
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let l = h.latency();
        assert!((480..=520).contains(&l.p50.as_micros()), "{l:?}");
        assert!((960..=1000).contains(&l.p99.as_micros()), "{l:?}");
        assert_eq!(l.max, Duration::from_micros(1000));
    }
}
