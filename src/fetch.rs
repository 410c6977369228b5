//! HTTP: every request to the service, with retries, a timeout on the whole answer and a body size cap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use url::Url;

use crate::error::{excerpt_bytes, Error, PageNo, Result};
use crate::page::{error_body, error_message, parse_page, Page};
use crate::proxy::{is_loopback, Proxies, ProxyUrl};
use crate::query::Query;
use crate::rate::RateController;
use crate::retry::{retry_after, Decision, RetryPolicy};

pub const DEFAULT_BASE_URL: &str = "https://api.soket.ai/transcribe";

#[derive(Clone)]
pub struct ClientConfig {
    pub base_url: Url,
    pub token: String,
    /// Bounds each request's whole answer (headers and body); connecting gets at most 10 s of it.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Pages in flight at once while iterating.
    pub concurrency: usize,
    /// The largest (decompressed) response body accepted.
    pub max_body_bytes: usize,
}

pub const MAX_CONCURRENCY: usize = 64;

impl ClientConfig {
    /// Checks what would make every request fail, so the client refuses it at once.
    pub fn validate(&self) -> Result<()> {
        if self.token.is_empty() {
            return Err(Error::invalid("token must be a non-empty string"));
        }
        if self.token.trim().is_empty() {
            return Err(Error::invalid("token must not be blank"));
        }
        if HeaderValue::from_str(&self.token).is_err() {
            return Err(Error::invalid("token holds characters not allowed in an HTTP header"));
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("timeout must be a positive number of seconds"));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(Error::invalid(format!(
                "concurrency must be between 1 and {MAX_CONCURRENCY}; got {}",
                self.concurrency
            )));
        }
        if self.max_body_bytes == 0 {
            return Err(Error::invalid("max_body_bytes must be positive"));
        }
        Proxies::from_env().map(drop)
    }
}

/// A positive, finite number of seconds as a duration.
pub fn seconds(name: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::invalid(format!("{name} must be a positive number of seconds; got {value}")))
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
    let bad = |why: &str| Error::invalid(format!("base_url {raw:?} {why}"));
    let url = Url::parse(raw).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback(&url) {
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

/// What a client has done in this process (`Client.stats` in Python).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

pub struct ApiClient {
    http: reqwest::Client,
    base_url: Url,
    token: String,
    timeout: Duration,
    max_body_bytes: usize,
    auth: HeaderValue,
    proxies: Proxies,
    pub stats: Stats,
    /// Paces every request of this client once the service throttles (see `rate`).
    pub rate: RateController,
}

/// Connecting gets at most this much of a request's `timeout`.
const MAX_CONNECT: Duration = Duration::from_secs(10);

/// Redirects followed for one request before it fails.
const MAX_REDIRECTS: usize = 10;

pub fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(MAX_CONNECT)
}

impl ApiClient {
    pub fn new(config: &ClientConfig) -> Result<ApiClient> {
        config.validate()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.token))
            .map_err(|_| Error::invalid("token holds characters not allowed in an HTTP header"))?;
        auth.set_sensitive(true);
        install_crypto_provider();
        let proxies = Proxies::from_env()?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("soket-transcribe/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect_timeout(config.timeout))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .https_only(false) // plain http is vetted in parse_base_url and on each redirect
            .redirect(reqwest::redirect::Policy::none()) // followed in `send`, where a hop can be named
            .no_proxy(); // the environment's proxies are read by `Proxies`, with our rules
        if !proxies.is_empty() {
            let rules = proxies.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| rules.for_url(url).map(|p| p.url.clone())));
        }
        let http = builder.build().map_err(|e| Error::invalid(format!("could not build the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            base_url: config.base_url.clone(),
            token: config.token.clone(),
            timeout: config.timeout,
            max_body_bytes: config.max_body_bytes,
            auth,
            proxies,
            stats: Stats::default(),
            rate: RateController::new(config.retry.max_requests_per_second),
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Removes the token from text that came from elsewhere (a body, a library's message).
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.token)
    }

    /// One page, retried as the policy allows. Errors carry the page number.
    pub async fn fetch_page(&self, query: &Query, retry: &RetryPolicy) -> Result<Page> {
        let url = query.url(&self.base_url);
        self.get(&url, Some(query.page), retry, |body| parse_page(body, query.raw, query.page)).await
    }

    /// GET `url` and read the answer with `parse`, retried as the policy allows: every endpoint
    /// goes through here. `page` (when the request is for one) is stamped on errors and logs.
    pub async fn get<T>(
        &self,
        url: &Url,
        page: PageNo,
        retry: &RetryPolicy,
        parse: impl Fn(Bytes) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let started = self.rate.start().await;
            let err = match self.get_once(url).await.and_then(&parse) {
                Ok(value) => {
                    self.rate.on_success();
                    return Ok(value);
                }
                Err(err) => err.edit_text(|s| *s = self.redact(s)),
            };
            let decision = if err.is_throttle() {
                self.rate.on_throttle_after(started, err.retry_after());
                match self.throttle_wait(&err, retry) {
                    Ok(wait) => {
                        // Not a failure while the client's reads move: max_retries is left alone.
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        log::debug!(
                            "{} throttled ({err}); again in {:.2}s, paced",
                            what(url, page),
                            wait.as_secs_f64()
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Err(err) => return Err(on_page(err, page)),
                }
            } else if err.is_retryable() {
                retry.decide(attempt, err.retry_after())
            } else {
                Decision::GiveUp
            };
            match decision {
                Decision::RetryAfter(wait) => {
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "{} failed ({err}); retry {attempt}/{} in {:.2}s",
                        what(url, page),
                        retry.max_retries,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                Decision::GiveUp => {
                    let err = if attempt > 0 { err.append(&format!(" (after {attempt} retries)")) } else { err };
                    return Err(on_page(err, page));
                }
            }
        }
    }

    /// How long a throttled request waits before it is paced again: its `Retry-After`; or the
    /// error, when that is beyond the cap or the client has had no success for `rate_limit_timeout`.
    pub(crate) fn throttle_wait(&self, err: &Error, retry: &RetryPolicy) -> Result<Duration> {
        let wait = err.retry_after().unwrap_or(Duration::ZERO);
        if wait > retry.max_retry_after {
            return Err(err.clone().append(&format!(
                " (Retry-After {:.0}s is beyond the {:.0}s the client waits)",
                wait.as_secs_f64(),
                retry.max_retry_after.as_secs_f64()
            )));
        }
        match self.rate.throttled_for() {
            Some(throttled) if throttled + wait >= retry.rate_limit_timeout => Err(err.clone().append(&format!(
                " (throttled for {:.0}s with no request of this client succeeding: rate_limit_timeout={}s)",
                throttled.as_secs_f64(),
                retry.rate_limit_timeout.as_secs_f64()
            ))),
            _ => Ok(wait),
        }
    }

    /// One attempt at a streamed answer (`/download`): its status checked within `timeout` (an
    /// error's body read for its message); the body is left to `next_chunk`. Not retried here.
    pub async fn open_stream(&self, url: &Url) -> Result<reqwest::Response> {
        let opened = async {
            let response = self.send(url).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let wait = retry_after(response.headers(), SystemTime::now());
            let body = self.read_body(response).await?;
            Err(status_error(status.as_u16(), &body, wait))
        };
        match tokio::time::timeout(self.timeout, opened).await {
            Ok(result) => result.map_err(|e| e.edit_text(|s| *s = self.redact(s))),
            Err(_) => Err(Error::connection(
                format!("timed out: no answer within {:.1}s", self.timeout.as_secs_f64()),
                true,
                true,
            )),
        }
    }

    /// The next piece of a streamed body, None at its end: a stream may take as long as it needs,
    /// but `timeout` bounds each wait for more of it.
    pub async fn next_chunk(&self, response: &mut reqwest::Response) -> Result<Option<Bytes>> {
        match tokio::time::timeout(self.timeout, response.chunk()).await {
            Ok(chunk) => chunk.map_err(|e| connection_error(&e, None).edit_text(|s| *s = self.redact(s))),
            Err(_) => Err(Error::connection(
                format!("timed out: the stream sent nothing for {:.1}s", self.timeout.as_secs_f64()),
                true,
                true,
            )),
        }
    }

    /// The largest body, or line of a stream, accepted.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// One attempt: the status checked and the whole body read, all within `timeout`.
    async fn get_once(&self, url: &Url) -> Result<Bytes> {
        let answer = async {
            let response = self.send(url).await?;
            let status = response.status();
            let wait = retry_after(response.headers(), SystemTime::now());
            let body = self.read_body(response).await?;
            if !status.is_success() {
                return Err(status_error(status.as_u16(), &body, wait));
            }
            if body.is_empty() {
                // A complete answer without a body (204, or Content-Length: 0) comes the same way again.
                let reason = status.canonical_reason().unwrap_or("");
                return Err(Error::format(
                    format!("HTTP {} {reason}: an empty answer where JSON was expected", status.as_u16()),
                    b"",
                    false,
                ));
            }
            Ok(body)
        };
        // A server that trickles its answer would hold a read timeout off forever: bound the whole.
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(result) => result,
            Err(_) => Err(Error::connection(
                format!("timed out: no complete answer within {:.1}s", self.timeout.as_secs_f64()),
                true,
                true,
            )),
        }
    }

    /// The GET, its redirects followed here: a loop, too many hops or a hop to plain http off
    /// loopback is final (as an APIError with the 3xx status), and a failure names the hop it
    /// happened at. The token goes only to the base URL's origin.
    async fn send(&self, url: &Url) -> Result<reqwest::Response> {
        let mut url = url.clone();
        let mut visited: Vec<Url> = Vec::new();
        loop {
            let response = self.send_one(&url).await.map_err(|e| {
                let err = connection_error(&e, self.proxies.for_url(&url));
                match visited.last() {
                    Some(from) => err.append(&format!(" (redirected from {from})")),
                    None => err,
                }
            })?;
            let Some(next) = redirect_target(&response, &url) else { return Ok(response) };
            let status = response.status().as_u16();
            let refuse =
                |why: String| Error::Api { status, message: why, body: String::new(), page: None, retry_after: None };
            if next == url || visited.contains(&next) {
                return Err(refuse(format!("redirect loop: {url} redirects to {next}, which was already requested")));
            }
            if visited.len() + 1 > MAX_REDIRECTS {
                return Err(refuse(format!("more than {MAX_REDIRECTS} redirects; the last to {next}")));
            }
            if next.scheme() != "https" && !(next.scheme() == "http" && is_loopback(&next)) {
                return Err(refuse(format!(
                    "{url} redirects to {next}: only https, or plain http to a loopback host, is followed"
                )));
            }
            log::debug!("{url} redirects ({status}) to {next}");
            visited.push(std::mem::replace(&mut url, next));
        }
    }

    /// One request. A pooled connection the server closed just as it was reused fails before any
    /// byte of an answer; the request never reached the service, so it is sent once more on a
    /// new connection without counting against `max_retries`, as browsers do (GET is idempotent).
    async fn send_one(&self, url: &Url) -> reqwest::Result<reqwest::Response> {
        match self.request(url).send().await {
            Err(e) if is_stale_connection(&e) => {
                log::debug!("a reused connection closed before answering ({e}); sending again");
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                self.request(url).send().await
            }
            other => other,
        }
    }

    fn request(&self, url: &Url) -> reqwest::RequestBuilder {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        log::debug!("GET {url}");
        let request = self.http.get(url.clone());
        if url.origin() == self.base_url.origin() {
            request.header(AUTHORIZATION, self.auth.clone())
        } else {
            request
        }
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes> {
        let cap = self.max_body_bytes;
        let mut body = BytesMut::with_capacity(response.content_length().unwrap_or(0).min(cap as u64) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| connection_error(&e, None))? {
            if body.len() + chunk.len() > cap {
                return Err(Error::format(format!("response body exceeds max_body_bytes ({cap} bytes)"), b"", false));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// What a request was for, in logs.
fn what(url: &Url, page: PageNo) -> String {
    page.map_or_else(|| url.path().to_owned(), |p| format!("page {p}"))
}

fn on_page(err: Error, page: PageNo) -> Error {
    match page {
        Some(p) => err.on_page(p),
        None => err,
    }
}

/// Where a redirect answer points, resolved against the URL that gave it.
fn redirect_target(response: &reqwest::Response, url: &Url) -> Option<Url> {
    if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    url.join(location).ok()
}

/// The error for a non-2xx answer: the service's own `{"error": ...}` when it sent one.
fn status_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
    if let Some(message) = error_message(body) {
        return match error_body(status, message, body) {
            Error::Api { status, message, body, page, .. } => Error::Api { status, message, body, page, retry_after },
            other => other,
        };
    }
    let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    Error::Api {
        status,
        message: format!("HTTP {status} {reason}: {}", excerpt_bytes(body, 200))
            .trim_end_matches([' ', ':'])
            .to_owned(),
        body: excerpt_bytes(body, 2000),
        page: None,
        retry_after,
    }
}

/// A failure before a complete answer, its cause chain spelled out (reset, refused, cut short,
/// certificate...), and the proxy named when the request went through one.
fn connection_error(e: &reqwest::Error, proxy: Option<&ProxyUrl>) -> Error {
    let mut message = e.to_string();
    let mut certificate = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        // io::Error hides the error it wraps from `source()`: look inside it.
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &dyn std::error::Error);
        certificate |= [Some(s), inner].into_iter().flatten().any(is_certificate_error);
        source = s.source();
    }
    // The chain may hide rustls's error behind a boxed one: its wording tells too.
    certificate |= ["invalid peer certificate", "peer sent no certificates"].iter().any(|w| message.contains(w));
    // TLS to a plain-http server ("received corrupt message"), or plain http to a TLS one.
    let mismatch = ["received corrupt message", "invalid HTTP version parsed"].iter().any(|w| message.contains(w));
    if mismatch {
        message.push_str(" (the server does not speak the URL's protocol: check http:// or https://)");
    }
    // hyper-util's CONNECT: any answer but 200 is "unsuccessful", 407 "authorization required".
    let tunnel_refused =
        ["tunnel error: unsuccessful", "proxy authorization required"].iter().any(|w| message.contains(w));
    let timeout = e.is_timeout();
    // A certificate the client does not trust, or the wrong protocol, will not change on the next try.
    let (kind, transient) = match proxy {
        Some(p) if tunnel_refused => (format!("the proxy {} refused the tunnel (CONNECT)", p.shown()), false),
        Some(p) if e.is_connect() && !certificate && !mismatch => {
            (format!("could not connect through the proxy {}", p.shown()), true)
        }
        _ => ((if timeout { "timed out" } else { "connection failed" }).to_owned(), !certificate && !mismatch),
    };
    Error::connection(format!("{kind}: {message}"), timeout, transient)
}

/// The server closed the connection before any byte of an answer, on a request that did not
/// open it (a new connection that fails is a connect error, handled as any other).
fn is_stale_connection(e: &reqwest::Error) -> bool {
    if e.is_connect() || e.is_timeout() {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message()) {
            return true;
        }
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe))
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::Error as Tls;
    matches!(
        e.downcast_ref::<Tls>(),
        Some(
            Tls::InvalidCertificate(_)
                | Tls::NoCertificatesPresented
                | Tls::UnsupportedNameType
                | Tls::InvalidCertRevocationList(_)
                | Tls::PeerIncompatible(_)
        )
    )
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
    fn connecting_gets_at_most_ten_seconds_of_the_timeout() {
        assert_eq!(connect_timeout(Duration::from_secs(60)), Duration::from_secs(10));
        assert_eq!(connect_timeout(Duration::from_millis(1500)), Duration::from_millis(1500));
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

    #[test]
    fn config_is_checked_in_the_core() {
        let good = ClientConfig {
            base_url: parse_base_url("https://x/").unwrap(),
            token: "t".into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            concurrency: 4,
            max_body_bytes: 1 << 20,
        };
        assert!(good.validate().is_ok());
        let err = |c: ClientConfig| c.validate().unwrap_err().to_string();
        assert!(err(ClientConfig { token: String::new(), ..good.clone() }).contains("token"));
        assert_eq!(err(ClientConfig { token: " \t".into(), ..good.clone() }), "token must not be blank");
        assert!(err(ClientConfig { token: "a\nb".into(), ..good.clone() }).contains("HTTP header"));
        assert_eq!(err(ClientConfig { concurrency: 0, ..good.clone() }), "concurrency must be between 1 and 64; got 0");
        assert!(err(ClientConfig { max_body_bytes: 0, ..good.clone() }).contains("max_body_bytes"));
        assert!(ApiClient::new(&ClientConfig { concurrency: 65, ..good }).is_err());
        assert_eq!(
            seconds("timeout", -1.0).unwrap_err().to_string(),
            "timeout must be a positive number of seconds; got -1"
        );
        assert!(seconds("timeout", f64::NAN).is_err() && seconds("timeout", 0.0).is_err());
        assert_eq!(seconds("timeout", 2.5).unwrap(), Duration::from_millis(2500));
    }
}
