//! The tokio runtime, one per process: a child after `fork()` builds its own, and never
//! drops the parent's (its threads do not exist in the child, dropping it would hang).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

pub fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Arc::clone(rt);
        }
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("soket-transcribe")
            .enable_all()
            .build()
            .expect("building a tokio runtime only fails when threads cannot be spawned"),
    );
    if let Some(inherited) = slot.replace((pid, Arc::clone(&rt))) {
        std::mem::forget(inherited);
    }
    rt
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Stops this process's runtime (at interpreter exit): its threads must not try to call into
/// Python once the interpreter is finalizing, or the process aborts. A runtime still in use
/// elsewhere, or inherited from a parent, is left alone.
pub fn shutdown(grace: Duration) {
    let taken = RUNTIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    if let Some((owner, rt)) = taken {
        match Arc::try_unwrap(rt) {
            Ok(rt) if owner == std::process::id() => rt.shutdown_timeout(grace),
            Ok(rt) => std::mem::forget(rt),
            Err(shared) => std::mem::forget(shared),
        }
    }
}
