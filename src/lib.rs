//! soket-transcribe: fetch Soket AI batch transcription results, fast.
//!
//! The core (query, fetch, page, pipeline, runtime) knows nothing of Python;
//! `python` adapts it, `mock` is the embedded test server.

pub mod cache;
pub mod error;
pub mod fetch;
pub mod mock;
pub mod page;
pub mod pipeline;
pub mod projection;
pub mod proxy;
pub mod query;
pub mod rate;
pub mod read;
pub mod retry;
pub mod runtime;
pub mod status;
pub mod table;

mod python;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    python::init_logging(m.py());
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    python::register(m)
}
