//! The ids of the records yielded by the last pages, to catch repeats.

use std::collections::{HashSet, VecDeque};

/// How many recent pages' record ids are remembered. A batch that shifts while read repeats
/// records of the pages just before, so a window keeps memory flat (a few hundred KB) where
/// a set of every id would grow with the batch.
pub(super) const REMEMBERED_PAGES: usize = 64;

/// The ids (hashed) of the records yielded by the last `REMEMBERED_PAGES` pages.
#[derive(Default)]
pub(super) struct RecentIds {
    /// The ids are hashes already (`Record::key`): the set uses them as they are.
    pub(super) ids: HashSet<u64, nohash_hasher::BuildNoHashHasher<u64>>,
    pages: VecDeque<Vec<u64>>,
    current: Vec<u64>,
}

impl RecentIds {
    /// False when the id was yielded recently.
    pub(super) fn insert(&mut self, id: u64) -> bool {
        let fresh = self.ids.insert(id);
        if fresh {
            self.current.push(id);
        }
        fresh
    }

    pub(super) fn end_page(&mut self) {
        self.pages.push_back(std::mem::take(&mut self.current));
        if self.pages.len() > REMEMBERED_PAGES {
            for id in self.pages.pop_front().unwrap_or_default() {
                self.ids.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
