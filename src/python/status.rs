//! The answers of `Client.status` and `Client.get_file` as Python objects: `st.BatchStatus`,
//! and a file's record as a dict (or `st.FileResult`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use crate::error::Error;
use crate::status::BatchStatus;

use super::errors::to_pyerr;
// One record: jiter alone (exact for integers beyond 64 bits); orjson's edge is on whole pages.
use super::page::PARSER;


static MODELS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn model<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let models = MODELS.get_or_try_init(py, || PyModule::import(py, "soket_transcribe.models").map(Bound::unbind))?;
    models.bind(py).getattr(name)
}

/// `st.BatchStatus` from the core's answer: named fields, and the rest in `extra`.
pub fn batch_status<'py>(py: Python<'py>, status: &BatchStatus) -> PyResult<Bound<'py, PyAny>> {
    let answer = pythonize::pythonize(py, status)?;
    model(py, "BatchStatus")?.call_method1("from_dict", (answer,))
}

/// A file's record from its JSON object, as a dict or (`as_dataclass`) an `st.FileResult`.
pub fn file_record<'py>(py: Python<'py>, json: &[u8], as_dataclass: bool) -> PyResult<Bound<'py, PyAny>> {
    let record = PARSER
        .python_parse(py, json)
        .map_err(|e| to_pyerr(Error::format(format!("the file answer is not valid JSON: {e}"), json, true)))?;
    if as_dataclass {
        model(py, "FileResult")?.call_method1("from_dict", (record,))
    } else {
        Ok(record)
    }
}
