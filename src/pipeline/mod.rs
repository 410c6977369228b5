//! The page pipeline: the first page tells how many there are, the rest are fetched
//! `concurrency` at a time in the background and handed over strictly in page order.
//! `concurrency` workers take pages off one queue, so requests start in page order; up to
//! three times as many pages may wait, fetched, for their turn: a page stuck in a retry
//! then does not stall the requests behind it, and memory stays a few pages.
//!
//! Every method is cancel-safe: a caller may drop a `next()` future (Ctrl-C, an asyncio
//! cancel) and call again without losing or repeating a page.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
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
    /// Pages asked for, in order, each with where its answer will arrive.
    in_flight: VecDeque<(u64, oneshot::Receiver<Result<Page>>)>,
    /// `concurrency` tasks taking pages off one queue in order: requests start in page order.
    workers: Option<Workers>,
    seen: RecentIds,
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
        Ok(PagePipeline {
            client,
            query,
            options,
            last_page: None,
            next_to_fetch: start,
            in_flight: VecDeque::new(),
            workers: None,
            seen: RecentIds::default(),
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
        let answer = handle.await;
        self.in_flight.pop_front();
        let result = answer.unwrap_or_else(|_| Err(Error::Internal(format!("the fetch of page {number} was lost"))));
        match result.and_then(|page| self.accept(number, page)) {
            Ok(page) => {
                // Fetch ahead while the caller reads this page (after the first, as soon as
                // the page count is known), not only when it asks for the next.
                if !self.progress.done {
                    self.fill_window();
                }
                Ok(Some(page))
            }
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
            let (reply, answer) = oneshot::channel();
            let workers = self.workers.get_or_insert_with(|| {
                Workers::start(&self.client, &self.options.retry, self.options.concurrency.max(1))
            });
            if workers.jobs.send((self.query.with_page(number), reply)).is_err() {
                break; // workers gone: the receiver then reports the page lost
            }
            self.in_flight.push_back((number, answer));
            self.next_to_fetch += 1;
        }
    }

    fn abort_in_flight(&mut self) {
        self.in_flight.clear();
        self.workers = None;
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
        seen.end_page();
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

/// How many recent pages' record ids are remembered to catch repeats. A batch that shifts
/// while read repeats records of the page just before, so a window keeps memory flat
/// (a few hundred KB) where a set of every id would grow with the batch.
const REMEMBERED_PAGES: usize = 64;

/// The ids (hashed) of the records yielded by the last `REMEMBERED_PAGES` pages.
#[derive(Default)]
struct RecentIds {
    /// The ids are hashes already (`Record::key`): the set uses them as they are.
    ids: HashSet<u64, nohash_hasher::BuildNoHashHasher<u64>>,
    pages: VecDeque<Vec<u64>>,
    current: Vec<u64>,
}

impl RecentIds {
    /// False when the id was yielded recently.
    fn insert(&mut self, id: u64) -> bool {
        let fresh = self.ids.insert(id);
        if fresh {
            self.current.push(id);
        }
        fresh
    }

    fn end_page(&mut self) {
        self.pages.push_back(std::mem::take(&mut self.current));
        if self.pages.len() > REMEMBERED_PAGES {
            for id in self.pages.pop_front().unwrap_or_default() {
                self.ids.remove(&id);
            }
        }
    }
}

type Job = (Query, oneshot::Sender<Result<Page>>);

/// The tasks that fetch pages; dropping this stops them, requests in flight included.
struct Workers {
    jobs: mpsc::UnboundedSender<Job>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    fn start(client: &Arc<ApiClient>, retry: &RetryPolicy, count: usize) -> Workers {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let tasks = (0..count)
            .map(|_| {
                let (client, retry, queue) = (Arc::clone(client), retry.clone(), Arc::clone(&queue));
                tokio::spawn(async move {
                    loop {
                        let job = queue.lock().await.recv().await;
                        let Some((query, reply)) = job else { return };
                        if !reply.is_closed() {
                            let _ = reply.send(client.fetch_page(&query, &retry).await);
                        }
                    }
                })
            })
            .collect();
        Workers { jobs, tasks }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "an unknown number of".into(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{parse_base_url, ClientConfig};
    use crate::mock::{FaultKind, MockConfig, MockServer};
    use std::time::Duration;

    fn client(server: &MockServer, concurrency: usize) -> Arc<ApiClient> {
        Arc::new(
            ApiClient::new(ClientConfig {
                base_url: parse_base_url(&server.url()).unwrap(),
                token: "test-token".into(),
                timeout: Duration::from_secs(10),
                retry: RetryPolicy { initial: Duration::from_millis(1), ..RetryPolicy::default() },
                concurrency,
                max_body_bytes: 1 << 24,
            })
            .unwrap(),
        )
    }

    fn options(concurrency: usize) -> PipelineOptions {
        PipelineOptions {
            start_page: 1,
            max_items: None,
            concurrency,
            retry: RetryPolicy { initial: Duration::from_millis(1), ..RetryPolicy::default() },
        }
    }

    fn read_all(pipeline: &mut PagePipeline) -> Result<Vec<(u64, usize)>> {
        crate::runtime::runtime().block_on(async {
            let mut pages = Vec::new();
            while let Some(page) = pipeline.next().await? {
                pages.push((page.meta.page, page.records.len()));
            }
            Ok(pages)
        })
    }

    #[test]
    fn pages_in_order_each_once() {
        let server = MockServer::start(MockConfig { files: 1001, ..MockConfig::default() }).unwrap();
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let mut pipeline = PagePipeline::new(client(&server, 6), query, options(6)).unwrap();
        let pages = read_all(&mut pipeline).unwrap();
        assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), (1..=101).collect::<Vec<_>>());
        assert_eq!(pages.iter().map(|p| p.1).sum::<usize>(), 1001);
        assert_eq!(server.requests().len(), 101, "every page fetched exactly once");
        assert_eq!(pipeline.progress().next_page, 102);
        assert!(pipeline.progress().done && pipeline.progress().warnings.is_empty());
    }

    #[test]
    fn requests_start_in_page_order_with_one_at_a_time() {
        let server = MockServer::start(MockConfig { files: 300, ..MockConfig::default() }).unwrap();
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let mut pipeline = PagePipeline::new(client(&server, 1), query, options(1)).unwrap();
        read_all(&mut pipeline).unwrap();
        let asked: Vec<String> = server.requests().iter().map(|r| r.query.clone()).collect();
        let expected: Vec<String> = (1..=30).map(|p| format!("page={p}&limit=10")).collect();
        assert_eq!(asked, expected);
    }

    #[test]
    fn an_error_names_its_page_and_the_pipeline_can_go_on() {
        let server = MockServer::start(MockConfig { files: 100, ..MockConfig::default() }).unwrap();
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let opts = PipelineOptions { retry: RetryPolicy { max_retries: 0, ..options(1).retry }, ..options(1) };
        let mut pipeline = PagePipeline::new(client(&server, 1), query, opts).unwrap();
        let rt = crate::runtime::runtime();
        assert_eq!(rt.block_on(pipeline.next()).unwrap().unwrap().meta.page, 1);
        // Pages are fetched ahead: the fault lands on whichever request reaches the server next.
        server.fail_next(FaultKind::Status(400), 1);
        let mut seen = vec![1];
        let err = loop {
            match rt.block_on(pipeline.next()) {
                Ok(Some(page)) => seen.push(page.meta.page),
                Ok(None) => panic!("no page failed"),
                Err(err) => break err,
            }
        };
        let failed = seen.len() as u64 + 1;
        assert_eq!(err.page(), Some(failed), "{err}");
        assert_eq!(seen, (1..failed).collect::<Vec<_>>());
        assert_eq!(pipeline.progress().next_page, failed);
        let rest = read_all(&mut pipeline).unwrap();
        assert_eq!(rest.first().map(|p| p.0), Some(failed), "going on starts again at the failed page");
        assert_eq!(seen.len() + rest.len(), 10);
    }

    #[test]
    fn fetching_ahead_starts_once_the_first_page_is_read() {
        let server = MockServer::start(MockConfig { files: 1000, ..MockConfig::default() }).unwrap();
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let mut pipeline = PagePipeline::new(client(&server, 2), query, options(2)).unwrap();
        let rt = crate::runtime::runtime();
        assert_eq!(rt.block_on(pipeline.next()).unwrap().unwrap().meta.page, 1);
        let window = 1 + WINDOW_PER_REQUEST * 2;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.requests().len() < window && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(server.requests().len(), window, "the window is fetched while page 1 is read, and no more");
    }

    #[test]
    fn max_items_cuts_a_page_and_resume_starts_at_it() {
        let server = MockServer::start(MockConfig { files: 100, ..MockConfig::default() }).unwrap();
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let opts = PipelineOptions { max_items: Some(25), ..options(4) };
        let mut pipeline = PagePipeline::new(client(&server, 4), query, opts).unwrap();
        let pages = read_all(&mut pipeline).unwrap();
        assert_eq!(pages, vec![(1, 10), (2, 10), (3, 5)]);
        assert_eq!(pipeline.progress().next_page, 3);
    }

    #[test]
    fn paging_guards() {
        let server = MockServer::start(MockConfig { files: 10, ..MockConfig::default() }).unwrap();
        let mut pipeline = PagePipeline::new(client(&server, 1), Query::new("b"), options(1)).unwrap();
        let page = |n: u64, pages: u64, files: &str| {
            let body = format!(r#"{{"page":{n},"total_pages":{pages},"total_files":9,"files":[{files}]}}"#);
            crate::page::parse_page(bytes::Bytes::from(body), false, n).unwrap()
        };
        pipeline.accept(1, page(1, 3, r#"{"file_id":"a"}"#)).unwrap();
        let wrong = pipeline.accept(2, page(3, 3, "")).unwrap_err();
        assert!(matches!(wrong, Error::Format { page: Some(2), .. }), "{wrong}");
        assert!(wrong.to_string().contains("asked for page 2"));
        pipeline.accept(2, page(2, 3, "")).unwrap();
        assert!(pipeline.progress().warnings.iter().any(|w| w.contains("page 2 is empty")));
        pipeline.accept(3, page(3, 4, r#"{"file_id":"c"}"#)).unwrap();
        assert!(pipeline.progress().warnings.iter().any(|w| w.contains("changed while it was read")));
        assert!(pipeline.progress().done, "the page count of the first answer bounds the read");
    }

    #[test]
    fn recent_ids_forget_old_pages() {
        let mut ids = RecentIds::default();
        assert!(ids.insert(1) && !ids.insert(1));
        ids.end_page();
        for page in 0..REMEMBERED_PAGES as u64 {
            assert!(ids.ids.contains(&1), "still remembered {page} pages later");
            assert!(ids.insert(100 + page));
            ids.end_page();
        }
        assert!(!ids.ids.contains(&1) && ids.insert(1), "forgotten after REMEMBERED_PAGES pages");
        assert_eq!(ids.ids.len(), REMEMBERED_PAGES + 1, "memory stays a window");
    }

    #[test]
    fn duplicates_are_dropped_with_a_warning() {
        // The last page has room, so the shift loses nothing off the end.
        let server = MockServer::start(MockConfig { files: 45, ..MockConfig::default() }).unwrap();
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let mut pipeline = PagePipeline::new(client(&server, 1), query, options(1)).unwrap();
        let rt = crate::runtime::runtime();
        rt.block_on(pipeline.next()).unwrap().unwrap();
        server.fail_next(FaultKind::Shift(2), 100);
        let rest = read_all(&mut pipeline).unwrap();
        assert_eq!(rest.iter().map(|p| p.1).sum::<usize>(), 35, "45 unique records in all");
        assert_eq!(pipeline.progress().duplicates_dropped, 2);
        assert!(pipeline.progress().warnings.iter().any(|w| w.contains("repeated 2")));
    }
}
