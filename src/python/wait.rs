//! How Python waits on the core: sync calls block with the GIL released and Ctrl-C
//! honoured; async calls hand an awaitable to asyncio through pyo3-async-runtimes,
//! on our own (fork-aware) runtime.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};
use pyo3_async_runtimes::TaskLocals;

use crate::runtime::runtime;

use super::errors::IntoPyResult;

/// How often a blocked sync call looks for a pending signal (Ctrl-C).
const SIGNAL_TICK: Duration = Duration::from_millis(100);

/// Runs `fut` to completion with the GIL released; a pending KeyboardInterrupt (or any
/// signal handler that raises) drops the future and raises. Never touches asyncio.
pub fn wait<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = T> + Send,
    T: Send,
{
    // Often the page is already fetched: take it without releasing the GIL or arming a timer.
    let mut fut = match ready_now(fut) {
        Ok(out) => return Ok(out),
        Err(pending) => pending,
    };
    let rt = runtime().py_err()?;
    py.detach(|| {
        rt.block_on(async {
            loop {
                tokio::select! {
                    out = fut.as_mut() => return Ok(out),
                    _ = tokio::time::sleep(SIGNAL_TICK) => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    })
}

/// Polls `fut` once on the caller's thread, inside the runtime's context (for what it
/// spawns): its output when it is ready already, else the future, to be waited on (where a
/// runtime that cannot start is an error).
pub fn ready_now<F: Future>(fut: F) -> Result<F::Output, Pin<Box<F>>> {
    let mut fut = Box::pin(fut);
    let Ok(rt) = runtime() else { return Err(fut) };
    let _context = rt.enter();
    match fut.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(fut),
    }
}

/// An awaitable for asyncio, running `fut` on our runtime. Called with no event loop running
/// (`asyncio.run(client.get_page_async(...))` builds the awaitable first), it waits to be awaited.
pub fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if pyo3_async_runtimes::get_running_loop(py).is_ok() {
        return on_runtime(py, fut);
    }
    let start: StartFuture = Box::new(move |py| on_runtime(py, fut));
    Ok(Bound::new(py, PyDeferred(std::sync::Mutex::new(Stage::NotStarted(start))))?.into_any())
}

/// An asyncio future of `fut`, spawned on our runtime: entered here, so that `AsyncRuntime`
/// spawns on it (a runtime that cannot start is an error before anything is spawned).
fn on_runtime<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let rt = runtime().py_err()?;
    let _context = rt.enter();
    pyo3_async_runtimes::generic::future_into_py::<AsyncRuntime, F, T>(py, fut)
}

type StartFuture = Box<dyn for<'a> FnOnce(Python<'a>) -> PyResult<Bound<'a, PyAny>> + Send>;

enum Stage {
    NotStarted(StartFuture),
    /// The asyncio future's `__await__` iterator, driven by our `send`/`throw`.
    Running(Py<PyAny>),
    Closed,
}

/// An awaitable made where no event loop ran, and a coroutine (`asyncio.run` takes it): its
/// future starts on the loop that first drives it.
#[pyclass(frozen, name = "_Deferred", module = "soket_transcribe._core")]
pub struct PyDeferred(std::sync::Mutex<Stage>);

impl PyDeferred {
    fn running<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut stage = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *stage, Stage::Closed) {
            Stage::NotStarted(start) => {
                let iterator = start(py)?.call_method0("__await__")?;
                *stage = Stage::Running(iterator.clone().unbind());
                Ok(iterator)
            }
            Stage::Running(iterator) => {
                *stage = Stage::Running(iterator.clone_ref(py));
                Ok(iterator.into_bound(py))
            }
            Stage::Closed => {
                Err(pyo3::exceptions::PyRuntimeError::new_err("cannot reuse an already awaited coroutine"))
            }
        }
    }
}

#[pymethods]
impl PyDeferred {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.running(py)?.call_method1("send", (py.None(),))
    }

    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.running(py)?.call_method1("send", (value,))
    }

    #[pyo3(signature = (kind, value=None, traceback=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        kind: Bound<'py, PyAny>,
        value: Option<Bound<'py, PyAny>>,
        traceback: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let iterator = self.running(py)?;
        match (value, traceback) {
            (None, _) => iterator.call_method1("throw", (kind,)),
            (Some(value), None) => iterator.call_method1("throw", (kind, value)),
            (Some(value), Some(traceback)) => iterator.call_method1("throw", (kind, value, traceback)),
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let stage = std::mem::replace(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()), Stage::Closed);
        if let Stage::Running(iterator) = stage {
            iterator.bind(py).call_method0("close")?;
        }
        Ok(())
    }
}

/// `asyncio.run` and `create_task` take only coroutines: `_Deferred` is one to
/// `collections.abc.Coroutine`'s subclass hook, which asks for `__await__`, `send`, `throw`
/// and `close`, no registration.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDeferred>()
}

/// pyo3-async-runtimes' spawner: called inside our runtime's context only (from `on_runtime`,
/// and from the tasks it spawned), so it spawns on the current runtime.
pub struct AsyncRuntime;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

pub struct Join(tokio::task::JoinHandle<()>);
pub struct JoinFailure(tokio::task::JoinError);

impl JoinError for JoinFailure {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

impl Future for Join {
    type Output = Result<(), JoinFailure>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(JoinFailure)
    }
}

impl Runtime for AsyncRuntime {
    type JoinError = JoinFailure;
    type JoinHandle = Join;

    fn spawn<F>(fut: F) -> Join
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Join(tokio::runtime::Handle::current().spawn(fut))
    }

    fn spawn_blocking<F>(f: F) -> Join
    where
        F: FnOnce() + Send + 'static,
    {
        Join(tokio::runtime::Handle::current().spawn_blocking(f))
    }
}

impl ContextExt for AsyncRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(|cell| cell.get().cloned()).unwrap_or_default()
    }
}

/// Registered with `atexit`: stop the runtime before the interpreter finalizes.
#[pyfunction]
pub fn _shutdown(py: Python<'_>) {
    py.detach(|| crate::runtime::shutdown(Duration::from_secs(2)));
}
