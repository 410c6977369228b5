//! The `/download` transport: one `GET /download/batch/{id}?format=ndjson` answer read as it
//! arrives, its lines gathered `limit` at a time into synthetic pages (page `n` holds the view's
//! records `(n-1)*limit..n*limit`, as the results endpoint's page `n` does), so every consumer of
//! pages reads it unchanged. One task reads the stream and builds the pages off the consumer's
//! thread; a channel of a few pages bounds the memory.
//!
//! A stream cut (an error, a line cut or garbled, an end before the announced total) is
//! requested again and read from where it stopped: the records already taken are skipped, and
//! the last of them must come back the same (the seam), else the order changed and the read
//! fails with `BatchChanged` rather than lose or repeat a record.
//!
//! A read the cache may keep (see `cached`) also gets each page's body as the results endpoint
//! would send it, compressed on the reading task before `fields=` narrows the page.

use std::hash::{BuildHasher, BuildHasherDefault};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use jiter::Jiter;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use url::Url;

use super::{PipelineOptions, Progress};
use crate::cache::{all_final, envelope, Frame};
use crate::error::{Error, Result};
use crate::fetch::ApiClient;
use crate::page::{error_answer, parse_page, Page};
use crate::projection::Projection;
use crate::query::Query;
use crate::retry::{Decision, RetryPolicy};
use crate::status::fetch_status;

/// Pages built ahead of the consumer.
const PAGES_AHEAD: usize = 2;

/// `{base}/download/batch/{batch_id}?format=ndjson&...`, the batch id as one percent-encoded
/// segment, with the results query's filter and options (never `page` or `limit`).
pub fn download_url(query: &Query, base: &Url) -> Url {
    let mut url = query.url(base);
    {
        let mut segments = url.path_segments_mut().expect("base URL is http(s), so it has a path");
        segments.pop().pop().pop().extend(["download", "batch", query.batch_id.as_str()]);
    }
    let options: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != "page" && k != "limit").map(|(k, v)| (k.into(), v.into())).collect();
    url.query_pairs_mut().clear().append_pair("format", "ndjson").extend_pairs(options);
    url
}

/// Splits a body that arrives in pieces into lines (without their `\n` or `\r\n`), numbered
/// from 1, a line cut across pieces joined again.
#[derive(Default)]
pub struct LineReader {
    partial: Vec<u8>,
    line: u64,
}

impl LineReader {
    /// Calls `each(number, line)` for every line `chunk` completes. A line longer than `max`
    /// bytes is an error.
    pub fn feed(&mut self, chunk: &[u8], max: usize, mut each: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let mut rest = chunk;
        while let Some(at) = memchr::memchr(b'\n', rest) {
            self.line += 1;
            if self.partial.is_empty() {
                each(self.line, trim_cr(&rest[..at]))?;
            } else {
                self.partial.extend_from_slice(&rest[..at]);
                let line = std::mem::take(&mut self.partial);
                each(self.line, trim_cr(&line))?;
                self.partial = line;
                self.partial.clear();
            }
            rest = &rest[at + 1..];
        }
        if self.partial.len() + rest.len() > max {
            return Err(Error::format(
                format!("line {} of the download is longer than max_body_bytes ({max} bytes)", self.line + 1),
                &self.partial,
                false,
            ));
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The body ended: its last line when it did not end with a newline.
    pub fn finish(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.partial.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        self.line += 1;
        Some((self.line, std::mem::take(&mut self.partial)))
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Records gathered into the next page: the body of a results page, so that `parse_page`
/// reads it (records checked and keyed as a page's are).
struct PageBuilder {
    raw: bool,
    body: Vec<u8>,
    /// Each record's line number and span in `body`, for an error that names the line.
    lines: Vec<(u64, Range<usize>)>,
}

impl PageBuilder {
    fn new(raw: bool) -> PageBuilder {
        let mut builder = PageBuilder { raw, body: Vec::new(), lines: Vec::new() };
        builder.clear();
        builder
    }

    fn clear(&mut self) {
        self.body.clear();
        self.lines.clear();
        self.body.extend_from_slice(if self.raw {
            b"{\"total_pages\":0,\"jobs\":["
        } else {
            b"{\"total_pages\":0,\"files\":["
        });
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn push(&mut self, number: u64, line: &[u8]) {
        if !self.lines.is_empty() {
            self.body.push(b',');
        }
        let start = self.body.len();
        self.body.extend_from_slice(line);
        self.lines.push((number, start..self.body.len()));
    }

    fn first_bad(&self) -> Option<Error> {
        bad_line(&self.body, &self.lines)
    }

    /// The page numbered `number`; a record that is not JSON is an error naming its line.
    fn build(&mut self, number: u64) -> Result<Page> {
        self.body.extend_from_slice(b"]}");
        let body = Bytes::from(std::mem::take(&mut self.body));
        let parsed = parse_page(body.clone(), self.raw, number);
        let lines = std::mem::take(&mut self.lines);
        self.clear();
        let mut page = parsed.map_err(|err| bad_line(&body, &lines).unwrap_or(err))?;
        page.meta.page = number;
        page.meta.count = page.records.len() as u64;
        Ok(page)
    }
}

/// The first of `lines` that is not JSON, as the error naming it (a garbled line: worth a retry).
#[cold]
fn bad_line(body: &[u8], lines: &[(u64, Range<usize>)]) -> Option<Error> {
    lines.iter().find_map(|(number, span)| {
        let line = &body[span.clone()];
        let mut jiter = Jiter::new(line);
        let checked = jiter.next_skip().and_then(|()| jiter.finish());
        checked.err().map(|e| Error::format(format!("line {number} of the download is not JSON: {e}"), line, true))
    })
}

/// A line that cannot be a record: not an object (the answer is not NDJSON), or the service's
/// `{"error": ...}` body.
fn check_line(number: u64, line: &[u8]) -> Result<()> {
    let text = line.trim_ascii_start();
    if !text.starts_with(b"{") {
        let hint = if number == 1 && text.starts_with(b"[") { " (a JSON array: the answer is not NDJSON)" } else { "" };
        return Err(Error::format(format!("line {number} of the download is not a JSON object{hint}"), line, false));
    }
    if text[1..].trim_ascii_start().starts_with(b"\"error\"") {
        if let Some(err) = error_answer(200, line, &["file_id", "job_id", "filename", "status"]) {
            return Err(err);
        }
    }
    Ok(())
}

/// A fixed hash of a record's bytes, to check the seam of a resumed stream.
fn line_hash(line: &[u8]) -> u64 {
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(line)
}

/// What the reading task sends the consumer.
enum Event {
    /// A page, the hash of its last record as the service sent it (the seam to resume at), and
    /// its body's start for the cache (see `Reader::keep`).
    Page(Page, u64, Option<Frame>),
    /// The stream ended: the view held this many records.
    End(u64),
    Failed(Error),
}

/// Where a (re)started read begins: records of the view to skip, and the hash the last of them
/// must have.
#[derive(Clone, Copy, Debug, Default)]
struct Resume {
    skip: u64,
    seam: Option<u64>,
}

/// The reading task's side: the stream, requested again when cut.
struct Reader {
    api: Arc<ApiClient>,
    url: Url,
    batch_id: String,
    raw: bool,
    limit: u64,
    retry: RetryPolicy,
    projection: Option<Arc<Projection>>,
    events: mpsc::Sender<Event>,
    /// The view's size from the status endpoint, when it said (a finished batch, whole files).
    total: Arc<OnceLock<u64>>,
    /// Ask the status endpoint once the stream answers (after it, so that the stream is the
    /// first request the service sees), and say there whether the batch is finished.
    ask_total: std::sync::Mutex<Option<watch::Sender<Option<bool>>>>,
    /// Compress each page for the cache, until a record that may still change is seen.
    keep: AtomicBool,
}

/// One attempt's progress through the view.
struct Position {
    /// Records of the view taken (skipped at the start, or put in a page).
    taken: u64,
    resume: Resume,
    pending: PageBuilder,
    /// The hash of the last record taken into a page, and of the last one sent in a page.
    last: Option<u64>,
    sent: Option<u64>,
    /// Records of the view up to the end of the last page sent.
    sent_through: u64,
}

impl Position {
    fn new(resume: Resume, raw: bool) -> Position {
        let pending = PageBuilder::new(raw);
        Position { taken: 0, resume, pending, last: resume.seam, sent: resume.seam, sent_through: resume.skip }
    }

    /// Where the next attempt starts: after the last record sent (those in the page being
    /// built are read again).
    fn resume(&self) -> Resume {
        Resume { skip: self.sent_through, seam: self.sent }
    }
}

impl Reader {
    async fn run(self, resume: Resume) {
        let mut at = Position::new(resume, self.raw);
        let mut attempt = 0;
        loop {
            let failure = match self.read_once(&mut at).await {
                Ok(()) => return,
                Err(err) => err,
            };
            let next = at.resume();
            if next.skip > at.resume.skip {
                attempt = 0; // a stream that moves is not failing
            }
            at = Position::new(next, self.raw);
            match self.pause(&failure, attempt, next.skip).await {
                Some(again) => attempt = again,
                None => {
                    let failure = match attempt {
                        0 => failure,
                        n => failure.append(&format!(" (after {n} retries)")),
                    };
                    let _ = self.events.send(Event::Failed(failure)).await;
                    return;
                }
            }
        }
    }

    /// Waits before the next attempt; None when the failure is final.
    async fn pause(&self, err: &Error, attempt: u32, from: u64) -> Option<u32> {
        let (wait, next) = if err.is_throttle() {
            (self.api.throttle_wait(err, &self.retry).ok()?, attempt)
        } else if err.is_retryable() {
            match self.retry.decide(attempt, err.retry_after()) {
                Decision::RetryAfter(wait) => (wait, attempt + 1),
                Decision::GiveUp => return None,
            }
        } else {
            return None;
        };
        self.api.stats.retries.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "the download failed ({err}); requested again in {:.2}s, read on after record {from}",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
        Some(next)
    }

    /// One request, read to its end (Ok: the read is over) or to a failure.
    async fn read_once(&self, at: &mut Position) -> Result<()> {
        let started = self.api.rate.start().await;
        let mut response = match self.api.open_stream(&self.url).await {
            Ok(response) => response,
            Err(err) => {
                if err.is_throttle() {
                    self.api.rate.on_throttle(started);
                }
                return Err(err);
            }
        };
        self.api.rate.on_success();
        if let Some(finished) = self.ask_total.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.spawn_total(finished);
        }
        let mut lines = LineReader::default();
        let max = self.api.max_body_bytes();
        while let Some(chunk) = self.api.next_chunk(&mut response).await? {
            let mut full = Vec::new();
            lines.feed(&chunk, max, |number, line| self.take(at, number, line, &mut full))?;
            for page in full {
                self.send(page).await?;
            }
        }
        if let Some((number, line)) = lines.finish() {
            // A last line without its newline is taken if it is whole, else the stream was cut.
            let whole = Jiter::new(&line).next_skip().is_ok();
            if !whole {
                return Err(Error::connection(
                    format!("the download ended in the middle of line {number}"),
                    false,
                    true,
                ));
            }
            let mut full = Vec::new();
            self.take(at, number, &line, &mut full)?;
            for page in full {
                self.send(page).await?;
            }
        }
        if let Some(&total) = self.total.get().filter(|&&total| at.taken < total) {
            return Err(Error::connection(
                format!("the download ended after {} of the {total} records the batch holds", at.taken),
                false,
                true,
            ));
        }
        if at.pending.len() > 0 {
            let page = self.build(at)?;
            self.send(page).await?;
        }
        let _ = self.events.send(Event::End(at.taken)).await;
        Ok(())
    }

    /// One line: skipped (before the resume point; the seam checked), or taken into the page,
    /// which joins `full` once it holds `limit` records.
    fn take(&self, at: &mut Position, number: u64, line: &[u8], full: &mut Vec<Built>) -> Result<()> {
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        // A line before it that is not JSON either is the first wrong one (a pretty-printed body).
        check_line(number, line).map_err(|err| at.pending.first_bad().unwrap_or(err))?;
        at.taken += 1;
        if at.taken <= at.resume.skip {
            if at.taken == at.resume.skip {
                check_seam(at.resume, line)?;
            }
            return Ok(());
        }
        at.pending.push(number, line);
        at.last = Some(line_hash(line));
        if at.pending.len() as u64 == self.limit {
            let page = self.build(at)?;
            full.push(page);
        }
        Ok(())
    }

    /// The batch's size from the status endpoint (one request, beside the stream).
    fn spawn_total(&self, finished: watch::Sender<Option<bool>>) {
        let (api, retry, total) = (Arc::clone(&self.api), self.retry.clone(), Arc::clone(&self.total));
        let batch = self.batch_id.clone();
        tokio::spawn(async move {
            match fetch_status(&api, &batch, &retry).await {
                Ok(status) if !status.in_progress() => {
                    if let Some(files) = status.total_files {
                        let _ = total.set(files);
                    }
                    finished.send_replace(Some(true));
                }
                Ok(_) => {
                    finished.send_replace(Some(false));
                }
                Err(err) => {
                    finished.send_replace(Some(false));
                    log::info!("the batch's size is unknown until the download ends ({err})")
                }
            }
        });
    }

    fn build(&self, at: &mut Position) -> Result<Built> {
        let number = (at.taken - 1) / self.limit + 1;
        let mut page = at.pending.build(number)?;
        page.meta.limit = Some(self.limit);
        let kept = self.keep(&page);
        if let Some(projection) = &self.projection {
            page = projection.apply(&page)?;
        }
        at.sent = at.last;
        at.sent_through = at.taken;
        Ok((page, at.last.expect("a page holds a record"), kept))
    }

    /// The page's body as the results endpoint sends it, but for its totals (known at the end:
    /// see `envelope`), compressed; None once a record that may still change was seen.
    fn keep(&self, page: &Page) -> Option<Frame> {
        if !self.keep.load(Ordering::Relaxed) {
            return None;
        }
        if !all_final(page) {
            self.keep.store(false, Ordering::Relaxed);
            return None;
        }
        let records = page.records.len() as u64;
        let head = envelope::head(&self.batch_id, page.meta.page, self.limit, records, self.raw);
        Frame::compress(&[&head, &page.body[page.array.clone()]].concat(), records).ok()
    }

    async fn send(&self, (page, seam, kept): Built) -> Result<()> {
        // The consumer is gone (dropped, or done with max_items): stop reading.
        let event = Event::Page(page, seam, kept);
        self.events.send(event).await.map_err(|_| Error::internal("the download's reader is gone"))
    }
}

/// A page built, the hash of its last record, and its body for the cache.
type Built = (Page, u64, Option<Frame>);

fn check_seam(resume: Resume, line: &[u8]) -> Result<()> {
    match resume.seam {
        Some(seam) if seam != line_hash(line) => Err(Error::BatchChanged {
            message: format!(
                "the download answered other records when requested again: record {} is not the one read \
                 before, so the records after it cannot be matched to those already delivered",
                resume.skip
            ),
            page: None,
        }),
        _ => Ok(()),
    }
}

/// The consumer's side: pages in order from the reading task, `max_items` applied, the progress
/// kept. Dropping it stops the task and closes the stream.
pub struct DownloadStream {
    api: Arc<ApiClient>,
    url: Url,
    query: Query,
    retry: RetryPolicy,
    projection: Option<Arc<Projection>>,
    max_items: Option<u64>,
    /// Where a new task starts: after the last page delivered.
    resume: Resume,
    events: Option<mpsc::Receiver<Event>>,
    task: Option<JoinHandle<()>>,
    total: Arc<OnceLock<u64>>,
    /// The status endpoint is asked once, beside the first stream: this goes to that stream's
    /// reader (None once handed over), which says there whether the batch is finished.
    status_tx: Option<watch::Sender<Option<bool>>>,
    finished: watch::Receiver<Option<bool>>,
    /// Hand each page's body over for the cache (`keep_pages`).
    keep: bool,
}

impl Drop for DownloadStream {
    fn drop(&mut self) {
        self.stop();
    }
}

impl DownloadStream {
    /// A download read from `options.start_page` (its records before skipped on the way). Page
    /// ranges (`end_page`) and a filter kept by the client are the paged read's.
    pub fn new(api: Arc<ApiClient>, query: Query, options: &PipelineOptions) -> Result<DownloadStream> {
        query.validate()?;
        if options.end_page.is_some() || options.filter.is_some() {
            return Err(Error::invalid(
                "transport='download' reads the whole view in one stream: a page range (end_page) or \
                 filter_status needs transport='pages'",
            ));
        }
        let limit = u64::from(query.limit);
        let skip = (options.start_page.max(1) - 1).saturating_mul(limit);
        let (status_tx, finished) = watch::channel(None);
        Ok(DownloadStream {
            url: download_url(&query, api.base_url()),
            api,
            query,
            retry: options.retry.clone(),
            projection: options.projection.clone(),
            max_items: options.max_items,
            resume: Resume { skip, seam: None },
            events: None,
            task: None,
            total: Arc::new(OnceLock::new()),
            status_tx: Some(status_tx),
            finished,
            keep: false,
        })
    }

    /// The status endpoint, asked beside the stream, said the batch is finished (so it stays);
    /// waits for that answer. False when it was not asked, failed, or said the batch runs.
    pub async fn batch_finished(&mut self) -> bool {
        if self.status_tx.is_some() {
            return false; // never asked
        }
        let answer = self.finished.wait_for(Option::is_some).await.map(|answer| *answer);
        answer.ok().flatten().unwrap_or(false)
    }

    /// With each page, hand over its body as the results endpoint sends it, for a cache entry
    /// (before the stream is asked for).
    pub fn keep_pages(&mut self, keep: bool) {
        self.keep = keep;
    }

    fn start(&mut self) -> &mut mpsc::Receiver<Event> {
        let (events, receiver) = mpsc::channel(PAGES_AHEAD);
        let reader = Reader {
            api: Arc::clone(&self.api),
            url: self.url.clone(),
            batch_id: self.query.batch_id.clone(),
            raw: self.query.raw,
            limit: u64::from(self.query.limit),
            retry: self.retry.clone(),
            projection: self.projection.clone(),
            events,
            total: Arc::clone(&self.total),
            ask_total: std::sync::Mutex::new(if self.wants_total() { self.status_tx.take() } else { None }),
            keep: AtomicBool::new(self.keep),
        };
        self.task = Some(tokio::spawn(reader.run(self.resume)));
        self.events.insert(receiver)
    }

    /// Whole files: the status endpoint tells how many (when the batch is finished). Anything
    /// else stays unknown until the stream ends.
    fn wants_total(&self) -> bool {
        !self.query.raw && self.query.status.is_none()
    }

    fn stop(&mut self) {
        self.events = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// The next page (with its body for the cache, when kept), or None at the end. Cancel-safe;
    /// after an error, the next call requests the stream again from the page after the last
    /// delivered.
    pub async fn next(&mut self, progress: &mut Progress) -> Result<Option<(Page, Option<Frame>)>> {
        if progress.done {
            return Ok(None);
        }
        let events = match self.events.as_mut() {
            Some(events) => events,
            None => self.start(),
        };
        let event = events.recv().await;
        if let Some(&total) = self.total.get() {
            progress.total = Some(total);
            progress.total_pages = Some(total.div_ceil(u64::from(self.query.limit)));
        }
        match event {
            Some(Event::Page(page, seam, kept)) => {
                self.keep &= kept.is_some(); // a stream asked for again keeps nothing more
                Ok(Some((self.deliver(page, seam, progress), kept)))
            }
            Some(Event::End(records)) => {
                self.finish(records, progress);
                Ok(None)
            }
            Some(Event::Failed(err)) => {
                self.stop();
                Err(err)
            }
            None => {
                self.stop();
                Err(Error::internal("the download's reader stopped without a word"))
            }
        }
    }

    fn deliver(&mut self, mut page: Page, seam: u64, progress: &mut Progress) -> Page {
        let number = page.meta.page;
        self.resume = Resume { skip: number * u64::from(self.query.limit), seam: Some(seam) };
        let before_max = page.records.len();
        if let Some(max) = self.max_items {
            page.truncate(max.saturating_sub(progress.items_delivered) as usize);
        }
        progress.items_delivered += page.records.len() as u64;
        // A page cut short by `max_items` is where a resumed read starts, as for pages.
        progress.next_page = if page.records.len() < before_max { number } else { number + 1 };
        if self.max_items.is_some_and(|max| progress.items_delivered >= max) {
            progress.done = true;
            self.stop(); // the rest is not wanted: the stream is closed
        }
        page.meta.total = progress.total;
        page.meta.total_pages = progress.total_pages.unwrap_or(0);
        page
    }

    fn finish(&mut self, records: u64, progress: &mut Progress) {
        self.stop();
        progress.total = Some(records);
        progress.total_pages = Some(records.div_ceil(u64::from(self.query.limit)));
        progress.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `body` fed in pieces of `size` bytes.
    fn lines(body: &[u8], size: usize) -> (Vec<(u64, String)>, Option<(u64, Vec<u8>)>) {
        let mut reader = LineReader::default();
        let mut got = Vec::new();
        for piece in body.chunks(size) {
            let each = |n, line: &[u8]| {
                got.push((n, String::from_utf8(line.to_vec()).unwrap()));
                Ok(())
            };
            reader.feed(piece, 1 << 20, each).unwrap();
        }
        (got, reader.finish())
    }

    #[test]
    fn lines_are_whole_however_the_body_is_cut_into_pieces() {
        let body = "{\"a\":1}\n{\"b\":\"é\\n\"}\r\n\n{\"c\":[1,2]}\n".as_bytes();
        let expected = [(1, "{\"a\":1}"), (2, "{\"b\":\"é\\n\"}"), (3, ""), (4, "{\"c\":[1,2]}")];
        for size in 1..=body.len() {
            let (got, rest) = lines(body, size);
            let got: Vec<(u64, &str)> = got.iter().map(|(n, l)| (*n, l.as_str())).collect();
            assert_eq!(got, expected, "pieces of {size}");
            assert_eq!(rest, None);
        }
    }

    #[test]
    fn a_last_line_without_its_newline_is_kept_apart() {
        let (got, rest) = lines(b"{\"a\":1}\n{\"b\":", 3);
        assert_eq!(got.len(), 1);
        assert_eq!(rest, Some((2, b"{\"b\":".to_vec())));
        assert_eq!(lines(b"{\"a\":1}\n  \r\n ", 4).1, None, "trailing blanks are no line");
    }

    #[test]
    fn a_line_past_the_cap_is_an_error() {
        let mut reader = LineReader::default();
        reader.feed(b"{}\n{\"long\":\"", 12, |_, _| Ok(())).unwrap();
        let err = reader.feed(b"xxxxxxxxxx", 12, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().starts_with("line 2 of the download is longer than max_body_bytes"), "{err}");
    }

    #[test]
    fn pages_hold_the_lines_and_a_bad_line_is_named() {
        let mut builder = PageBuilder::new(false);
        builder.push(1, br#"{"file_id":"a","n":1}"#);
        builder.push(3, br#"{"file_id":"b","n":12345678901234567890}"#);
        let page = builder.build(4).unwrap();
        assert_eq!((page.meta.page, page.meta.count, page.records.len()), (4, 2, 2));
        assert_eq!(page.record_json(1), br#"{"file_id":"b","n":12345678901234567890}"#);
        assert!(page.records[1].long_numbers && page.records[0].key.is_some());
        builder.push(7, br#"{"file_id":"c"}"#);
        builder.push(8, br#"{"file_id":"d","#);
        let err = builder.build(5).unwrap_err();
        assert!(err.to_string().starts_with("line 8 of the download is not JSON"), "{err}");
        assert!(err.is_retryable(), "a garbled line is read again");
        let mut jobs = PageBuilder::new(true);
        jobs.push(1, br#"{"job_id":"j"}"#);
        assert_eq!(jobs.build(1).unwrap().records.len(), 1);
    }

    #[test]
    fn lines_that_are_no_records_are_refused_by_number() {
        assert!(check_line(5, br#" {"file_id":"a"}"#).is_ok());
        let err = check_line(1, br#"[{"file_id":"a"}]"#).unwrap_err();
        assert!(err.to_string().contains("line 1 of the download is not a JSON object (a JSON array"), "{err}");
        assert!(!err.is_retryable());
        let err = check_line(1, br#"{"error": "batch not found"}"#).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(
            check_line(9, br#"{"error":"timeout","file_id":"a","status":"failed"}"#).is_ok(),
            "a record's own field"
        );
    }

    #[test]
    fn a_resumed_stream_must_meet_the_seam() {
        let resume = Resume { skip: 400, seam: Some(line_hash(b"{\"file_id\":\"x\"}")) };
        assert!(check_seam(resume, b"{\"file_id\":\"x\"}").is_ok());
        let err = check_seam(resume, b"{\"file_id\":\"y\"}").unwrap_err();
        assert!(matches!(err, Error::BatchChanged { .. }) && err.to_string().contains("record 400"), "{err}");
        assert!(check_seam(Resume { skip: 400, seam: None }, b"{}").is_ok(), "start_page skips unchecked");
    }

    #[test]
    fn the_url_keeps_the_query_but_pages() {
        let base = Url::parse("https://api.soket.ai/transcribe/").unwrap();
        let query = Query {
            status: Some(crate::query::Status::Failed),
            raw: true,
            speech_information: Some(true),
            ..Query::new("b/1")
        };
        assert_eq!(
            download_url(&query, &base).as_str(),
            "https://api.soket.ai/transcribe/download/batch/b%2F1?format=ndjson&status=failed&raw=true&speech_information=true"
        );
    }
}
