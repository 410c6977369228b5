//! The one place where core errors become Python exceptions (defined in `soket_transcribe.errors`).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::error::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(err: &Error) -> &'static str {
    match err {
        Error::Api { status, .. } => match status {
            401 => "AuthenticationError",
            403 => "PermissionDeniedError",
            404 => "NotFoundError",
            400 | 422 => "InvalidRequestError",
            429 => "RateLimitError",
            500..=599 => "ServerError",
            _ => "APIError",
        },
        Error::BatchNotFound { .. } => "BatchNotFoundError",
        Error::Connection { timeout: true, .. } => "APITimeoutError",
        Error::Connection { timeout: false, .. } => "APIConnectionError",
        Error::Format { .. } => "ResponseFormatError",
        Error::InvalidArgument(_) | Error::Internal(_) => unreachable!("not an API error"),
    }
}

pub fn to_pyerr(err: Error) -> PyErr {
    match err {
        Error::InvalidArgument(message) => PyValueError::new_err(message),
        Error::Internal(message) => PyRuntimeError::new_err(message),
        err => Python::attach(|py| match build(py, &err) {
            Ok(e) => e,
            Err(e) => e,
        }),
    }
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let module = ERRORS.get_or_try_init(py, || PyModule::import(py, "soket_transcribe.errors").map(Bound::unbind))?;
    let class = module.bind(py).getattr(class_name(err))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("page", err.page())?;
    match err {
        Error::Api { status, body, .. } | Error::BatchNotFound { status, body, .. } => {
            kwargs.set_item("status_code", status)?;
            kwargs.set_item("body", body)?;
        }
        Error::Format { excerpt, .. } => kwargs.set_item("excerpt", excerpt)?,
        _ => {}
    }
    let exc = class.call((err.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(exc))
}

/// For the `?` operator in binding code.
pub trait IntoPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}
