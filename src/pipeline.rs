//! The page pipeline: the first page tells how many there are, the rest are fetched
//! `concurrency` at a time in the background and handed over strictly in page order.
//! A few pages more than `concurrency` may wait, fetched, for their turn: a page stuck in
//! a retry then does not stall the requests behind it, and memory stays a few pages.
//!
//! Every method is cancel-safe: a caller may drop a `next()` future (Ctrl-C, an asyncio
//! cancel) and call again without losing or repeating a page.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::fetch::ApiClient;
use crate::page::Page;
use crate::query::Query;
use crate::retry::RetryPolicy;

/// Pages fetched or being fetched ahead of the consumer, per allowed request.
const WINDOW_PER_REQUEST: usize = 3;

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub start_page: u64,
    pub max_items: Option<u64>,
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

/// What the consumer can read about the pipeline at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: Option<u64>,
    pub total_pages: Option<u64>,
    /// The first page not yet handed over: pass it as `start_page` to resume.
    pub next_page: u64,
    pub items_delivered: u64,
    pub duplicates_dropped: u64,
    /// Said when the batch changed while it was read (it still yields what existed at the start).
    pub warnings: Vec<String>,
    pub done: bool,
}

pub struct PagePipeline {
    client: Arc<ApiClient>,
    query: Query,
    options: PipelineOptions,
    /// The last page to fetch, known from the first answer.
    last_page: Option<u64>,
    next_to_fetch: u64,
    in_flight: VecDeque<(u64, JoinHandle<Result<Page>>)>,
    /// `concurrency` permits: requests under way at once.
    requests: Arc<Semaphore>,
    seen: HashSet<u64>,
    progress: Progress,
}

impl Drop for PagePipeline {
    fn drop(&mut self) {
        self.abort_in_flight();
    }
}

impl PagePipeline {
    pub fn new(client: Arc<ApiClient>, query: Query, options: PipelineOptions) -> Result<PagePipeline> {
        query.validate()?;
        if options.start_page < 1 {
            return Err(Error::InvalidArgument(format!("start_page must be >= 1; got {}", options.start_page)));
        }
        let start = options.start_page;
        let done = options.max_items == Some(0);
        let requests = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Ok(PagePipeline {
            client,
            query,
            options,
            last_page: None,
            next_to_fetch: start,
            in_flight: VecDeque::new(),
            requests,
            seen: HashSet::new(),
            progress: Progress { next_page: start, done, ..Progress::default() },
        })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The next page in order, or None when the batch is exhausted.
    pub async fn next(&mut self) -> Result<Option<Page>> {
        if self.progress.done {
            return Ok(None);
        }
        self.fill_window();
        let Some((number, handle)) = self.in_flight.front_mut() else {
            self.progress.done = true;
            return Ok(None);
        };
        let number = *number;
        let joined = handle.await;
        self.in_flight.pop_front();
        let result = match joined {
            Ok(r) => r,
            Err(e) => Err(Error::Internal(format!("page {number} task failed: {e}"))),
        };
        match result.and_then(|page| self.accept(number, page)) {
            Ok(page) => Ok(Some(page)),
            Err(err) => {
                // Start again from the failed page if asked to go on.
                self.abort_in_flight();
                self.next_to_fetch = number;
                Err(err)
            }
        }
    }

    fn fill_window(&mut self) {
        // Until the first answer tells the page count, only one request is out.
        let (limit, window) = match self.last_page {
            None => (self.next_to_fetch, 1),
            Some(last) => (last, WINDOW_PER_REQUEST * self.options.concurrency.max(1)),
        };
        while self.in_flight.len() < window && self.next_to_fetch <= limit {
            let number = self.next_to_fetch;
            let client = Arc::clone(&self.client);
            let query = self.query.with_page(number);
            let retry = self.options.retry.clone();
            let requests = Arc::clone(&self.requests);
            let task = tokio::spawn(async move {
                let _turn = requests.acquire_owned().await.map_err(|e| Error::Internal(e.to_string()))?;
                client.fetch_page(&query, &retry).await
            });
            self.in_flight.push_back((number, task));
            self.next_to_fetch += 1;
        }
    }

    fn abort_in_flight(&mut self) {
        for (_, task) in self.in_flight.drain(..) {
            task.abort();
        }
    }

    /// Checks a page against what came before, drops duplicates, applies `max_items`.
    fn accept(&mut self, number: u64, mut page: Page) -> Result<Page> {
        if page.meta.page != number {
            return Err(Error::Format {
                message: format!("asked for page {number} but the response says page {}", page.meta.page),
                excerpt: String::new(),
                page: Some(number),
                malformed: false,
            });
        }
        let progress = &mut self.progress;
        match self.last_page {
            None => {
                self.last_page = Some(page.meta.total_pages);
                progress.total = page.meta.total;
                progress.total_pages = Some(page.meta.total_pages);
            }
            Some(_) => {
                if progress.total_pages != Some(page.meta.total_pages) || progress.total != page.meta.total {
                    let warning = format!(
                        "the batch changed while it was read: page {number} reports {} pages and {} records, \
                         the first page read {} and {}; every record that existed at the start is still yielded once",
                        page.meta.total_pages,
                        show(page.meta.total),
                        show(progress.total_pages),
                        show(progress.total),
                    );
                    log::warn!("{warning}");
                    progress.warnings.push(warning);
                    progress.total_pages = Some(page.meta.total_pages);
                    progress.total = page.meta.total;
                }
            }
        }
        let last = self.last_page.unwrap_or(number);
        if page.records.is_empty() && number < last {
            let warning = format!("page {number} is empty but the batch claims {last} pages");
            log::warn!("{warning}");
            progress.warnings.push(warning);
        }

        let seen = &mut self.seen;
        let dropped = page.retain(|r| r.key.is_none_or(|k| seen.insert(k)));
        if dropped > 0 {
            let warning = format!("page {number} repeated {dropped} record(s) already yielded; they were skipped");
            log::warn!("{warning}");
            progress.warnings.push(warning);
            progress.duplicates_dropped += dropped as u64;
        }
        if let Some(max) = self.options.max_items {
            page.truncate((max - progress.items_delivered) as usize);
        }
        progress.items_delivered += page.records.len() as u64;
        progress.next_page = number + 1;
        let reached_max = self.options.max_items.is_some_and(|m| progress.items_delivered >= m);
        if number >= last || reached_max {
            progress.done = true;
            self.abort_in_flight();
            if reached_max && page.records.len() < page.meta.count as usize {
                // This page was cut short: resuming must start at it again.
                self.progress.next_page = number;
            }
        }
        Ok(page)
    }
}

fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "an unknown number of".into(), |n| n.to_string())
}
