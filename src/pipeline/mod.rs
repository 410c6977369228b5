//! The page pipeline: the first page tells how many there are, the rest are fetched
//! `concurrency` at a time in the background and handed over strictly in page order.
//! `concurrency` workers take pages off one queue, so requests start in page order; up to
//! three times as many pages may wait, fetched, for their turn: a page stuck in a retry
//! then does not stall the requests behind it, and memory stays a few pages.
//!
//! A batch that changes while it is read (still processing, or a status filter whose view
//! moves) is checked at every page boundary, in delivery order: see [`changes`]. A `status=`
//! read of a batch that is still running reads the whole batch instead, which does not move,
//! and keeps the records of that status itself: see [`filter`] and [`PagePipeline::choose_view`].
//!
//! Every method is cancel-safe: a caller may drop a `next()` future (Ctrl-C, an asyncio
//! cancel) and call again without losing or repeating a page.

mod cached;
mod changes;
mod download;
mod filter;
mod seen;
mod workers;

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::cache::Frame;
use crate::error::{Error, Result};
use crate::fetch::ApiClient;
use crate::page::Page;
use crate::projection::Projection;
use crate::query::{Query, Status};
use crate::retry::RetryPolicy;
use crate::status::fetch_status;

pub use cached::CacheRead;
use cached::{CacheState, DownloadFrom};
pub use changes::OnChange;
use changes::{Reread, Shifts, Snapshot};
use seen::RecentIds;
use workers::{Fetched, Shaping, Workers};

/// Pages fetched or being fetched ahead of the consumer, per allowed request.
const WINDOW_PER_REQUEST: usize = 3;

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub start_page: u64,
    /// The last page to read (inclusive): no page past it is ever requested.
    pub end_page: Option<u64>,
    pub max_items: Option<u64>,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub on_change: OnChange,
    /// Narrow each record to these paths (`fields=`), on the worker threads.
    pub projection: Option<Arc<Projection>>,
    /// Keep only the records whose `"status"` is this, on the worker threads (before the
    /// projection); the query then reads the whole batch. Totals then are the whole batch's.
    pub filter: Option<Status>,
    /// Before the first page of a `status=` query, ask the status endpoint whether the batch is
    /// still running; if it is, read the whole batch with `filter` instead (see `choose_view`).
    pub check_running: bool,
    /// Serve the read from the cache's entry, or keep it there once it proves final (`cached`).
    pub cache: Option<CacheRead>,
}

impl PipelineOptions {
    pub fn new(concurrency: usize, retry: RetryPolicy) -> PipelineOptions {
        PipelineOptions {
            start_page: 1,
            end_page: None,
            max_items: None,
            concurrency,
            retry,
            on_change: OnChange::Warn,
            projection: None,
            filter: None,
            check_running: false,
            cache: None,
        }
    }
}

impl PipelineOptions {
    fn shaping(&self) -> Shaping {
        Shaping { filter: self.filter, projection: self.projection.clone(), source: None }
    }
}

/// What the consumer can read about the pipeline at any time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `total_files` (`total_jobs`) as the last page read said.
    pub total: Option<u64>,
    pub total_pages: Option<u64>,
    /// The first page not yet handed over: pass it as `start_page` to resume.
    pub next_page: u64,
    pub items_delivered: u64,
    /// Records a page repeated from the pages before it (not delivered again).
    pub duplicates_skipped: u64,
    /// What was noticed while paging, worded to claim no more than holds.
    pub warnings: Vec<String>,
    /// The batch was seen to change while it was read (totals moved, or records repeated).
    pub changed: bool,
    /// False once the client saw that records may be missing from what it delivered.
    pub complete: bool,
    pub done: bool,
}

/// A page read and checked, not yet handed over.
struct Held {
    page: Page,
    /// Records the service sent in it, before the filter.
    served: u64,
    snapshot: Snapshot,
    /// Read the page before and this one again first: the view may have left a gap.
    reread: Option<Reread>,
    /// Its body as the service sent it, compressed for a new cache entry.
    kept: Option<Frame>,
}

pub struct PagePipeline {
    client: Arc<ApiClient>,
    query: Query,
    options: PipelineOptions,
    /// The last page to read: the largest page count a page reported, within `end_page`.
    last_page: Option<u64>,
    next_to_fetch: u64,
    /// Pages asked for, in order, each with where its answer will arrive.
    in_flight: VecDeque<(u64, oneshot::Receiver<Result<Fetched>>)>,
    workers: Option<Workers>,
    seen: RecentIds,
    /// The totals of the last page handed over, as it was first read.
    previous: Option<Snapshot>,
    held: Option<Held>,
    /// The first page read, for the check at the end (did the batch deliver what it announced?).
    first: Option<Snapshot>,
    /// Some page reported other totals than the page before it.
    totals_moved: bool,
    /// Pages that repeated records of the pages before them (the view shifted under them).
    shifts: Shifts,
    /// An error found once the last page was handed over, raised by the next call.
    pending: Option<Error>,
    progress: Progress,
    cache: CacheState,
    /// Pages from one `/download` stream instead of page requests (`PagePipeline::download`).
    download: Option<download::DownloadStream>,
}

impl Drop for PagePipeline {
    fn drop(&mut self) {
        self.abort_in_flight();
    }
}

impl PagePipeline {
    /// A read of `query`'s pages as `options` say, both as `ReadSpec::validate` made them (the
    /// one place a read is checked: `crate::read`).
    pub fn new(client: Arc<ApiClient>, query: Query, options: PipelineOptions) -> Result<PagePipeline> {
        let start = options.start_page;
        let done = options.max_items == Some(0);
        Ok(PagePipeline {
            client,
            query,
            options,
            last_page: None,
            next_to_fetch: start,
            in_flight: VecDeque::new(),
            workers: None,
            seen: RecentIds::default(),
            previous: None,
            held: None,
            first: None,
            totals_moved: false,
            shifts: Shifts::default(),
            pending: None,
            progress: Progress {
                total: None,
                total_pages: None,
                next_page: start,
                items_delivered: 0,
                duplicates_skipped: 0,
                warnings: Vec::new(),
                changed: false,
                complete: true,
                done,
            },
            cache: CacheState::default(),
            download: None,
        })
    }

    /// The same read from one `/download` stream (see [`download`]): its pages are numbered
    /// as the results endpoint's, and `start_page`, `max_items` and `fields` apply as they do.
    /// Its cache entry is the paged read's: one found serves it from disk, with no request.
    pub fn download(client: Arc<ApiClient>, query: Query, options: PipelineOptions) -> Result<PagePipeline> {
        let stream = download::DownloadStream::new(Arc::clone(&client), query.clone(), &options)?;
        let mut pipeline = PagePipeline::new(client, query, options)?;
        pipeline.download = Some(stream);
        Ok(pipeline)
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The next page in order, or None when the batch is exhausted.
    pub async fn next(&mut self) -> Result<Option<Page>> {
        if self.download.is_some() {
            self.open_download()?;
        }
        if let Some(download) = &mut self.download {
            let Some((page, kept)) = download.next(&mut self.progress).await? else {
                let finished = self.cache.keeping() && download.batch_finished().await;
                self.cache.close(&self.client, &self.options, &self.query, &self.progress, finished).await;
                return Ok(None);
            };
            self.cache.gathered(page.meta.page, kept);
            return Ok(Some(page));
        }
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        if self.held.is_none() {
            if self.progress.done {
                self.cache.close(&self.client, &self.options, &self.query, &self.progress, false).await;
                return Ok(None);
            }
            if let Some(message) = self.cache.open(&mut self.options) {
                self.warn(message, false, self.options.start_page)?;
            }
            if self.options.check_running {
                self.choose_view().await?;
            }
            self.fill_window();
            let Some((number, answer)) = self.in_flight.front_mut() else {
                self.finish();
                return self.pending.take().map_or(Ok(None), Err);
            };
            let number = *number;
            let answer = answer.await;
            self.in_flight.pop_front();
            let result =
                answer.unwrap_or_else(|_| Err(Error::internal(format!("the fetch of page {number} was lost"))));
            match result.and_then(|fetched| self.check(number, fetched)) {
                Ok(held) => self.held = Some(held),
                Err(err) => return Err(self.stop_at(number, err)),
            }
        }
        // The pages around a change are read again here: a cancel or an error meanwhile keeps the
        // held page (and what is fetched ahead) for the next call.
        let recovered = match self.held.as_ref().and_then(|h| h.reread) {
            Some(reread) => Some(self.reread(reread).await?),
            None => None,
        };
        let mut held = self.held.take().expect("a page is held");
        let number = held.snapshot.number;
        let kept = held.kept.take();
        match self.deliver(held, recovered) {
            Ok(page) => {
                if let Some(message) = self.cache.delivered(number, kept) {
                    let _ = self.warn(message, false, number); // a note: never an error
                }
                // Fetch ahead while the caller reads this page, not only when it asks for the next.
                if !self.progress.done {
                    self.fill_window();
                }
                Ok(Some(page))
            }
            Err(err) => Err(self.stop_at(number, err)),
        }
    }

    /// Before a download's first page: a cache entry of the read serves it from disk, as it serves
    /// a paged read (the stream is then never asked for); else the stream is read, and kept in a
    /// new entry if it proves final.
    fn open_download(&mut self) -> Result<()> {
        let Some((from, warning)) = self.cache.open_download(&mut self.options) else { return Ok(()) };
        if let Some(message) = warning {
            self.warn(message, false, self.options.start_page)?;
        }
        match from {
            DownloadFrom::Entry => self.download = None,
            DownloadFrom::Stream { keep } => self.download.as_mut().expect("a download read").keep_pages(keep),
        }
        Ok(())
    }

    /// After an error: drop what is in flight; going on starts again at `number`.
    fn stop_at(&mut self, number: u64, err: Error) -> Error {
        self.abort_in_flight();
        self.next_to_fetch = number;
        err
    }

    /// The last page worth requesting now: within the page count, `end_page`, and what
    /// `max_items` still needs (assuming full pages; more are asked for if repeats were dropped).
    fn fetch_bound(&self) -> u64 {
        let Some(mut bound) = self.last_page else { return self.next_to_fetch };
        if let Some(max) = self.options.max_items {
            let remaining = max.saturating_sub(self.progress.items_delivered);
            bound = bound.min(self.progress.next_page - 1 + remaining.div_ceil(u64::from(self.query.limit)));
        }
        bound
    }

    fn fill_window(&mut self) {
        // Until the first answer tells the page count, only one request is out.
        let window = if self.last_page.is_none() {
            1
        } else {
            // A throttled page waits its Retry-After: the pages behind it keep coming meanwhile.
            WINDOW_PER_REQUEST * self.options.concurrency.max(1) + self.client.rate.pages_ahead()
        };
        let bound = self.fetch_bound();
        while self.in_flight.len() < window && self.next_to_fetch <= bound {
            let number = self.next_to_fetch;
            let workers = self.workers.get_or_insert_with(|| {
                Workers::start(
                    &self.client,
                    &self.options.retry,
                    &Shaping { source: self.cache.source(), ..self.options.shaping() },
                    self.options.concurrency.max(1),
                )
            });
            self.in_flight.push_back((number, workers.fetch(self.query.with_page(number))));
            self.next_to_fetch += 1;
        }
    }

    /// A `status=` read asks once whether the batch still runs. If it does, its filtered view
    /// moves (files leave and join it as they finish, at any rate, even at a constant size,
    /// which no check of totals can see), so the whole batch is read, whose files keep their
    /// places, and filtered here. A finished batch's view cannot move: it is read as asked.
    /// A server whose status endpoint is missing (or answers something else) is read as asked.
    async fn choose_view(&mut self) -> Result<()> {
        let Some(status) = self.query.status else {
            self.options.check_running = false;
            return Ok(());
        };
        let batch = &self.query.batch_id;
        match fetch_status(&self.client, batch, &self.options.retry).await {
            Ok(answer) if answer.in_progress() => {
                log::info!("status={} of a running batch: reading the whole batch and filtering", status.as_str());
                self.query.status = None;
                self.options.filter = Some(status);
            }
            Ok(_) => {}
            Err(err) if status_unknown(&err) => {
                log::info!(
                    "status={}: the batch's state is unknown ({err}); reading the filtered view",
                    status.as_str()
                )
            }
            Err(err) => return Err(err),
        }
        self.options.check_running = false;
        Ok(())
    }

    fn abort_in_flight(&mut self) {
        self.in_flight.clear();
        self.workers = None;
    }

    /// Says what was noticed; when records may be missing, the read is no longer complete
    /// (and with `on_change="raise"`, that is an error).
    fn warn(&mut self, message: String, may_be_missing: bool, page: u64) -> Result<()> {
        if may_be_missing {
            self.progress.complete = false;
            if self.options.on_change == OnChange::Raise {
                return Err(Error::batch_changed(message, page));
            }
        }
        log::warn!("{message}");
        self.progress.warnings.push(message);
        Ok(())
    }
}

/// The status endpoint cannot tell whether the batch runs: it is missing on this server, it
/// answers another shape, or it does not know the batch (the results endpoint decides then:
/// with a filter, it may answer an empty page for a missing batch).
fn status_unknown(err: &Error) -> bool {
    matches!(err, Error::Api { status: 404 | 405 | 501, .. } | Error::NotFound { .. } | Error::Format { .. })
}

#[cfg(test)]
mod tests;
