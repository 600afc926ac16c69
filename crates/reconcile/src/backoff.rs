//! Per-key exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// `base · 2^(failures-1)`, capped at `max`, then spread by ±`jitter` (a fraction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// The spread, as a fraction of the delay (0.1: ±10 %).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay before retry number `failures` (1 for the first failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let spread = if self.jitter > 0.0 {
            rand::rng().random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        raw.mul_f64(1.0 + spread).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_failure_within_the_jitter_and_stop_at_the_cap() {
        let b = Backoff::default();
        for (n, want) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (5, 16.0)] {
            for _ in 0..50 {
                let d = b.delay(n).as_secs_f64();
                assert!((want * 0.9..=want * 1.1).contains(&d), "failure {n}: {d}");
            }
        }
        for _ in 0..50 {
            assert!(b.delay(40) <= b.max);
            assert!(b.delay(40) >= b.max.mul_f64(0.9));
        }
    }

    #[test]
    fn jitter_spreads_retries_of_many_keys() {
        let b = Backoff::default();
        let mut seen: Vec<_> = (0..20).map(|_| b.delay(3)).collect();
        seen.sort();
        seen.dedup();
        assert!(
            seen.len() > 10,
            "retries should not all land at once: {seen:?}"
        );
    }
}
