//! HTTP: one page per call, with retries, timeouts and a body size cap.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use url::Url;

use crate::error::{excerpt, Error, Result};
use crate::page::{error_body, error_message, parse_page, Page};
use crate::query::Query;
use crate::retry::{retry_after, Decision, RetryPolicy};

pub const DEFAULT_BASE_URL: &str = "https://api.soket.ai/transcribe";

#[derive(Clone)]
pub struct ClientConfig {
    pub base_url: Url,
    pub token: String,
    /// Read timeout per request; connecting gets the smaller of this and 10 s.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Pages in flight at once while iterating.
    pub concurrency: usize,
    /// The largest (decompressed) response body accepted.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"***")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// Parses and checks a base URL: http(s) only, and plain http only to a loopback host.
pub fn parse_base_url(raw: &str) -> Result<Url> {
    let bad = |why: &str| Error::InvalidArgument(format!("base_url {raw:?} {why}"));
    let url = Url::parse(raw).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(bad("uses plain http to a non-loopback host; use https (the token would travel in clear)"));
            }
        }
        _ => return Err(bad("must start with https:// (or http:// for a loopback host)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not hold credentials; pass the token instead"));
    }
    Ok(url)
}

/// Counters that tests, benchmarks and the soak script read.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

pub struct ApiClient {
    http: reqwest::Client,
    config: ClientConfig,
    auth: HeaderValue,
    pub stats: Stats,
}

impl ApiClient {
    pub fn new(config: ClientConfig) -> Result<ApiClient> {
        if config.token.is_empty() {
            return Err(Error::InvalidArgument("token must be a non-empty string".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.token))
            .map_err(|_| Error::InvalidArgument("token holds characters not allowed in an HTTP header".into()))?;
        auth.set_sensitive(true);
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("soket-transcribe/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .read_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .https_only(false) // plain http is vetted in parse_base_url
            .build()
            .map_err(|e| Error::InvalidArgument(format!("could not build the HTTP client: {e}")))?;
        Ok(ApiClient { http, config, auth, stats: Stats::default() })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Removes the token from text that came from elsewhere (a body, a library's message).
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.config.token)
    }

    /// One page, retried as the policy allows. Errors carry the page number.
    pub async fn fetch_page(&self, query: &Query, retry: &RetryPolicy) -> Result<Page> {
        let url = query.url(&self.config.base_url);
        let mut attempt = 0;
        loop {
            match self.fetch_once(&url, query).await {
                Ok(page) => return Ok(page),
                Err(err) if err.is_retryable() => match retry.decide(attempt, err.retry_after()) {
                    Decision::RetryAfter(wait) => {
                        attempt += 1;
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        log::info!(
                            "page {} failed ({err}); retry {attempt}/{} in {:.2}s",
                            query.page,
                            retry.max_retries,
                            wait.as_secs_f64()
                        );
                        tokio::time::sleep(wait).await;
                    }
                    Decision::GiveUp => return Err(self.give_up(err, attempt).on_page(query.page)),
                },
                Err(err) => return Err(err.on_page(query.page)),
            }
        }
    }

    fn give_up(&self, err: Error, attempts: u32) -> Error {
        if attempts == 0 {
            return err;
        }
        match err {
            Error::Connection { message, page, timeout } => {
                Error::Connection { message: format!("{message} (after {attempts} retries)"), page, timeout }
            }
            Error::Api { status, message, body, page, retry_after } => {
                Error::Api { status, message: format!("{message} (after {attempts} retries)"), body, page, retry_after }
            }
            other => other,
        }
    }

    async fn fetch_once(&self, url: &Url, query: &Query) -> Result<Page> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        log::debug!("GET {url}");
        let response = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| self.connection_error(&e))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers(), SystemTime::now());
        let body = self.read_body(response).await?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(status, &body, wait));
        }
        parse_page(body, query.raw, query.page).map_err(|e| self.redact_error(e))
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes> {
        let cap = self.config.max_body_bytes;
        let mut body = BytesMut::with_capacity(response.content_length().unwrap_or(0).min(cap as u64) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.connection_error(&e))? {
            if body.len() + chunk.len() > cap {
                return Err(Error::Format {
                    message: format!("response body exceeds max_body_bytes ({cap} bytes)"),
                    excerpt: String::new(),
                    page: None,
                    malformed: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn status_error(&self, status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
        let text = self.redact(&String::from_utf8_lossy(body));
        if let Some(message) = error_message(body) {
            let message = self.redact(&message);
            return match error_body(status, message, text.as_bytes()) {
                Error::Api { status, message, body, page, .. } => {
                    Error::Api { status, message, body, page, retry_after }
                }
                other => other,
            };
        }
        let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let short = excerpt(&text, 200);
        Error::Api {
            status,
            message: format!("HTTP {status} {reason}: {short}").trim_end_matches([' ', ':']).to_owned(),
            body: excerpt(&text, 2000),
            page: None,
            retry_after,
        }
    }

    fn connection_error(&self, e: &reqwest::Error) -> Error {
        let timeout = e.is_timeout();
        // The chain of sources says what really happened (reset, refused, cut short...).
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let kind = if timeout { "timed out" } else { "connection failed" };
        Error::Connection { message: self.redact(&format!("{kind}: {message}")), page: None, timeout }
    }

    fn redact_error(&self, e: Error) -> Error {
        match e {
            Error::Format { message, excerpt, page, malformed } => {
                Error::Format { message: self.redact(&message), excerpt: self.redact(&excerpt), page, malformed }
            }
            Error::Api { status, message, body, page, retry_after } => {
                Error::Api { status, message: self.redact(&message), body: self.redact(&body), page, retry_after }
            }
            Error::BatchNotFound { status, message, body, page } => {
                Error::BatchNotFound { status, message, body: self.redact(&body), page }
            }
            other => other,
        }
    }
}

pub fn redact(text: &str, token: &str) -> String {
    if token.len() < 4 || !text.contains(token) {
        return text.to_owned();
    }
    text.replace(token, "***")
}

fn install_crypto_provider() {
    // reqwest is built without a default provider; ring is the one we ship.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        assert!(parse_base_url("https://api.soket.ai/transcribe").is_ok());
        for ok in ["http://127.0.0.1:1/t", "http://localhost/t", "http://[::1]:8/t", "http://127.9.9.9/"] {
            assert!(parse_base_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://api.soket.ai/transcribe", "http://10.0.0.1/", "ftp://x/", "nonsense", "https://u:p@x/"] {
            assert!(matches!(parse_base_url(bad), Err(Error::InvalidArgument(_))), "{bad}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("Bearer sekrit-token here", "sekrit-token"), "Bearer *** here");
        assert_eq!(redact("nothing", "sekrit-token"), "nothing");
    }

    #[test]
    fn debug_hides_the_token() {
        let config = ClientConfig {
            base_url: parse_base_url("https://x/").unwrap(),
            token: "sekrit-token".into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            concurrency: 4,
            max_body_bytes: 1 << 20,
        };
        assert!(!format!("{config:?}").contains("sekrit"));
    }
}
