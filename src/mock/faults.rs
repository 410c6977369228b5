//! Misbehaviour on purpose: scripted faults first (for deterministic tests), then random
//! ones at `fault_rate`, drawn from a generator seeded by the server's seed so that a run
//! is reproducible for a given request order.

use std::collections::VecDeque;
use std::time::Duration;

use super::rng::Rng;

/// One way a results request can go wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// This HTTP status, with a JSON body `{"detail": "<reason>"}`.
    Status(u16),
    /// This HTTP status with this `Retry-After` header value, sent as given: a 503 with it is
    /// a service asking for a slower pace, as a 429 is.
    StatusRetryAfter { code: u16, retry_after: String },
    /// 429 with this `Retry-After` header value, sent as given (seconds, an HTTP date, or junk).
    RateLimited { retry_after: String },
    /// Headers with the full Content-Length, part of the body, then the connection is dropped.
    CutBody,
    /// 200 with a truncated or garbled JSON body.
    MalformedJson,
    /// Sleep this long before answering normally, to trigger client timeouts.
    Stall(Duration),
    /// Answer normally, but as if this many records had been inserted before the page
    /// (a batch shifting under the reader): its first records repeat the previous page's.
    Shift(u64),
}

impl FaultKind {
    /// The name the request log gives this fault.
    pub fn label(&self) -> String {
        match self {
            FaultKind::Status(code) | FaultKind::StatusRetryAfter { code, .. } => format!("status:{code}"),
            FaultKind::RateLimited { .. } => "429".to_string(),
            FaultKind::CutBody => "cut".to_string(),
            FaultKind::MalformedJson => "malformed".to_string(),
            FaultKind::Stall(d) => format!("stall:{}ms", d.as_millis()),
            FaultKind::Shift(n) => format!("shift:{n}"),
        }
    }
}

/// A fault to inject, with the details the random draw adds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    /// A `retry-after-ms` header to send with a 429.
    pub retry_after_ms: Option<u64>,
    /// MalformedJson: truncate the body (true) or garble it (false).
    pub truncate: bool,
}

const SALT_FAULTS: u64 = 0xFA17;

pub(crate) struct FaultPlan {
    scripted: VecDeque<FaultKind>,
    rate: f64,
    rng: Rng,
}

impl FaultPlan {
    pub(crate) fn new(seed: u64, rate: f64) -> FaultPlan {
        FaultPlan { scripted: VecDeque::new(), rate, rng: Rng::new(seed, 0, SALT_FAULTS) }
    }

    pub(crate) fn script(&mut self, kind: FaultKind, times: u32) {
        self.scripted.extend(std::iter::repeat_n(kind, times as usize));
    }

    /// Drops the scripted faults not injected yet; returns how many.
    pub(crate) fn clear(&mut self) -> usize {
        std::mem::take(&mut self.scripted).len()
    }

    /// The fault for the next results request, if any.
    pub(crate) fn next(&mut self) -> Option<Fault> {
        let truncate = self.rng.chance(0.5);
        if let Some(kind) = self.scripted.pop_front() {
            return Some(Fault { kind, retry_after_ms: None, truncate });
        }
        if self.rate <= 0.0 || !self.rng.chance(self.rate) {
            return None;
        }
        let (kind, retry_after_ms) = match self.rng.below(4) {
            0 => (FaultKind::Status(503), None),
            1 => (FaultKind::RateLimited { retry_after: "0".to_string() }, Some(20)),
            2 => (FaultKind::CutBody, None),
            _ => (FaultKind::MalformedJson, None),
        };
        Some(Fault { kind, retry_after_ms, truncate })
    }
}

/// Spoils a JSON body so that no parser accepts it.
pub(crate) fn malform(body: &[u8], truncate: bool) -> Vec<u8> {
    if truncate {
        // Cut inside the document; the garbage tail guards bodies too short to cut.
        let mut out = body[..body.len() / 2].to_vec();
        out.extend_from_slice(b"\x00");
        out
    } else {
        let mut out = body.to_vec();
        let at = out.len() / 3;
        out.splice(at..at, b"}{\"garbled".iter().copied());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let mut plan = FaultPlan::new(0, 0.0);
        plan.script(FaultKind::Status(500), 2);
        plan.script(FaultKind::CutBody, 1);
        let got: Vec<_> = std::iter::from_fn(|| plan.next().map(|f| f.kind.label())).collect();
        assert_eq!(got, ["status:500", "status:500", "cut"]);
        assert!((0..1000).all(|_| plan.next().is_none()));
    }

    #[test]
    fn cleared_faults_are_never_injected() {
        let mut plan = FaultPlan::new(0, 0.0);
        plan.script(FaultKind::CutBody, 3);
        assert_eq!(plan.next().map(|f| f.kind), Some(FaultKind::CutBody));
        assert_eq!(plan.clear(), 2);
        assert_eq!(plan.next(), None);
        assert_eq!(plan.clear(), 0);
    }

    #[test]
    fn random_faults_follow_the_rate_and_the_seed() {
        let draw = |seed| {
            let mut plan = FaultPlan::new(seed, 0.2);
            (0..2000).map(|_| plan.next().map(|f| f.kind.label())).collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        let faults = a.iter().flatten().count();
        assert!((330..470).contains(&faults), "{faults}");
        for kind in ["status:503", "429", "cut", "malformed"] {
            assert!(a.iter().flatten().filter(|l| *l == kind).count() > 50, "{kind}");
        }
    }

    #[test]
    fn malformed_bodies_do_not_parse() {
        let body = br#"{"batch_id":"b","files":[{"a":1},{"b":2}]}"#;
        for truncate in [true, false] {
            assert!(serde_json::from_slice::<serde_json::Value>(&malform(body, truncate)).is_err());
        }
        assert!(serde_json::from_slice::<serde_json::Value>(&malform(b"{}", true)).is_err());
    }
}
