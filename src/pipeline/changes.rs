//! Each page checked against the one before it, in delivery order, for a batch that changes
//! while it is read.
//!
//! Offset paging reads records `(p-1)*limit ..` of the view *as it is when page p is served*.
//! If the view shrinks between the reads of pages p and p+1 (files leaving a status filter), or
//! grows while p+1 is served from an older snapshot than p (concurrent requests), a record can
//! slide across the boundary unseen. Either way page p+1 reports a lower total than page p.
//! Then both pages are read again, in order, and the records not yet delivered are merged into
//! page p+1: with the originals, that covers every record present throughout, as long as the
//! totals of the four reads stay within a page of each other. When they do not, or a re-read
//! fails, the client says records may be missing rather than claim more than holds.
//! Growth read in order only repeats records, which `seen` drops.
//!
//! A view can also move without its totals moving (files leaving and joining at the same
//! rate, a shift): what no page-to-page check sees, the end does, when fewer unique records
//! came than the batch announced. A filtered view of a running batch is not read at all for
//! that reason (the whole batch is, see `filter`).

use crate::error::{Error, Result};
use crate::page::Page;

use super::workers::Fetched;
use super::{Held, PagePipeline};

/// What to do when the batch moved under the reader by more than the client can make up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnChange {
    /// Say so (warnings, `complete` false) and go on.
    #[default]
    Warn,
    /// Raise `BatchChangedError`.
    Raise,
}

impl OnChange {
    pub fn parse(value: &str) -> Result<OnChange> {
        match value {
            "warn" => Ok(OnChange::Warn),
            "raise" => Ok(OnChange::Raise),
            other => Err(Error::invalid(format!("on_change must be 'warn' or 'raise'; got {other:?}"))),
        }
    }
}

/// The totals one read of a page reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub number: u64,
    pub total: Option<u64>,
    pub total_pages: u64,
}

impl Snapshot {
    fn of(page: &Page) -> Snapshot {
        Snapshot { number: page.meta.page, total: page.meta.total, total_pages: page.meta.total_pages }
    }

    /// Records, or failing a total, pages scaled to records.
    fn size(&self, limit: u64) -> u64 {
        self.total.unwrap_or(self.total_pages.saturating_mul(limit))
    }
}

/// Pages `before` and `before + 1` to read again before delivering the second.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reread {
    before: Snapshot,
    /// Records may be missing between them, and that was said already.
    warned: bool,
}

/// The pages that repeated records of the pages before them: the view shifted there, so
/// records may have slid past their ends. The first few are named; the rest only counted.
#[derive(Debug, Default)]
pub(super) struct Shifts {
    named: Vec<u64>,
    more: u64,
}

impl Shifts {
    const NAMED: usize = 10;

    fn push(&mut self, page: u64) {
        if self.named.len() < Self::NAMED {
            self.named.push(page);
        } else {
            self.more += 1;
        }
    }

    /// ` (the view shifted at page(s) 2, 5 ...)`, or nothing when it never did.
    fn describe(&self) -> String {
        if self.named.is_empty() {
            return String::new();
        }
        let mut pages = self.named.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        if self.more > 0 {
            pages += &format!(" and {} more", self.more);
        }
        format!(" (the view shifted at page(s) {pages}, which repeated records of the page before)")
    }
}

#[cold]
fn wrong_page(asked: u64, answered: u64) -> Error {
    Error::format(format!("asked for page {asked} but the response says page {answered}"), b"", false).on_page(asked)
}

fn gap(before: u64, after: u64, moved: u64, limit: u64) -> String {
    format!(
        "records may be missing between pages {before} and {after}: the batch moved by {moved} records \
         between their reads, a page ({limit}) or more"
    )
}

impl PagePipeline {
    /// The records per page the service applied.
    fn page_size(&self, page: &Page) -> u64 {
        page.meta.limit.filter(|&l| l > 0).unwrap_or(u64::from(self.query.limit))
    }

    /// Checks a page read for position `number` against the page before it.
    pub(super) fn check(&mut self, number: u64, fetched: Fetched) -> Result<Held> {
        let Fetched { page, served, kept } = fetched;
        if page.meta.page != number {
            return Err(wrong_page(number, page.meta.page));
        }
        let snapshot = Snapshot::of(&page);
        let limit = self.page_size(&page);
        let mut reread = None;
        match self.previous {
            None => {
                self.first.get_or_insert(snapshot);
            }
            Some(before) if (before.total, before.total_pages) != (snapshot.total, snapshot.total_pages) => {
                self.totals_moved = true;
                self.note_change(&before, &snapshot)?;
                let moved = before.size(limit).abs_diff(snapshot.size(limit));
                let warned = moved >= limit;
                if warned {
                    self.warn(gap(before.number, number, moved, limit), true, number)?;
                }
                if snapshot.size(limit) < before.size(limit) && before.number + 1 == number {
                    reread = Some(Reread { before, warned });
                }
            }
            Some(_) => {}
        }
        // Filtered here, the batch's totals are not the records this read will yield.
        self.progress.total = snapshot.total.filter(|_| self.options.filter.is_none());
        self.progress.total_pages = Some(snapshot.total_pages);
        // A page count that grows extends the read (files pushed past the last page), while the
        // guarantee still holds: a batch growing faster than it is read would never end.
        let grown = if self.progress.complete { snapshot.total_pages } else { 0 };
        let mut last = self.last_page.unwrap_or(snapshot.total_pages).max(grown).max(number);
        if let Some(end) = self.options.end_page {
            last = last.min(end);
        }
        self.last_page = Some(last);

        if served < limit && number < snapshot.total_pages {
            let message = format!(
                "page {number} holds {served} record(s), fewer than its limit of {limit}, though the batch has {} \
                 pages: records may be missing",
                snapshot.total_pages
            );
            self.warn(message, true, number)?;
        }
        Ok(Held { page, served, snapshot, reread, kept })
    }

    fn note_change(&mut self, before: &Snapshot, after: &Snapshot) -> Result<()> {
        if self.progress.changed {
            return Ok(());
        }
        self.progress.changed = true;
        let show = |s: &Snapshot| match s.total {
            Some(total) => format!("{total} records in {} pages", s.total_pages),
            None => format!("{} pages", s.total_pages),
        };
        let message = format!(
            "the batch changed while it was read (page {} reported {}, page {} {}): every record present \
             throughout the read is still yielded once, unless another warning says otherwise; records that \
             joined or left it meanwhile may or may not appear",
            before.number,
            show(before),
            after.number,
            show(after),
        );
        self.warn(message, false, after.number)
    }

    /// Reads pages `before` and `before + 1` again, in order, for the records a shrinking view
    /// (or a later page served from an older snapshot) slid past both first reads.
    pub(super) async fn reread(&self, reread: Reread) -> Result<[Page; 2]> {
        let first = reread.before.number;
        let shaping = self.options.shaping();
        let read = async |number: u64| {
            let query = self.query.with_page(number);
            let page = super::workers::fetch(&self.client, &query, &self.options.retry, &shaping).await?.page;
            if page.meta.page != number {
                return Err(wrong_page(number, page.meta.page));
            }
            Ok(page)
        };
        Ok([read(first).await?, read(first + 1).await?])
    }

    /// The page handed over: the records first read, with those only the re-reads found
    /// around them (in page order), repeats dropped, `max_items` applied.
    pub(super) fn deliver(&mut self, held: Held, recovered: Option<[Page; 2]>) -> Result<Page> {
        let Held { mut page, served, snapshot, reread, .. } = held;
        let number = snapshot.number;
        let limit = self.page_size(&page);
        // Said (or raised) before anything is marked delivered, so going on after it loses nothing.
        if let (Some(Reread { before, warned: false }), Some([again_before, again])) = (reread, &recovered) {
            let sizes = [before, snapshot, Snapshot::of(again_before), Snapshot::of(again)].map(|s| s.size(limit));
            let spread = sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0);
            if spread >= limit {
                self.warn(gap(before.number, number, spread, limit), true, number)?;
            }
        }
        let seen = &mut self.seen;
        let repeated = page.retain(|r| r.key.is_none_or(|k| seen.insert(k)));
        if let Some([mut again_before, mut again]) = recovered {
            // Records without an id cannot be told apart from those delivered: left out.
            again_before.retain(|r| r.key.is_some_and(|k| seen.insert(k)));
            again.retain(|r| r.key.is_some_and(|k| seen.insert(k)));
            if !again_before.records.is_empty() || !again.records.is_empty() {
                page = Page::concat(page.meta.clone(), &[&again_before, &page, &again]);
            }
        }
        self.seen.end_page();
        if repeated > 0 {
            if self.progress.duplicates_skipped == 0 {
                let message = format!(
                    "page {number} repeated {repeated} record(s) already yielded; they were skipped (as any \
                     later repeats will be: `duplicates_skipped` counts them)"
                );
                self.warn(message, false, number)?;
            }
            self.progress.changed = true;
            self.progress.duplicates_skipped += repeated as u64;
            self.shifts.push(number);
        }
        if self.options.filter.is_some() {
            page.meta.total = None; // as `progress.total`: the batch's, not this read's
        }
        let progress = &mut self.progress;
        let before_max = page.records.len();
        if let Some(max) = self.options.max_items {
            page.truncate((max - progress.items_delivered) as usize);
        }
        let cut = page.records.len() < before_max;
        progress.items_delivered += page.records.len() as u64;
        progress.next_page = number + 1;
        self.previous = Some(snapshot);
        let reached_max = self.options.max_items.is_some_and(|m| progress.items_delivered >= m);
        let past_the_end = served == 0 && snapshot.total_pages < number;
        if number >= self.last_page.unwrap_or(number) || reached_max || past_the_end {
            if cut {
                // This page was cut short: resuming must start at it again.
                self.progress.next_page = number;
            }
            self.finish();
        }
        Ok(page)
    }

    /// The read is over: did it deliver what the batch announced? Only unique records count
    /// (a view that shifted repeats some and slides others past every read), and only when
    /// the announcement held throughout: the totals never moved, the read was not bounded, and
    /// the records were the batch's own (not filtered here).
    pub(super) fn finish(&mut self) {
        if self.progress.done {
            return;
        }
        self.progress.done = true;
        self.abort_in_flight();
        let bounded = self.options.max_items.is_some() || self.options.end_page.is_some();
        let unannounced = self.totals_moved || bounded || self.options.filter.is_some();
        let (Some(total), false) = (self.first.and_then(|f| f.total), unannounced) else { return };
        let skipped = (self.options.start_page - 1).saturating_mul(u64::from(self.query.limit));
        let expected = total.saturating_sub(skipped);
        let read = self.progress.items_delivered;
        if read < expected && self.progress.complete {
            let message = format!(
                "read {read} unique record(s) where the batch announced {expected}{}: records may be missing{}",
                if skipped > 0 { format!(" from page {}", self.options.start_page) } else { String::new() },
                self.shifts.describe(),
            );
            if let Err(err) = self.warn(message, true, self.progress.next_page.saturating_sub(1)) {
                self.pending = Some(err);
            }
        }
    }
}
