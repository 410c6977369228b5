//! The bindings: thin adapters from the core to Python types. No logic of their own.

mod client;
mod errors;
mod mock;
mod page;
mod stream;
mod wait;

use pyo3::prelude::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::PyClient>()?;
    m.add_class::<page::PyPage>()?;
    m.add_class::<stream::PageStream>()?;
    mock::register(m)?;
    Ok(())
}
