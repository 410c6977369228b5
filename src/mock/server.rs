//! The HTTP server: routing, auth, faults, gzip, and the thread and runtime it lives on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::batch::{Batch, Changes};
use super::bodies;
use super::data::{batch_uuid, status_cdf, status_index, Include, Item, DEFAULT_WEIGHTS};
use super::download::{parse_download_query, DownloadBody, Source, Spoil};
use super::faults::{malform, Fault, FaultKind, FaultPlan};
use super::query::{parse_file_query, parse_results_query};
use super::records::Records;
use super::throttle::{retry_after_headers, Bucket};
use super::{BatchSpec, MockConfig, RateLimit};

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// The query string as sent, without `?`.
    pub query: String,
    pub auth_present: bool,
    pub authorized: bool,
    pub accept_encoding: Option<String>,
    /// The fault injected into the answer ([`FaultKind::label`]), if any.
    pub fault: Option<String>,
    /// Requests in flight at the server when this one arrived, itself included (a request
    /// stays in flight until its answer is built: latency and stalls count).
    pub in_flight: u64,
    /// Answered 429 by the rate limit ([`MockConfig::rate_limit`]).
    pub throttled: bool,
    /// When it arrived, since the server started.
    pub arrived: Duration,
}

/// A running mock server. Stops on [`MockServer::stop`] or when dropped.
pub struct MockServer {
    state: Arc<State>,
    addr: SocketAddr,
    default_batch: String,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `host:port`, creates the default batch and serves on a thread of its own
    /// (with a 2-worker tokio runtime); returns once the socket is listening.
    pub fn start(config: MockConfig) -> io::Result<MockServer> {
        let state = Arc::new(State::new(&config)?);
        let listener = StdTcpListener::bind((config.host.as_str(), config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let default_batch = state.add_batch(BatchSpec {
            files: config.files,
            seed: config.seed,
            batch_id: config.batch_id.clone(),
            ..BatchSpec::default()
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("soket-mock-worker")
            .enable_all()
            .build()?;
        let (shutdown, stopped) = watch::channel(false);
        let serving = Arc::clone(&state);
        let thread = std::thread::Builder::new().name("soket-mock".to_string()).spawn(move || {
            runtime.block_on(serve(listener, serving, stopped));
            runtime.shutdown_timeout(Duration::from_millis(200));
        })?;
        Ok(MockServer { state, addr, default_batch, shutdown, thread: Some(thread) })
    }

    /// The base URL a client uses: `http://127.0.0.1:PORT/transcribe`; on a wildcard address
    /// (`0.0.0.0`, `::`) the loopback one of its family, which this host can always reach.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}/transcribe")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The default batch's id.
    pub fn batch_id(&self) -> &str {
        &self.default_batch
    }

    /// Adds a batch (replacing any of the same id) and returns its id; bad weights or
    /// processing time are an `InvalidInput` error.
    pub fn add_batch(&self, spec: BatchSpec) -> io::Result<String> {
        self.state.add_batch(spec)
    }

    /// The next `times` results requests misbehave as `kind` (before any random fault).
    pub fn fail_next(&self, kind: FaultKind, times: u32) {
        lock(&self.state.faults).script(kind, times);
    }

    /// Drops the scripted faults not injected yet and returns how many there were.
    pub fn clear_faults(&self) -> usize {
        lock(&self.state.faults).clear()
    }

    /// The last requests served ([`MockConfig::log_limit`] at most), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.log).iter().cloned().collect()
    }

    /// Requests served since the server started, whether the log still holds them or not.
    pub fn requests_total(&self) -> u64 {
        self.state.requests_total.load(Ordering::Relaxed)
    }

    /// Empties the log (the total keeps counting).
    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }

    /// Faults injected so far, scripted and random.
    pub fn faults_injected(&self) -> u64 {
        self.state.faults_injected.load(Ordering::Relaxed)
    }

    /// Requests answered 429 by the rate limit so far.
    pub fn throttled(&self) -> u64 {
        self.state.throttled.load(Ordering::Relaxed)
    }

    /// Whether [`MockServer::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.thread.is_none()
    }

    /// Stops accepting, lets requests in flight finish (1 s at most), and joins the thread.
    pub fn stop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the handlers share.
struct State {
    token: String,
    latency: Duration,
    gzip: bool,
    not_found_status: StatusCode,
    redirect_to: Option<String>,
    cdf: [f64; 4],
    processing: Option<Duration>,
    /// Each batch with its rank of creation (the first created wins a file id two share).
    batches: Mutex<HashMap<String, (u64, Arc<Mutex<Batch>>)>>,
    batches_created: AtomicU64,
    /// Batches of records given by the caller, apart from the generated ones.
    records: Mutex<HashMap<String, Arc<Records>>>,
    /// Batches whose pages leave out their totals.
    without_totals: Mutex<HashSet<String>>,
    faults: Mutex<FaultPlan>,
    faults_injected: AtomicU64,
    log: Mutex<VecDeque<RequestRecord>>,
    log_limit: usize,
    requests_total: AtomicU64,
    started: Instant,
    in_flight: AtomicU64,
    bucket: Option<Bucket>,
    retry_after: Option<f64>,
    throttled: AtomicU64,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Status weights by name to their cumulative distribution; `None` = the default weights.
fn status_weights(statuses: Option<&[(String, f64)]>) -> io::Result<[f64; 4]> {
    let weights = match statuses {
        None => DEFAULT_WEIGHTS,
        Some(pairs) => {
            let mut weights = [0.0; 4];
            for (name, weight) in pairs {
                let i = status_index(name).ok_or_else(|| invalid(format!("unknown status {name:?} in statuses")))?;
                weights[usize::from(i)] = *weight;
            }
            weights
        }
    };
    status_cdf(weights).ok_or_else(|| invalid("status weights must be finite, >= 0, and not all 0".to_string()))
}

fn check_rate_limit(limit: &RateLimit) -> io::Result<()> {
    if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
        return Err(invalid(format!(
            "rate_limit must be a number of requests per second above 0, not {}",
            limit.per_second
        )));
    }
    if limit.burst == 0 {
        return Err(invalid("burst must be 1 or more".to_string()));
    }
    match limit.retry_after {
        Some(s) if !(s.is_finite() && s >= 0.0) => {
            Err(invalid(format!("retry_after must be a number of seconds, 0 or more, or None, not {s}")))
        }
        _ => Ok(()),
    }
}

/// Whether a spec asks for no generated files and no changes (what a batch of records allows).
fn spec_is_plain(spec: &BatchSpec) -> bool {
    spec.files == 0
        && spec.grow_per_request == 0
        && spec.complete_per_request == 0
        && spec.processing_seconds.is_none()
        && spec.statuses.is_none()
}

fn processing_time(seconds: Option<f64>) -> io::Result<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| invalid(format!("processing_seconds must be a duration in seconds, not {s}")))
        })
        .transpose()
}

impl State {
    fn new(config: &MockConfig) -> io::Result<State> {
        let cdf = status_weights(config.statuses.as_deref())?;
        if !(0.0..=1.0).contains(&config.fault_rate) {
            return Err(invalid(format!("fault_rate must be within 0..=1, not {}", config.fault_rate)));
        }
        let not_found_status = StatusCode::from_u16(config.not_found_status)
            .map_err(|_| invalid(format!("not_found_status {} is not an HTTP status", config.not_found_status)))?;
        if let Some(limit) = &config.rate_limit {
            check_rate_limit(limit)?;
        }
        Ok(State {
            token: config.token.clone(),
            latency: Duration::from_millis(config.latency_ms),
            gzip: config.gzip,
            not_found_status,
            redirect_to: config.redirect_to.as_ref().map(|base| base.trim_end_matches('/').to_string()),
            cdf,
            processing: processing_time(config.processing_seconds)?,
            batches: Mutex::new(HashMap::new()),
            batches_created: AtomicU64::new(0),
            records: Mutex::new(HashMap::new()),
            without_totals: Mutex::new(HashSet::new()),
            faults: Mutex::new(FaultPlan::new(config.seed, config.fault_rate)),
            faults_injected: AtomicU64::new(0),
            log: Mutex::new(VecDeque::new()),
            log_limit: config.log_limit,
            requests_total: AtomicU64::new(0),
            started: Instant::now(),
            in_flight: AtomicU64::new(0),
            bucket: config.rate_limit.as_ref().map(Bucket::new),
            retry_after: config.rate_limit.as_ref().and_then(|limit| limit.retry_after),
            throttled: AtomicU64::new(0),
        })
    }

    fn add_batch(&self, mut spec: BatchSpec) -> io::Result<String> {
        let records = spec.records.take().map(Records::new).transpose()?;
        if records.is_some() && !spec_is_plain(&spec) {
            return Err(invalid(
                "records= serves exactly the records given: leave files, statuses and changes out".to_string(),
            ));
        }
        let cdf = match &spec.statuses {
            Some(statuses) => status_weights(Some(statuses))?,
            None => self.cdf,
        };
        let processing = match spec.processing_seconds {
            Some(seconds) => processing_time(Some(seconds))?,
            None => self.processing,
        };
        let changes = Changes {
            grow_per_request: spec.grow_per_request,
            grow_at: spec.grow_at,
            complete_per_request: spec.complete_per_request,
            processing,
        };
        let rank = self.batches_created.fetch_add(1, Ordering::Relaxed);
        let id = spec.batch_id.unwrap_or_else(|| batch_uuid(spec.seed, rank));
        if spec.without_totals {
            lock(&self.without_totals).insert(id.clone());
        } else {
            lock(&self.without_totals).remove(&id);
        }
        if let Some(records) = records {
            lock(&self.batches).remove(&id);
            lock(&self.records).insert(id.clone(), Arc::new(records));
        } else {
            let batch = Batch::new(spec.seed, spec.files, changes, cdf);
            lock(&self.records).remove(&id);
            lock(&self.batches).insert(id.clone(), (rank, Arc::new(Mutex::new(batch))));
        }
        Ok(id)
    }

    fn records(&self, id: &str) -> Option<Arc<Records>> {
        lock(&self.records).get(id).map(Arc::clone)
    }

    fn totals(&self, id: &str) -> bool {
        !lock(&self.without_totals).contains(id)
    }

    /// The record with this `"file_id"` in a batch of given records.
    fn record_file(&self, file_id: &str) -> Option<Vec<u8>> {
        let all: Vec<Arc<Records>> = lock(&self.records).values().map(Arc::clone).collect();
        all.iter().find_map(|records| records.find(file_id).map(|json| json.as_bytes().to_vec()))
    }

    fn batch(&self, id: &str) -> Option<Arc<Mutex<Batch>>> {
        lock(&self.batches).get(id).map(|(_, batch)| Arc::clone(batch))
    }

    /// The file with this id, from the first batch created that holds it, with that batch's seed.
    fn file(&self, file_id: &str) -> Option<(u64, Item)> {
        let mut batches: Vec<_> = lock(&self.batches).values().map(|(rank, b)| (*rank, Arc::clone(b))).collect();
        batches.sort_by_key(|(rank, _)| *rank);
        batches.into_iter().find_map(|(_, batch)| {
            let mut batch = lock(&batch);
            batch.advance();
            batch.find(file_id).map(|item| (batch.seed, item))
        })
    }

    /// Whether the rate limit refuses a request arriving now (counted if so).
    fn throttles(&self) -> bool {
        let refused = self.bucket.as_ref().is_some_and(|bucket| !bucket.take(Instant::now()));
        if refused {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        refused
    }

    fn log(&self, record: RequestRecord) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let mut log = lock(&self.log);
        if log.len() >= self.log_limit {
            log.pop_front();
        }
        if self.log_limit > 0 {
            log.push_back(record);
        }
    }
}

/// Counts a request in flight at the server until dropped, when its answer is built (or the
/// client went away first and hyper dropped the handler).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    /// Counts one more; returns the guard and the count, this request included.
    fn enter(counter: &'a AtomicU64) -> (InFlight<'a>, u64) {
        (InFlight(counter), counter.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A poisoned lock only means a test thread panicked: the data is still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: StdTcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, Arc::clone(&state), stopped.clone()));
                }
                // Out of file descriptors, or the like: wait for some to close.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(1), drain).await.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let service = service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    let connection = http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

enum Route {
    Results(String),
    Download(String),
    File(String),
    Status(String),
    WrongMethod,
    NotFound,
}

impl Route {
    /// An endpoint of the API (auth, faults and redirects apply).
    fn is_api(&self) -> bool {
        matches!(self, Route::Results(_) | Route::Download(_) | Route::File(_) | Route::Status(_))
    }
}

/// `/transcribe/{results/batch|download/batch|results/file|status/batch}/{one percent-encoded segment}`.
fn route(method: &Method, path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/transcribe/") else {
        return Route::NotFound;
    };
    let endpoints: [(&str, fn(String) -> Route); 4] = [
        ("results/batch/", Route::Results),
        ("download/batch/", Route::Download),
        ("results/file/", Route::File),
        ("status/batch/", Route::Status),
    ];
    let Some((segment, endpoint)) = endpoints.iter().find_map(|(prefix, e)| Some((rest.strip_prefix(prefix)?, e)))
    else {
        return Route::NotFound;
    };
    if segment.is_empty() || segment.contains('/') {
        return Route::NotFound;
    }
    if method != Method::GET {
        return Route::WrongMethod;
    }
    endpoint(percent_decode_str(segment).decode_utf8_lossy().into_owned())
}

/// An answer before faults and encoding are applied.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A download: the body is rendered as it is sent.
    stream: Option<Box<DownloadBody>>,
}

impl Reply {
    fn json(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply { status, body, headers: Vec::new(), stream: None }
    }

    fn streamed(body: DownloadBody) -> Reply {
        Reply { stream: Some(Box::new(body)), ..Reply::json(StatusCode::OK, Vec::new()) }
    }

    fn with_header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<MockBody> {
    let (_in_flight, in_flight) = InFlight::enter(&state.in_flight);
    let arrived = state.started.elapsed();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let header = |name| request.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let authorization = header(header::AUTHORIZATION).map(str::to_string);
    let accept_encoding = header(header::ACCEPT_ENCODING).map(str::to_string);
    let route = route(request.method(), &path);
    // The rate limit comes first, as at a gateway: a throttled request reaches nothing else.
    let throttled = route.is_api() && state.throttles();

    let redirect = match (&route, &state.redirect_to) {
        (route, Some(base)) if route.is_api() && !throttled => {
            let rest = path.strip_prefix("/transcribe").unwrap_or(&path);
            Some(if query.is_empty() { format!("{base}{rest}") } else { format!("{base}{rest}?{query}") })
        }
        _ => None,
    };
    let fault = if route.is_api() && redirect.is_none() && !throttled { lock(&state.faults).next() } else { None };
    if fault.is_some() {
        state.faults_injected.fetch_add(1, Ordering::Relaxed);
    }
    let token = authorization.as_deref().and_then(bearer_token);
    state.log(RequestRecord {
        method: request.method().to_string(),
        path: path.clone(),
        query: query.clone(),
        auth_present: authorization.is_some(),
        authorized: token == Some(state.token.as_str()),
        accept_encoding: accept_encoding.clone(),
        fault: fault.as_ref().map(|f| f.kind.label()),
        in_flight,
        throttled,
        arrived,
    });

    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let reply = if throttled {
        throttled_reply(state.retry_after)
    } else if let Some(location) = redirect {
        Reply::json(StatusCode::TEMPORARY_REDIRECT, Vec::new()).with_header(header::LOCATION, &location)
    } else if let Some(reply) = fault_reply(fault.as_ref()) {
        reply
    } else {
        if let Some(Fault { kind: FaultKind::Stall(pause), .. }) = &fault {
            tokio::time::sleep(*pause).await;
        }
        // Routing comes before auth, as in FastAPI: an unknown path is a 404 for anyone.
        match token {
            _ if matches!(route, Route::NotFound | Route::WrongMethod) => answer(state, route, &query, 0),
            None => Reply::json(StatusCode::UNAUTHORIZED, bodies::detail("Not authenticated"))
                .with_header(header::WWW_AUTHENTICATE, "Bearer"),
            Some(t) if t != state.token => Reply::json(StatusCode::UNAUTHORIZED, bodies::detail("Invalid token"))
                .with_header(header::WWW_AUTHENTICATE, "Bearer"),
            Some(_) => answer(state, route, &query, shift(fault.as_ref())),
        }
    };
    let gzip = state.gzip && accept_encoding.as_deref().is_some_and(accepts_gzip);
    finish(reply, fault.as_ref(), gzip)
}

/// `Bearer <token>` (the scheme is case-insensitive) to the token.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The faults that replace the answer altogether.
fn fault_reply(fault: Option<&Fault>) -> Option<Reply> {
    let fault = fault?;
    match &fault.kind {
        FaultKind::Status(code) => Some(status_reply(*code)),
        FaultKind::StatusRetryAfter { code, retry_after } => {
            Some(status_reply(*code).with_header(header::RETRY_AFTER, retry_after))
        }
        FaultKind::RateLimited { retry_after } => {
            let reply = Reply::json(StatusCode::TOO_MANY_REQUESTS, bodies::detail("Too Many Requests"))
                .with_header(header::RETRY_AFTER, retry_after);
            Some(match fault.retry_after_ms {
                Some(ms) => reply.with_header(HeaderName::from_static("retry-after-ms"), &ms.to_string()),
                None => reply,
            })
        }
        FaultKind::CutBody | FaultKind::MalformedJson | FaultKind::Stall(_) | FaultKind::Shift(_) => None,
    }
}

/// An injected error status, with a JSON body giving its reason.
fn status_reply(code: u16) -> Reply {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    Reply::json(status, bodies::detail(status.canonical_reason().unwrap_or("Injected fault")))
}

/// The answer above the rate limit: 429, with `Retry-After` unless the server sends none.
fn throttled_reply(retry_after: Option<f64>) -> Reply {
    let reply = Reply::json(StatusCode::TOO_MANY_REQUESTS, bodies::detail("Too Many Requests"));
    let headers = retry_after.map(retry_after_headers).unwrap_or_default();
    headers.into_iter().fold(reply, |reply, (name, value)| reply.with_header(HeaderName::from_static(name), &value))
}

/// How many records a `Shift` fault moves the page back by.
fn shift(fault: Option<&Fault>) -> u64 {
    match fault.map(|f| &f.kind) {
        Some(FaultKind::Shift(n)) => *n,
        _ => 0,
    }
}

fn answer(state: &State, route: Route, query: &str, shift: u64) -> Reply {
    match route {
        Route::NotFound => Reply::json(StatusCode::NOT_FOUND, bodies::detail("Not Found")),
        Route::WrongMethod => Reply::json(StatusCode::METHOD_NOT_ALLOWED, bodies::detail("Method Not Allowed"))
            .with_header(header::ALLOW, "GET"),
        Route::Status(id) => match state.batch(&id) {
            None => match state.records(&id) {
                Some(records) => Reply::json(StatusCode::OK, records.status(&id)),
                None => Reply::json(state.not_found_status, bodies::BATCH_NOT_FOUND.to_vec()),
            },
            Some(batch) => {
                let mut batch = lock(&batch);
                batch.advance();
                let body = bodies::batch_status(&id, &batch);
                batch.answered();
                Reply::json(StatusCode::OK, body)
            }
        },
        Route::File(id) => {
            let (chunks, speech) = match parse_file_query(query) {
                Ok(options) => options,
                Err(body) => return Reply::json(StatusCode::UNPROCESSABLE_ENTITY, body.to_string().into_bytes()),
            };
            match state.file(&id) {
                None => match state.record_file(&id) {
                    Some(record) => Reply::json(StatusCode::OK, record),
                    None => Reply::json(state.not_found_status, bodies::FILE_NOT_FOUND.to_vec()),
                },
                Some((seed, item)) => Reply::json(StatusCode::OK, bodies::file(seed, item, Include { chunks, speech })),
            }
        }
        Route::Download(id) => download(state, id, query),
        Route::Results(id) => {
            let q = match parse_results_query(query) {
                Ok(q) => q,
                Err(body) => return Reply::json(StatusCode::UNPROCESSABLE_ENTITY, body.to_string().into_bytes()),
            };
            let offset = (q.page - 1).saturating_mul(q.limit).saturating_sub(shift);
            let totals = state.totals(&id);
            if let Some(records) = state.records(&id) {
                let (total, page) = records.select(q.status, offset, q.limit);
                let body = bodies::page_of(&id, &q, total, totals, page.len(), |out, n| {
                    out.extend_from_slice(page[n].as_bytes())
                });
                return Reply::json(StatusCode::OK, body);
            }
            let Some(batch) = state.batch(&id) else {
                return match q.status {
                    None => Reply::json(state.not_found_status, bodies::BATCH_NOT_FOUND.to_vec()),
                    Some(_) => Reply::json(StatusCode::OK, bodies::page(&id, &q, 0, &Default::default(), true)),
                };
            };
            let (selection, seed) = {
                let mut batch = lock(&batch);
                batch.advance();
                let selection = if q.raw {
                    batch.select_jobs(q.status, offset, q.limit)
                } else {
                    batch.select_files(q.status, offset, q.limit)
                };
                batch.answered();
                (selection, batch.seed)
            };
            Reply::json(StatusCode::OK, bodies::page(&id, &q, seed, &selection, totals))
        }
    }
}

/// `GET /download/batch/{id}`: the batch's records streamed; a missing batch as the pages say it
/// (`{"error": "batch not found"}`, or nothing at all with a status filter).
fn download(state: &State, id: String, query: &str) -> Reply {
    let (q, format) = match parse_download_query(query) {
        Ok(parsed) => parsed,
        Err(body) => return Reply::json(StatusCode::UNPROCESSABLE_ENTITY, body.to_string().into_bytes()),
    };
    let source = match (state.records(&id), state.batch(&id)) {
        (Some(records), _) => Source::Given(records),
        (None, Some(batch)) => {
            let seed = {
                let mut batch = lock(&batch);
                batch.advance();
                batch.answered();
                batch.seed
            };
            Source::Generated { batch, batch_id: id, seed }
        }
        (None, None) if q.status.is_some() => return Reply::streamed(DownloadBody::new(Source::empty(), q, format)),
        (None, None) => return Reply::json(state.not_found_status, bodies::BATCH_NOT_FOUND.to_vec()),
    };
    Reply::streamed(DownloadBody::new(source, q, format))
}

/// Whether an Accept-Encoding value allows gzip (an explicit `gzip;q=0` forbids it).
fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut wildcard = false;
    for entry in accept_encoding.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        wildcard |= coding == "*" && q > 0.0;
    }
    wildcard
}

/// Bodies smaller than this go uncompressed, as Starlette's GZipMiddleware does.
const GZIP_MIN_BYTES: usize = 500;

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

fn finish(reply: Reply, fault: Option<&Fault>, accepts_gzip: bool) -> Response<MockBody> {
    if let Some(stream) = reply.stream {
        return finish_stream(*stream, reply.headers, fault, accepts_gzip);
    }
    let mut status = reply.status;
    let mut body = reply.body;
    if let Some(Fault { kind: FaultKind::MalformedJson, truncate, .. }) = fault {
        status = StatusCode::OK;
        body = malform(&body, *truncate);
    }
    let mut response = Response::builder().status(status);
    let headers = response.headers_mut().expect("a fresh builder");
    if !body.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if accepts_gzip && body.len() >= GZIP_MIN_BYTES {
        body = gzip(&body);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    for (name, value) in reply.headers {
        headers.insert(name, value);
    }
    let body = match fault {
        Some(Fault { kind: FaultKind::CutBody, .. }) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            MockBody::cut(body)
        }
        _ => MockBody::Full(Some(Bytes::from(body))),
    };
    response.body(body).expect("valid parts")
}

/// A download's answer: chunked, compressed frame by frame when allowed; a cut drops the
/// connection in the middle of its middle record, a malformed one garbles that record's line.
fn finish_stream(
    mut body: DownloadBody,
    headers: Vec<(HeaderName, HeaderValue)>,
    fault: Option<&Fault>,
    accepts_gzip: bool,
) -> Response<MockBody> {
    let middle = body.total() / 2;
    match fault {
        Some(Fault { kind: FaultKind::CutBody, .. }) => body.spoil(Spoil::CutAt(middle)),
        Some(Fault { kind: FaultKind::MalformedJson, truncate, .. }) => body.spoil(Spoil::GarbleAt(middle, *truncate)),
        _ => {}
    }
    let mut response = Response::builder().status(StatusCode::OK);
    let map = response.headers_mut().expect("a fresh builder");
    map.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    if accepts_gzip {
        body.gzip();
        map.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    map.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    for (name, value) in headers {
        map.insert(name, value);
    }
    response.body(MockBody::Stream(Box::new(body))).expect("valid parts")
}

/// A response body: whole, cut short (the connection drops after part of it), or a download
/// rendered as it is sent.
enum MockBody {
    Full(Option<Bytes>),
    Cut { head: Option<Bytes>, pause: Pin<Box<tokio::time::Sleep>> },
    Stream(Box<DownloadBody>),
}

impl MockBody {
    fn cut(body: Vec<u8>) -> MockBody {
        let mut head = Bytes::from(body);
        head.truncate(head.len() / 2);
        // The pause lets hyper flush the head before the error closes the connection.
        MockBody::Cut { head: Some(head), pause: Box::pin(tokio::time::sleep(Duration::from_millis(20))) }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Cut { head, pause } => {
                if let Some(head) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                pause
                    .as_mut()
                    .poll(cx)
                    .map(|()| Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "mock fault: body cut"))))
            }
            MockBody::Stream(body) => body.poll_next(cx).map(|frame| frame.map(|bytes| bytes.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            // Unknown, so that hyper keeps the Content-Length header of the whole body.
            MockBody::Cut { .. } => SizeHint::default(),
            // Unknown: sent chunked.
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}
