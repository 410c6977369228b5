//! The tasks that fetch pages: `concurrency` of them take pages off one queue in order, so
//! requests start in page order.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::cache::Frame;
use crate::error::Result;
use crate::fetch::ApiClient;
use crate::page::Page;
use crate::projection::Projection;
use crate::query::{Query, Status};
use crate::retry::RetryPolicy;

use super::cached::Source;
use super::filter::keep_status;

/// What is done to each page on the worker threads, before the consumer sees it.
#[derive(Clone, Default)]
pub(super) struct Shaping {
    /// Keep only the records of this status (`status=` applied by the client).
    pub filter: Option<Status>,
    /// Narrow each record to `fields` (after the filter, which reads `"status"`).
    pub projection: Option<Arc<Projection>>,
    /// Where pages come from when the read uses the cache (else the service).
    pub source: Option<Arc<Source>>,
}

/// A page as the consumer gets it, and how many records the service sent in it.
pub(super) struct Fetched {
    pub page: Page,
    /// Records before the filter: what the page-size checks compare with the limit.
    pub served: u64,
    /// The body as the service sent it, compressed for a new cache entry.
    pub kept: Option<Frame>,
}

/// One page, filtered and narrowed as asked (here, on a worker thread, not the consumer's).
pub(super) async fn fetch(
    client: &ApiClient,
    query: &Query,
    retry: &RetryPolicy,
    shaping: &Shaping,
) -> Result<Fetched> {
    let (mut page, kept) = match &shaping.source {
        Some(source) => source.page(client, query, retry).await?,
        None => (client.fetch_page(query, retry).await?, None),
    };
    let served = page.records.len() as u64;
    if let Some(status) = shaping.filter {
        page = keep_status(page, status)?;
    }
    if let Some(projection) = &shaping.projection {
        page = projection.apply(&page)?;
    }
    Ok(Fetched { page, served, kept })
}

type Job = (Query, oneshot::Sender<Result<Fetched>>);

/// Dropping this stops the tasks, requests in flight included.
pub(super) struct Workers {
    jobs: mpsc::UnboundedSender<Job>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    pub(super) fn start(client: &Arc<ApiClient>, retry: &RetryPolicy, shaping: &Shaping, count: usize) -> Workers {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let tasks = (0..count)
            .map(|_| {
                let (client, retry, queue) = (Arc::clone(client), retry.clone(), Arc::clone(&queue));
                let shaping = shaping.clone();
                tokio::spawn(async move {
                    loop {
                        let job = queue.lock().await.recv().await;
                        let Some((query, reply)) = job else { return };
                        if !reply.is_closed() {
                            let _ = reply.send(fetch(&client, &query, &retry, &shaping).await);
                        }
                    }
                })
            })
            .collect();
        Workers { jobs, tasks }
    }

    /// Queues a page; its answer arrives on the receiver (or it reports the page lost).
    pub(super) fn fetch(&self, query: Query) -> oneshot::Receiver<Result<Fetched>> {
        let (reply, answer) = oneshot::channel();
        let _ = self.jobs.send((query, reply)); // workers gone: the dropped sender reports it
        answer
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
