//! `_core.MockServer`: the embedded mock server ([`crate::mock`]) for Python tests and demos.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::mock::{BatchSpec, FaultKind, GrowAt, MockConfig, MockServer};

/// A running mock of the results API, on its own thread. Stopped by `stop()` or when collected.
#[pyclass(frozen, name = "MockServer", module = "soket_transcribe._core")]
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
        files = 1000, *, seed = 0, token = "test-token".to_string(), latency_ms = 0,
        fault_rate = 0.0, statuses = None, batch_id = None, host = "127.0.0.1".to_string(),
        port = 0, gzip = true, not_found_status = 404, redirect_to = None,
    ), text_signature = "(files=1000, *, seed=0, token='test-token', latency_ms=0, fault_rate=0.0, statuses=None, batch_id=None, host='127.0.0.1', port=0, gzip=True, not_found_status=404, redirect_to=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        files: u64,
        seed: u64,
        token: String,
        latency_ms: u64,
        fault_rate: f64,
        statuses: Option<HashMap<String, f64>>,
        batch_id: Option<String>,
        host: String,
        port: u16,
        gzip: bool,
        not_found_status: u16,
        redirect_to: Option<String>,
    ) -> PyResult<Self> {
        let config = MockConfig {
            files,
            seed,
            token: token.clone(),
            latency_ms,
            fault_rate,
            statuses: statuses.map(|weights| weights.into_iter().collect()),
            batch_id,
            host,
            port,
            gzip,
            not_found_status,
            redirect_to,
            ..MockConfig::default()
        };
        let server = py.detach(|| MockServer::start(config)).map_err(to_pyerr)?;
        Ok(PyMockServer {
            url: server.url(),
            port: server.port(),
            token,
            batch_id: server.batch_id().to_string(),
            server: Mutex::new(server),
        })
    }

    /// Base URL for a client: `http://127.0.0.1:PORT/transcribe`.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

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

    /// Adds a batch and returns its id; `grow_per_request > 0` makes it grow on each request.
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

    /// The next `times` results requests misbehave: kind is 'status' (`status`, default 503),
    /// '429' (`retry_after`, default "0"), 'cut', 'malformed', 'stall' (`stall_s`, default 1.0)
    /// or 'shift' (the page starts `shift_by` records early, default 1).
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

    /// The request log, oldest first: one dict per request.
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

    fn clear_requests(&self) {
        self.server().clear_requests();
    }

    /// Stops the server (requests in flight get 1 s to finish); the log stays readable.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.server().stop());
    }

    fn __repr__(&self) -> String {
        format!("MockServer(url={:?}, batch_id={:?})", self.url, self.batch_id)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMockServer>()
}
