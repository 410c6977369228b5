//! The embedded mock of the Soket AI batch results API.
//!
//! A real HTTP/1.1 server on its own thread and tokio runtime, serving
//! `GET {base}/results/batch/{batch_id}`, `/download/batch/{batch_id}` (the same records, one
//! NDJSON stream), `/results/file/{file_id}` and `/status/batch/{batch_id}`
//! with deterministic, realistic records, and misbehaving on request: latency, 503, 429, cut
//! bodies, malformed JSON, stalls, batches that change while read. Tests, the demo and the
//! benchmarks run against it.
//!
//! ```no_run
//! use soket_transcribe::mock::{MockConfig, MockServer};
//! let server = MockServer::start(MockConfig { files: 10_000, ..MockConfig::default() }).unwrap();
//! println!("{} {}", server.url(), server.batch_id());
//! ```

mod batch;
mod bodies;
mod data;
mod download;
mod faults;
mod json;
mod query;
mod records;
mod rng;
mod server;
#[cfg(test)]
mod tests;
mod throttle;
mod words;

pub use batch::GrowAt;
pub use faults::FaultKind;
pub use server::{MockServer, RequestRecord};

/// How a [`MockServer`] is set up. Every field has a default (`MockConfig::default()`).
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Files in the default batch.
    pub files: u64,
    /// Seeds the records, the default batch id and the random faults.
    pub seed: u64,
    /// The Bearer token requests must carry.
    pub token: String,
    /// Added to every request before it is answered.
    pub latency_ms: u64,
    /// Fraction (0..=1) of results requests that misbehave.
    pub fault_rate: f64,
    /// Weights of `completed`, `failed`, `retrying`, `processing` (names not given weigh 0);
    /// `None` = 0.85 / 0.10 / 0.03 / 0.02.
    pub statuses: Option<Vec<(String, f64)>>,
    /// Id of the default batch; `None` = a uuid derived from the seed.
    pub batch_id: Option<String>,
    pub host: String,
    /// 0 = an ephemeral port.
    pub port: u16,
    /// Gzip bodies (of 500 bytes or more) when the request's Accept-Encoding allows it.
    pub gzip: bool,
    /// The status sent with `{"error": "batch not found"}`.
    pub not_found_status: u16,
    /// `Some(base)`: every results request answers 307 to `base` + the path after
    /// `/transcribe` + the same query (so `base` is another server's `url()`).
    pub redirect_to: Option<String>,
    /// `Some(s)`: every `processing`/`retrying` file reaches its final status (completed or
    /// failed, as drawn for it) at a moment within `s` seconds after it joined its batch.
    pub processing_seconds: Option<f64>,
    /// The request log keeps the last this many requests ([`MockServer::requests_total`] counts all).
    pub log_limit: usize,
    /// `Some`: API requests above this rate answer 429 (`None`: no limit).
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket shared by every endpoint and connection; requests it has no token for
/// answer `429` with `retry_after`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (finite, above 0).
    pub per_second: f64,
    /// Tokens the bucket holds at most, and holds at the start (1 or more).
    pub burst: u32,
    /// Seconds sent in `Retry-After` (and `retry-after-ms` when fractional); `None`: no header.
    pub retry_after: Option<f64>,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            files: 1000,
            seed: 0,
            token: "test-token".to_string(),
            latency_ms: 0,
            fault_rate: 0.0,
            statuses: None,
            batch_id: None,
            host: "127.0.0.1".to_string(),
            port: 0,
            gzip: true,
            not_found_status: 404,
            redirect_to: None,
            processing_seconds: None,
            log_limit: 100_000,
            rate_limit: None,
        }
    }
}

/// A further batch on a running server ([`MockServer::add_batch`]).
#[derive(Clone, Debug, Default)]
pub struct BatchSpec {
    pub files: u64,
    pub seed: u64,
    /// `None` = a uuid derived from the seed and the batch's rank on the server.
    pub batch_id: Option<String>,
    /// Above 0, the batch is still processing and gains this many files after answering
    /// each request to it (its results or status; not one answered by a fault).
    pub grow_per_request: u64,
    /// Where those files are gained.
    pub grow_at: GrowAt,
    /// After answering each request to the batch, the first this many files (in batch order)
    /// that are `processing` become `completed` (before any files are gained).
    pub complete_per_request: u64,
    /// As [`MockConfig::processing_seconds`]; `None` = the server's.
    pub processing_seconds: Option<f64>,
    /// As [`MockConfig::statuses`]; `None` = the server's.
    pub statuses: Option<Vec<(String, f64)>>,
    /// `Some`: the batch serves exactly these records (JSON objects, in order) in both views,
    /// selected by their `"status"` and found by their `"file_id"`; it never changes, so
    /// `files`, `statuses` and the changes above must be left at their defaults.
    pub records: Option<Vec<String>>,
    /// Pages leave out `total_files`/`total_jobs`, as some services do (`total_pages` stays).
    pub without_totals: bool,
}
