//! `st.Page`: one page, its records parsed once, straight from the body into Python objects.

use jiter::{FloatMode, PartialMode, PythonParse, StringCacheMode};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::error::{excerpt, Error};
use crate::page::Page;

use super::errors::to_pyerr;

const PARSER: PythonParse = PythonParse {
    allow_inf_nan: false,
    cache_mode: StringCacheMode::All,
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
/// orjson builds Python objects two to three times as fast as jiter on these pages
/// (bench/), so it goes first; but it turns integers beyond 64 bits into floats, so pages
/// that may hold one (`long_numbers`) go to jiter, which keeps them exact. jiter also serves
/// when orjson is missing, and has the last word on JSON orjson refuses.
fn parse_records<'py>(py: Python<'py>, page: &Page) -> PyResult<Bound<'py, PyList>> {
    let json = page.records_json();
    if let Some(loads) = orjson_loads(py).filter(|_| !page.long_numbers) {
        if let Ok(list) = loads.call1((PyBytes::new(py, &json),)).and_then(|v| Ok(v.cast_into::<PyList>()?)) {
            return Ok(list);
        }
    }
    let list = PARSER.python_parse(py, &json).map_err(|e| {
        to_pyerr(Error::Format {
            message: format!("a record is not valid JSON: {e} (page {})", page.meta.page),
            excerpt: excerpt(&String::from_utf8_lossy(&json[..json.len().min(400)]), 200),
            page: Some(page.meta.page),
            malformed: true,
        })
    })?;
    Ok(list.cast_into::<PyList>()?)
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
