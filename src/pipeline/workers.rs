//! The tasks that fetch pages: `concurrency` of them take pages off one queue in order, so
//! requests start in page order.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::fetch::ApiClient;
use crate::page::Page;
use crate::projection::Projection;
use crate::query::Query;
use crate::retry::RetryPolicy;

/// One page, narrowed to `fields` when asked (here, on a worker thread, not the consumer's).
pub(super) async fn fetch(
    client: &ApiClient,
    query: &Query,
    retry: &RetryPolicy,
    projection: Option<&Projection>,
) -> Result<Page> {
    let page = client.fetch_page(query, retry).await?;
    match projection {
        Some(projection) => projection.apply(&page),
        None => Ok(page),
    }
}

type Job = (Query, oneshot::Sender<Result<Page>>);

/// Dropping this stops the tasks, requests in flight included.
pub(super) struct Workers {
    jobs: mpsc::UnboundedSender<Job>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    pub(super) fn start(
        client: &Arc<ApiClient>,
        retry: &RetryPolicy,
        projection: Option<&Arc<Projection>>,
        count: usize,
    ) -> Workers {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let tasks = (0..count)
            .map(|_| {
                let (client, retry, queue) = (Arc::clone(client), retry.clone(), Arc::clone(&queue));
                let projection = projection.cloned();
                tokio::spawn(async move {
                    loop {
                        let job = queue.lock().await.recv().await;
                        let Some((query, reply)) = job else { return };
                        if !reply.is_closed() {
                            let _ = reply.send(fetch(&client, &query, &retry, projection.as_deref()).await);
                        }
                    }
                })
            })
            .collect();
        Workers { jobs, tasks }
    }

    /// Queues a page; its answer arrives on the receiver (or it reports the page lost).
    pub(super) fn fetch(&self, query: Query) -> oneshot::Receiver<Result<Page>> {
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
