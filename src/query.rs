//! One request for one page: its arguments, their validation, and its URL.

use crate::error::{Error, Result};
use url::Url;

pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Completed,
    Failed,
    Retrying,
    Processing,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Completed, Status::Failed, Status::Retrying, Status::Processing];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Retrying => "retrying",
            Status::Processing => "processing",
        }
    }

    pub fn parse(s: &str) -> Result<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            Error::InvalidArgument(format!("status must be one of completed, failed, retrying, processing; got {s:?}"))
        })
    }
}

/// The query of `GET /results/batch/{batch_id}`, all six parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub batch_id: String,
    pub page: u64,
    pub limit: u32,
    pub status: Option<Status>,
    pub raw: bool,
    pub chunks: Option<bool>,
    pub speech_information: Option<bool>,
}

impl Query {
    pub fn new(batch_id: impl Into<String>) -> Query {
        Query {
            batch_id: batch_id.into(),
            page: 1,
            limit: 50,
            status: None,
            raw: false,
            chunks: None,
            speech_information: None,
        }
    }

    /// Checks what the service would reject, so no request is wasted on it.
    pub fn validate(&self) -> Result<()> {
        check_id("batch_id", &self.batch_id)?;
        if self.page < 1 {
            return Err(Error::InvalidArgument(format!("page must be >= 1; got {}", self.page)));
        }
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(Error::InvalidArgument(format!("limit must be between 1 and {MAX_LIMIT}; got {}", self.limit)));
        }
        Ok(())
    }

    pub fn with_page(&self, page: u64) -> Query {
        Query { page, ..self.clone() }
    }

    /// `{base}/results/batch/{batch_id}?...`, the batch id as one percent-encoded segment.
    pub fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        {
            let mut segments = url.path_segments_mut().expect("base URL is http(s), so it has a path");
            segments.pop_if_empty().extend(["results", "batch", self.batch_id.as_str()]);
        }
        url.set_query(None);
        {
            let mut q = url.query_pairs_mut();
            if let Some(status) = self.status {
                q.append_pair("status", status.as_str());
            }
            q.append_pair("page", &self.page.to_string());
            q.append_pair("limit", &self.limit.to_string());
            if self.raw {
                q.append_pair("raw", "true");
            }
            if let Some(c) = self.chunks {
                q.append_pair("chunks", bool_str(c));
            }
            if let Some(s) = self.speech_information {
                q.append_pair("speech_information", bool_str(s));
            }
        }
        url
    }
}

/// Refuses an id that cannot travel as one path segment, before any request: every endpoint's
/// id goes through here.
pub fn check_id(name: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(format!("{name} must be a non-empty string")));
    }
    if id == "." || id == ".." {
        // URL parsers resolve these segments (even percent-encoded) instead of sending them.
        return Err(Error::invalid(format!("{name} {id:?} cannot be sent as a path segment")));
    }
    if id.chars().any(char::is_control) {
        // The URL parser drops tab, CR and LF, which would request another id (or get round the
        // check above: "\t.." is ".." once parsed).
        return Err(Error::invalid(format!("{name} {id:?} holds a control character")));
    }
    Ok(())
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://api.soket.ai/transcribe").unwrap()
    }

    #[test]
    fn url_has_every_parameter() {
        let q = Query {
            status: Some(Status::Failed),
            page: 3,
            limit: 200,
            raw: true,
            chunks: Some(true),
            speech_information: Some(false),
            ..Query::new("b1")
        };
        assert_eq!(
            q.url(&base()).as_str(),
            "https://api.soket.ai/transcribe/results/batch/b1?status=failed&page=3&limit=200&raw=true&chunks=true&speech_information=false"
        );
    }

    #[test]
    fn batch_id_is_one_encoded_segment() {
        let q = Query::new("a/b?c#d %é");
        let url = q.url(&base());
        assert_eq!(url.path(), "/transcribe/results/batch/a%2Fb%3Fc%23d%20%25%C3%A9");
        assert_eq!(url.query(), Some("page=1&limit=50"));
    }

    #[test]
    fn base_with_trailing_slash_and_query() {
        let b = Url::parse("http://127.0.0.1:8080/transcribe/?x=1").unwrap();
        assert_eq!(
            Query::new("b").url(&b).as_str(),
            "http://127.0.0.1:8080/transcribe/results/batch/b?page=1&limit=50"
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        assert!(Query::new("..").validate().is_err());
        assert!(Query::new(".").validate().is_err());
        let url = Query::new("...").url(&base());
        assert!(url.path().ends_with("/results/batch/..."), "{}", url.path());
    }

    #[test]
    fn control_characters_in_an_id_are_refused() {
        for bad in ["a\tb", "\t..", "\t", "a\nb", "a\rb", "a\u{0}b", "a\u{7f}", "a\u{85}b"] {
            let err = Query::new(bad).validate().unwrap_err().to_string();
            assert!(err.contains("control character"), "{bad:?}: {err}");
        }
        assert!(check_id("file_id", "a b").is_ok(), "a space is percent-encoded, not dropped");
    }

    #[test]
    fn validation() {
        assert!(Query::new("b").validate().is_ok());
        assert!(Query::new("").validate().is_err());
        assert!(Query { limit: 0, ..Query::new("b") }.validate().is_err());
        assert!(Query { limit: 201, ..Query::new("b") }.validate().is_err());
        assert!(Query { page: 0, ..Query::new("b") }.validate().is_err());
        assert!(Status::parse("done").is_err());
        assert_eq!(Status::parse("retrying").unwrap(), Status::Retrying);
    }
}
