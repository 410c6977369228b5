//! The cache in Python: opening a client's (`cache_dir=`, `cache_max_bytes=`), `cache_info()`
//! and `clear_cache()`, and the same for a directory alone (`soket-transcribe cache` needs no token).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::cache::{Cache, CacheInfo, DEFAULT_MAX_BYTES};

pub const CACHE_DIR_ENV: &str = "SOKET_CACHE_DIR";

/// The cache in `dir` (made if need be), holding at most `max_bytes`; None without a directory.
pub fn open(py: Python<'_>, dir: Option<PathBuf>, max_bytes: Option<i64>) -> PyResult<Option<Arc<Cache>>> {
    let max_bytes = match max_bytes {
        None => DEFAULT_MAX_BYTES,
        Some(n) => u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            PyValueError::new_err(format!("cache_max_bytes must be a positive number of bytes; got {n}"))
        })?,
    };
    let Some(dir) = dir else { return Ok(None) };
    if dir.as_os_str().is_empty() {
        return Err(PyValueError::new_err("cache_dir must not be empty"));
    }
    let cache = py.detach(|| Cache::open(&dir, max_bytes)).map_err(|e| in_dir(&dir, e))?;
    Ok(Some(Arc::new(cache)))
}

/// `{"dir", "entries", "bytes", "batches", "max_bytes"}` of a client's cache.
pub fn info<'py>(py: Python<'py>, cache: &Cache) -> PyResult<Bound<'py, PyDict>> {
    let info = py.detach(|| cache.info()).map_err(|e| in_dir(cache.dir(), e))?;
    let dict = info_dict(py, cache.dir(), info)?;
    dict.set_item("max_bytes", cache.max_bytes())?;
    Ok(dict)
}

/// Removes the entries of `batch_id` (all when None); returns how many went.
pub fn clear(py: Python<'_>, cache: &Cache, batch_id: Option<&str>) -> PyResult<u64> {
    py.detach(|| cache.clear(batch_id)).map_err(|e| in_dir(cache.dir(), e))
}

/// `cache_info()` of the cache in `cache_dir`, with no client (a missing directory is empty).
#[pyfunction]
fn _cache_info(py: Python<'_>, cache_dir: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    if !cache_dir.exists() {
        return info_dict(py, &cache_dir, CacheInfo::default());
    }
    let cache = open(py, Some(cache_dir), None)?.expect("a directory was given");
    let info = py.detach(|| cache.info()).map_err(|e| in_dir(cache.dir(), e))?;
    info_dict(py, cache.dir(), info)
}

/// `clear_cache()` of the cache in `cache_dir`, with no client.
#[pyfunction]
#[pyo3(signature = (cache_dir, batch_id=None))]
fn _clear_cache(py: Python<'_>, cache_dir: PathBuf, batch_id: Option<&str>) -> PyResult<u64> {
    if !cache_dir.exists() {
        return Ok(0);
    }
    let cache = open(py, Some(cache_dir), None)?.expect("a directory was given");
    clear(py, &cache, batch_id)
}

fn info_dict<'py>(py: Python<'py>, dir: &Path, info: CacheInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("dir", dir.to_string_lossy())?;
    dict.set_item("entries", info.entries)?;
    dict.set_item("bytes", info.bytes)?;
    dict.set_item("batches", info.batches)?;
    Ok(dict)
}

/// An I/O error naming the cache directory, as the `OSError` subclass of its kind.
fn in_dir(dir: &Path, err: io::Error) -> PyErr {
    io::Error::new(err.kind(), format!("cache directory {}: {err}", dir.display())).into()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_cache_info, m)?)?;
    m.add_function(wrap_pyfunction!(_clear_cache, m)?)
}
