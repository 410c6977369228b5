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
    let rt = runtime();
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
/// spawns): its output when it is ready already, else the future, to be waited on.
pub fn ready_now<F: Future>(fut: F) -> Result<F::Output, Pin<Box<F>>> {
    let _context = runtime().enter();
    let mut fut = Box::pin(fut);
    match fut.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(fut),
    }
}

/// An awaitable for asyncio, running `fut` on our runtime.
pub fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<AsyncRuntime, F, T>(py, fut)
}

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
        Join(runtime().spawn(fut))
    }

    fn spawn_blocking<F>(f: F) -> Join
    where
        F: FnOnce() + Send + 'static,
    {
        Join(runtime().spawn_blocking(f))
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
