//! One batch's files, precomputed at creation (a status byte and a job count per file,
//! plus prefix sums) so that any page of it is found in O(log n) and written in O(limit).

use super::data::{chunk_status, duration_tenths, file_status, job_count, Item, COMPLETED};

/// The records of one page, and how many match the query in all.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub total: u64,
    pub items: Vec<Item>,
}

pub(crate) struct Batch {
    pub seed: u64,
    pub grow_per_request: u64,
    cdf: [f64; 4],
    statuses: Vec<u8>,
    jobs: Vec<u8>,
    /// Jobs of the files before file i (len = files + 1).
    job_prefix: Vec<u64>,
    /// Completed jobs of the files before file i (len = files + 1).
    done_job_prefix: Vec<u64>,
    /// File indices by status.
    by_status: [Vec<u32>; 4],
    /// Audio of all the files, in tenths of a second.
    duration_tenths: u64,
}

impl Batch {
    pub(crate) fn new(seed: u64, files: u64, grow_per_request: u64, cdf: [f64; 4]) -> Batch {
        let mut batch = Batch {
            seed,
            grow_per_request,
            cdf,
            statuses: Vec::with_capacity(files as usize),
            jobs: Vec::with_capacity(files as usize),
            job_prefix: vec![0],
            done_job_prefix: vec![0],
            by_status: Default::default(),
            duration_tenths: 0,
        };
        batch.append(files);
        batch
    }

    pub(crate) fn len(&self) -> u64 {
        self.statuses.len() as u64
    }

    /// Whether the batch is still being worked on (growing, or with unfinished files).
    pub(crate) fn in_progress(&self) -> bool {
        self.grow_per_request > 0 || self.by_status[2].len() + self.by_status[3].len() > 0
    }

    /// Files by status: completed, failed, retrying, processing.
    pub(crate) fn counts(&self) -> [u64; 4] {
        std::array::from_fn(|s| self.by_status[s].len() as u64)
    }

    /// Audio of all the files, in tenths of a second.
    pub(crate) fn duration_tenths(&self) -> u64 {
        self.duration_tenths
    }

    /// Called on each request to the batch: a growing batch gains its files at the end.
    pub(crate) fn grow(&mut self) {
        self.append(self.grow_per_request);
    }

    fn append(&mut self, files: u64) {
        let start = self.len();
        let end = (start + files).min(u64::from(u32::MAX));
        for index in start..end {
            let status = file_status(self.seed, index, &self.cdf);
            let jobs = job_count(self.seed, index);
            let done = if status == COMPLETED { jobs } else { jobs - 1 };
            self.statuses.push(status);
            self.jobs.push(jobs);
            self.job_prefix.push(self.job_prefix[index as usize] + u64::from(jobs));
            self.done_job_prefix.push(self.done_job_prefix[index as usize] + u64::from(done));
            self.by_status[usize::from(status)].push(index as u32);
            self.duration_tenths += duration_tenths(self.seed, index);
        }
    }

    fn file(&self, index: u64, chunk: Option<u8>) -> Item {
        let i = index as usize;
        Item { index, status: self.statuses[i], jobs: self.jobs[i], chunk }
    }

    /// Merged file records `offset..offset + limit`, optionally of one status only.
    pub(crate) fn select_files(&self, status: Option<u8>, offset: u64, limit: u64) -> Selection {
        match status {
            None => {
                let total = self.len();
                let end = offset.saturating_add(limit).min(total);
                Selection { total, items: (offset.min(end)..end).map(|i| self.file(i, None)).collect() }
            }
            Some(s) => {
                let list = &self.by_status[usize::from(s)];
                Selection {
                    total: list.len() as u64,
                    items: page(list, offset, limit).map(|&i| self.file(u64::from(i), None)).collect(),
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
                    // The file holding job `offset`: the last one whose prefix is <= offset.
                    let mut file = prefix.partition_point(|&p| p <= offset) - 1;
                    let mut chunk = offset - prefix[file];
                    while items.len() < limit as usize && file < self.statuses.len() {
                        let in_file = prefix[file + 1] - prefix[file];
                        if chunk < in_file {
                            let item = self.file(file as u64, Some(chunk as u8));
                            debug_assert!(all || chunk_status(item.status, chunk as u8, item.jobs) == COMPLETED);
                            items.push(item);
                            chunk += 1;
                        } else {
                            file += 1;
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
                        self.file(u64::from(i), Some(jobs - 1))
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
        Batch::new(9, files, 0, status_cdf(DEFAULT_WEIGHTS).unwrap())
    }

    /// Every job of the batch, in order, by brute force.
    fn all_jobs(b: &Batch) -> Vec<Item> {
        (0..b.len())
            .flat_map(|i| (0..b.jobs[i as usize]).map(move |c| (i, c)))
            .map(|(i, c)| b.file(i, Some(c)))
            .collect()
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
    fn status_filters_match_brute_force() {
        let b = batch(2000);
        let counts = b.counts();
        assert_eq!(counts.iter().sum::<u64>(), 2000);
        for s in 0..4u8 {
            let sel = b.select_files(Some(s), 0, 5000);
            assert_eq!(sel.total, counts[usize::from(s)]);
            assert!(sel.items.iter().all(|i| i.status == s));
            let paged: Vec<Item> = (0..)
                .map(|p| b.select_files(Some(s), p * 7, 7).items)
                .take_while(|v| !v.is_empty())
                .flatten()
                .collect();
            assert_eq!(paged, sel.items);
        }
    }

    #[test]
    fn job_pages_match_brute_force() {
        let b = batch(500);
        let jobs = all_jobs(&b);
        for status in [None, Some(0), Some(1), Some(2), Some(3)] {
            let expected: Vec<Item> = jobs
                .iter()
                .copied()
                .filter(|j| status.is_none_or(|s| chunk_status(j.status, j.chunk.unwrap(), j.jobs) == s))
                .collect();
            for limit in [1, 7, 200] {
                let mut got = Vec::new();
                for p in 0.. {
                    let sel = b.select_jobs(status, p * limit, limit);
                    assert_eq!(sel.total, expected.len() as u64, "{status:?}");
                    if sel.items.is_empty() {
                        break;
                    }
                    got.extend(sel.items);
                }
                assert_eq!(got, expected, "status {status:?} limit {limit}");
            }
        }
    }

    #[test]
    fn growing_appends_at_the_end() {
        let cdf = status_cdf([0.0, 1.0, 0.0, 0.0]).unwrap();
        let mut b = Batch::new(1, 10, 5, cdf);
        let before = b.select_files(None, 0, 100).items;
        b.grow();
        b.grow();
        assert_eq!(b.len(), 20);
        assert_eq!(b.counts()[usize::from(FAILED)], 20);
        assert_eq!(&b.select_files(None, 0, 100).items[..10], &before[..]);
        assert!(b.in_progress());
    }
}
