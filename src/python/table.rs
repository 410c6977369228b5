//! Tables for Python: the core's Arrow batches, handed over through the Arrow PyCapsule
//! interface (pyo3-arrow), so pyarrow is needed only by whoever reads them.

use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3_arrow::{PyRecordBatch, PySchema, PyTable};

use crate::page::Page;
use crate::table::{BatchReader, PageSource, Shape};

use super::errors::IntoPyResult;
use super::stream::PyPageStream;
use super::wait::{awaitable, wait};

/// A stream's pages for the core's table reader, and the `progress(items_delivered, total)`
/// callable told of each: the only moment the read takes the GIL.
struct StreamPages {
    stream: Py<PyPageStream>,
    progress: Option<Py<PyAny>>,
}

impl PageSource for StreamPages {
    type Error = PyErr;

    async fn next_page(&mut self) -> PyResult<Option<Page>> {
        self.stream.get().next().await
    }

    fn page_taken(&mut self) -> PyResult<()> {
        let Some(callback) = &self.progress else { return Ok(()) };
        let handle = self.stream.get().progress_handle();
        let p = handle.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Python::attach(|py| callback.call1(py, (p.items_delivered, p.total)).map(drop))
    }
}

/// Every remaining record of `stream` as one table (see `table::read_table`).
async fn read_table(stream: Py<PyPageStream>, progress: Option<Py<PyAny>>, shape: Shape) -> PyResult<PyTable> {
    let (schema, batches) = crate::table::read_table(&mut StreamPages { stream, progress }, shape).await?;
    PyTable::try_new(batches, schema)
}

/// Every remaining record of `stream` as one table (see `read_table`), waited for with the GIL
/// released.
#[pyfunction]
#[pyo3(signature = (stream, *, progress=None, flatten=false, explode=None))]
pub fn read_arrow(
    py: Python<'_>,
    stream: Py<PyPageStream>,
    progress: Option<Py<PyAny>>,
    flatten: bool,
    explode: Option<String>,
) -> PyResult<PyTable> {
    wait(py, read_table(stream, progress, Shape { flatten, explode }))?
}

/// `read_arrow` for asyncio: an awaitable of the table; the event loop is not blocked.
#[pyfunction]
#[pyo3(signature = (stream, *, progress=None, flatten=false, explode=None))]
pub fn read_arrow_async(
    py: Python<'_>,
    stream: Py<PyPageStream>,
    progress: Option<Py<PyAny>>,
    flatten: bool,
    explode: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, read_table(stream, progress, Shape { flatten, explode }))
}

/// One Arrow record batch per page, as pages arrive (`for batch in arrow_batches(stream)`).
#[pyclass(frozen, name = "ArrowBatches", module = "soket_transcribe._core")]
pub struct PyArrowBatches {
    stream: Py<PyPageStream>,
    reader: Mutex<BatchReader>,
}

/// The remaining pages of `stream` as record batches, one per page (empty pages skipped).
/// Each page is decoded under the schema of all pages so far (schemas only grow), unless
/// `schema` (any object with `__arrow_c_schema__`) is given: then every page is decoded into
/// it, fields it lacks are dropped and its string columns take numbers and booleans as text.
#[pyfunction]
#[pyo3(signature = (stream, *, schema=None, flatten=false, explode=None))]
pub fn arrow_batches(
    stream: Py<PyPageStream>,
    schema: Option<PySchema>,
    flatten: bool,
    explode: Option<String>,
) -> PyArrowBatches {
    let reader = BatchReader::new(schema.map(PySchema::into_inner), Shape { flatten, explode });
    PyArrowBatches { stream, reader: Mutex::new(reader) }
}

#[pymethods]
impl PyArrowBatches {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyRecordBatch>> {
        let reader = || self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let page = wait(py, self.stream.get().next())??;
            // Reading the page into Arrow needs no GIL: other threads run meanwhile.
            let Some(page) = page else { return py.detach(|| reader().finish()).py_err().map(|()| None) };
            if let Some(batch) = py.detach(|| reader().page(&page)).py_err()? {
                return Ok(Some(PyRecordBatch::new(batch)));
            }
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_arrow, m)?)?;
    m.add_function(wrap_pyfunction!(read_arrow_async, m)?)?;
    m.add_function(wrap_pyfunction!(arrow_batches, m)?)?;
    m.add_class::<PyArrowBatches>()?;
    Ok(())
}
