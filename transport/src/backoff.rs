//! Exponential reconnect backoff with jitter.
//!
//! Follows gRPC's "Connection Backoff Protocol" (grpc/grpc, `doc/connection-backoff.md`): the
//! first retry waits `initial`, each later one `factor` times longer up to `max`, and each delay
//! is spread uniformly by `±jitter` of itself so that parties cut off together do not reconnect
//! in lockstep. The jittered delay is also capped at `max`. Randomness comes from an RNG the
//! caller provides (seeded in tests), never from a global one.

use std::time::Duration;

use rand::{Rng, RngExt};

/// Invalid backoff parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff initial delay {initial:?} exceeds max {max:?}")]
    InitialAboveMax { initial: Duration, max: Duration },
    #[error("backoff factor {0} must be finite and at least 1")]
    Factor(f64),
    #[error("backoff jitter {0} must be in [0, 1]")]
    Jitter(f64),
}

/// Exponential backoff state; `R` supplies the jitter.
#[derive(Debug, Clone)]
pub struct Backoff<R> {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    current: Duration,
    rng: R,
}

impl<R: Rng> Backoff<R> {
    /// A backoff starting at `initial`, growing by `factor` (≥ 1) up to `max`, with delays spread
    /// by `±jitter` (in `[0, 1]`) of themselves.
    pub fn new(
        initial: Duration,
        max: Duration,
        factor: f64,
        jitter: f64,
        rng: R,
    ) -> Result<Self, BackoffError> {
        if initial > max {
            return Err(BackoffError::InitialAboveMax { initial, max });
        }
        if !factor.is_finite() || factor < 1.0 {
            return Err(BackoffError::Factor(factor));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Self { initial, max, factor, jitter, current: initial, rng })
    }

    /// gRPC's defaults: 1 s initial, factor 1.6, jitter 0.2, max 120 s.
    pub fn grpc_default(rng: R) -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(120),
            factor: 1.6,
            jitter: 0.2,
            current: Duration::from_secs(1),
            rng,
        }
    }

    /// The delay before the next attempt; advances the backoff.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current.as_secs_f64();
        let spread = if self.jitter > 0.0 {
            1.0 + self.jitter * (2.0 * self.rng.random::<f64>() - 1.0)
        } else {
            1.0
        };
        let delay = scaled(base, spread, self.max);
        self.current = scaled(base, self.factor, self.max);
        delay
    }

    /// Back to `initial`, after a successful connection.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// `secs * by` as a duration, saturating at `max`.
fn scaled(secs: f64, by: f64, max: Duration) -> Duration {
    Duration::try_from_secs_f64(secs * by).map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(3)
    }

    #[test]
    fn without_jitter_grows_geometrically_to_max_and_resets() {
        let mut b =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0, rng())
                .unwrap();
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut b = Backoff::grpc_default(rng());
        let mut base = 1.0f64;
        let mut seen = Vec::new();
        for _ in 0..40 {
            let d = b.next_delay().as_secs_f64();
            assert!(d >= base * 0.8 - 1e-9 && d <= (base * 1.2).min(120.0) + 1e-9, "{d} vs {base}");
            seen.push(d);
            base = (base * 1.6).min(120.0);
        }
        // At the cap, jitter still spreads delays (below the max).
        let capped = &seen[20..];
        assert!(capped.iter().any(|&d| d < 119.0));
        assert!(capped.iter().all(|&d| d <= 120.0));
    }

    #[test]
    fn same_seed_same_delays() {
        let run = || {
            let mut b = Backoff::grpc_default(rng());
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn huge_max_saturates_instead_of_panicking() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::MAX, 1e300, 1.0, rng()).unwrap();
        for _ in 0..5 {
            assert!(b.next_delay() <= Duration::MAX);
        }
        assert_eq!(b.current, Duration::MAX);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let s = Duration::from_secs(1);
        assert!(matches!(
            Backoff::new(2 * s, s, 2.0, 0.1, rng()),
            Err(BackoffError::InitialAboveMax { .. })
        ));
        assert_eq!(Backoff::new(s, s, 0.5, 0.1, rng()).unwrap_err(), BackoffError::Factor(0.5));
        assert!(matches!(Backoff::new(s, s, f64::NAN, 0.1, rng()), Err(BackoffError::Factor(_))));
        assert_eq!(Backoff::new(s, s, 2.0, 1.5, rng()).unwrap_err(), BackoffError::Jitter(1.5));
    }
}
