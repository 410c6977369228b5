//! The pipeline's use of the cache (see `crate::cache`). A read first looks for an entry of its
//! key: found, every page comes from disk, checked as it is read, and no request is made at all
//! (a finished batch does not change, so nothing is revalidated). Not found, a whole read keeps
//! each page's body as the service sent it, compressed on the worker threads and written in
//! page order as pages are delivered; the entry is put in place only if the read ends complete,
//! unchanged, every record final, and the status endpoint says the batch is done.
//!
//! A `/download` read uses the same entries (its records are the paged read's, page for page):
//! found, the entry serves it as it serves a paged read; not found, a whole download gathers its
//! pages, compressed, until the stream ends (their totals are known only then: see
//! `cache::envelope`), and they are kept by the same rule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::cache::{all_final, envelope, Cache, EntryKey, EntryReader, EntryWriter, Frame};
use crate::error::Result;
use crate::fetch::ApiClient;
use crate::page::{parse_page, Page};
use crate::query::Query;
use crate::retry::RetryPolicy;
use crate::status::fetch_status;

use super::{PipelineOptions, Progress};

/// A read's use of the cache (`PipelineOptions::cache`).
#[derive(Debug, Clone)]
pub struct CacheRead {
    pub cache: Arc<Cache>,
    pub key: EntryKey,
    /// Read from the service even when an entry exists, and replace it.
    pub refresh: bool,
}

/// Where the workers get pages, and whether they keep copies for a new entry.
pub(super) struct Source {
    read: CacheRead,
    disk: Option<EntryReader>,
    /// A page of the entry failed its check: the entry is gone, the rest comes from the service.
    damage: Mutex<Option<String>>,
    abandoned: AtomicBool,
    /// Keep each page's body (a whole read from the service that may end in an entry).
    capture: bool,
    /// A record that may still change was seen: nothing more is worth keeping.
    not_final: AtomicBool,
}

impl Source {
    fn new(read: CacheRead, disk: Option<EntryReader>, capture: bool) -> Source {
        Source {
            read,
            disk,
            damage: Mutex::new(None),
            abandoned: AtomicBool::new(false),
            capture,
            not_final: AtomicBool::new(false),
        }
    }

    /// One page, from the entry when there is one, else from the service; with its body
    /// compressed for the new entry when this read keeps one and its records are all final.
    pub(super) async fn page(
        &self,
        client: &ApiClient,
        query: &Query,
        retry: &RetryPolicy,
    ) -> Result<(Page, Option<Frame>)> {
        if let Some(body) = self.from_disk(query.page) {
            self.read.cache.note_hit();
            let page = parse_page(body, query.raw, query.page).map_err(|e| e.on_page(query.page))?;
            return Ok((page, None));
        }
        let page = client.fetch_page(query, retry).await?;
        let frame = self.keep(&page);
        Ok((page, frame))
    }

    fn from_disk(&self, number: u64) -> Option<bytes::Bytes> {
        let disk = self.disk.as_ref().filter(|_| !self.abandoned.load(Ordering::Relaxed))?;
        match disk.page(number) {
            Ok(body) => body,
            Err(err) => {
                self.abandoned.store(true, Ordering::Relaxed);
                self.read.cache.remove(&self.read.key);
                let message = format!("{err}: the entry was removed, and the batch is read from the service");
                self.damage.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(message);
                None
            }
        }
    }

    fn keep(&self, page: &Page) -> Option<Frame> {
        if !self.capture || self.not_final.load(Ordering::Relaxed) {
            return None;
        }
        if !all_final(page) {
            self.not_final.store(true, Ordering::Relaxed);
            return None;
        }
        Frame::compress(&page.body, page.records.len() as u64).ok()
    }
}

/// The cache side of one pipeline: the source its workers share, the entry being written.
#[derive(Default)]
pub(super) struct CacheState {
    source: Option<Arc<Source>>,
    writer: Option<(EntryWriter, Arc<Cache>, EntryKey)>,
    /// A download's pages, each without its end (the totals), until the stream ends.
    gathered: Option<Gathered>,
    looked: bool,
}

/// Where a download read's pages come from (`CacheState::open_download`).
pub(super) enum DownloadFrom {
    /// The entry: the page pipeline serves them from disk, as it serves a paged read.
    Entry,
    /// The stream; `keep`: its pages are gathered for a new entry.
    Stream { keep: bool },
}

#[derive(Default)]
struct Gathered {
    frames: Vec<Frame>,
    bytes: u64,
}

impl CacheState {
    pub(super) fn source(&self) -> Option<Arc<Source>> {
        self.source.clone()
    }

    /// Looks for the read's entry (once, before any request). Returns a warning for an entry
    /// found damaged; a hit clears `check_running` (only a finished batch has an entry).
    pub(super) fn open(&mut self, options: &mut PipelineOptions) -> Option<String> {
        if std::mem::replace(&mut self.looked, true) {
            return None;
        }
        let read = options.cache.clone()?;
        let (disk, warning) = lookup(&read);
        if disk.is_none() && whole(options) {
            self.start_writer(&read);
        }
        options.check_running &= disk.is_none();
        let capture = self.writer.is_some();
        self.source = Some(Arc::new(Source::new(read, disk, capture)));
        warning
    }

    /// `open` for a `/download` read (once, before the stream is asked for): an entry found
    /// serves it as it serves a paged read; else a whole read gathers its pages for a new one.
    /// None once looked.
    pub(super) fn open_download(&mut self, options: &mut PipelineOptions) -> Option<(DownloadFrom, Option<String>)> {
        if std::mem::replace(&mut self.looked, true) {
            return None;
        }
        let Some(read) = options.cache.clone() else { return Some((DownloadFrom::Stream { keep: false }, None)) };
        let (disk, warning) = lookup(&read);
        if disk.is_some() {
            options.check_running = false;
            self.source = Some(Arc::new(Source::new(read, disk, false)));
            return Some((DownloadFrom::Entry, warning));
        }
        if whole(options) && self.start_writer(&read) {
            self.gathered = Some(Gathered::default());
        }
        Some((DownloadFrom::Stream { keep: self.gathered.is_some() }, warning))
    }

    fn start_writer(&mut self, read: &CacheRead) -> bool {
        match read.cache.writer() {
            Ok(writer) => self.writer = Some((writer, Arc::clone(&read.cache), read.key.clone())),
            Err(err) => log::info!("the cache cannot be written ({err}): this read is not kept"),
        }
        self.writer.is_some()
    }

    /// This read may still end in an entry.
    pub(super) fn keeping(&self) -> bool {
        self.writer.is_some()
    }

    /// A download's page delivered (in order), with its body's start compressed (`None`: its
    /// records are not all final). Kept in memory until the stream ends; a read whose pages
    /// outgrow the whole cache is not kept (its entry would be evicted at once).
    pub(super) fn gathered(&mut self, number: u64, frame: Option<Frame>) {
        let (Some(gathered), Some((_, cache, _))) = (&mut self.gathered, &self.writer) else { return };
        let next = gathered.frames.len() as u64 + 1;
        match frame {
            Some(frame) if number == next && gathered.bytes + frame.stored_len() <= cache.max_bytes() => {
                gathered.bytes += frame.stored_len();
                gathered.frames.push(frame);
            }
            _ => {
                self.gathered = None;
                self.writer = None; // not a whole read of final records that fits: nothing is kept
            }
        }
    }

    /// A page delivered (in order): its body goes into the entry. Returns a warning if a page
    /// of the entry read was found damaged.
    pub(super) fn delivered(&mut self, number: u64, frame: Option<Frame>) -> Option<String> {
        if let Some((writer, ..)) = &mut self.writer {
            let appended = match frame {
                Some(frame) if writer.pages() + 1 == number => writer.append(&frame).is_ok(),
                _ => false,
            };
            if !appended {
                self.writer = None; // not a whole read of final records: nothing is kept
            }
        }
        let source = self.source.as_ref()?;
        source.damage.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The read is over: keeps the entry if the read was whole, complete and unchanged (a
    /// damaged entry's warning aside), every page of it written, and the status endpoint says
    /// the batch is done (one request, unless `known_finished`: a download asked it already).
    pub(super) async fn close(
        &mut self,
        client: &ApiClient,
        options: &PipelineOptions,
        query: &Query,
        progress: &Progress,
        known_finished: bool,
    ) {
        let Some((mut writer, cache, key)) = self.writer.take() else { return };
        let gathered = self.gathered.take();
        let clean = progress.complete && !progress.changed && options.filter.is_none();
        let pages = gathered.as_ref().map_or(writer.pages(), |g| (g.frames.len() as u64).max(1));
        if !clean || progress.total_pages.is_none_or(|total| pages < total.max(1)) {
            return;
        }
        // A batch the read already heard is finished stays finished: no need to ask again.
        if !known_finished {
            match fetch_status(client, &query.batch_id, &options.retry).await {
                Ok(status) if !status.in_progress() => {}
                Ok(_) => return log::info!("the batch is still running: its pages are not kept"),
                Err(err) => return log::info!("the batch's status is unknown ({err}): its pages are not kept"),
            }
        }
        let query = query.clone();
        let stored = tokio::task::spawn_blocking(move || {
            if let Some(gathered) = gathered {
                gathered.write(&mut writer, &query)?;
            }
            cache.commit(writer, key)
        })
        .await;
        if let Ok(Err(err)) = stored {
            log::warn!("the cache entry could not be written: {err}");
        }
    }
}

impl Gathered {
    /// Each page ended with the view's totals (its records: the read was whole) and appended in
    /// order; a view with no record is one empty page, as the results endpoint answers it.
    fn write(self, writer: &mut EntryWriter, query: &Query) -> std::io::Result<()> {
        let (limit, raw) = (u64::from(query.limit), query.raw);
        let total = self.frames.iter().map(Frame::records).sum();
        let tail = envelope::tail(total, limit, raw);
        let mut frames = self.frames;
        if frames.is_empty() {
            frames.push(Frame::compress(
                &[envelope::head(&query.batch_id, 1, limit, 0, raw), b"[]".to_vec()].concat(),
                0,
            )?);
        }
        for frame in frames {
            writer.append(&frame.then(&tail)?)?;
        }
        Ok(())
    }
}

/// The read's entry, unless `refresh` (then it is replaced); a damaged one is gone, and said.
fn lookup(read: &CacheRead) -> (Option<EntryReader>, Option<String>) {
    if read.refresh {
        return (None, None);
    }
    match read.cache.lookup(&read.key) {
        Ok(disk) => (disk, None),
        Err(err) => (None, Some(format!("{err}: the entry was removed, and the batch is read from the service"))),
    }
}

/// A read of the whole view, the only kind that may be kept.
fn whole(options: &PipelineOptions) -> bool {
    options.start_page == 1 && options.end_page.is_none() && options.max_items.is_none() && options.filter.is_none()
}
