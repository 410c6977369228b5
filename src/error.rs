//! The one error type of the core; `python::errors` maps it to the Python hierarchy.

use std::time::Duration;

/// Which page a request was for, when it was for one.
pub type PageNo = Option<u64>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A bad argument, caught before any request is sent.
    #[error("{0}")]
    InvalidArgument(String),

    /// The service answered with an error status (or an error body).
    #[error("{message}")]
    Api {
        status: u16,
        message: String,
        /// The response body, shortened and with the token redacted.
        body: String,
        page: PageNo,
        /// What the server asked us to wait before trying again, if it said.
        retry_after: Option<Duration>,
    },

    /// `{"error": "batch not found"}`, whatever HTTP status carried it.
    #[error("{message}")]
    BatchNotFound { status: u16, message: String, body: String, page: PageNo },

    /// The request never got a complete answer: connect/reset/cut body.
    #[error("{message}")]
    Connection { message: String, page: PageNo, timeout: bool },

    /// A 2xx answer whose body is not JSON, or not the documented shape.
    #[error("{message}")]
    Format {
        message: String,
        /// A short excerpt of the body, token redacted.
        excerpt: String,
        page: PageNo,
        /// True when the body is not even valid JSON (a cut or garbled body: worth a retry).
        malformed: bool,
    },

    /// A bug on our side (a panicked task); never expected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn page(&self) -> PageNo {
        match self {
            Error::Api { page, .. }
            | Error::BatchNotFound { page, .. }
            | Error::Connection { page, .. }
            | Error::Format { page, .. } => *page,
            Error::InvalidArgument(_) | Error::Internal(_) => None,
        }
    }

    /// Stamp the page this error happened on (errors are built below the pipeline).
    pub fn on_page(mut self, p: u64) -> Self {
        match &mut self {
            Error::Api { page, message, .. }
            | Error::BatchNotFound { page, message, .. }
            | Error::Connection { page, message, .. }
            | Error::Format { page, message, .. } => {
                if page.is_none() {
                    *page = Some(p);
                    message.push_str(&format!(" (page {p})"));
                }
            }
            Error::InvalidArgument(_) | Error::Internal(_) => {}
        }
        self
    }

    /// Worth another attempt: the fault may be gone on the next try.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            Error::Connection { .. } => true,
            Error::Format { malformed, .. } => *malformed,
            Error::InvalidArgument(_) | Error::BatchNotFound { .. } | Error::Internal(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorten `text` to at most `max` bytes on a char boundary, for messages.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_page_stamps_once() {
        let e = Error::Connection { message: "reset".into(), page: None, timeout: false };
        let e = e.on_page(3).on_page(4);
        assert_eq!(e.page(), Some(3));
        assert_eq!(e.to_string(), "reset (page 3)");
    }

    #[test]
    fn retryable_statuses() {
        let api =
            |status| Error::Api { status, message: String::new(), body: String::new(), page: None, retry_after: None };
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422, 501] {
            assert!(!api(s).is_retryable(), "{s}");
        }
    }

    #[test]
    fn excerpt_respects_char_boundaries() {
        assert_eq!(excerpt("héllo", 2), "h... (6 bytes)");
        assert_eq!(excerpt("short", 10), "short");
    }
}
