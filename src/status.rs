//! The sibling endpoints: a batch's progress (`GET /status/batch/{id}`) and one file's result
//! (`GET /results/file/{id}`): their URLs, the answers' shapes, and the requests themselves.

use bytes::Bytes;
use jiter::{Jiter, Peek};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::fetch::ApiClient;
use crate::page::{error_body, error_message};
use crate::retry::RetryPolicy;

/// `GET /status/batch/{batch_id}`: the batch's aggregate progress. Fields the service adds
/// (job counters in dev mode) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchStatus {
    pub batch_id: Option<String>,
    /// `processing` or `retrying` while files are still in flight; anything else once done.
    pub status: String,
    pub total_files: Option<u64>,
    pub files_completed: Option<u64>,
    pub files_failed: Option<u64>,
    pub estimated_audio_seconds: Option<f64>,
    pub estimated_completion_seconds: Option<f64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BatchStatus {
    /// Whether files are still in flight, so that waiting longer may change the answer.
    pub fn in_progress(&self) -> bool {
        matches!(self.status.as_str(), "processing" | "retrying")
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

/// A 2xx status answer: `{"error": "batch not found"}` (or another error body) is an error.
pub fn parse_status(body: Bytes) -> Result<BatchStatus> {
    refuse_error_body(&body)?;
    serde_json::from_slice(&body).map_err(|e| {
        // A cut or garbled body is worth another try; a body of the wrong shape is not.
        let malformed = e.is_syntax() || e.is_eof();
        Error::format(format!("the batch status answer is not the documented shape: {e}"), &body, malformed)
    })
}

/// A 2xx file answer, checked to be one JSON object and not `{"error": "file not found"}`;
/// returned as it came, to be parsed once by its consumer.
pub fn parse_file(body: Bytes) -> Result<Bytes> {
    refuse_error_body(&body)?;
    let mut jiter = Jiter::new(&body);
    let json_error = |e: jiter::JiterError| Error::format(format!("response body is not valid JSON: {e}"), &body, true);
    let object = jiter.peek().map_err(json_error)? == Peek::Object;
    jiter.next_skip().map_err(json_error)?;
    jiter.finish().map_err(json_error)?;
    if !object {
        return Err(Error::format("the file answer is JSON but not an object", &body, false));
    }
    Ok(body)
}

fn refuse_error_body(body: &[u8]) -> Result<()> {
    match error_message(body) {
        Some(message) => Err(error_body(200, message, body)),
        None => Ok(()),
    }
}

/// The batch's progress, retried as the policy allows.
pub async fn fetch_status(api: &ApiClient, batch_id: &str, retry: &RetryPolicy) -> Result<BatchStatus> {
    check_id("batch_id", batch_id)?;
    api.get(&status_url(api.base_url(), batch_id), None, retry, parse_status).await
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
