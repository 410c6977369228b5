//! The cache directory's policy, on a real directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use url::Url;

use super::*;
use crate::query::Query;

const TOKEN: &str = "tok-3f9a-secret";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("soket-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir.join("cache"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn key(cache: &Cache, batch: &str) -> EntryKey {
    cache.key(&Url::parse("http://127.0.0.1:5/").unwrap(), &Query::new(batch), TOKEN)
}

/// An entry of `pages` pages of about `size` bytes each (incompressible, so sizes are known).
fn store(cache: &Cache, key: &EntryKey, pages: usize, size: usize) {
    let mut writer = cache.writer().unwrap();
    for _ in 0..pages {
        let body: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
        writer.append(&Frame::compress(&body, 1).unwrap()).unwrap();
    }
    cache.commit(writer, key.clone()).unwrap();
}

fn entry_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir.join("entries")).unwrap().map(|e| e.unwrap().path()).collect()
}

fn used_at(cache: &Cache, key: &EntryKey, when: SystemTime) {
    let path = cache.dir().join("entries").join(format!("{}.entry", cache_name(cache, key)));
    fs::File::options().append(true).open(path).unwrap().set_modified(when).unwrap();
}

fn cache_name(cache: &Cache, key: &EntryKey) -> String {
    entry_files(cache.dir())
        .into_iter()
        .find(|p| super::entry::read_header(p).is_ok_and(|h| h.key == *key))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .expect("the entry exists")
}

#[test]
fn an_entry_committed_is_found_by_its_key_only() {
    let dir = TempDir::new("found");
    let cache = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    let (a, b) = (key(&cache, "a"), key(&cache, "b"));
    assert!(cache.lookup(&a).unwrap().is_none());
    store(&cache, &a, 2, 100);
    let reader = cache.lookup(&a).unwrap().expect("a hit");
    assert_eq!(reader.header().pages, 2);
    assert!(cache.lookup(&b).unwrap().is_none());
    let again = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    assert!(again.lookup(&key(&again, "a")).unwrap().is_some(), "the secret is kept: another client finds it");
    assert_eq!(
        cache.info().unwrap(),
        CacheInfo { entries: 1, bytes: fs::metadata(&entry_files(&dir.0)[0]).unwrap().len(), batches: 1 }
    );
}

#[test]
fn a_damaged_entry_is_removed_and_its_damage_said() {
    let dir = TempDir::new("damaged");
    let cache = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    let a = key(&cache, "a");
    store(&cache, &a, 2, 100);
    let path = entry_files(&dir.0).pop().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    fs::File::options().write(true).open(&path).unwrap().set_len(len - 1).unwrap();
    let err = cache.lookup(&a).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(!path.exists(), "removed");
    assert!(cache.lookup(&a).unwrap().is_none(), "then a plain miss");
}

#[test]
fn least_recently_used_entries_go_first_past_the_cap() {
    let dir = TempDir::new("lru");
    let cache = Cache::open(&dir.0, 3_000).unwrap();
    let keys: Vec<EntryKey> = ["a", "b"].iter().map(|b| key(&cache, b)).collect();
    let now = SystemTime::now();
    for (i, k) in keys.iter().enumerate() {
        store(&cache, k, 1, 1_000);
        used_at(&cache, k, now - Duration::from_secs(100 - i as u64 * 10));
    }
    assert!(cache.lookup(&keys[0]).unwrap().is_some(), "a hit marks `a` as just used: `b` is now the oldest");
    let c = key(&cache, "c");
    store(&cache, &c, 1, 1_000);
    let kept: Vec<bool> = [&keys[0], &keys[1], &c].iter().map(|k| cache.lookup(k).unwrap().is_some()).collect();
    assert_eq!(kept, [true, false, true]);
    assert!(cache.info().unwrap().bytes <= 3_000);

    store(&cache, &key(&cache, "huge"), 1, 3_000);
    // (3,000 bytes of page and the header, index and trailer)
    assert_eq!(cache.info().unwrap().entries, 0, "an entry over the whole cap is not kept, and made room first");
}

#[test]
fn clear_removes_one_batch_or_all() {
    let dir = TempDir::new("clear");
    let cache = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    let url = Url::parse("http://127.0.0.1:5/").unwrap();
    store(&cache, &key(&cache, "a"), 1, 10);
    store(&cache, &cache.key(&url, &Query { raw: true, ..Query::new("a") }, TOKEN), 1, 10);
    store(&cache, &key(&cache, "b"), 1, 10);
    assert_eq!(cache.info().unwrap().entries, 3);
    assert_eq!(cache.info().unwrap().batches, 2);
    assert_eq!(cache.clear(Some("a")).unwrap(), 2);
    assert!(cache.lookup(&key(&cache, "b")).unwrap().is_some());
    assert_eq!(cache.clear(None).unwrap(), 1);
    assert_eq!(cache.info().unwrap(), CacheInfo::default());
}

#[test]
fn two_writers_of_one_entry_leave_one_good_entry() {
    let dir = TempDir::new("race");
    let cache = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    let a = key(&cache, "a");
    let (mut first, mut second) = (cache.writer().unwrap(), cache.writer().unwrap());
    for page in 0..3u8 {
        first.append(&Frame::compress(&[b'1', page], 1).unwrap()).unwrap();
        second.append(&Frame::compress(&[b'2', page], 1).unwrap()).unwrap();
    }
    cache.commit(first, a.clone()).unwrap();
    cache.commit(second, a.clone()).unwrap();
    assert_eq!(entry_files(&dir.0).len(), 1, "no temporary file is left");
    let reader = cache.lookup(&a).unwrap().unwrap();
    assert_eq!(&reader.page(3).unwrap().unwrap()[..], [b'2', 2]);
}

#[test]
fn nothing_on_disk_holds_the_token_and_only_the_user_may_read() {
    let dir = TempDir::new("private");
    let cache = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    store(&cache, &key(&cache, "a"), 1, 10);
    let mut files = entry_files(&dir.0);
    files.push(dir.0.join("key"));
    for path in &files {
        let bytes = fs::read(path).unwrap();
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "{}", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for path in &files {
            assert_eq!(mode(path), 0o600, "{}", path.display());
        }
        assert_eq!((mode(&dir.0), mode(&dir.0.join("entries"))), (0o700, 0o700));
    }
}

#[test]
fn a_damaged_secret_is_replaced() {
    let dir = TempDir::new("secret");
    let cache = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    store(&cache, &key(&cache, "a"), 1, 10);
    fs::write(dir.0.join("key"), b"short").unwrap();
    let again = Cache::open(&dir.0, DEFAULT_MAX_BYTES).unwrap();
    assert!(again.lookup(&key(&again, "a")).unwrap().is_none(), "entries of the old secret are not found");
    assert_eq!(fs::read(dir.0.join("key")).unwrap().len(), 32);
}
