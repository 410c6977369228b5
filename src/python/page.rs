//! `st.Page`: one page, its records parsed once, straight from the body into Python objects.

use jiter::{FloatMode, PartialMode, PythonParse, StringCacheMode};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::error::Error;
use crate::page::Page;

use super::errors::to_pyerr;

/// Exact (integers beyond 64 bits kept), keys cached: the parse of records wherever orjson is not used.
pub(super) const PARSER: PythonParse = PythonParse {
    allow_inf_nan: false,
    cache_mode: StringCacheMode::Keys,
    partial_mode: PartialMode::Off,
    catch_duplicate_keys: false,
    float_mode: FloatMode::Float,
};

/// One page of results, as the service sent it.
#[pyclass(frozen, name = "Page", module = "soket_transcribe._core")]
pub struct PyPage {
    #[pyo3(get)]
    batch_id: Option<String>,
    #[pyo3(get)]
    page: u64,
    #[pyo3(get)]
    limit: Option<u64>,
    #[pyo3(get)]
    total_pages: u64,
    #[pyo3(get)]
    total: Option<u64>,
    #[pyo3(get)]
    count: u64,
    #[pyo3(get)]
    items: Py<PyList>,
    #[pyo3(get)]
    raw: bool,
}

impl PyPage {
    pub fn from_page(py: Python<'_>, page: &Page) -> PyResult<PyPage> {
        let items = parse_records(py, page)?;
        let meta = &page.meta;
        Ok(PyPage {
            batch_id: meta.batch_id.clone(),
            page: meta.page,
            limit: meta.limit,
            total_pages: meta.total_pages,
            total: meta.total,
            count: meta.count,
            items: items.unbind(),
            raw: meta.raw,
        })
    }
}

static ORJSON_LOADS: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();

/// `orjson.loads`, when orjson is installed (a dependency of the package).
fn orjson_loads(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    ORJSON_LOADS
        .get_or_init(py, || py.import("orjson").and_then(|m| m.getattr("loads")).ok().map(Bound::unbind))
        .as_ref()
        .map(|f| f.bind(py))
}

/// The records as a list of Python objects, in one parse of the array.
///
/// orjson builds Python objects faster than jiter on these pages (bench/breakdown.py), so
/// it goes first; but it turns integers beyond 64 bits into floats, so the records that may
/// hold one (`long_numbers`, flagged off the GIL) are read again by jiter, which keeps them
/// exact. jiter also serves when orjson is missing. A page either refuses (a lone surrogate,
/// nesting beyond 1024 levels for orjson or 200 for jiter) is read a record at a time, each by
/// the first parser that takes it, Python's `json` last: a record is read as `json.loads` reads it.
fn parse_records<'py>(py: Python<'py>, page: &Page) -> PyResult<Bound<'py, PyList>> {
    let json = page.records_json();
    let _gc = GcPause::new(py)?;
    let whole = match orjson_loads(py) {
        Some(loads) => loads.call1((PyBytes::new(py, &json),)).ok(),
        None => PARSER.python_parse(py, &json).ok(),
    };
    if let Some(list) = whole.and_then(|v| v.cast_into::<PyList>().ok()).filter(|l| l.len() == page.records.len()) {
        for (i, _) in page.records.iter().enumerate().filter(|(_, r)| r.long_numbers || r.lone_surrogates) {
            list.set_item(i, parse_record(py, page, i)?)?;
        }
        return Ok(list);
    }
    let list = PyList::empty(py);
    for i in 0..page.records.len() {
        list.append(parse_record(py, page, i)?)?;
    }
    Ok(list)
}

/// One record: orjson where it is exact, else jiter, else Python's `json` (lone surrogates kept,
/// as it keeps them); a record none can read (nested beyond Python's recursion limit) is a
/// `ResponseFormatError` naming the page, never retried (the next answer would be the same).
fn parse_record<'py>(py: Python<'py>, page: &Page, i: usize) -> PyResult<Bound<'py, PyAny>> {
    let json = page.record_json(i);
    let record = &page.records[i];
    if !record.lone_surrogates {
        if let Some(value) = (!record.long_numbers)
            .then(|| orjson_loads(py))
            .flatten()
            .and_then(|loads| loads.call1((PyBytes::new(py, json),)).ok())
        {
            return Ok(value);
        }
        if let Ok(value) = PARSER.python_parse(py, json) {
            return Ok(value);
        }
    }
    json_loads(py, json).map_err(|e| {
        let message = format!("a record cannot be read: {e}");
        to_pyerr(Error::format(message, json, false).on_page(page.meta.page))
    })
}

/// Python's `json.loads(json)`.
pub(super) fn json_loads<'py>(py: Python<'py>, json: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let loads = JSON_LOADS.get_or_try_init(py, || py.import("json")?.getattr("loads").map(Bound::unbind))?;
    loads.bind(py).call1((PyBytes::new(py, json),))
}

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

static GC: PyOnceLock<Option<[Py<PyAny>; 3]>> = PyOnceLock::new();

/// The cyclic GC held off while one page is parsed. A JSON parser builds only acyclic
/// containers, which the GC can never free, yet their allocations trigger a collection every
/// 700 of them (a sixth to a third of orjson's time on these pages, bench/breakdown.py).
/// Held off, the page's objects are counted all the same and the next allocation after the
/// parse triggers one young collection. The GIL is held throughout, so no other thread sees
/// the GC off; without a GIL (free-threaded Python) the GC is left alone.
struct GcPause<'py>(Option<Bound<'py, PyAny>>);

impl<'py> GcPause<'py> {
    fn new(py: Python<'py>) -> PyResult<GcPause<'py>> {
        let gc = GC.get_or_try_init(py, || -> PyResult<_> {
            let gil_enabled = py.import("sys")?.getattr("_is_gil_enabled").ok(); // Python >= 3.13
            if let Some(gil_enabled) = gil_enabled {
                if !gil_enabled.call0()?.is_truthy()? {
                    return Ok(None);
                }
            }
            let gc = py.import("gc")?;
            Ok(Some([
                gc.getattr("isenabled")?.unbind(),
                gc.getattr("disable")?.unbind(),
                gc.getattr("enable")?.unbind(),
            ]))
        })?;
        let Some([isenabled, disable, enable]) = gc else { return Ok(GcPause(None)) };
        if !isenabled.bind(py).call0()?.is_truthy()? {
            return Ok(GcPause(None));
        }
        disable.bind(py).call0()?;
        Ok(GcPause(Some(enable.bind(py).clone())))
    }
}

impl Drop for GcPause<'_> {
    fn drop(&mut self) {
        if let Some(enable) = self.0.take() {
            if let Err(e) = enable.call0() {
                e.write_unraisable(enable.py(), None);
            }
        }
    }
}

#[pymethods]
impl PyPage {
    /// The page as the dict the service sent (`files`/`total_files`, or `jobs`/`total_jobs` when raw).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (items_key, total_key) = if self.raw { ("jobs", "total_jobs") } else { ("files", "total_files") };
        let d = PyDict::new(py);
        d.set_item("batch_id", &self.batch_id)?;
        d.set_item("page", self.page)?;
        d.set_item("limit", self.limit)?;
        d.set_item("total_pages", self.total_pages)?;
        d.set_item(total_key, self.total)?;
        d.set_item("count", self.count)?;
        d.set_item(items_key, self.items.bind(py))?;
        Ok(d)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.items.bind(py).len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Page(batch_id={:?}, page={}, total_pages={}, total={}, count={}, items=<{} {}>)",
            self.batch_id.as_deref().unwrap_or(""),
            self.page,
            self.total_pages,
            self.total.map_or("None".into(), |t| t.to_string()),
            self.count,
            self.items.bind(py).len(),
            if self.raw { "jobs" } else { "files" },
        )
    }
}
