//! The one error type of the core; `python::errors` maps it to the Python hierarchy.
//! Errors are built by the `#[cold]` constructors below, and edited in one way ([`Error::edit_text`]).

use std::time::Duration;

/// Which page a request was for, when it was for one.
pub type PageNo = Option<u64>;

/// What a `{"error": "... not found"}` body said was missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Batch,
    File,
}

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

    /// `{"error": "batch not found"}` (or `"file not found"`), whatever HTTP status carried it.
    #[error("{message}")]
    NotFound { what: Missing, status: u16, message: String, body: String, page: PageNo },

    /// The request never got a complete answer: connect/reset/cut body/timeout.
    #[error("{message}")]
    Connection {
        message: String,
        page: PageNo,
        timeout: bool,
        /// Worth another attempt (false for a certificate the client will never trust).
        transient: bool,
    },

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

    /// The batch moved under the reader by more than the client can make up for
    /// (`on_change="raise"`, or a distributed read whose plan no longer holds).
    #[error("{message}")]
    BatchChanged { message: String, page: PageNo },

    /// A bug on our side (a panicked task); never expected.
    #[error("internal error: {0}")]
    Internal(String),

    /// The client's threads could not be started (the OS refused a thread or a descriptor).
    #[error("{0}")]
    RuntimeStart(String),
}

impl Error {
    #[cold]
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }

    /// A body that is JSON of the wrong shape (`malformed: false`) or not JSON at all.
    #[cold]
    pub fn format(message: impl Into<String>, body: &[u8], malformed: bool) -> Error {
        Error::Format { message: message.into(), excerpt: excerpt_bytes(body, 200), page: None, malformed }
    }

    #[cold]
    pub fn connection(message: impl Into<String>, timeout: bool, transient: bool) -> Error {
        Error::Connection { message: message.into(), page: None, timeout, transient }
    }

    #[cold]
    pub fn batch_changed(message: impl Into<String>, page: u64) -> Error {
        Error::BatchChanged { message: message.into(), page: Some(page) }
    }

    #[cold]
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    #[cold]
    pub fn runtime_start(threads: usize, cause: &std::io::Error) -> Error {
        Error::RuntimeStart(format!(
            "could not start the client's runtime ({threads} threads): {cause}; the process may be at \
             its thread limit (ulimit -u, a container's pids.max) or out of memory"
        ))
    }

    pub fn page(&self) -> PageNo {
        match self {
            Error::Api { page, .. }
            | Error::NotFound { page, .. }
            | Error::Connection { page, .. }
            | Error::Format { page, .. }
            | Error::BatchChanged { page, .. } => *page,
            Error::InvalidArgument(_) | Error::Internal(_) | Error::RuntimeStart(_) => None,
        }
    }

    /// Applies `f` to every text the error carries (its message, and the body excerpt).
    pub fn edit_text(mut self, mut f: impl FnMut(&mut String)) -> Self {
        match &mut self {
            Error::Api { message, body, .. } | Error::NotFound { message, body, .. } => {
                f(message);
                f(body);
            }
            Error::Format { message, excerpt, .. } => {
                f(message);
                f(excerpt);
            }
            Error::Connection { message, .. }
            | Error::BatchChanged { message, .. }
            | Error::InvalidArgument(message)
            | Error::Internal(message)
            | Error::RuntimeStart(message) => f(message),
        }
        self
    }

    /// Stamp the page this error happened on (errors are built below the pipeline).
    pub fn on_page(mut self, p: u64) -> Self {
        let slot = match &mut self {
            Error::Api { page, .. }
            | Error::NotFound { page, .. }
            | Error::Connection { page, .. }
            | Error::Format { page, .. }
            | Error::BatchChanged { page, .. } => page,
            Error::InvalidArgument(_) | Error::Internal(_) | Error::RuntimeStart(_) => return self,
        };
        if slot.is_some() {
            return self;
        }
        *slot = Some(p);
        self.append(&format!(" (page {p})"))
    }

    /// Adds `text` at the end of the message only.
    pub fn append(mut self, text: &str) -> Self {
        match &mut self {
            Error::Api { message, .. }
            | Error::NotFound { message, .. }
            | Error::Format { message, .. }
            | Error::Connection { message, .. }
            | Error::BatchChanged { message, .. }
            | Error::InvalidArgument(message)
            | Error::Internal(message)
            | Error::RuntimeStart(message) => message.push_str(text),
        }
        self
    }

    /// Worth another attempt: the fault may be gone on the next try.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            Error::Connection { transient, .. } => *transient,
            Error::Format { malformed, .. } => *malformed,
            Error::InvalidArgument(_)
            | Error::NotFound { .. }
            | Error::BatchChanged { .. }
            | Error::Internal(_)
            | Error::RuntimeStart(_) => false,
        }
    }

    /// The service asked for a slower pace: a 429, or a 503 with `Retry-After`.
    pub fn is_throttle(&self) -> bool {
        matches!(self, Error::Api { status: 429, .. } | Error::Api { status: 503, retry_after: Some(_), .. })
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
    excerpt_bytes(text.as_bytes(), max)
}

/// The start of a body as text, for messages: at most `max` bytes of it, cut on a char boundary.
pub fn excerpt_bytes(body: &[u8], max: usize) -> String {
    if body.len() <= max {
        return String::from_utf8_lossy(body).into_owned();
    }
    let mut end = max;
    while end > 0 && body[end] & 0xC0 == 0x80 {
        end -= 1; // inside a UTF-8 sequence
    }
    format!("{}... ({} bytes)", String::from_utf8_lossy(&body[..end]), body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_page_stamps_once() {
        let e = Error::connection("reset", false, true);
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
        assert!(!Error::connection("bad certificate", false, false).is_retryable());
        assert!(Error::connection("reset", false, true).is_retryable());
    }

    #[test]
    fn edit_text_reaches_every_text() {
        let e = Error::format("token sekrit in message", b"body with sekrit", false)
            .edit_text(|s| *s = s.replace("sekrit", "***"));
        match e {
            Error::Format { message, excerpt, .. } => {
                assert_eq!(message, "token *** in message");
                assert_eq!(excerpt, "body with ***");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn excerpts_respect_char_boundaries_and_say_the_size() {
        assert_eq!(excerpt("héllo", 2), "h... (6 bytes)");
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt_bytes(b"short", 10), "short");
        let long = "x".repeat(1000);
        assert_eq!(excerpt_bytes(long.as_bytes(), 10), "xxxxxxxxxx... (1000 bytes)");
        assert_eq!(excerpt_bytes("héllo wörld".as_bytes(), 2), "h... (13 bytes)");
    }
}
