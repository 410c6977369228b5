//! The bindings: thin adapters from the core to Python types. No logic of their own.

mod cache;
mod client;
mod errors;
mod mock;
mod names;
mod page;
mod query;
mod records;
mod status;
mod stream;
mod table;
mod wait;

use std::sync::OnceLock;

use pyo3::prelude::*;

static LOG_CACHE: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Rust `log` records go to Python's `logging` (logger `soket_transcribe.*`).
pub fn init_logging(py: Python<'_>) {
    // Our own records only: a dependency's (rustls says why a certificate failed) would reach
    // stderr through logging's last resort, though the error it explains is raised anyway.
    let installed = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels).map_err(|_| ()).and_then(|logger| {
        logger
            .filter(log::LevelFilter::Off)
            .filter_target(env!("CARGO_CRATE_NAME").to_owned(), log::LevelFilter::Debug)
            .install()
            .map_err(|_| ())
    });
    if let Ok(handle) = installed {
        let _ = LOG_CACHE.set(handle);
    }
}

/// Levels are cached so that tokio threads need not take the GIL to learn a record is off;
/// each new call picks up levels changed since (`logging.basicConfig` in a notebook).
pub fn refresh_logging() {
    if let Some(handle) = LOG_CACHE.get() {
        handle.reset();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(wait::_shutdown, m)?)?;
    m.add_class::<client::PyClient>()?;
    m.add_class::<page::PyPage>()?;
    m.add_class::<stream::PyPageStream>()?;
    m.add_class::<stream::PyFetchedPage>()?;
    m.add_class::<stream::PyReady>()?;
    m.add_function(wrap_pyfunction!(records::as_dataclasses, m)?)?;
    m.add_function(wrap_pyfunction!(status::_batch_stage, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_error_classes, m)?)?;
    cache::register(m)?;
    wait::register(m)?;
    mock::register(m)?;
    table::register(m)?;
    names::register(m)?;
    Ok(())
}
