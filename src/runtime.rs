//! The tokio runtime, one per process, and [`ForkLocal`], the holder that makes it (and the
//! HTTP client) fork-safe: a child after `fork()` builds its own, and never drops the parent's
//! (its threads do not exist in the child, dropping it would hang).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::Runtime;

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

pub fn runtime() -> Arc<Runtime> {
    let built: Result<_, std::convert::Infallible> = RUNTIME.get_or_try_init(|| {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("soket-transcribe")
            .enable_all()
            .build()
            .expect("building a tokio runtime only fails when threads cannot be spawned"))
    });
    match built {
        Ok(rt) => rt,
    }
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
}
