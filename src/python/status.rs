//! The answers of `Client.status` and `Client.get_file` as Python objects: `st.BatchStatus`,
//! and a file's record as a dict (or `st.FileResult`).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::error::Error;
use crate::status::{BatchStatus, Polled, Stage};

use super::errors::to_pyerr;
// One record: jiter alone (exact for integers beyond 64 bits); orjson's edge is on whole pages.
use super::page::PARSER;

static MODELS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn model<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let models = MODELS.get_or_try_init(py, || PyModule::import(py, "soket_transcribe.models").map(Bound::unbind))?;
    models.bind(py).getattr(name)
}

/// `st.BatchStatus` built once, from the core's parsed answer: its fields, the unnamed ones in
/// `extra` (taken apart whole, so that a field added to the core's struct must be handed on).
pub fn batch_status<'py>(py: Python<'py>, answer: &BatchStatus) -> PyResult<Bound<'py, PyAny>> {
    let BatchStatus {
        batch_id,
        status,
        total_files,
        files_completed,
        files_failed,
        estimated_audio_seconds,
        estimated_completion_seconds,
        extra,
    } = answer;
    let fields = PyDict::new(py);
    fields.set_item("batch_id", batch_id)?;
    fields.set_item("status", status)?;
    fields.set_item("total_files", total_files)?;
    fields.set_item("files_completed", files_completed)?;
    fields.set_item("files_failed", files_failed)?;
    fields.set_item("estimated_audio_seconds", estimated_audio_seconds)?;
    fields.set_item("estimated_completion_seconds", estimated_completion_seconds)?;
    fields.set_item("extra", pythonize::pythonize(py, extra)?)?;
    model(py, "BatchStatus")?.call((), Some(&fields))
}

/// A file's record from its JSON object, as a dict or (`as_dataclass`) an `st.FileResult`.
pub fn file_record<'py>(py: Python<'py>, json: &[u8], as_dataclass: bool) -> PyResult<Bound<'py, PyAny>> {
    // jiter refuses a lone surrogate escape, which Python's `json` keeps (as for a page's records).
    let record = match PARSER.python_parse(py, json) {
        Ok(record) => record,
        Err(e) => super::page::json_loads(py, json)
            .map_err(|_| to_pyerr(Error::format(format!("the file answer is not valid JSON: {e}"), json, true)))?,
    };
    if as_dataclass {
        model(py, "FileResult")?.call_method1("from_dict", (record,))
    } else {
        Ok(record)
    }
}

/// One poll of `wait` for Python: `(st.BatchStatus, None)`, or `(None, why)` when the time
/// ran out first (`why`: the last failure's message, None when no request failed).
pub type WaitPoll<'py> = (Option<Bound<'py, PyAny>>, Option<String>);

pub fn polled<'py>(py: Python<'py>, polled: Polled) -> PyResult<WaitPoll<'py>> {
    match polled {
        Polled::Answered(status) => Ok((Some(batch_status(py, &status)?), None)),
        Polled::OutOfTime(failure) => Ok((None, failure.map(|e| e.to_string()))),
    }
}

/// The time a poll may take: `seconds` left (none: unbounded; a deadline passed: none left).
pub fn within(seconds: Option<f64>) -> Option<Duration> {
    seconds.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
}

/// `st.BatchStatus.stage`: the core's rule ([`BatchStatus::stage`]) on the Python object's fields.
#[pyfunction]
#[pyo3(signature = (status, total_files, files_completed, files_failed))]
pub fn _batch_stage(
    status: &str,
    total_files: Option<u64>,
    files_completed: Option<u64>,
    files_failed: Option<u64>,
) -> &'static str {
    let answer = BatchStatus {
        batch_id: None,
        status: status.to_owned(),
        total_files,
        files_completed,
        files_failed,
        estimated_audio_seconds: None,
        estimated_completion_seconds: None,
        extra: serde_json::Map::new(),
    };
    match answer.stage() {
        Stage::Final => "final",
        Stage::Running => "running",
        Stage::Unknown => "unknown",
    }
}
