//! Retry policy: which failures are retried, how long to wait, and when to give up.

use std::time::Duration;

use rand::Rng;

/// How the client retries requests that failed in a way that may pass.
///
/// Reads (`GET`), deletes and pod actions are retried on `429 Too Many Requests` (honouring
/// `Retry-After`), on `5xx` answers, on timeouts and on connection failures. Creating a pod is
/// retried only when the server provably did not act on the request (a `429`, or a connection
/// that never opened); an ambiguous failure is resolved by looking the pod up by name instead,
/// because a duplicate pod is a second bill. Updates (`PATCH`) are retried like creates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` disables retries. Default: 4.
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles on each later retry. Default: 500 ms.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff. Default: 8 s.
    pub max_backoff: Duration,
    /// Upper bound of a server-requested `Retry-After` wait that is still honoured; a longer one
    /// ends the retries with the rate-limit error. Default: 60 s.
    pub max_retry_after: Duration,
    /// Total time budget of one call including its retries; no retry starts past it.
    /// Default: 2 min.
    pub max_total: Duration,
    /// Adds up to ±25 % random jitter to each computed backoff, so clients that failed together
    /// do not retry together. Default: `true`.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            max_total: Duration::from_secs(120),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts in all (the first included).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first backoff and the cap of later ones.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets the total time budget of one call.
    #[must_use]
    pub fn with_max_total(mut self, max_total: Duration) -> Self {
        self.max_total = max_total;
        self
    }

    /// Sets the longest `Retry-After` that is still waited for.
    #[must_use]
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Turns jitter on or off (off makes waits exact, useful in tests).
    #[must_use]
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait before retry number `retry` (1 for the first retry), or `None` when the policy
    /// says to stop: attempts used up, the server's `Retry-After` too long, or the total budget
    /// `elapsed` would be exceeded.
    pub(crate) fn delay_before_retry(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> Option<Duration> {
        if retry >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(wait) if wait > self.max_retry_after => return None,
            Some(wait) => wait,
            None => self.backoff(retry),
        };
        if elapsed.saturating_add(delay) > self.max_total {
            return None;
        }
        Some(delay)
    }

    fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(16);
        let base = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        if !self.jitter || base.is_zero() {
            return base;
        }
        let factor = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::default()
            .with_jitter(false)
            .with_max_attempts(10)
            .with_backoff(Duration::from_millis(500), Duration::from_secs(3));
        let waits: Vec<_> = (1..6)
            .map(|retry| policy.delay_before_retry(retry, None, Duration::ZERO))
            .collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 3000, 3000].map(|ms| Some(Duration::from_millis(ms)))
        );
    }

    #[test]
    fn stops_after_attempts_budget_and_long_retry_after() {
        let policy = RetryPolicy::default().with_jitter(false);
        assert_eq!(policy.delay_before_retry(4, None, Duration::ZERO), None);
        assert_eq!(
            policy.delay_before_retry(1, Some(Duration::from_secs(61)), Duration::ZERO),
            None
        );
        assert_eq!(
            policy.delay_before_retry(1, Some(Duration::from_secs(7)), Duration::ZERO),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            policy.delay_before_retry(1, None, Duration::from_secs(120)),
            None
        );
        assert_eq!(
            RetryPolicy::none().delay_before_retry(1, None, Duration::ZERO),
            None
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let policy = RetryPolicy::default().with_max_attempts(3);
        for _ in 0..200 {
            let wait = policy
                .delay_before_retry(2, None, Duration::ZERO)
                .expect("within budget");
            assert!(wait >= Duration::from_millis(750) && wait <= Duration::from_millis(1250));
        }
    }
}
