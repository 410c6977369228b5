//! One rate controller per client: every request of an `ApiClient` (every read, thread, task,
//! `get_page`, `status`, `get_file`) starts through it. Until the service throttles (a 429, or a
//! 503 with `Retry-After`) it does nothing. From the first throttle it paces request starts, one
//! every `1/rate` seconds in arrival order, and adapts the rate:
//!
//! - CUBIC (RFC 8312), as botocore's `retry_mode="adaptive"` does: a throttle cuts the rate to
//!   `BETA * w_max`; successes raise it again along `w_max + C (t - K)^3`, slowly near `w_max`
//!   (where the service's limit was met) and faster beyond it, probing for more.
//! - `w_max` is the service's rate as measured, when it can be (the accept-rate idea of Google's
//!   client-side adaptive throttling, SRE book "Handling Overload"): a token bucket is empty at
//!   each throttle, so the requests it accepted between two throttles, over the time between
//!   them, is its refill rate. Before two throttles are far enough apart, `w_max` is the rate we
//!   were sending at, and the rate after the first throttle grows exponentially (slow start)
//!   until the next one.
//!
//! Only one cut per throttle "epoch": throttles of requests started before the last cut say
//! nothing new. Once pacing, a lone throttle among the last answers is taken as noise (a service
//! may refuse a request now and then whatever the rate): a cut needs three in the last ten. A known quota (`max_requests_per_second`) paces from the start and caps the rate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// CUBIC's multiplicative decrease and scaling constant (botocore's values are 0.7 and 0.4; a
/// cut from a measured rate can be milder).
const BETA: f64 = 0.8;
const C: f64 = 0.4;
/// The slowest pace (botocore's minimum fill rate).
const MIN_RATE: f64 = 0.5;
/// Slow start doubles the rate this often until the second throttle.
const DOUBLING: Duration = Duration::from_millis(200);
/// Throttles further apart than this measure the service's rate...
const MIN_SPAN: Duration = Duration::from_millis(500);
/// ...from the throttles of this long a history.
const HISTORY: Duration = Duration::from_secs(10);
/// A cut needs this many throttles among the last `OUTCOMES` answers.
const THROTTLES_TO_CUT: usize = 3;
const OUTCOMES: usize = 10;

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
    last_cut: Option<Instant>,
    /// The service's rate measured between throttles, once known.
    measured: Option<f64>,
    /// Successes ever, and (time, successes then) at each recent cut.
    accepted: u64,
    cuts: VecDeque<(Instant, u64)>,
    /// Successes in the last second: the rate we were sending at when the first throttle came.
    recent: VecDeque<Instant>,
    /// When the current run of throttles with no success between began.
    throttled_since: Option<Instant>,
    /// The last answers, true for a throttle.
    outcomes: VecDeque<bool>,
}

impl State {
    fn record(&mut self, throttled: bool) {
        if self.outcomes.len() == OUTCOMES {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(throttled);
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
                last_cut: None,
                measured: None,
                accepted: 0,
                cuts: VecDeque::new(),
                recent: VecDeque::new(),
                throttled_since: None,
                outcomes: VecDeque::with_capacity(OUTCOMES),
            }),
            queue: tokio::sync::Mutex::new(()),
            throttled: AtomicU64::new(0),
        }
    }

    /// The paced rate in requests per second, None while not pacing.
    pub fn rate(&self) -> Option<f64> {
        self.pacing.load(Ordering::Relaxed).then(|| self.lock().rate)
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
        if !self.pacing.load(Ordering::Relaxed) {
            // Only needed for the first throttle: the sending rate of the last second.
            state.recent.push_back(now);
            while state.recent.front().is_some_and(|t| now - *t > Duration::from_secs(1)) {
                state.recent.pop_front();
            }
            return;
        }
        let Some(cut) = state.last_cut else { return }; // a known quota, never throttled
        let t = (now - cut).as_secs_f64();
        let grown = match state.measured {
            None => state.w_max * BETA * 2f64.powf(t / DOUBLING.as_secs_f64()),
            Some(_) => {
                let k = (state.w_max * (1.0 - BETA) / C).cbrt();
                state.w_max + C * (t - k).powi(3)
            }
        };
        state.rate = self.capped(grown);
    }

    /// A throttled answer to a request that started at `started`.
    pub fn on_throttle(&self, started: Instant) {
        let now = Instant::now();
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.throttled_since.get_or_insert(now);
        state.record(true);
        if state.last_cut.is_some_and(|cut| started < cut) {
            return; // sent before the last cut: nothing new
        }
        let noise = state.outcomes.iter().filter(|t| **t).count() < THROTTLES_TO_CUT;
        if self.pacing.load(Ordering::Relaxed) && noise {
            return;
        }
        let first = !self.pacing.swap(true, Ordering::Relaxed);
        let sending = if first { state.recent.len().max(1) as f64 } else { state.rate };
        let accepted = state.accepted;
        state.cuts.push_back((now, accepted));
        while state.cuts.front().is_some_and(|(t, _)| now - *t > HISTORY) {
            state.cuts.pop_front();
        }
        let (t0, a0) = state.cuts[0];
        let span = now - t0;
        let was_measured = state.measured.is_some();
        if span >= MIN_SPAN {
            state.measured = Some(((accepted - a0) as f64 / span.as_secs_f64()).max(MIN_RATE));
        }
        state.w_max = state.measured.unwrap_or(sending);
        state.rate = self.capped(state.w_max * BETA);
        state.last_cut = Some(now);
        if first {
            log::info!("the service throttles: pacing requests at {:.1}/s from now on", state.rate);
        } else if !was_measured && state.measured.is_some() {
            log::info!("pacing settled near the service's measured rate, {:.1} requests/s", state.w_max);
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

    #[test]
    fn nothing_changes_until_the_first_throttle() {
        let rc = RateController::new(None);
        for _ in 0..100 {
            run(rc.start());
            rc.on_success();
        }
        assert_eq!(rc.rate(), None);
        assert_eq!(rc.throttled_for(), None);
    }

    #[test]
    fn a_throttle_starts_pacing_and_one_epoch_cuts_once() {
        let rc = RateController::new(None);
        let before = Instant::now();
        for _ in 0..10 {
            rc.on_success();
        }
        rc.on_throttle(before);
        let first = rc.rate().unwrap();
        assert!((first - 10.0 * BETA).abs() < 1e-9, "{first}");
        rc.on_throttle(before); // sent before the cut
        assert_eq!(rc.rate(), Some(first));
        rc.on_success();
        rc.on_throttle(Instant::now());
        rc.on_throttle(Instant::now());
        assert!(rc.rate().unwrap() < first, "three throttles among the last ten answers: a cut");
        for _ in 0..9 {
            rc.on_success();
        }
        let before_noise = rc.rate();
        rc.on_throttle(Instant::now());
        assert_eq!(rc.rate(), before_noise, "a lone throttle is noise");
        assert_eq!(rc.throttled.load(Ordering::Relaxed), 5);
        assert!(rc.throttled_for().is_some());
        rc.on_success();
        assert_eq!(rc.throttled_for(), None);
        assert!(rc.rate() > before_noise, "successes raise the rate");
    }

    #[test]
    fn the_service_rate_is_measured_between_throttles() {
        let rc = RateController::new(None);
        rc.on_throttle(Instant::now());
        std::thread::sleep(MIN_SPAN);
        for _ in 0..20 {
            rc.on_success();
        }
        for _ in 0..THROTTLES_TO_CUT {
            rc.on_throttle(Instant::now());
        }
        let measured = rc.lock().measured.unwrap();
        assert!(measured <= 20.0 / MIN_SPAN.as_secs_f64() && measured > 20.0 / (MIN_SPAN.as_secs_f64() + 1.0));
        assert!((rc.rate().unwrap() - measured * BETA).abs() < 1e-9);
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
    }
}
