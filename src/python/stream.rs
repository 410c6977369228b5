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

/// A page the pipeline handed over that Python has not received yet.
type Slot = Arc<std::sync::Mutex<Option<Page>>>;

/// The pages of one query, in order, each once. Single consumer, in the process that made it.
#[pyclass(frozen, name = "PageStream", module = "soket_transcribe._core")]
pub struct PyPageStream {
    pipeline: Arc<Mutex<PagePipeline>>,
    /// A copy of the pipeline's progress, readable while a fetch is under way.
    progress: Arc<std::sync::Mutex<Progress>>,
    /// An asyncio hand-over is two steps (the runtime finishes the fetch, the loop takes the
    /// result): a page waits here in between, so a cancel between the two leaves it for the
    /// next consumer, sync or async, instead of dropping it.
    unclaimed: Slot,
    /// The pipeline's workers live in this process: a forked child has none of them.
    owner: u32,
}

impl PyPageStream {
    pub fn new(pipeline: PagePipeline) -> PyPageStream {
        let progress = pipeline.progress().clone();
        PyPageStream {
            pipeline: Arc::new(Mutex::new(pipeline)),
            progress: Arc::new(std::sync::Mutex::new(progress)),
            unclaimed: Slot::default(),
            owner: std::process::id(),
        }
    }

    /// In a forked child the parent's fetches never answer: say so instead of waiting for ever.
    fn check_process(&self) -> PyResult<()> {
        if std::process::id() == self.owner {
            return Ok(());
        }
        Err(PyRuntimeError::new_err(format!(
            "this BatchResults belongs to process {}; start a new read (iter_files or iter_jobs) in this one",
            self.owner
        )))
    }

    fn claim(&self) -> PyResult<OwnedMutexGuard<PagePipeline>> {
        self.check_process()?;
        Arc::clone(&self.pipeline).try_lock_owned().map_err(|_| in_use())
    }

    /// For asyncio: a cancelled `__anext__` releases the pipeline on a runtime thread a moment
    /// after the cancel, so the next call waits briefly for it before calling it misuse.
    fn claim_async(&self) -> impl std::future::Future<Output = PyResult<OwnedMutexGuard<PagePipeline>>> + use<> {
        let pipeline = Arc::clone(&self.pipeline);
        async move { tokio::time::timeout(CANCEL_GRACE, pipeline.lock_owned()).await.map_err(|_| in_use()) }
    }

    fn take_unclaimed(&self) -> Option<Page> {
        self.unclaimed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The page waiting in the slot: (its number, its records), for the progress it is not part of yet.
    fn unclaimed_page(&self) -> Option<(u64, u64)> {
        let slot = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(|page| (page.meta.page, page.records.len() as u64))
    }

    /// The next page for a consumer in Rust (tables): a page left in the slot first.
    pub(super) async fn next(&self) -> PyResult<Option<Page>> {
        let mut pipeline = self.claim()?;
        // Under the pipeline's lock: the fetch that left a page in the slot is over.
        if let Some(page) = self.take_unclaimed() {
            return Ok(Some(page));
        }
        next_page(&mut pipeline, &self.progress).await.py_err()
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
        "this BatchResults is already being read by another consumer (an iterator still alive, a thread or a task); \
         each BatchResults is single-consumer: call iter_files() again for a second reader",
    )
}

/// The next page, keeping the progress copy in step (used by every consumer of a stream).
async fn next_page(
    pipeline: &mut PagePipeline,
    progress: &std::sync::Mutex<Progress>,
) -> Result<Option<Page>, crate::error::Error> {
    let result = pipeline.next().await;
    *progress.lock().unwrap_or_else(|p| p.into_inner()) = pipeline.progress().clone();
    result
}

/// The next page put in `slot` before the pipeline is released (so no other consumer can take
/// a later page first). A page already there, left by a hand-over cancelled while this call
/// waited for the pipeline, goes first: it is never overwritten.
async fn next_into_slot(
    mut pipeline: OwnedMutexGuard<PagePipeline>,
    progress: Arc<std::sync::Mutex<Progress>>,
    slot: Slot,
) -> PyResult<PyFetchedPage> {
    if slot.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        return Ok(PyFetchedPage(slot));
    }
    match next_page(&mut pipeline, &progress).await.py_err()? {
        Some(page) => {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(page);
            Ok(PyFetchedPage(slot))
        }
        None => Err(PyStopAsyncIteration::new_err(())),
    }
}

/// A fetched page handed to asyncio still as bytes, waiting in the stream's slot: the event
/// loop's thread parses it (`parse()`), so a runtime thread does not hold the GIL for the parse
/// while the loop waits, and a hand-over cancelled before `parse()` loses nothing.
#[pyclass(frozen, name = "_FetchedPage", module = "soket_transcribe._core")]
pub struct PyFetchedPage(Slot);

#[pymethods]
impl PyFetchedPage {
    /// The page, its records parsed into Python objects; taken out of the stream.
    fn parse(&self, py: Python<'_>) -> PyResult<PyPage> {
        // Taken out before parsing: the parse may release the GIL, and no lock is held meanwhile.
        let taken = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let page = taken.ok_or_else(|| PyRuntimeError::new_err("this page was already taken"))?;
        PyPage::from_page(py, &page).inspect_err(|_| {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(page);
        })
    }
}

/// An awaitable already finished: awaiting it returns the page (or raises) at once.
#[pyclass(name = "_Ready", module = "soket_transcribe._core")]
pub struct PyReady(Option<PyResult<Py<PyFetchedPage>>>);

impl PyReady {
    fn awaitable(py: Python<'_>, result: PyResult<PyFetchedPage>) -> PyResult<Bound<'_, PyAny>> {
        let ready = PyReady(Some(result.and_then(|page| Py::new(py, page))));
        Ok(Bound::new(py, ready)?.into_any())
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
        let page = wait(py, self.next())??;
        page.map(|p| PyPage::from_page(py, &p)).transpose()
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_process()?;
        let slot = Arc::clone(&self.unclaimed);
        if self.unclaimed_page().is_some() {
            return PyReady::awaitable(py, Ok(PyFetchedPage(slot)));
        }
        let progress = Arc::clone(&self.progress);
        // Often the page is already fetched: hand it over as a finished awaitable, without a
        // runtime task, a thread hop or a wake-up of the event loop (as `asyncio.Queue.get`
        // does when an item is waiting). Otherwise the same future finishes on the runtime.
        if let Ok(guard) = Arc::clone(&self.pipeline).try_lock_owned() {
            return match ready_now(next_into_slot(guard, progress, slot)) {
                Ok(result) => PyReady::awaitable(py, result),
                Err(pending) => awaitable(py, pending),
            };
        }
        let claim = self.claim_async();
        awaitable(py, async move { next_into_slot(claim.await?, progress, slot).await })
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

    /// The first page not yet handed over (to Python: a page waiting in the slot counts as not).
    #[getter]
    fn next_page(&self) -> u64 {
        self.unclaimed_page().map_or_else(|| self.progress().next_page, |(number, _)| number)
    }

    #[getter]
    fn items_delivered(&self) -> u64 {
        let waiting = self.unclaimed_page().map_or(0, |(_, records)| records);
        self.progress().items_delivered.saturating_sub(waiting)
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
        self.progress().done && self.unclaimed_page().is_none()
    }
}
