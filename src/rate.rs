//! One rate controller per client: every request of an `ApiClient` (every read, thread, task,
//! `get_page`, `status`, `get_file`) starts through it. Until the service throttles (a 429, or a
//! 503 with `Retry-After`) it does nothing. From the first throttle it paces request starts, one
//! every `1/rate` seconds in arrival order, and keeps the rate just under the service's:
//!
//! - The service's rate is measured from what it accepts (the accept-rate idea of Google's
//!   client-side adaptive throttling, SRE book "Handling Overload"): a token bucket is empty at
//!   every throttle, so the requests it accepted between two throttles, over the time between
//!   them, is its refill rate, less the tokens it dropped while full: each pair is a lower bound,
//!   and the largest of the recent ones is the estimate (`w_max`).
//! - CUBIC (RFC 8312), as botocore's `retry_mode="adaptive"` does, around that estimate: a
//!   throttle cuts the rate to `BETA * w_max`; successes raise it again along
//!   `w_max * (1 + C (t - K)^3)`, flat near `w_max` for seconds (so the next probe into the
//!   limit, which costs a throttle and its `Retry-After`, comes seconds later) and faster beyond.
//! - From the first throttle until the next cut, slow start doubles the rate from the accept
//!   rate of the last second. A measure is trusted when it agrees with that accept rate (its
//!   span was saturated, not spent waiting); until one is, the curve around the last second's
//!   accept rate is steeper (`C_PROBING`). Growth counts only the time the pacer was used
//!   (`paced`): a read that cannot send (its window waits on a throttled page) does not raise
//!   the rate (RFC 7661's rule for an application-limited sender).
//!
//! Only one cut per throttle "epoch": throttles of requests started before the last cut say
//! nothing new. A throttle asking to come back at once (`Retry-After: 0`, or a few ms) is a
//! service shedding a request, not a rate limit: it is retried without pacing the client, unless
//! such throttles are half of the recent answers. A known quota (`max_requests_per_second`)
//! paces from the start and caps the rate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// CUBIC's multiplicative decrease, and its curve in units of `w_max`: back at `w_max` K =
/// cbrt((1 - BETA) / C) = 2 s after a cut, 10% above it 2 s later.
const BETA: f64 = 0.9;
const C: f64 = 0.0125;
/// The same curve around an estimate not trusted yet: back at it in 0.5 s, 80% above 1 s later.
const C_PROBING: f64 = 0.8;
/// The slowest pace (botocore's minimum fill rate).
const MIN_RATE: f64 = 0.5;
/// Slow start doubles the rate each this much paced time, until the second cut.
const DOUBLING: Duration = Duration::from_millis(200);
/// Throttles at least this far apart measure the service's rate (a token's worth of error is
/// 1/(rate * span) of it)...
const MIN_SPAN: Duration = Duration::from_millis(500);
/// ...from the throttles of this long a history.
const HISTORY: Duration = Duration::from_secs(10);
/// A measure is trusted at this fraction of the last second's accept rate or more.
const TRUSTED: f64 = 0.8;
/// A throttle asking for less than this is a shed request, not a rate limit...
const SHORT_WAIT: Duration = Duration::from_millis(50);
/// ...unless this many of the last `OUTCOMES` answers are throttles.
const SHED_LIMIT: usize = 5;
const OUTCOMES: usize = 10;
/// Pages a read may fetch ahead while a throttled one waits its `Retry-After`, at most.
const MAX_AHEAD: usize = 64;

pub struct RateController {
    pacing: AtomicBool,
    cap: Option<f64>,
    state: Mutex<State>,
    /// Paced starts wait here in arrival order (tokio's mutex is fair).
    queue: tokio::sync::Mutex<()>,
    pub throttled: AtomicU64,
}

struct State {
    rate: f64,
    next_start: Instant,
    w_max: f64,
    /// Cuts since pacing began.
    cuts: u32,
    /// Slow start: no trusted measure of the service's rate yet.
    probing: bool,
    last_cut: Option<Instant>,
    /// Paced time since the last cut: `1/rate` per success.
    paced: f64,
    /// Successes ever, and (time, successes then) at each throttle of the last `HISTORY`.
    accepted: u64,
    throttles: VecDeque<(Instant, u64)>,
    /// Successes in the last second: the rate we were sending at when the first throttle came.
    recent: VecDeque<Instant>,
    /// When the current run of throttles with no success between began.
    throttled_since: Option<Instant>,
    /// The last answers, true for a throttle.
    outcomes: VecDeque<bool>,
    /// The wait the service asked of its last throttle.
    retry_after: Duration,
}

impl State {
    fn record(&mut self, throttled: bool) {
        if self.outcomes.len() == OUTCOMES {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(throttled);
    }

    /// The largest accept rate measured between a past throttle and one now.
    fn measure(&self, now: Instant) -> Option<f64> {
        let rates = self.throttles.iter().filter(|(t, _)| now - *t >= MIN_SPAN);
        rates.map(|(t, a)| (self.accepted - a) as f64 / (now - *t).as_secs_f64()).reduce(f64::max)
    }

    /// The rate `paced` seconds after the last cut.
    fn grown(&self) -> f64 {
        if self.cuts == 1 {
            return self.w_max * 2f64.powf(self.paced / DOUBLING.as_secs_f64());
        }
        let c = if self.probing { C_PROBING } else { C };
        let k = ((1.0 - BETA) / c).cbrt();
        self.w_max * (1.0 + c * (self.paced - k).powi(3))
    }
}

impl RateController {
    pub fn new(max_requests_per_second: Option<f64>) -> RateController {
        let now = Instant::now();
        let rate = max_requests_per_second.unwrap_or(f64::INFINITY);
        RateController {
            pacing: AtomicBool::new(max_requests_per_second.is_some()),
            cap: max_requests_per_second,
            state: Mutex::new(State {
                rate,
                next_start: now,
                w_max: rate,
                cuts: 0,
                probing: false,
                last_cut: None,
                paced: 0.0,
                accepted: 0,
                throttles: VecDeque::new(),
                recent: VecDeque::new(),
                throttled_since: None,
                outcomes: VecDeque::with_capacity(OUTCOMES),
                retry_after: Duration::ZERO,
            }),
            queue: tokio::sync::Mutex::new(()),
            throttled: AtomicU64::new(0),
        }
    }

    /// The paced rate in requests per second, None while not pacing.
    pub fn rate(&self) -> Option<f64> {
        self.pacing.load(Ordering::Relaxed).then(|| self.lock().rate)
    }

    /// Pages a read should fetch ahead beyond its window: while the service throttles with a
    /// `Retry-After`, a throttled page holds up the pages behind it for that long, and the pacer
    /// can start `rate * Retry-After` requests meanwhile. None of it while not pacing.
    pub fn pages_ahead(&self) -> usize {
        if !self.pacing.load(Ordering::Relaxed) {
            return 0;
        }
        let state = self.lock();
        if state.cuts == 0 {
            return 0; // a known quota, never throttled
        }
        ((state.rate * state.retry_after.as_secs_f64()).ceil() as usize).min(MAX_AHEAD)
    }

    /// Waits for this request's turn (at once while not pacing); returns when it starts.
    pub async fn start(&self) -> Instant {
        if !self.pacing.load(Ordering::Relaxed) {
            return Instant::now();
        }
        let _turn = self.queue.lock().await;
        loop {
            let now = Instant::now();
            let wait = {
                let mut state = self.lock();
                if state.next_start <= now {
                    // No credit for idle time: starts stay 1/rate apart.
                    state.next_start = now + Duration::from_secs_f64(1.0 / state.rate);
                    return now;
                }
                state.next_start - now
            };
            // The rate may change meanwhile: look again after the wait.
            tokio::time::sleep(wait).await;
        }
    }

    pub fn on_success(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        state.accepted += 1;
        state.throttled_since = None;
        state.record(false);
        // The accept rate of the last second, read at a throttle.
        state.recent.push_back(now);
        while state.recent.front().is_some_and(|t| now - *t > Duration::from_secs(1)) {
            state.recent.pop_front();
        }
        if !self.pacing.load(Ordering::Relaxed) || state.cuts == 0 {
            return; // not throttled yet, or a known quota never throttled
        }
        // Grow only while the pace is used: a start scheduled within the last interval.
        let interval = Duration::from_secs_f64(1.0 / state.rate);
        if now < state.next_start + interval {
            state.paced += interval.as_secs_f64();
            state.rate = self.capped(state.grown());
        }
    }

    /// A throttled answer to a request that started at `started`, the service's wait unknown.
    pub fn on_throttle(&self, started: Instant) {
        self.on_throttle_after(started, None);
    }

    /// A throttled answer to a request that started at `started`, asking to wait `wait`.
    pub fn on_throttle_after(&self, started: Instant, wait: Option<Duration>) {
        let now = Instant::now();
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.throttled_since.get_or_insert(now);
        state.record(true);
        let shed = wait.is_some_and(|w| w < SHORT_WAIT);
        if shed && state.outcomes.iter().filter(|t| **t).count() < SHED_LIMIT {
            return;
        }
        state.retry_after = wait.unwrap_or(Duration::ZERO);
        // The bucket is empty now: a point to measure its rate from, whatever the epoch.
        let measured = state.measure(now);
        let accepted = state.accepted;
        state.throttles.push_back((now, accepted));
        while state.throttles.front().is_some_and(|(t, _)| now - *t > HISTORY) {
            state.throttles.pop_front();
        }
        // Sent before the last cut, or too soon after it (the bucket was empty at the cut, and
        // refills a token only so fast): nothing new.
        if state.last_cut.is_some_and(|cut| started < cut || now - cut < MIN_SPAN) {
            return;
        }
        let first = !self.pacing.swap(true, Ordering::Relaxed);
        // What the service accepted in the last second: its rate, plus what its bucket held a
        // second ago; above the rate we were throttled at, only that rate is known too fast.
        let recent = (state.recent.len().max(1) as f64).min(state.rate);
        // The measure is trusted when it agrees with the last second: its span was saturated,
        // not spent waiting (a window held up by a throttled page drops tokens the bucket had).
        // Nor the first measure, which spans slow start's climb from below the service's rate.
        let trusted = measured.filter(|rate| state.cuts >= 2 && *rate >= TRUSTED * recent);
        let settles = state.probing && trusted.is_some();
        state.probing = trusted.is_none();
        state.w_max = trusted.unwrap_or(recent);
        state.rate = self.capped(if first { state.w_max } else { state.w_max * BETA });
        state.cuts += 1;
        state.paced = 0.0;
        state.last_cut = Some(now);
        // The bucket is empty: hold back the requests not yet sent, released at the new pace.
        state.next_start = state.next_start.max(now + Duration::from_secs_f64(1.0 / state.rate));
        let rate = state.rate;
        // Logged with the lock released: the logger may wait for the GIL, whose holder may be
        // waiting for this lock (`pages_ahead`).
        drop(state);
        if first {
            log::info!("the service throttles: pacing requests at {rate:.1}/s from now on");
        } else if settles {
            log::info!("pacing settles at {rate:.1} requests/s, under the service's measured rate");
        }
    }

    /// How long the client has been throttled with no success, if it is.
    pub fn throttled_for(&self) -> Option<Duration> {
        self.lock().throttled_since.map(|since| since.elapsed())
    }

    fn capped(&self, rate: f64) -> f64 {
        rate.clamp(MIN_RATE, self.cap.unwrap_or(f64::INFINITY))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    }

    const ONE_SECOND: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn nothing_changes_until_the_first_throttle() {
        let rc = RateController::new(None);
        for _ in 0..100 {
            run(rc.start());
            rc.on_success();
        }
        assert_eq!(rc.rate(), None);
        assert_eq!(rc.throttled_for(), None);
        assert_eq!(rc.pages_ahead(), 0);
    }

    #[test]
    fn a_throttle_starts_slow_start_and_one_epoch_cuts_once() {
        let rc = RateController::new(None);
        let before = Instant::now();
        for _ in 0..10 {
            rc.on_success();
        }
        rc.on_throttle_after(before, ONE_SECOND);
        assert_eq!(rc.rate(), Some(10.0), "slow start from the accept rate of the last second");
        assert_eq!(rc.pages_ahead(), 10, "a second of paced pages while the throttled one waits");
        rc.on_throttle_after(before, ONE_SECOND); // sent before the cut
        assert_eq!(rc.rate(), Some(10.0));
        for _ in 0..2 {
            rc.on_success(); // 1/rate paced each: doubles each 0.2 s
        }
        let grown = rc.rate().unwrap();
        assert!(grown > 15.0 && grown < 20.0, "{grown}");
        rc.on_throttle_after(Instant::now(), ONE_SECOND);
        assert_eq!(rc.rate(), Some(grown), "too soon after the cut to cut again");
        std::thread::sleep(MIN_SPAN);
        rc.on_throttle_after(Instant::now(), ONE_SECOND);
        let cut = rc.rate().unwrap();
        assert!(cut < 20.0, "a throttle in a new epoch cuts: {cut}");
        assert_eq!(rc.throttled.load(Ordering::Relaxed), 4);
        assert!(rc.throttled_for().is_some());
        rc.on_success();
        assert_eq!(rc.throttled_for(), None, "a success ends the run of throttles");
    }

    #[test]
    fn the_service_rate_is_measured_between_throttles_and_paced_just_under() {
        let rc = RateController::new(None);
        rc.on_throttle_after(Instant::now(), ONE_SECOND);
        for _ in 0..2 {
            std::thread::sleep(MIN_SPAN);
            for _ in 0..20 {
                rc.on_success();
            }
            rc.on_throttle_after(Instant::now(), ONE_SECOND);
        }
        // The second cut ends slow start, whose climb the measure spans: only the third is trusted.
        let (w_max, probing) = {
            let state = rc.lock();
            (state.w_max, state.probing)
        };
        let span = MIN_SPAN.as_secs_f64();
        assert!(!probing && w_max <= 20.0 / span && w_max > 20.0 / (span + 0.2), "{w_max}");
        assert!((rc.rate().unwrap() - w_max * BETA).abs() < 1e-9);
        // Back at the measured rate after K seconds of paced successes, flat near it.
        rc.lock().next_start = Instant::now() + Duration::from_secs(60); // the pacer is busy
        let k = ((1.0 - BETA) / C).cbrt();
        while rc.lock().paced < k {
            rc.on_success();
        }
        let rate = rc.rate().unwrap();
        assert!(rate > w_max * 0.99 && rate < w_max * 1.01, "{rate} vs {w_max}");
    }

    #[test]
    fn a_throttle_asking_for_no_wait_is_shed_not_a_rate_limit() {
        let rc = RateController::new(None);
        for i in 0..100 {
            if i % 10 == 0 {
                rc.on_throttle_after(Instant::now(), Some(Duration::from_millis(20)));
            } else {
                rc.on_success();
            }
        }
        assert_eq!(rc.rate(), None, "one in ten shed: no pacing");
        for _ in 0..SHED_LIMIT {
            rc.on_throttle_after(Instant::now(), Some(Duration::ZERO));
        }
        assert!(rc.rate().is_some(), "half the answers shed: a rate limit after all");
        assert_eq!(rc.throttled.load(Ordering::Relaxed), 10 + SHED_LIMIT as u64);
    }

    #[test]
    fn growth_counts_only_paced_time() {
        let rc = RateController::new(None);
        rc.on_throttle_after(Instant::now(), ONE_SECOND);
        let start = rc.rate();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(rc.rate(), start, "time without successes does not raise the rate");
    }

    #[test]
    fn a_known_quota_paces_from_the_start_and_caps() {
        let rc = RateController::new(Some(50.0));
        assert_eq!(rc.rate(), Some(50.0));
        let starts: Vec<Instant> = run(async { futures_util::future::join_all((0..6).map(|_| rc.start())).await });
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(20), "{:?}", pair[1] - pair[0]);
        }
        for _ in 0..1000 {
            rc.on_success();
        }
        assert_eq!(rc.rate(), Some(50.0));
        assert_eq!(rc.pages_ahead(), 0);
        rc.on_throttle_after(Instant::now(), ONE_SECOND);
        assert!(rc.rate().unwrap() <= 50.0, "never above the quota");
    }
}
