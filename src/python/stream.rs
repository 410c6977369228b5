//! `_core.PyPageStream`: the page pipeline as a Python iterator, sync and async.
//! Both faces drive the same `PagePipeline`; they differ only in how they wait.

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::page::Page;
use crate::pipeline::{PagePipeline, Progress};

use super::errors::IntoPyResult;
use super::page::PyPage;
use super::wait::{awaitable, ready_now, wait};

/// The pages of one query, in order, each once. Single consumer.
#[pyclass(frozen, name = "PageStream", module = "soket_transcribe._core")]
pub struct PyPageStream {
    pipeline: Arc<Mutex<PagePipeline>>,
    /// A copy of the pipeline's progress, readable while a fetch is under way.
    progress: Arc<std::sync::Mutex<Progress>>,
}

impl PyPageStream {
    pub fn new(pipeline: PagePipeline) -> PyPageStream {
        let progress = pipeline.progress().clone();
        PyPageStream { pipeline: Arc::new(Mutex::new(pipeline)), progress: Arc::new(std::sync::Mutex::new(progress)) }
    }

    pub(super) fn claim(&self) -> PyResult<OwnedMutexGuard<PagePipeline>> {
        Arc::clone(&self.pipeline).try_lock_owned().map_err(|_| in_use())
    }

    /// For asyncio: a cancelled `__anext__` releases the pipeline on a runtime thread a moment
    /// after the cancel, so the next call waits briefly for it before calling it misuse.
    fn claim_async(&self) -> impl std::future::Future<Output = PyResult<OwnedMutexGuard<PagePipeline>>> + use<> {
        let pipeline = Arc::clone(&self.pipeline);
        async move { tokio::time::timeout(CANCEL_GRACE, pipeline.lock_owned()).await.map_err(|_| in_use()) }
    }

    pub(super) fn progress_handle(&self) -> Arc<std::sync::Mutex<Progress>> {
        Arc::clone(&self.progress)
    }

    fn progress(&self) -> Progress {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn in_use() -> PyErr {
    PyRuntimeError::new_err(
        "this BatchResults is already being read by another consumer (a thread or a task); \
         each BatchResults is single-consumer: call iter_files() again for a second reader",
    )
}

/// The next page, keeping the progress copy in step (used by every consumer of a stream).
pub(super) async fn next_page(
    mut pipeline: OwnedMutexGuard<PagePipeline>,
    progress: Arc<std::sync::Mutex<Progress>>,
) -> Result<Option<Page>, crate::error::Error> {
    let result = pipeline.next().await;
    *progress.lock().unwrap_or_else(|p| p.into_inner()) = pipeline.progress().clone();
    result
}

/// A fetched page handed to asyncio still as bytes: the event loop's thread parses it
/// (`parse()`), so a runtime thread does not hold the GIL for the parse while the loop waits.
#[pyclass(frozen, name = "_FetchedPage", module = "soket_transcribe._core")]
pub struct PyFetchedPage(Page);

#[pymethods]
impl PyFetchedPage {
    /// The page, its records parsed into Python objects.
    fn parse(&self, py: Python<'_>) -> PyResult<PyPage> {
        PyPage::from_page(py, &self.0)
    }
}

fn fetched(result: Result<Option<Page>, crate::error::Error>) -> PyResult<PyFetchedPage> {
    match result.py_err()? {
        Some(page) => Ok(PyFetchedPage(page)),
        None => Err(PyStopAsyncIteration::new_err(())),
    }
}

/// An awaitable already finished: awaiting it returns the page (or raises) at once.
#[pyclass(name = "_Ready", module = "soket_transcribe._core")]
pub struct PyReady(Option<PyResult<Py<PyFetchedPage>>>);

impl PyReady {
    fn new(py: Python<'_>, result: Result<Option<Page>, crate::error::Error>) -> PyResult<PyReady> {
        Ok(PyReady(Some(fetched(result).and_then(|page| Py::new(py, page)))))
    }
}

#[pymethods]
impl PyReady {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<()> {
        match self.0.take() {
            Some(Ok(page)) => Err(PyStopIteration::new_err((page,))),
            Some(Err(err)) => Err(err),
            None => Err(PyRuntimeError::new_err("cannot reuse an already awaited page")),
        }
    }
}

#[pymethods]
impl PyPageStream {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyPage>> {
        let guard = self.claim()?;
        let page = wait(py, next_page(guard, Arc::clone(&self.progress)))?.py_err()?;
        page.map(|p| PyPage::from_page(py, &p)).transpose()
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let progress = Arc::clone(&self.progress);
        // Often the page is already fetched: hand it over as a finished awaitable, without a
        // runtime task, a thread hop or a wake-up of the event loop (as `asyncio.Queue.get`
        // does when an item is waiting). Otherwise the same future finishes on the runtime.
        if let Ok(guard) = Arc::clone(&self.pipeline).try_lock_owned() {
            return match ready_now(next_page(guard, progress)) {
                Ok(result) => PyReady::new(py, result).and_then(|r| Ok(Bound::new(py, r)?.into_any())),
                Err(pending) => awaitable(py, async move { fetched(pending.await) }),
            };
        }
        let claim = self.claim_async();
        awaitable(py, async move { fetched(next_page(claim.await?, progress).await) })
    }

    /// `total_files` (or `total_jobs`) from the first page; None before it.
    #[getter]
    fn total(&self) -> Option<u64> {
        self.progress().total
    }

    #[getter]
    fn total_pages(&self) -> Option<u64> {
        self.progress().total_pages
    }

    /// The first page not yet handed over.
    #[getter]
    fn next_page(&self) -> u64 {
        self.progress().next_page
    }

    #[getter]
    fn items_delivered(&self) -> u64 {
        self.progress().items_delivered
    }

    #[getter]
    fn duplicates_skipped(&self) -> u64 {
        self.progress().duplicates_skipped
    }

    /// The batch was seen to change while it was read.
    #[getter]
    fn changed(&self) -> bool {
        self.progress().changed
    }

    /// False once the client saw that records may be missing from what it delivered.
    #[getter]
    fn complete(&self) -> bool {
        self.progress().complete
    }

    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.progress().warnings
    }

    #[getter]
    fn done(&self) -> bool {
        self.progress().done
    }
}
