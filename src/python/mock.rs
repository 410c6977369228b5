//! `_core.MockServer`: the embedded mock server ([`crate::mock`]) for Python tests and demos.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::mock::{BatchSpec, FaultKind, GrowAt, MockConfig, MockServer, RateLimit};

/// The embedded mock of the Soket AI results API: a real HTTP server on its own thread, listening
/// once created; a context manager (`with MockServer() as srv:`) that stops it on exit.
///
///     from soket_transcribe.testing import MockServer
///
///     with MockServer(files=5000, fault_rate=0.05) as srv:
///         client = soket_transcribe.Client(token=srv.token, base_url=srv.url)
///         files = list(client.iter_files(srv.batch_id))
///
/// It serves `GET {url}/results/batch/{batch_id}`, `/results/file/{file_id}` and
/// `/status/batch/{batch_id}` with deterministic, realistic records.
///
/// Args:
///     files: number of files in the default batch.
///     seed: seeds the records, the default batch id and the random faults: the same seed
///         gives the same records and, for the same order of requests, the same faults.
///     token: the Bearer token requests must carry (others get 401).
///     latency_ms: added to every request before it is answered.
///     fault_rate: fraction (0..1) of API requests that answer 503, 429 (with
///         `Retry-After: 0`), a body cut mid-way, or malformed JSON.
///     statuses: weights of the file statuses, e.g. `{"completed": 0.9, "failed": 0.1}`;
///         names left out weigh 0. None: 0.85 completed, 0.10 failed, 0.03 retrying,
///         0.02 processing.
///     batch_id: id of the default batch (None: a uuid derived from `seed`).
///     host, port: where to listen (port 0: an ephemeral one).
///     gzip: compress bodies when the request's Accept-Encoding allows it.
///     not_found_status: HTTP status sent with `{"error": "batch not found"}` (or file).
///     redirect_to: a base URL (another server's `url`): every API request then answers 307
///         to the same path and query under it.
///     processing_seconds: None: `processing`/`retrying` files stay so. A number S: each
///         reaches its final status (completed or failed, drawn per file) at a moment within
///         S seconds after it joined its batch; the results and status endpoints agree at
///         every moment, and the batch's status is `completed` once none is left.
///     log_limit: the request log (`requests`) keeps the last this many requests, about
///         600 bytes each, so that a long-running server stays bounded; `requests_total`
///         counts them all.
///     rate_limit: None: no limit. A number R: a token bucket of `burst` tokens refilled at R
///         per second, shared by every endpoint and connection; an API request that finds it
///         empty answers 429 (before auth, faults and redirects) and counts in `throttled`.
///     burst: the bucket's size, full at the start (None: R rounded up).
///     retry_after: seconds sent with each such 429 in `Retry-After` (whole seconds, rounded
///         up) and, when fractional, exactly in `retry-after-ms`; None: no header.
///
/// Integer arguments out of range (e.g. negative) raise ValueError naming the argument.
#[pyclass(frozen, subclass, name = "MockServer", module = "soket_transcribe.testing")]
pub struct PyMockServer {
    // Locked only without the GIL held, or for calls that never wait: no deadlock with it.
    server: Mutex<MockServer>,
    url: String,
    port: u16,
    token: String,
    batch_id: String,
}

impl PyMockServer {
    fn server(&self) -> MutexGuard<'_, MockServer> {
        self.server.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn to_pyerr(err: io::Error) -> PyErr {
    match err.kind() {
        io::ErrorKind::InvalidInput => PyValueError::new_err(err.to_string()),
        _ => err.into(),
    }
}

const FAULT_KINDS: &str = "'status', '429', 'cut', 'malformed', 'stall' or 'shift'";

/// `#[pyo3(from_py_with = ...)]` extractors of integer arguments: one outside its type's range
/// is a ValueError naming the argument, where PyO3 would raise a bare OverflowError.
mod int_arg {
    use super::*;

    fn in_range<'py, T>(value: &Bound<'py, PyAny>, name: &str, max: u128) -> PyResult<T>
    where
        T: for<'a> FromPyObject<'a, 'py>,
    {
        value.extract::<T>().map_err(|err| {
            let err: PyErr = err.into();
            if err.is_instance_of::<PyOverflowError>(value.py()) {
                PyValueError::new_err(format!("{name} must be an integer from 0 to {max}, not {value}"))
            } else {
                err
            }
        })
    }

    macro_rules! int_args {
        ($($name:ident: $ty:ty = $max:expr),* $(,)?) => {$(
            pub(super) fn $name(value: &Bound<'_, PyAny>) -> PyResult<$ty> {
                in_range(value, stringify!($name), $max as u128)
            }
        )*};
    }

    int_args!(
        files: u64 = u64::MAX, seed: u64 = u64::MAX, latency_ms: u64 = u64::MAX, port: u16 = u16::MAX,
        not_found_status: u16 = u16::MAX, log_limit: usize = usize::MAX, burst: Option<u32> = u32::MAX,
        grow_per_request: u64 = u64::MAX, complete_per_request: u64 = u64::MAX, times: u32 = u32::MAX,
        status: Option<u16> = u16::MAX, shift_by: Option<u64> = u64::MAX,
    );
}

/// `add_batch(records=)`: each dict as JSON text, written by Python's `json` (strict: NaN and
/// infinities are refused, as JSON has none).
fn records_json(records: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let py = records.py();
    let dumps = py.import("json")?.getattr("dumps")?;
    let options = PyDict::new(py);
    options.set_item("ensure_ascii", false)?;
    options.set_item("allow_nan", false)?;
    let mut texts = Vec::new();
    for (n, record) in records.try_iter()?.enumerate() {
        let record = record?;
        if !record.is_instance_of::<PyDict>() {
            let kind = record.get_type().name()?;
            return Err(PyValueError::new_err(format!("records[{n}] must be a dict, not {kind}")));
        }
        texts.push(dumps.call((record,), Some(&options))?.extract()?);
    }
    Ok(texts)
}

/// The bucket of `MockServer(rate_limit=, burst=, retry_after=)`, if any.
fn rate_limit(per_second: Option<f64>, burst: Option<u32>, retry_after: Option<f64>) -> PyResult<Option<RateLimit>> {
    let Some(per_second) = per_second else {
        return match burst {
            Some(_) => Err(PyValueError::new_err("burst needs a rate_limit")),
            None => Ok(None),
        };
    };
    // A second's worth, as governor's `Quota::per_second` has it.
    let burst = burst.unwrap_or_else(|| per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
    Ok(Some(RateLimit { per_second, burst, retry_after }))
}

#[pymethods]
impl PyMockServer {
    // The text signature is written out because PyO3 shows `retry_after`'s default, Some(1.0),
    // as `...`: keep it in step with the signature.
    #[new]
    #[pyo3(signature = (
        files = 1000, *, seed = 0, token = "test-token", latency_ms = 0, fault_rate = 0.0, statuses = None,
        batch_id = None, host = "127.0.0.1", port = 0, gzip = true, not_found_status = 404, redirect_to = None,
        processing_seconds = None, log_limit = 100_000, rate_limit = None, burst = None, retry_after = Some(1.0),
    ))]
    #[pyo3(text_signature = "(files=1000, *, seed=0, token='test-token', latency_ms=0, fault_rate=0.0, \
        statuses=None, batch_id=None, host='127.0.0.1', port=0, gzip=True, not_found_status=404, redirect_to=None, \
        processing_seconds=None, log_limit=100000, rate_limit=None, burst=None, retry_after=1.0)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = int_arg::files)] files: u64,
        #[pyo3(from_py_with = int_arg::seed)] seed: u64,
        token: &str,
        #[pyo3(from_py_with = int_arg::latency_ms)] latency_ms: u64,
        fault_rate: f64,
        statuses: Option<HashMap<String, f64>>,
        batch_id: Option<String>,
        host: &str,
        #[pyo3(from_py_with = int_arg::port)] port: u16,
        gzip: bool,
        #[pyo3(from_py_with = int_arg::not_found_status)] not_found_status: u16,
        redirect_to: Option<String>,
        processing_seconds: Option<f64>,
        #[pyo3(from_py_with = int_arg::log_limit)] log_limit: usize,
        rate_limit: Option<f64>,
        #[pyo3(from_py_with = int_arg::burst)] burst: Option<u32>,
        retry_after: Option<f64>,
    ) -> PyResult<Self> {
        let rate_limit = self::rate_limit(rate_limit, burst, retry_after)?;
        let config = MockConfig {
            files,
            seed,
            token: token.to_string(),
            latency_ms,
            fault_rate,
            statuses: statuses.map(|weights| weights.into_iter().collect()),
            batch_id,
            host: host.to_string(),
            port,
            gzip,
            not_found_status,
            redirect_to,
            processing_seconds,
            log_limit,
            rate_limit,
        };
        let server = py.detach(|| MockServer::start(config)).map_err(to_pyerr)?;
        Ok(PyMockServer {
            url: server.url(),
            port: server.port(),
            token: token.to_string(),
            batch_id: server.batch_id().to_string(),
            server: Mutex::new(server),
        })
    }

    /// Base URL for a client: `http://127.0.0.1:PORT/transcribe` (the loopback address when the
    /// server listens on a wildcard one such as `0.0.0.0`).
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the server listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// The Bearer token the server expects.
    #[getter]
    fn token(&self) -> &str {
        &self.token
    }

    /// Id of the default batch.
    #[getter]
    fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// Faults injected so far, scripted and random.
    #[getter]
    fn faults_injected(&self) -> u64 {
        self.server().faults_injected()
    }

    /// Requests answered 429 by the rate limit (`rate_limit=`) so far.
    #[getter]
    fn throttled(&self) -> u64 {
        self.server().throttled()
    }

    /// Adds a batch to this server and returns its id.
    ///
    /// `grow_per_request > 0` makes a batch that is still processing: after answering each
    /// request to it (results or status, not one answered by a fault), it gains that many files
    /// at the end, or at the front with `grow_at="front"` (the files there move back; each
    /// keeps its `file_id` and content). `complete_per_request=N`: after answering each such
    /// request, the first N files (in batch order) that are `processing` become `completed`
    /// (before files are gained). `processing_seconds` and `statuses` are as for the server
    /// (None: the server's). Every change is exact and deterministic for an order of requests.
    ///
    /// `records=[{...}, ...]` makes a batch that serves exactly those dicts, in order, in both
    /// views (`status=` selects them by their `"status"`, `/results/file/` finds them by their
    /// `"file_id"`), for shapes generated records never take; leave `files`, `statuses` and the
    /// changes out. `totals=False`: pages leave out `total_files`/`total_jobs` (`total_pages`
    /// stays), as some services do.
    #[pyo3(signature = (
        files = 0, *, seed = 0, batch_id = None, grow_per_request = 0, grow_at = "end",
        complete_per_request = 0, processing_seconds = None, statuses = None, records = None, totals = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn add_batch(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = int_arg::files)] files: u64,
        #[pyo3(from_py_with = int_arg::seed)] seed: u64,
        batch_id: Option<String>,
        #[pyo3(from_py_with = int_arg::grow_per_request)] grow_per_request: u64,
        grow_at: &str,
        #[pyo3(from_py_with = int_arg::complete_per_request)] complete_per_request: u64,
        processing_seconds: Option<f64>,
        statuses: Option<HashMap<String, f64>>,
        records: Option<&Bound<'_, PyAny>>,
        totals: bool,
    ) -> PyResult<String> {
        let records = records.map(records_json).transpose()?;
        let grow_at = match grow_at {
            "end" => GrowAt::End,
            "front" => GrowAt::Front,
            other => return Err(PyValueError::new_err(format!("grow_at must be 'end' or 'front', not {other:?}"))),
        };
        let spec = BatchSpec {
            files,
            seed,
            batch_id,
            grow_per_request,
            grow_at,
            complete_per_request,
            processing_seconds,
            statuses: statuses.map(|weights| weights.into_iter().collect()),
            records,
            without_totals: !totals,
        };
        py.detach(|| self.server().add_batch(spec)).map_err(to_pyerr)
    }

    /// Makes the next `times` API requests misbehave, before any random fault.
    ///
    /// `kind` is `"status"` (answer `status`, default 503, with a JSON body, and with
    /// `Retry-After: retry_after` when given, as a service under load sends), `"429"` (with
    /// `Retry-After: retry_after`, default `"0"`), `"cut"` (the connection drops mid-body),
    /// `"malformed"` (200 with broken JSON), `"stall"` (wait `stall_s` seconds, default 1.0,
    /// then answer) or `"shift"` (answer a page as if `shift_by` records, default 1, had been
    /// inserted before it, so it repeats records of the page before). Others raise ValueError.
    #[pyo3(signature = (kind, times = 1, *, status = None, retry_after = None, stall_s = None, shift_by = None))]
    fn fail_next(
        &self,
        kind: &str,
        #[pyo3(from_py_with = int_arg::times)] times: u32,
        #[pyo3(from_py_with = int_arg::status)] status: Option<u16>,
        retry_after: Option<&Bound<'_, PyAny>>,
        stall_s: Option<f64>,
        #[pyo3(from_py_with = int_arg::shift_by)] shift_by: Option<u64>,
    ) -> PyResult<()> {
        let fault = match kind {
            "status" => {
                let code = status.unwrap_or(503);
                if !(100..=999).contains(&code) {
                    return Err(PyValueError::new_err(format!("status must be an HTTP status code, not {code}")));
                }
                match retry_after {
                    Some(value) => FaultKind::StatusRetryAfter { code, retry_after: value.str()?.to_string() },
                    None => FaultKind::Status(code),
                }
            }
            "429" => {
                let retry_after = match retry_after {
                    Some(value) => value.str()?.to_string(),
                    None => "0".to_string(),
                };
                FaultKind::RateLimited { retry_after }
            }
            "cut" => FaultKind::CutBody,
            "shift" => FaultKind::Shift(shift_by.unwrap_or(1)),
            "malformed" => FaultKind::MalformedJson,
            "stall" => {
                let seconds = stall_s.unwrap_or(1.0);
                let pause = Duration::try_from_secs_f64(seconds).map_err(|_| {
                    PyValueError::new_err(format!("stall_s must be a duration in seconds, not {seconds}"))
                })?;
                FaultKind::Stall(pause)
            }
            other => {
                return Err(PyValueError::new_err(format!("unknown fault kind {other:?}: expected {FAULT_KINDS}")))
            }
        };
        self.server().fail_next(fault, times);
        Ok(())
    }

    /// Drops the `fail_next` faults not injected yet (so that a server shared between tests
    /// carries none into the next) and returns how many there were.
    fn clear_faults(&self) -> usize {
        self.server().clear_faults()
    }

    /// The request log, oldest first (the last `log_limit` requests): dicts with `method`,
    /// `path` (as sent, percent-encoded), `query`, `auth_present`, `authorized`,
    /// `accept_encoding`, `fault` (what was injected, or None), `in_flight` (requests in flight
    /// at the server when it arrived, itself included; one stays in flight until its answer is
    /// built, latency and stalls included), `throttled` (answered 429 by `rate_limit`) and
    /// `time` (seconds from the server's start to its arrival).
    #[getter]
    fn requests<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let records = self.server().requests();
        records
            .into_iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("method", r.method)?;
                d.set_item("path", r.path)?;
                d.set_item("query", r.query)?;
                d.set_item("auth_present", r.auth_present)?;
                d.set_item("authorized", r.authorized)?;
                d.set_item("accept_encoding", r.accept_encoding)?;
                d.set_item("fault", r.fault)?;
                d.set_item("in_flight", r.in_flight)?;
                d.set_item("throttled", r.throttled)?;
                d.set_item("time", r.arrived.as_secs_f64())?;
                Ok(d)
            })
            .collect()
    }

    /// Requests served since the server started, whether the log still holds them or not.
    #[getter]
    fn requests_total(&self) -> u64 {
        self.server().requests_total()
    }

    /// Empties the request log (`requests_total` keeps counting).
    fn clear_requests(&self) {
        self.server().clear_requests();
    }

    /// Stops the server; requests in flight get a second to finish. The log stays readable.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.server().stop());
    }

    /// Raises RuntimeError on a stopped server, which would refuse every connection.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        if slf.get().server().is_stopped() {
            return Err(PyRuntimeError::new_err("this MockServer was stopped: create a new one"));
        }
        Ok(slf)
    }

    #[pyo3(signature = (_exc_type, _exc_value, _traceback, /))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc_value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) {
        self.stop(py);
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (url, batch_id) = (PyString::new(py, &self.url).repr()?, PyString::new(py, &self.batch_id).repr()?);
        Ok(format!("MockServer(url={url}, batch_id={batch_id})"))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMockServer>()
}
