//! The tokio runtime, one per process, and [`ForkLocal`], the holder that makes it (and the
//! HTTP client) fork-safe: a child after `fork()` builds its own, and never drops the parent's
//! (its threads do not exist in the child, dropping it would hang).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

/// A value per process: built on first use in each process, the one inherited through
/// `fork()` leaked rather than dropped (its threads and sockets belong to the parent).
pub struct ForkLocal<T> {
    slot: Mutex<Option<(u32, Arc<T>)>>,
}

impl<T> ForkLocal<T> {
    pub const fn new() -> ForkLocal<T> {
        ForkLocal { slot: Mutex::new(None) }
    }

    fn lock(&self) -> MutexGuard<'_, Option<(u32, Arc<T>)>> {
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This process's value, built by `make` if it has none yet.
    pub fn get_or_try_init<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let pid = std::process::id();
        let mut slot = self.lock();
        if let Some((owner, value)) = slot.as_ref() {
            if *owner == pid {
                return Ok(Arc::clone(value));
            }
        }
        let value = Arc::new(make()?);
        if let Some(inherited) = slot.replace((pid, Arc::clone(&value))) {
            std::mem::forget(inherited);
        }
        Ok(value)
    }

    /// Takes this process's value out (an inherited one is leaked); the next use builds anew.
    pub fn take(&self) -> Option<Arc<T>> {
        let (owner, value) = self.lock().take()?;
        if owner == std::process::id() {
            Some(value)
        } else {
            std::mem::forget(value);
            None
        }
    }
}

impl<T> Default for ForkLocal<T> {
    fn default() -> Self {
        ForkLocal::new()
    }
}

static RUNTIME: ForkLocal<Runtime> = ForkLocal::new();

/// The stack of each runtime thread: tokio's default, set here so that the check below
/// reserves what the runtime will.
const STACK_BYTES: usize = 2 << 20;

/// This process's runtime, started on first use; an error (never a panic) when it cannot start.
pub fn runtime() -> Result<Arc<Runtime>> {
    RUNTIME.get_or_try_init(|| start(worker_threads(), STACK_BYTES))
}

fn start(threads: usize, stack: usize) -> Result<Runtime> {
    // tokio's builder panics when the OS refuses a worker thread (its blocking pool's "OS can't
    // spawn worker thread"), and unwinding out of it would wait forever on the workers it had
    // started: the threads are tried first, all alive at once, which fails for the same causes.
    let refused = |e: std::io::Error| Error::runtime_start(threads, &e);
    try_threads(threads, stack).map_err(refused)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_stack_size(stack)
        .thread_name("soket-transcribe")
        .enable_all()
        .build()
        .map_err(refused)
}

/// Spawns `count` threads of `stack` bytes that wait until all exist, then lets them end.
fn try_threads(count: usize, stack: usize) -> std::io::Result<()> {
    let gate = RwLock::new(());
    let closed = gate.write().unwrap_or_else(PoisonError::into_inner);
    std::thread::scope(|scope| {
        let spawned = (0..count).try_for_each(|_| {
            let waiter = std::thread::Builder::new().stack_size(stack).spawn_scoped(scope, || drop(gate.read()));
            waiter.map(drop)
        });
        drop(closed); // the threads spawned so far end (and are joined) either way
        spawned
    })
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Stops this process's runtime (at interpreter exit): its threads must not try to call into
/// Python once the interpreter is finalizing, or the process aborts. A runtime still in use
/// elsewhere is left alone.
pub fn shutdown(grace: Duration) {
    if let Some(rt) = RUNTIME.take() {
        match Arc::try_unwrap(rt) {
            Ok(rt) => rt.shutdown_timeout(grace),
            Err(shared) => std::mem::forget(shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_process() {
        let holder: ForkLocal<u32> = ForkLocal::new();
        let a = holder.get_or_try_init(|| Ok::<_, ()>(1)).unwrap();
        let b = holder.get_or_try_init(|| Ok::<_, ()>(2)).unwrap();
        assert_eq!((*a, *b), (1, 1), "built once");
        assert_eq!(holder.take().as_deref(), Some(&1));
        assert_eq!(*holder.get_or_try_init(|| Ok::<_, ()>(3)).unwrap(), 3, "built anew after take");
        assert!(holder.get_or_try_init(|| Err::<u32, _>("no")).is_ok(), "a failing builder is not called");
    }

    #[test]
    fn threads_the_os_refuses_are_an_error_not_a_panic() {
        // A stack larger than any address space: the OS refuses the thread, as at a thread limit.
        let err = start(2, 1 << 60).map(drop).unwrap_err();
        assert!(matches!(err, Error::RuntimeStart(_)), "{err:?}");
        assert!(err.to_string().starts_with("could not start the client's runtime (2 threads): "), "{err}");
    }

    #[test]
    fn a_runtime_starts_with_the_threads_it_tried() {
        let rt = start(3, STACK_BYTES).unwrap();
        assert_eq!(rt.metrics().num_workers(), 3);
        assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    }
}
