//! Tables for Python: the core's Arrow batches, handed over through the Arrow PyCapsule
//! interface (pyo3-arrow), so pyarrow is needed only by whoever reads them.

use std::collections::VecDeque;
use std::sync::Mutex;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_arrow::{PyRecordBatch, PySchema, PyTable};
use tokio::task::{spawn_blocking, JoinHandle};

use crate::error::Result;
use crate::table::{self, PageBatcher, PageTable, TableBuilder};

use super::errors::IntoPyResult;
use super::stream::PyPageStream;
use super::wait::{awaitable, wait};

/// Struct columns flattened and/or a list column exploded, as asked.
#[derive(Clone)]
struct Shape {
    flatten: bool,
    explode: Option<String>,
}

impl Shape {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match (&self.explode, self.flatten) {
            (Some(path), _) => table::explode(&batch, path),
            (None, true) => table::flatten(&batch),
            (None, false) => Ok(batch),
        }
    }
}

/// Pages read into Arrow at once at most: one per core, so a fetch that runs ahead of the
/// reading waits rather than piling up page bytes.
fn reading_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Rows a batch of a whole table holds, about: pages are joined up to this.
const BATCH_ROWS: usize = 4_096;

/// Every remaining record of `stream` as one table, its schema that of all of them. Each page
/// is read into Arrow on a blocking thread of the runtime as soon as it arrives, while the next
/// ones are fetched, and its bytes are dropped once read; the per-page schemas are unified at
/// the end. `progress(items_delivered, total)` is called after each page, the only moment the
/// GIL is taken.
async fn read_table(stream: Py<PyPageStream>, progress: Option<Py<PyAny>>, shape: Shape) -> PyResult<PyTable> {
    let stream = stream.get();
    let handle = stream.progress_handle();
    let mut reading: VecDeque<JoinHandle<Result<PageTable>>> = VecDeque::new();
    // Pages read, joined a group at a time (also on a blocking thread) into larger batches.
    let mut group: Vec<PageTable> = Vec::new();
    let mut groups: Vec<JoinHandle<Result<PageTable>>> = Vec::new();
    loop {
        let page = stream.next().await?;
        let done = page.is_none();
        if let Some(page) = page.filter(|p| !p.records.is_empty()) {
            reading.push_back(spawn_blocking(move || PageTable::read(&page)));
        }
        if let Some(callback) = &progress {
            let p = handle.lock().unwrap_or_else(|p| p.into_inner()).clone();
            Python::attach(|py| callback.call1(py, (p.items_delivered, p.total)).map(drop))?;
        }
        while reading.front().is_some_and(|r| done || r.is_finished() || reading.len() > reading_at_once()) {
            let read = reading.pop_front().expect("a page under way");
            group.push(read.await.map_err(reader_failed)?.py_err()?);
            if group.iter().map(PageTable::rows).sum::<usize>() >= BATCH_ROWS {
                let pages = std::mem::take(&mut group);
                groups.push(spawn_blocking(move || PageTable::concat(pages)));
            }
        }
        if done {
            break;
        }
    }
    if !group.is_empty() {
        groups.push(spawn_blocking(move || PageTable::concat(group)));
    }
    let mut builder = TableBuilder::new();
    for joined in groups {
        builder.push(joined.await.map_err(reader_failed)?.py_err()?);
    }
    let finish = move || -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (schema, batches) = builder.finish()?;
        if !shape.flatten && shape.explode.is_none() {
            return Ok((schema, batches));
        }
        let batches = batches.into_iter().map(|b| shape.apply(b)).collect::<Result<Vec<_>>>()?;
        Ok((batches[0].schema(), batches))
    };
    let (schema, batches) = spawn_blocking(finish).await.map_err(reader_failed)?.py_err()?;
    PyTable::try_new(batches, schema)
}

fn reader_failed(e: tokio::task::JoinError) -> PyErr {
    PyRuntimeError::new_err(format!("reading a page into Arrow failed: {e}"))
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
    batcher: Mutex<PageBatcher>,
    shape: Shape,
    exploder: Option<Mutex<table::BatchExploder>>,
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
    let batcher = Mutex::new(PageBatcher::new(schema.map(PySchema::into_inner)));
    let exploder = explode.clone().map(|path| Mutex::new(table::BatchExploder::new(path)));
    PyArrowBatches { stream, batcher, shape: Shape { flatten, explode }, exploder }
}

#[pymethods]
impl PyArrowBatches {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyRecordBatch>> {
        let stream = self.stream.get();
        loop {
            let page = wait(py, stream.next())??;
            // Reading the page into Arrow needs no GIL: other threads run meanwhile.
            let batch = py
                .detach(|| -> Result<Option<Option<RecordBatch>>> {
                    let Some(page) = page else {
                        // The end: a list that no page had fails, as it fails a whole table.
                        let exploder = self.exploder.as_ref().map(|e| e.lock().unwrap_or_else(|p| p.into_inner()));
                        return exploder.map_or(Ok(()), |e| e.finish()).map(|()| None);
                    };
                    if page.records.is_empty() {
                        return Ok(Some(None));
                    }
                    let batch = self.batcher.lock().unwrap_or_else(|p| p.into_inner()).batch(&page)?;
                    // Pages before the exploded list first shows give no rows; see BatchExploder.
                    if let Some(exploder) = &self.exploder {
                        return exploder.lock().unwrap_or_else(|p| p.into_inner()).explode(&batch).map(Some);
                    }
                    self.shape.apply(batch).map(|b| Some(Some(b)))
                })
                .py_err()?;
            match batch {
                None => return Ok(None),
                Some(None) => continue,
                Some(Some(batch)) => return Ok(Some(PyRecordBatch::new(batch))),
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
