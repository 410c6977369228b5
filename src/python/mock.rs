//! `_core.MockServer`: the embedded mock server ([`crate::mock`]) for Python tests and demos.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::mock::{BatchSpec, FaultKind, GrowAt, MockConfig, MockServer};

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

#[pymethods]
impl PyMockServer {
    #[new]
    #[pyo3(signature = (
        files = 1000, *, seed = 0, token = "test-token", latency_ms = 0, fault_rate = 0.0, statuses = None,
        batch_id = None, host = "127.0.0.1", port = 0, gzip = true, not_found_status = 404, redirect_to = None,
        processing_seconds = None, log_limit = 100_000,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        files: u64,
        seed: u64,
        token: &str,
        latency_ms: u64,
        fault_rate: f64,
        statuses: Option<HashMap<String, f64>>,
        batch_id: Option<String>,
        host: &str,
        port: u16,
        gzip: bool,
        not_found_status: u16,
        redirect_to: Option<String>,
        processing_seconds: Option<f64>,
        log_limit: usize,
    ) -> PyResult<Self> {
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

    /// Base URL for a client: `http://127.0.0.1:PORT/transcribe`.
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

    /// Adds a batch to this server and returns its id.
    ///
    /// `grow_per_request > 0` makes a batch that is still processing: after answering each
    /// request to it (results or status, not one answered by a fault), it gains that many files
    /// at the end, or at the front with `grow_at="front"` (the files there move back; each
    /// keeps its `file_id` and content). `complete_per_request=N`: after answering each such
    /// request, the first N files (in batch order) that are `processing` become `completed`
    /// (before files are gained). `processing_seconds` and `statuses` are as for the server
    /// (None: the server's). Every change is exact and deterministic for an order of requests.
    #[pyo3(signature = (
        files, *, seed = 0, batch_id = None, grow_per_request = 0, grow_at = "end",
        complete_per_request = 0, processing_seconds = None, statuses = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn add_batch(
        &self,
        py: Python<'_>,
        files: u64,
        seed: u64,
        batch_id: Option<String>,
        grow_per_request: u64,
        grow_at: &str,
        complete_per_request: u64,
        processing_seconds: Option<f64>,
        statuses: Option<HashMap<String, f64>>,
    ) -> PyResult<String> {
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
        };
        py.detach(|| self.server().add_batch(spec)).map_err(to_pyerr)
    }

    /// Makes the next `times` API requests misbehave, before any random fault.
    ///
    /// `kind` is `"status"` (answer `status`, default 503, with a JSON body), `"429"` (with
    /// `Retry-After: retry_after`, default `"0"`), `"cut"` (the connection drops mid-body),
    /// `"malformed"` (200 with broken JSON), `"stall"` (wait `stall_s` seconds, default 1.0,
    /// then answer) or `"shift"` (answer a page as if `shift_by` records, default 1, had been
    /// inserted before it, so it repeats records of the page before). Others raise ValueError.
    #[pyo3(signature = (kind, times = 1, *, status = None, retry_after = None, stall_s = None, shift_by = None))]
    fn fail_next(
        &self,
        kind: &str,
        times: u32,
        status: Option<u16>,
        retry_after: Option<&Bound<'_, PyAny>>,
        stall_s: Option<f64>,
        shift_by: Option<u64>,
    ) -> PyResult<()> {
        let fault = match kind {
            "status" => {
                let code = status.unwrap_or(503);
                if !(100..=999).contains(&code) {
                    return Err(PyValueError::new_err(format!("status must be an HTTP status code, not {code}")));
                }
                FaultKind::Status(code)
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

    /// The request log, oldest first (the last `log_limit` requests): dicts with `method`,
    /// `path` (as sent, percent-encoded), `query`, `auth_present`, `authorized`,
    /// `accept_encoding` and `fault` (what was injected, or None).
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

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
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
