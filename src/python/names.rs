//! Column names for Python: the one rule of `table::names`, for readers written in Python
//! (the distributed ones) that must name columns as the tables do.

use pyo3::prelude::*;

use super::errors::IntoPyResult;
use crate::table;

/// The flattened column name of the path `keys` (`["m", "x.y"]` -> `"m.x\\.y"`).
#[pyfunction]
pub fn flat_name(keys: Vec<String>) -> String {
    table::flat_name(&keys)
}

/// The keys of a flattened column name, or of a `fields=` path (`"m.x\\.y"` -> `["m", "x.y"]`).
#[pyfunction]
pub fn split_flat_name(name: &str) -> PyResult<Vec<String>> {
    table::split_flat_name(name).py_err()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(flat_name, m)?)?;
    m.add_function(wrap_pyfunction!(split_flat_name, m)?)?;
    Ok(())
}
