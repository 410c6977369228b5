//! When to try a failed request again, and how long to wait first.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// First backoff; doubled each attempt, full jitter.
    pub initial: Duration,
    /// Largest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest `Retry-After` we honour; a server asking for more gets its error raised at once.
    pub max_retry_after: Duration,
    /// Throttled answers are retried, paced, until no request of the client has succeeded for this long.
    pub rate_limit_timeout: Duration,
    /// A known quota: requests start at most this often, from the first.
    pub max_requests_per_second: Option<f64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            rate_limit_timeout: Duration::from_secs(300),
            max_requests_per_second: None,
        }
    }
}

pub enum Decision {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// `attempt` counts the retries already made (0 for the first failure).
    pub fn decide(&self, attempt: u32, server_asked: Option<Duration>) -> Decision {
        if attempt >= self.max_retries {
            return Decision::GiveUp;
        }
        match server_asked {
            Some(wait) if wait > self.max_retry_after => Decision::GiveUp,
            Some(wait) => Decision::RetryAfter(wait),
            None => Decision::RetryAfter(self.backoff(attempt)),
        }
    }

    /// Exponential backoff with full jitter: uniform in 0..ceiling(attempt).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(rand::random::<f64>())
    }

    /// The largest backoff of a retry: `initial * 2^attempt`, at most `max_backoff`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.initial.saturating_mul(1u32 << attempt.min(16)).min(self.max_backoff)
    }
}

/// `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7"), ("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_defaults_double_from_half_a_second_to_eight() {
        let p = RetryPolicy::default();
        assert_eq!((p.max_retries, p.max_retry_after), (3, Duration::from_secs(60)));
        let ceilings: Vec<f64> = (0..7).map(|a| p.ceiling(a).as_secs_f64()).collect();
        assert_eq!(ceilings, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(8));
        // Full jitter: uniform in 0..ceiling, so over 2,000 draws the smallest is near 0, the
        // largest near the ceiling and the mean near half of it (each bound ~10 sigma wide).
        for attempt in 0..6 {
            let ceiling = p.ceiling(attempt).as_secs_f64();
            let draws: Vec<f64> = (0..2000).map(|_| p.backoff(attempt).as_secs_f64()).collect();
            let (min, max) = draws.iter().fold((f64::MAX, 0f64), |(lo, hi), d| (lo.min(*d), hi.max(*d)));
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            assert!(max <= ceiling && max > 0.98 * ceiling, "attempt {attempt}: max {max} of {ceiling}");
            assert!(min < 0.02 * ceiling, "attempt {attempt}: min {min}");
            assert!((mean / ceiling - 0.5).abs() < 0.07, "attempt {attempt}: mean {mean} of {ceiling}");
        }
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            let d = p.backoff(attempt);
            assert!(d <= p.max_backoff);
            assert!(d <= p.initial * 2u32.pow(attempt.min(16)));
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(spread.len() > 10, "full jitter spreads the waits");
    }

    #[test]
    fn decisions() {
        let p = RetryPolicy { max_retries: 2, ..RetryPolicy::default() };
        assert!(
            matches!(p.decide(0, Some(Duration::from_secs(2))), Decision::RetryAfter(d) if d == Duration::from_secs(2))
        );
        assert!(matches!(p.decide(0, Some(Duration::from_secs(61))), Decision::GiveUp));
        assert!(matches!(p.decide(2, None), Decision::GiveUp));
        assert!(matches!(p.decide(1, None), Decision::RetryAfter(_)));
    }
}
