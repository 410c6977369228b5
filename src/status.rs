//! The sibling endpoints: a batch's progress (`GET /status/batch/{id}`) and one file's result
//! (`GET /results/file/{id}`): their URLs, the answers' shapes, and the requests themselves.

use std::time::Duration;

use bytes::Bytes;
use jiter::{Jiter, Peek};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::fetch::ApiClient;
use crate::page::{error_answer, surrogates_replaced};
use crate::retry::RetryPolicy;

/// `GET /status/batch/{batch_id}`: the batch's aggregate progress. Fields the service adds
/// (job counters in dev mode) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchStatus {
    pub batch_id: Option<String>,
    /// `processing` or `retrying` while files are in flight, `completed` or `failed` once done
    /// (see [`BatchStatus::stage`] for any other word).
    pub status: String,
    #[serde(default, deserialize_with = "count")]
    pub total_files: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub files_completed: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub files_failed: Option<u64>,
    pub estimated_audio_seconds: Option<f64>,
    pub estimated_completion_seconds: Option<f64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Where a batch stands, as far as waiting on it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing more will change: `completed` or `failed`, or every file counted done.
    Final,
    /// `processing` or `retrying`: files are in flight.
    Running,
    /// A word the service does not document (`queued`, `cancelled`, ``) with files not all
    /// counted done: not final, as waiting longer may still change it.
    Unknown,
}

/// A count sent as a float (`3.0`, by a service that writes every number so) is a count all the
/// same; `3.5` or `-1` is not.
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let integral = number.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f));
    match number.as_u64().or(integral.map(|f| f as u64)) {
        Some(n) => Ok(Some(n)),
        None => Err(serde::de::Error::custom(format!("{number} is not a count of files"))),
    }
}

impl BatchStatus {
    /// Final once the service says `completed` or `failed` (in any case), or, whatever else it
    /// says, once every file is counted done. `processing`/`retrying` outrank the counts: a
    /// batch may still gain files.
    pub fn stage(&self) -> Stage {
        let said = |word: &str| self.status.trim().eq_ignore_ascii_case(word);
        if said("completed") || said("failed") {
            Stage::Final
        } else if said("processing") || said("retrying") {
            Stage::Running
        } else if self.all_files_done() {
            Stage::Final
        } else {
            Stage::Unknown
        }
    }

    /// Whether waiting longer can no longer change the answer.
    pub fn is_final(&self) -> bool {
        self.stage() == Stage::Final
    }

    /// Whether files may still be in flight: `!is_final()`.
    pub fn in_progress(&self) -> bool {
        !self.is_final()
    }

    /// Completed plus failed files reach a known, non-zero total (a batch of no files yet may
    /// be one still being set up).
    fn all_files_done(&self) -> bool {
        let done = self.files_completed.unwrap_or(0).saturating_add(self.files_failed.unwrap_or(0));
        matches!(self.total_files, Some(total) if total > 0 && done >= total)
    }
}

/// The query of `GET /results/file/{file_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileQuery {
    pub file_id: String,
    pub chunks: Option<bool>,
    pub speech_information: Option<bool>,
}

impl FileQuery {
    pub fn new(file_id: impl Into<String>) -> FileQuery {
        FileQuery { file_id: file_id.into(), chunks: None, speech_information: None }
    }

    /// `{base}/results/file/{file_id}[?chunks=..&speech_information=..]`, the id as one segment.
    pub fn url(&self, base: &Url) -> Url {
        let mut url = endpoint(base, ["results", "file", self.file_id.as_str()]);
        let flags = [("chunks", self.chunks), ("speech_information", self.speech_information)];
        if flags.iter().any(|(_, value)| value.is_some()) {
            let mut query = url.query_pairs_mut();
            for (name, value) in flags {
                if let Some(value) = value {
                    query.append_pair(name, if value { "true" } else { "false" });
                }
            }
        }
        url
    }
}

/// `{base}/status/batch/{batch_id}`, the id as one percent-encoded segment.
pub fn status_url(base: &Url, batch_id: &str) -> Url {
    endpoint(base, ["status", "batch", batch_id])
}

fn endpoint(base: &Url, segments: [&str; 3]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut().expect("base URL is http(s), so it has a path").pop_if_empty().extend(segments);
    url.set_query(None);
    url
}

pub use crate::query::check_id;

/// The fields of a status answer: one that has any is an answer, whatever its `"error"` says
/// (`batch_id` is left out: an error body may echo the id it was asked for).
const STATUS_FIELDS: &[&str] = &[
    "status",
    "total_files",
    "files_completed",
    "files_failed",
    "estimated_audio_seconds",
    "estimated_completion_seconds",
];

/// The fields of a file record (`file_id` left out, as `batch_id` above).
const FILE_FIELDS: &[&str] = &["filename", "status", "result", "errors", "chunk_results"];

/// A 2xx status answer: `{"error": "batch not found"}` (or another error body) is an error.
pub fn parse_status(body: Bytes) -> Result<BatchStatus> {
    refuse_error_body(&body, STATUS_FIELDS)?;
    // A lone surrogate escape (Python's `json` reads it, serde refuses it) is read as U+FFFD.
    let read = |text: &[u8]| serde_json::from_slice(text);
    read(&body).or_else(|e| surrogates_replaced(&body).map_or(Err(e), |clean| read(&clean))).map_err(|e| {
        // A cut or garbled body is worth another try; a body of the wrong shape is not.
        let malformed = e.is_syntax() || e.is_eof();
        let what = if malformed { "valid JSON" } else { "the documented shape" };
        Error::format(format!("the batch status answer is not {what}: {e}"), &body, malformed)
    })
}

/// A 2xx file answer, checked to be one JSON object and not `{"error": "file not found"}`;
/// returned as it came, to be parsed once by its consumer.
pub fn parse_file(body: Bytes) -> Result<Bytes> {
    refuse_error_body(&body, FILE_FIELDS)?;
    let is_object = |text: &[u8]| {
        let mut jiter = Jiter::new(text);
        let object = jiter.peek()? == Peek::Object;
        jiter.next_skip()?;
        jiter.finish().map(|()| object)
    };
    // A lone surrogate escape is read as Python's `json` reads it (`file_record`): checked on a
    // copy that writes it U+FFFD.
    let object = is_object(&body)
        .or_else(|e| surrogates_replaced(&body).map_or(Err(e), |clean| is_object(&clean)))
        .map_err(|e| Error::format(format!("response body is not valid JSON: {e}"), &body, true))?;
    if !object {
        return Err(Error::format("the file answer is JSON but not an object", &body, false));
    }
    Ok(body)
}

fn refuse_error_body(body: &[u8], fields: &[&str]) -> Result<()> {
    match error_answer(200, body, fields) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The batch's progress, retried as the policy allows.
pub async fn fetch_status(api: &ApiClient, batch_id: &str, retry: &RetryPolicy) -> Result<BatchStatus> {
    check_id("batch_id", batch_id)?;
    api.get(&status_url(api.base_url(), batch_id), None, retry, parse_status).await
}

/// The longest pause between two tries of a failing status request while waiting.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// What one poll of a wait came to.
#[derive(Debug)]
pub enum Polled {
    Answered(BatchStatus),
    /// The time allowed ran out first; the last failure, if the requests were failing.
    OutOfTime(Option<Error>),
}

/// One poll of a wait: the batch's status, all within `within` (None: no bound), requests,
/// retries and their pauses alike. With `persist`, a transient failure (5xx, 429, a dropped
/// connection) is tried again past the policy's `max_retries`, its backoff going on growing,
/// until the time is out: a long wait outlives an outage of the service.
pub async fn poll_status(
    api: &ApiClient,
    batch_id: &str,
    retry: &RetryPolicy,
    within: Option<Duration>,
    persist: bool,
) -> Result<Polled> {
    check_id("batch_id", batch_id)?;
    let url = status_url(api.base_url(), batch_id);
    let mut last_error = None;
    let tries = async {
        let mut round = 0u32;
        loop {
            match api.get(&url, None, retry, parse_status).await {
                Err(err) if persist && err.is_retryable() => {
                    let backoff = retry.backoff(retry.max_retries.saturating_add(round));
                    let pause = err.retry_after().unwrap_or(backoff).min(MAX_PAUSE);
                    log::warn!(
                        "batch {batch_id}: status failed while waiting ({err}); again in {:.1}s",
                        pause.as_secs_f64()
                    );
                    last_error = Some(err);
                    tokio::time::sleep(pause).await;
                    round = round.saturating_add(1);
                }
                answer => return answer,
            }
        }
    };
    let answer = match within {
        None => tries.await,
        Some(limit) => match tokio::time::timeout(limit, tries).await {
            Ok(answer) => answer,
            Err(_) => return Ok(Polled::OutOfTime(last_error)),
        },
    };
    answer.map(Polled::Answered)
}

/// One file's record (the JSON object's bytes), retried as the policy allows.
pub async fn fetch_file(api: &ApiClient, query: &FileQuery, retry: &RetryPolicy) -> Result<Bytes> {
    check_id("file_id", &query.file_id)?;
    api.get(&query.url(api.base_url()), None, retry, parse_file).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Missing;
    use crate::fetch::{parse_base_url, ClientConfig};
    use crate::mock::{FaultKind, MockConfig, MockServer};

    fn base() -> Url {
        Url::parse("https://api.soket.ai/transcribe/").unwrap()
    }

    #[test]
    fn urls_carry_the_id_as_one_encoded_segment() {
        assert_eq!(status_url(&base(), "b1").as_str(), "https://api.soket.ai/transcribe/status/batch/b1");
        assert_eq!(status_url(&base(), "a/b?c#d %é").path(), "/transcribe/status/batch/a%2Fb%3Fc%23d%20%25%C3%A9");
        let file = FileQuery::new("f/1");
        assert_eq!(file.url(&base()).as_str(), "https://api.soket.ai/transcribe/results/file/f%2F1");
        let file = FileQuery { chunks: Some(true), speech_information: Some(false), ..FileQuery::new("f1") };
        let with_query = Url::parse("http://127.0.0.1:9/t?x=1").unwrap();
        assert_eq!(
            file.url(&with_query).as_str(),
            "http://127.0.0.1:9/t/results/file/f1?chunks=true&speech_information=false"
        );
    }

    #[test]
    fn ids_that_cannot_be_a_segment_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(matches!(check_id("file_id", bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        assert!(check_id("file_id", "...").is_ok());
    }

    #[test]
    fn status_keeps_unknown_fields_in_extra() {
        let body = br#"{"batch_id":"b","total_files":10,"files_completed":7,"files_failed":1,"files_retrying":2,
            "estimated_audio_seconds":65.5,"estimated_completion_seconds":8,"status":"processing","jobs":{"queued":3}}"#;
        let status = parse_status(Bytes::from_static(body)).unwrap();
        assert_eq!(status.batch_id.as_deref(), Some("b"));
        assert_eq!((status.total_files, status.files_completed, status.files_failed), (Some(10), Some(7), Some(1)));
        assert_eq!((status.estimated_audio_seconds, status.estimated_completion_seconds), (Some(65.5), Some(8.0)));
        assert!(status.in_progress());
        assert_eq!(status.extra.keys().collect::<Vec<_>>(), ["files_retrying", "jobs"]);
        let sparse = parse_status(Bytes::from_static(br#"{"status":"completed","total_files":null}"#)).unwrap();
        assert!(!sparse.in_progress() && sparse.total_files.is_none() && sparse.extra.is_empty());
    }

    fn status(word: &str, total: Option<u64>, completed: u64, failed: u64) -> BatchStatus {
        let body = serde_json::json!({"status": word, "total_files": total, "files_completed": completed, "files_failed": failed});
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn final_means_a_final_word_or_every_file_done() {
        for word in ["completed", "failed", "COMPLETED", " Failed "] {
            assert_eq!(status(word, Some(3), 0, 0).stage(), Stage::Final, "{word:?}");
        }
        for word in ["processing", "retrying", "PROCESSING"] {
            assert_eq!(status(word, Some(3), 2, 1).stage(), Stage::Running, "{word:?}: the word outranks the counts");
        }
        for word in ["queued", "", "cancelled", "done"] {
            assert_eq!(status(word, Some(3), 1, 1).stage(), Stage::Unknown, "{word:?}");
            assert_eq!(status(word, Some(3), 2, 1).stage(), Stage::Final, "{word:?}: every file counted done");
            assert_eq!(status(word, Some(0), 0, 0).stage(), Stage::Unknown, "{word:?}: no files yet");
            assert_eq!(status(word, None, 5, 0).stage(), Stage::Unknown, "{word:?}: no total");
        }
        assert!(status("queued", Some(3), 0, 0).in_progress() && !status("failed", None, 0, 0).in_progress());
    }

    #[test]
    fn counts_sent_as_integral_floats_are_counts() {
        let body = br#"{"status":"processing","total_files":3.0,"files_completed":1e0,"files_failed":0.0}"#;
        let status = parse_status(Bytes::from_static(body)).unwrap();
        assert_eq!((status.total_files, status.files_completed, status.files_failed), (Some(3), Some(1), Some(0)));
        for bad in ["3.5", "-1", "-1.0", "1e300", "\"3\""] {
            let body = format!(r#"{{"status":"processing","total_files":{bad}}}"#);
            match parse_status(Bytes::from(body)) {
                Err(Error::Format { malformed: false, message, .. }) => {
                    assert!(message.contains("documented shape"), "{message}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_error_beside_the_answer_is_a_field_of_the_answer() {
        let body =
            br#"{"status":"failed","error":"quota exceeded","total_files":3,"files_completed":0,"files_failed":3}"#;
        let status = parse_status(Bytes::from_static(body)).unwrap();
        assert!(status.is_final() && status.extra["error"] == "quota exceeded");
        let record = br#"{"file_id":"f","status":"failed","error":"decode failed","errors":["bad header"]}"#;
        assert_eq!(&parse_file(Bytes::from_static(record)).unwrap()[..], record);
        // Only the error (and an echo of the id, or fields the answer does not have): an error.
        for body in
            [&br#"{"error":"quota exceeded","batch_id":"b","detail":{"x":1}}"#[..], br#"{"error":"x","status":null}"#]
        {
            let err = parse_status(Bytes::copy_from_slice(body)).unwrap_err();
            assert!(matches!(err, Error::Api { status: 200, .. }), "{err:?}");
        }
        let err = parse_file(Bytes::from_static(br#"{"error":"file not found","file_id":"f"}"#)).unwrap_err();
        assert!(matches!(err, Error::NotFound { what: Missing::File, .. }), "{err:?}");
    }

    fn mock_client(server: &MockServer, max_retries: u32) -> ApiClient {
        let retry = RetryPolicy { max_retries, initial: Duration::from_millis(1), ..RetryPolicy::default() };
        let config = ClientConfig {
            base_url: parse_base_url(&server.url()).unwrap(),
            token: "test-token".into(),
            timeout: Duration::from_secs(30),
            retry,
            concurrency: 1,
            max_body_bytes: 1 << 20,
        };
        ApiClient::new(&config).unwrap()
    }

    fn poll(api: &ApiClient, batch_id: &str, within: Option<Duration>, persist: bool) -> Result<Polled> {
        let retry = RetryPolicy { max_retries: 1, initial: Duration::from_millis(1), ..RetryPolicy::default() };
        crate::runtime::runtime()?.block_on(poll_status(api, batch_id, &retry, within, persist))
    }

    #[test]
    fn a_poll_persists_through_an_outage_only_when_asked() {
        let server = MockServer::start(MockConfig { files: 10, ..MockConfig::default() }).unwrap();
        let api = mock_client(&server, 1);
        server.fail_next(FaultKind::Status(503), 5);
        let err = poll(&api, server.batch_id(), None, false).unwrap_err();
        assert!(matches!(err, Error::Api { status: 503, .. }), "{err:?}");
        assert_eq!(server.requests().len(), 2, "the policy's one retry, then the error");
        let answer = poll(&api, server.batch_id(), Some(Duration::from_secs(600)), true).unwrap();
        assert!(matches!(answer, Polled::Answered(ref s) if s.total_files == Some(10)), "{answer:?}");
        assert_eq!(server.requests().len(), 6, "the three faults left, then the answer");
        let missing = poll(&api, "no-such-batch", None, true).unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }), "only transient failures are tried again");
    }

    #[test]
    fn a_poll_ends_when_its_time_is_out() {
        let server = MockServer::start(MockConfig { files: 10, ..MockConfig::default() }).unwrap();
        let api = mock_client(&server, 3);
        let began = std::time::Instant::now();
        server.fail_next(FaultKind::Stall(Duration::from_secs(20)), 1);
        let answer = poll(&api, server.batch_id(), Some(Duration::from_millis(200)), true).unwrap();
        assert!(matches!(answer, Polled::OutOfTime(None)), "{answer:?}");
        server.fail_next(FaultKind::RateLimited { retry_after: "20".into() }, 1);
        let answer = poll(&api, server.batch_id(), Some(Duration::from_millis(200)), true).unwrap();
        assert!(matches!(answer, Polled::OutOfTime(None)), "{answer:?}");
        // A client of its own: the 429 above set this client's rate controller pacing, which may
        // hold the next request past this poll's bound (right for a throttled service, not this case).
        let api = mock_client(&server, 3);
        server.fail_next(FaultKind::Status(503), 10_000);
        let answer = poll(&api, server.batch_id(), Some(Duration::from_millis(1500)), true).unwrap();
        assert!(matches!(answer, Polled::OutOfTime(Some(Error::Api { status: 503, .. }))), "{answer:?}");
        // Each would take 20 s unbounded: the bound is what ended them (loose for a loaded machine).
        assert!(began.elapsed() < Duration::from_secs(15), "{:?}", began.elapsed());
    }

    #[test]
    fn lone_surrogates_are_read_as_python_reads_them() {
        let body = br#"{"batch_id":"b\ud800","status":"processing","total_files":3,"note":"x\udc00"}"#;
        let status = parse_status(Bytes::from_static(body)).unwrap();
        assert_eq!((status.batch_id.as_deref(), status.total_files), (Some("b\u{fffd}"), Some(3)));
        assert_eq!(status.extra["note"], "x\u{fffd}");
        let missing = parse_status(Bytes::from_static(br#"{"error":"batch not found","x":"\ud800"}"#)).unwrap_err();
        assert!(matches!(missing, Error::NotFound { what: Missing::Batch, .. }), "{missing:?}");
        let record = br#"{"file_id":"f","result":{"text":"cut \ud83d"}}"#;
        assert_eq!(&parse_file(Bytes::from_static(record)).unwrap()[..], record, "kept as sent");
        assert!(matches!(
            parse_file(Bytes::from_static(br#"{"a":"\ud800"#)),
            Err(Error::Format { malformed: true, .. })
        ));
    }

    #[test]
    fn error_bodies_and_wrong_shapes_are_errors() {
        let missing = parse_status(Bytes::from_static(br#"{"error":"batch not found"}"#)).unwrap_err();
        assert!(matches!(missing, Error::NotFound { what: Missing::Batch, .. }), "{missing:?}");
        let missing = parse_file(Bytes::from_static(br#"{"error": "file not found"}"#)).unwrap_err();
        assert!(matches!(missing, Error::NotFound { what: Missing::File, .. }), "{missing:?}");
        for (body, malformed) in [(&br#"{"total_files":1}"#[..], false), (br#"{"status":"x","#, true), (b"[1]", false)]
        {
            match parse_status(Bytes::copy_from_slice(body)) {
                Err(Error::Format { malformed: m, .. }) => assert_eq!(m, malformed, "{body:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(parse_file(Bytes::from_static(b"[1]")), Err(Error::Format { malformed: false, .. })));
        assert!(matches!(parse_file(Bytes::from_static(b"{\"a\":")), Err(Error::Format { malformed: true, .. })));
        assert!(matches!(parse_file(Bytes::from_static(b"{} x")), Err(Error::Format { malformed: true, .. })));
        let record = parse_file(Bytes::from_static(br#"{"file_id":"f","result":{"text":"hi"}}"#)).unwrap();
        assert_eq!(&record[..], br#"{"file_id":"f","result":{"text":"hi"}}"#);
    }
}
