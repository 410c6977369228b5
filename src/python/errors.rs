//! The one place where core errors become Python exceptions (defined in `soket_transcribe.errors`).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::error::{Error, Missing};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The classes of `soket_transcribe.errors` a core error can become, each named once: the
/// variant is the class's name, and `ALL` lists every variant, so that `_error_classes` (checked
/// against the module by tests/test_errors.py) cannot miss one the mapping uses.
macro_rules! ours {
    ($($class:ident),+ $(,)?) => {
        #[allow(clippy::enum_variant_names)]
        #[derive(Clone, Copy)]
        enum Ours { $($class),+ }

        impl Ours {
            const ALL: &'static [Ours] = &[$(Ours::$class),+];

            fn name(self) -> &'static str {
                match self { $(Ours::$class => stringify!($class)),+ }
            }
        }
    };
}

ours!(
    APIError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    BatchNotFoundError,
    FileResultNotFoundError,
    APITimeoutError,
    APIConnectionError,
    ResponseFormatError,
    BatchChangedError,
);

/// The Python class of each core error: a builtin, or one of `soket_transcribe.errors`.
enum Class {
    Builtin(fn(String) -> PyErr),
    Ours(Ours),
}

fn class_of(err: &Error) -> Class {
    match err {
        Error::InvalidArgument(_) => Class::Builtin(PyValueError::new_err),
        // As `threading.Thread.start()` says it when the OS refuses a thread.
        Error::Internal(_) | Error::RuntimeStart(_) => Class::Builtin(PyRuntimeError::new_err),
        Error::Api { status, .. } => Class::Ours(match status {
            401 => Ours::AuthenticationError,
            403 => Ours::PermissionDeniedError,
            404 => Ours::NotFoundError,
            400 | 422 => Ours::InvalidRequestError,
            429 => Ours::RateLimitError,
            500..=599 => Ours::ServerError,
            _ => Ours::APIError,
        }),
        Error::NotFound { what: Missing::Batch, .. } => Class::Ours(Ours::BatchNotFoundError),
        Error::NotFound { what: Missing::File, .. } => Class::Ours(Ours::FileResultNotFoundError),
        Error::Connection { timeout: true, .. } => Class::Ours(Ours::APITimeoutError),
        Error::Connection { timeout: false, .. } => Class::Ours(Ours::APIConnectionError),
        Error::Format { .. } => Class::Ours(Ours::ResponseFormatError),
        Error::BatchChanged { .. } => Class::Ours(Ours::BatchChangedError),
    }
}

/// The name of every class of `soket_transcribe.errors` a core error can become.
#[pyfunction]
pub fn _error_classes() -> Vec<&'static str> {
    Ours::ALL.iter().map(|class| class.name()).collect()
}

pub fn to_pyerr(err: Error) -> PyErr {
    match class_of(&err) {
        Class::Builtin(new_err) => new_err(err.to_string()),
        Class::Ours(class) => Python::attach(|py| build(py, class.name(), &err).unwrap_or_else(|e| e)),
    }
}

fn build(py: Python<'_>, name: &str, err: &Error) -> PyResult<PyErr> {
    let module = ERRORS.get_or_try_init(py, || PyModule::import(py, "soket_transcribe.errors").map(Bound::unbind))?;
    let class = module.bind(py).getattr(name)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("page", err.page())?;
    match err {
        Error::Api { status, body, .. } | Error::NotFound { status, body, .. } => {
            kwargs.set_item("status_code", status)?;
            kwargs.set_item("body", body)?;
        }
        Error::Format { excerpt, .. } => kwargs.set_item("excerpt", excerpt)?,
        _ => {}
    }
    let exc = class.call((err.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(exc))
}

/// For the `?` operator where a core error meets Python's (a `table::PageSource`).
impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        to_pyerr(err)
    }
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
