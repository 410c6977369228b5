//! Rate limiting as a real service does it: one token bucket for every endpoint and
//! connection, and `429 Too Many Requests` with `Retry-After` above it.

use std::sync::Mutex;
use std::time::Instant;

use super::RateLimit;

/// A token bucket: `burst` tokens at most, refilled at `per_second`; each request takes one.
pub(crate) struct Bucket {
    per_second: f64,
    burst: f64,
    /// Tokens left at the instant they were last counted.
    tokens: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub(crate) fn new(limit: &RateLimit) -> Bucket {
        let burst = f64::from(limit.burst);
        Bucket { per_second: limit.per_second, burst, tokens: Mutex::new((burst, Instant::now())) }
    }

    /// Takes a token for a request arriving at `now`; false: none is left, throttle it.
    pub(crate) fn take(&self, now: Instant) -> bool {
        let mut guard = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (left, counted) = *guard;
        let refill = now.saturating_duration_since(counted).as_secs_f64() * self.per_second;
        let tokens = (left + refill).min(self.burst);
        let allowed = tokens >= 1.0;
        *guard = (if allowed { tokens - 1.0 } else { tokens }, now.max(counted));
        allowed
    }
}

/// The headers of a throttled answer: `Retry-After` in whole seconds (rounded up, as the
/// header allows no fraction), and `retry-after-ms` as well when the wait has a fraction,
/// which clients that read it (ours, OpenAI's) honour exactly.
pub(crate) fn retry_after_headers(seconds: f64) -> Vec<(&'static str, String)> {
    let mut headers = vec![("retry-after", format!("{}", seconds.ceil() as u64))];
    if seconds.fract() != 0.0 {
        headers.push(("retry-after-ms", format!("{}", (seconds * 1000.0).round() as u64)));
    }
    headers
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bucket(per_second: f64, burst: u32) -> Bucket {
        Bucket::new(&RateLimit { per_second, burst, retry_after: None })
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_the_rate() {
        let b = bucket(40.0, 8);
        let t0 = Instant::now();
        assert!((0..8).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // One token every 25 ms.
        assert!(!b.take(t0 + Duration::from_millis(24)));
        assert!(b.take(t0 + Duration::from_millis(26)));
        assert!(!b.take(t0 + Duration::from_millis(27)));
        let allowed = (0..1000).filter(|ms| b.take(t0 + Duration::from_millis(1000 + ms))).count();
        // The burst refilled over the idle second, then 40 per second for the 999 ms after.
        assert!((8 + 39..=8 + 40).contains(&allowed), "{allowed}");
    }

    #[test]
    fn the_bucket_never_holds_more_than_its_burst() {
        let b = bucket(1000.0, 3);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    #[test]
    fn retry_after_is_whole_seconds_with_the_fraction_in_ms() {
        assert_eq!(retry_after_headers(1.0), [("retry-after", "1".to_string())]);
        assert_eq!(retry_after_headers(0.0), [("retry-after", "0".to_string())]);
        assert_eq!(
            retry_after_headers(0.25),
            [("retry-after", "1".to_string()), ("retry-after-ms", "250".to_string())]
        );
    }
}
