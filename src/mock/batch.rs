//! One batch's files in batch order, with the views a page is cut from (files by status,
//! prefix sums of jobs), so that any page is found in O(log n) and written in O(limit).
//!
//! A batch can change while it is read, as a real one does: it gains files (at the end or at
//! the front), and its unfinished files finish (per request, or over time). Every change is
//! exact and deterministic for a given order of requests (and, over time, of the clock).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::data::{
    chunk_status, duration_tenths, file_status, file_uuid, final_status, finish_fraction, job_count, parse_uuid, Item,
    COMPLETED, PROCESSING, RETRYING,
};

/// Where a growing batch gains its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrowAt {
    /// After the files it has (their positions stay).
    #[default]
    End,
    /// Before them: every file already there moves back by the files gained.
    Front,
}

/// How a batch changes while it is read; the default is a batch that never changes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Changes {
    /// Files gained after each request answered.
    pub grow_per_request: u64,
    pub grow_at: GrowAt,
    /// After each request answered, the first this many `processing` files (in batch order)
    /// become `completed`.
    pub complete_per_request: u64,
    /// Each `processing`/`retrying` file reaches its final status (completed or failed, as
    /// drawn for it) at a moment drawn within this long after it joined the batch.
    pub processing: Option<Duration>,
}

/// The records of one page, and how many match the query in all.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub total: u64,
    pub items: Vec<Item>,
}

/// A file is known by its identity (the index its records are drawn from, in order of
/// creation) and found by its position (where it stands in the batch now).
pub(crate) struct Batch {
    pub seed: u64,
    cdf: [f64; 4],
    changes: Changes,
    created: Instant,
    /// Identity of the file at each position.
    order: VecDeque<u32>,
    /// Current status, by identity.
    statuses: Vec<u8>,
    /// Chunk jobs, by identity.
    jobs: Vec<u8>,
    /// Unfinished files on the clock: (due, ms after creation; identity), soonest first.
    due: BinaryHeap<Reverse<(u64, u32)>>,
    last_due_ms: u64,
    /// Identities by current status, in batch order.
    by_status: [Vec<u32>; 4],
    /// Jobs of the files before position p (len = files + 1).
    job_prefix: Vec<u64>,
    /// Completed jobs of the files before position p (len = files + 1).
    done_job_prefix: Vec<u64>,
    /// Audio of all the files, in tenths of a second.
    duration_tenths: u64,
    /// File id (as 128 bits) to identity, built on the first lookup by id.
    by_file_id: Option<HashMap<u128, u32>>,
}

impl Batch {
    pub(crate) fn new(seed: u64, files: u64, changes: Changes, cdf: [f64; 4]) -> Batch {
        let mut batch = Batch {
            seed,
            cdf,
            changes,
            created: Instant::now(),
            order: VecDeque::with_capacity(files as usize),
            statuses: Vec::with_capacity(files as usize),
            jobs: Vec::with_capacity(files as usize),
            due: BinaryHeap::new(),
            last_due_ms: 0,
            by_status: Default::default(),
            job_prefix: vec![0],
            done_job_prefix: vec![0],
            duration_tenths: 0,
            by_file_id: None,
        };
        batch.grow(files, GrowAt::End);
        batch
    }

    pub(crate) fn len(&self) -> u64 {
        self.order.len() as u64
    }

    fn unfinished(&self) -> u64 {
        (self.by_status[usize::from(RETRYING)].len() + self.by_status[usize::from(PROCESSING)].len()) as u64
    }

    /// Whether the batch is still being worked on (growing, or with unfinished files).
    pub(crate) fn in_progress(&self) -> bool {
        self.changes.grow_per_request > 0 || self.unfinished() > 0
    }

    /// Files by status: completed, failed, retrying, processing.
    pub(crate) fn counts(&self) -> [u64; 4] {
        std::array::from_fn(|s| self.by_status[s].len() as u64)
    }

    /// Audio of all the files, in tenths of a second.
    pub(crate) fn duration_tenths(&self) -> u64 {
        self.duration_tenths
    }

    /// Seconds until the last unfinished file is due; without a clock, about the time one
    /// worker takes for the files in flight.
    pub(crate) fn estimated_completion_seconds(&self) -> u64 {
        match self.changes.processing {
            _ if self.unfinished() == 0 => 0,
            Some(_) => self.last_due_ms.saturating_sub(self.elapsed_ms()).div_ceil(1000),
            None => self.unfinished() * 4,
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }

    /// Called before answering a request: files whose moment has come reach their final status.
    pub(crate) fn advance(&mut self) {
        let now = self.elapsed_ms();
        let mut changed = false;
        while let Some(&Reverse((due, identity))) = self.due.peek() {
            if due > now {
                break;
            }
            self.due.pop();
            let status = &mut self.statuses[identity as usize];
            // It may have been completed per request meanwhile.
            if matches!(*status, RETRYING | PROCESSING) {
                *status = final_status(self.seed, u64::from(identity), &self.cdf);
                changed = true;
            }
        }
        if changed {
            self.reindex();
        }
    }

    /// Called after answering a request to the batch: files complete, then files are gained
    /// (so the files completed are ones the request could have seen).
    pub(crate) fn answered(&mut self) {
        let complete = self.changes.complete_per_request as usize;
        if complete > 0 {
            let processing = &self.by_status[usize::from(PROCESSING)];
            let finishing: Vec<u32> = processing[..complete.min(processing.len())].to_vec();
            if !finishing.is_empty() {
                for identity in finishing {
                    self.statuses[identity as usize] = COMPLETED;
                }
                self.reindex();
            }
        }
        self.grow(self.changes.grow_per_request, self.changes.grow_at);
    }

    fn grow(&mut self, files: u64, at: GrowAt) {
        let start = self.statuses.len() as u64;
        let end = (start + files).min(u64::from(u32::MAX));
        match at {
            GrowAt::End => {
                for identity in start..end {
                    let identity = self.create(identity);
                    self.order.push_back(identity);
                    self.index_last();
                }
            }
            GrowAt::Front => {
                // The files gained keep their order among themselves, ahead of the others.
                for identity in (start..end).rev() {
                    let identity = self.create(identity);
                    self.order.push_front(identity);
                }
                if end > start {
                    self.reindex();
                }
            }
        }
    }

    /// Draws file `identity` (its status, jobs, and moment to finish) and returns it as a u32.
    fn create(&mut self, identity: u64) -> u32 {
        let status = file_status(self.seed, identity, &self.cdf);
        self.statuses.push(status);
        self.jobs.push(job_count(self.seed, identity));
        self.duration_tenths += duration_tenths(self.seed, identity);
        let id = identity as u32;
        if let Some(processing) = self.changes.processing.filter(|_| matches!(status, RETRYING | PROCESSING)) {
            let after = (finish_fraction(self.seed, identity) * processing.as_millis() as f64) as u64;
            let due = self.elapsed_ms() + after;
            self.last_due_ms = self.last_due_ms.max(due);
            self.due.push(Reverse((due, id)));
        }
        if let Some(by_file_id) = &mut self.by_file_id {
            by_file_id.insert(file_uuid(self.seed, identity), id);
        }
        id
    }

    fn done_jobs(&self, identity: u32) -> u64 {
        let jobs = u64::from(self.jobs[identity as usize]);
        if self.statuses[identity as usize] == COMPLETED {
            jobs
        } else {
            jobs - 1
        }
    }

    /// Brings the views up to date with the file appended last.
    fn index_last(&mut self) {
        let identity = *self.order.back().expect("a file was appended");
        self.by_status[usize::from(self.statuses[identity as usize])].push(identity);
        let last = self.job_prefix[self.job_prefix.len() - 1];
        self.job_prefix.push(last + u64::from(self.jobs[identity as usize]));
        let done = self.done_job_prefix[self.done_job_prefix.len() - 1];
        self.done_job_prefix.push(done + self.done_jobs(identity));
    }

    /// Rebuilds the views after files moved or changed status: O(files), on changes only.
    fn reindex(&mut self) {
        let order = std::mem::take(&mut self.order);
        self.by_status.iter_mut().for_each(Vec::clear);
        self.job_prefix.truncate(1);
        self.done_job_prefix.truncate(1);
        for &identity in &order {
            self.by_status[usize::from(self.statuses[identity as usize])].push(identity);
            let last = self.job_prefix[self.job_prefix.len() - 1];
            self.job_prefix.push(last + u64::from(self.jobs[identity as usize]));
            let done = self.done_job_prefix[self.done_job_prefix.len() - 1];
            self.done_job_prefix.push(done + self.done_jobs(identity));
        }
        self.order = order;
    }

    fn file(&self, identity: u32, chunk: Option<u8>) -> Item {
        let i = identity as usize;
        Item { index: u64::from(identity), status: self.statuses[i], jobs: self.jobs[i], chunk }
    }

    /// The file whose `file_id` is `id`, as it is now.
    pub(crate) fn find(&mut self, id: &str) -> Option<Item> {
        let bits = parse_uuid(id)?;
        let seed = self.seed;
        let by_file_id = self.by_file_id.get_or_insert_with(|| {
            (0..self.statuses.len() as u32).map(|identity| (file_uuid(seed, u64::from(identity)), identity)).collect()
        });
        let identity = *by_file_id.get(&bits)?;
        Some(self.file(identity, None))
    }

    /// Merged file records `offset..offset + limit`, optionally of one status only.
    pub(crate) fn select_files(&self, status: Option<u8>, offset: u64, limit: u64) -> Selection {
        match status {
            None => {
                let total = self.len();
                let end = offset.saturating_add(limit).min(total);
                let items = self.order.range(offset.min(end) as usize..end as usize).map(|&i| self.file(i, None));
                Selection { total, items: items.collect() }
            }
            Some(s) => {
                let list = &self.by_status[usize::from(s)];
                Selection {
                    total: list.len() as u64,
                    items: page(list, offset, limit).map(|&i| self.file(i, None)).collect(),
                }
            }
        }
    }

    /// Raw job records `offset..offset + limit`, optionally of one job status only.
    pub(crate) fn select_jobs(&self, status: Option<u8>, offset: u64, limit: u64) -> Selection {
        match status {
            // Every chunk job, or the completed ones (a file's completed chunks come first).
            None | Some(COMPLETED) => {
                let (prefix, all) =
                    if status.is_none() { (&self.job_prefix, true) } else { (&self.done_job_prefix, false) };
                let total = *prefix.last().expect("prefix starts with 0");
                let mut items = Vec::new();
                if offset < total {
                    // The position holding job `offset`: the last one whose prefix is <= offset.
                    let mut position = prefix.partition_point(|&p| p <= offset) - 1;
                    let mut chunk = offset - prefix[position];
                    while items.len() < limit as usize && position < self.order.len() {
                        let in_file = prefix[position + 1] - prefix[position];
                        if chunk < in_file {
                            let item = self.file(self.order[position], Some(chunk as u8));
                            debug_assert!(all || chunk_status(item.status, chunk as u8, item.jobs) == COMPLETED);
                            items.push(item);
                            chunk += 1;
                        } else {
                            position += 1;
                            chunk = 0;
                        }
                    }
                }
                Selection { total, items }
            }
            // A job that is not completed is the last chunk of a file with that status.
            Some(s) => {
                let list = &self.by_status[usize::from(s)];
                let items = page(list, offset, limit)
                    .map(|&i| {
                        let jobs = self.jobs[i as usize];
                        self.file(i, Some(jobs - 1))
                    })
                    .collect();
                Selection { total: list.len() as u64, items }
            }
        }
    }
}

fn page<T>(list: &[T], offset: u64, limit: u64) -> std::slice::Iter<'_, T> {
    let start = offset.min(list.len() as u64) as usize;
    let end = offset.saturating_add(limit).min(list.len() as u64) as usize;
    list[start..end].iter()
}

#[cfg(test)]
mod tests {
    use super::super::data::{status_cdf, DEFAULT_WEIGHTS, FAILED};
    use super::*;

    fn batch(files: u64) -> Batch {
        Batch::new(9, files, Changes::default(), status_cdf(DEFAULT_WEIGHTS).unwrap())
    }

    fn changing(files: u64, weights: [f64; 4], changes: Changes) -> Batch {
        Batch::new(1, files, changes, status_cdf(weights).unwrap())
    }

    const PROCESSING_ONLY: [f64; 4] = [0.0, 0.0, 0.0, 1.0];

    fn identities(b: &Batch, status: Option<u8>) -> Vec<u64> {
        b.select_files(status, 0, u64::MAX).items.iter().map(|i| i.index).collect()
    }

    /// Every page of every view agrees with the batch's files walked in order.
    fn assert_views_match_brute_force(b: &Batch) {
        let files: Vec<Item> = b.order.iter().map(|&i| b.file(i, None)).collect();
        let jobs: Vec<Item> =
            files.iter().flat_map(|f| (0..f.jobs).map(move |c| Item { chunk: Some(c), ..*f })).collect();
        for status in [None, Some(0), Some(1), Some(2), Some(3)] {
            let want_files: Vec<Item> =
                files.iter().copied().filter(|f| status.is_none_or(|s| f.status == s)).collect();
            let want_jobs: Vec<Item> = jobs
                .iter()
                .copied()
                .filter(|j| status.is_none_or(|s| chunk_status(j.status, j.chunk.unwrap(), j.jobs) == s))
                .collect();
            for limit in [1, 7, 200] {
                let (mut got_files, mut got_jobs) = (Vec::new(), Vec::new());
                for p in 0..=(jobs.len() as u64 / limit) {
                    let sel = b.select_files(status, p * limit, limit);
                    assert_eq!(sel.total, want_files.len() as u64, "{status:?}");
                    got_files.extend(sel.items);
                    let sel = b.select_jobs(status, p * limit, limit);
                    assert_eq!(sel.total, want_jobs.len() as u64, "{status:?}");
                    got_jobs.extend(sel.items);
                }
                assert_eq!(got_files, want_files, "files, status {status:?} limit {limit}");
                assert_eq!(got_jobs, want_jobs, "jobs, status {status:?} limit {limit}");
            }
        }
        let counts = b.counts();
        assert_eq!(counts.iter().sum::<u64>(), b.len());
        assert_eq!(b.in_progress(), b.changes.grow_per_request > 0 || counts[2] + counts[3] > 0);
    }

    #[test]
    fn file_pages_cover_the_batch_once() {
        let b = batch(1003);
        let mut seen = Vec::new();
        for p in 0..6 {
            let sel = b.select_files(None, p * 200, 200);
            assert_eq!(sel.total, 1003);
            seen.extend(sel.items.iter().map(|i| i.index));
        }
        assert_eq!(seen, (0..1003).collect::<Vec<_>>());
        assert_eq!(b.select_files(None, 1000, 200).items.len(), 3);
        assert!(b.select_files(None, 5000, 200).items.is_empty());
        assert!(b.select_files(None, u64::MAX - 5, 200).items.is_empty());
    }

    #[test]
    fn views_match_brute_force() {
        let b = batch(700);
        assert!(b.counts().iter().all(|&c| c > 0), "{:?}", b.counts());
        assert_views_match_brute_force(&b);
    }

    #[test]
    fn growing_appends_at_the_end() {
        let changes = Changes { grow_per_request: 5, ..Changes::default() };
        let mut b = changing(10, [0.0, 1.0, 0.0, 0.0], changes);
        let before = b.select_files(None, 0, 100).items;
        b.answered();
        b.answered();
        assert_eq!(b.len(), 20);
        assert_eq!(b.counts()[usize::from(FAILED)], 20);
        assert_eq!(&b.select_files(None, 0, 100).items[..10], &before[..]);
        assert!(b.in_progress());
        assert_views_match_brute_force(&b);
    }

    #[test]
    fn growing_at_the_front_moves_every_file_back() {
        let changes = Changes { grow_per_request: 3, grow_at: GrowAt::Front, ..Changes::default() };
        let mut b = Batch::new(4, 10, changes, status_cdf(DEFAULT_WEIGHTS).unwrap());
        let before = b.select_files(None, 0, 100).items;
        b.answered();
        let once: Vec<u64> = [10, 11, 12].into_iter().chain(0..10).collect();
        assert_eq!(identities(&b, None), once);
        assert_eq!(&b.select_files(None, 3, 100).items, &before, "the same files, 3 places back");
        b.answered();
        let twice: Vec<u64> = [13, 14, 15, 10, 11, 12].into_iter().chain(0..10).collect();
        assert_eq!(identities(&b, None), twice);
        assert_views_match_brute_force(&b);
    }

    #[test]
    fn completing_per_request_takes_the_first_processing_files() {
        let changes = Changes { complete_per_request: 2, ..Changes::default() };
        let mut b = changing(10, PROCESSING_ONLY, changes);
        b.answered();
        assert_eq!(identities(&b, Some(PROCESSING)), (2..10).collect::<Vec<_>>());
        assert_eq!(identities(&b, Some(COMPLETED)), [0, 1]);
        assert_views_match_brute_force(&b);
        for _ in 0..4 {
            b.answered();
        }
        assert_eq!(b.counts(), [10, 0, 0, 0]);
        assert!(!b.in_progress());
        b.answered();
        assert_eq!(b.counts(), [10, 0, 0, 0]);
        assert_views_match_brute_force(&b);
    }

    #[test]
    fn completing_and_growing_at_the_front_together() {
        let changes =
            Changes { grow_per_request: 1, grow_at: GrowAt::Front, complete_per_request: 1, ..Changes::default() };
        let mut b = changing(4, PROCESSING_ONLY, changes);
        b.answered();
        // File 0 completed first, then file 4 came in front.
        assert_eq!(identities(&b, None), [4, 0, 1, 2, 3]);
        assert_eq!(identities(&b, Some(PROCESSING)), [4, 1, 2, 3]);
        b.answered();
        assert_eq!(identities(&b, Some(PROCESSING)), [5, 1, 2, 3]);
        assert_eq!(identities(&b, Some(COMPLETED)), [4, 0]);
        assert_views_match_brute_force(&b);
    }

    #[test]
    fn unfinished_files_finish_over_the_processing_time() {
        let processing = Duration::from_millis(300);
        let changes = Changes { processing: Some(processing), ..Changes::default() };
        let mut b = changing(400, [0.8, 0.2, 1.0, 1.0], changes);
        let unfinished = |b: &Batch| b.counts()[2] + b.counts()[3];
        let at_start = unfinished(&b);
        assert!(at_start > 150, "{at_start}");
        assert!(b.estimated_completion_seconds() == 1);
        std::thread::sleep(processing / 2);
        b.advance();
        let halfway = unfinished(&b);
        assert!(halfway < at_start && halfway > 0, "{at_start} -> {halfway}");
        assert_views_match_brute_force(&b);
        std::thread::sleep(processing);
        b.advance();
        assert!(!b.in_progress());
        assert_eq!(b.estimated_completion_seconds(), 0);
        for item in b.select_files(None, 0, 400).items {
            let drawn = file_status(1, item.index, &b.cdf);
            let want = if drawn >= RETRYING { final_status(1, item.index, &b.cdf) } else { drawn };
            assert_eq!(item.status, want);
        }
        let [completed, failed, ..] = b.counts();
        assert!(failed > 40 && completed > 4 * failed / 2, "{completed} {failed}");
        assert_views_match_brute_force(&b);
    }

    fn file_id(b: &Batch, identity: u32) -> String {
        let mut out = Vec::new();
        super::super::data::push_file(&mut out, b.seed, b.file(identity, None), Default::default());
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()["file_id"].as_str().unwrap().to_string()
    }

    #[test]
    fn files_are_found_by_id() {
        let changes = Changes { grow_per_request: 2, ..Changes::default() };
        let mut b = Batch::new(3, 50, changes, status_cdf(DEFAULT_WEIGHTS).unwrap());
        let five = file_id(&b, 5);
        assert_eq!(b.find(&five).map(|i| i.index), Some(5));
        assert_eq!(b.find(&five.to_uppercase()), None);
        assert_eq!(b.find(&five[1..]), None);
        assert_eq!(b.find("nope"), None);
        b.answered();
        let fifty_one = file_id(&b, 51);
        assert_eq!(b.find(&fifty_one).map(|i| i.index), Some(51));
    }
}
