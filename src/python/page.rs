//! `st.Page`: one page, its records parsed once, straight from the body into Python objects.

use jiter::{FloatMode, PartialMode, PythonParse, StringCacheMode};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

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

/// The records as a list of Python objects: one parse of the array, or of each kept record.
fn parse_records<'py>(py: Python<'py>, page: &Page) -> PyResult<Bound<'py, PyList>> {
    let failed = |e: jiter::JsonError, json: &[u8]| {
        to_pyerr(Error::Format {
            message: format!("a record is not valid JSON: {e} (page {})", page.meta.page),
            excerpt: excerpt(&String::from_utf8_lossy(&json[..json.len().min(400)]), 200),
            page: Some(page.meta.page),
            malformed: true,
        })
    };
    if page.intact {
        let json = page.records_json();
        let list = PARSER.python_parse(py, &json).map_err(|e| failed(e, &json))?;
        return Ok(list.cast_into::<PyList>()?);
    }
    let list = PyList::empty(py);
    for i in 0..page.records.len() {
        let json = page.record_json(i);
        list.append(PARSER.python_parse(py, json).map_err(|e| failed(e, json))?)?;
    }
    Ok(list)
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
