//! The cache directory: where entries live, the secret that names them, and the policy (what
//! is served, what is evicted). Layout: `key` (the secret, 32 bytes) and `entries/*.entry`,
//! written through `entries/.tmp-*`. Directories are made 0700 and files 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use url::Url;

use super::entry::{read_header, EntryReader, EntryWriter};
use super::key::{EntryKey, Secret};
use crate::query::Query;

/// The default size cap: ample for many large batches, small beside a disk.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

const ENTRIES: &str = "entries";
const EXTENSION: &str = "entry";
const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file older than this was left by a writer that died.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// What `Client.cache_info()` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheInfo {
    pub entries: u64,
    pub bytes: u64,
    /// Distinct batches among the entries.
    pub batches: u64,
}

#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    entries: PathBuf,
    secret: Secret,
    max_bytes: u64,
    /// Pages served from this cache (`Client.stats["cache_hits"]`).
    hits: AtomicU64,
}

impl Cache {
    /// Opens (making it if need be) the cache in `dir`, holding at most `max_bytes` of entries.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Cache> {
        let entries = dir.join(ENTRIES);
        private_dir(&entries)?;
        let secret = load_secret(dir)?;
        Ok(Cache { dir: dir.to_owned(), entries, secret, max_bytes, hits: AtomicU64::new(0) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn note_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The key of a read of `query` from `base_url` with `token`.
    pub fn key(&self, base_url: &Url, query: &Query, token: &str) -> EntryKey {
        EntryKey::new(base_url, query, self.secret.token_id(token))
    }

    fn path(&self, key: &EntryKey) -> PathBuf {
        self.entries.join(format!("{}.{EXTENSION}", self.secret.entry_name(key)))
    }

    /// The entry for `key`, marked as just used. `Ok(None)` when there is none; an entry found
    /// damaged is removed and its damage returned as the error (the caller says so).
    pub fn lookup(&self, key: &EntryKey) -> io::Result<Option<EntryReader>> {
        let path = self.path(key);
        match EntryReader::open(&path) {
            Ok(reader) if reader.header().key == *key => {
                touch(&path);
                Ok(Some(reader))
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
                Err(super::entry::damaged("the entry is of another read than its name says"))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                self.remove(key);
                Err(e)
            }
        }
    }

    /// Drops the entry of `key` (found damaged while read).
    pub fn remove(&self, key: &EntryKey) {
        let _ = fs::remove_file(self.path(key));
    }

    /// A new entry, written to a temporary file of its own until `commit`.
    pub fn writer(&self) -> io::Result<EntryWriter> {
        let name = format!("{TEMP_PREFIX}{}-{:016x}", std::process::id(), rand::random::<u64>());
        let temp = self.entries.join(name);
        EntryWriter::new(private_file(&temp)?, temp)
    }

    /// Puts the entry in place under `key` (replacing any other, atomically), then evicts the
    /// least recently used entries over the cap (the new one too, if it alone exceeds it).
    pub fn commit(&self, writer: EntryWriter, key: EntryKey) -> io::Result<()> {
        let dest = self.path(&key);
        writer.finish(key, &dest)?;
        // Stamped by the clock hits use: the file system's own stamp of a new file is coarser (a
        // kernel tick) and may fall before a hit made just before, which would make the newest
        // entry look older than it is.
        touch(&dest);
        self.evict()
    }

    pub fn info(&self) -> io::Result<CacheInfo> {
        let mut info = CacheInfo::default();
        let mut batches = std::collections::HashSet::new();
        for entry in self.list()? {
            let Ok(header) = read_header(&entry.path) else { continue };
            info.entries += 1;
            info.bytes += entry.size;
            batches.insert(header.key.batch_id);
        }
        info.batches = batches.len() as u64;
        Ok(info)
    }

    /// Removes every entry (of one batch when `batch_id` is given, whatever account and query
    /// read it); returns how many went. Damaged entries go with a clear of everything.
    pub fn clear(&self, batch_id: Option<&str>) -> io::Result<u64> {
        let mut removed = 0;
        for entry in self.list()? {
            let matches = match batch_id {
                None => true,
                Some(id) => read_header(&entry.path).is_ok_and(|h| h.key.batch_id == id),
            };
            if matches && remove_if_present(&entry.path)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the least recently used entries until the rest fit the cap, and the temporary
    /// files of writers that died.
    fn evict(&self) -> io::Result<()> {
        let mut entries = self.list()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        entries.sort_by_key(|e| e.used);
        for entry in entries {
            if total <= self.max_bytes {
                break;
            }
            log::info!("cache over {} bytes: removing the least recently used entry", self.max_bytes);
            remove_if_present(&entry.path)?;
            total -= entry.size;
        }
        self.remove_stale_temps();
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<Listed>> {
        let mut out = Vec::new();
        for item in fs::read_dir(&self.entries)? {
            let item = item?;
            let path = item.path();
            if path.extension().is_none_or(|e| e != EXTENSION) {
                continue;
            }
            // An entry removed meanwhile (by another process) is simply not listed.
            let Ok(meta) = item.metadata() else { continue };
            out.push(Listed { path, size: meta.len(), used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) });
        }
        Ok(out)
    }

    fn remove_stale_temps(&self) {
        let Ok(items) = fs::read_dir(&self.entries) else { return };
        for item in items.flatten() {
            let temp = item.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            let age = item.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if temp && age.is_some_and(|age| age > STALE_TEMP) {
                let _ = fs::remove_file(item.path());
            }
        }
    }
}

struct Listed {
    path: PathBuf,
    size: u64,
    /// Last written or served (the modification time, set on every hit).
    used: SystemTime,
}

/// Marks an entry as used now, for the eviction order (best effort: a read-only cache still serves).
fn touch(path: &Path) {
    if let Ok(file) = OpenOptions::new().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The directory's secret, made on first use. Two processes making it at once agree: each
/// writes its own file and links it into place, and the one that loses reads the winner's.
fn load_secret(dir: &Path) -> io::Result<Secret> {
    let path = dir.join("key");
    if let Some(secret) = read_secret(&path)? {
        return Ok(secret);
    }
    let temp = dir.join(format!("{TEMP_PREFIX}key-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let made: [u8; 32] = rand::random();
    let written = private_file(&temp).and_then(|mut f| io::Write::write_all(&mut f, &made).and_then(|_| f.sync_all()));
    let placed = written.and_then(|_| match fs::hard_link(&temp, &path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = fs::remove_file(&temp);
    placed?;
    read_secret(&path)?.ok_or_else(|| super::entry::damaged(&format!("{} is not a cache key", path.display())))
}

/// The secret in `path`; None when there is none yet (or it is damaged: then it is replaced,
/// and the entries it named are left to eviction).
fn read_secret(path: &Path) -> io::Result<Option<Secret>> {
    let mut bytes = Vec::with_capacity(33);
    match File::open(path) {
        Ok(file) => file.take(33).read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(secret) => Ok(Some(Secret::new(secret))),
        Err(_) => {
            log::warn!(
                "the cache key {} is damaged: replaced (entries made with it are no longer found)",
                path.display()
            );
            remove_if_present(path)?;
            Ok(None)
        }
    }
}

fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A new file only this user can read (never one that exists: another writer's, or a link).
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
