//! A local cache of finished batches: the page bodies of a whole read, kept on disk and served
//! again with no request. Only what cannot change is kept (see `finished`); every entry is
//! checksummed, written atomically, and named by a hash keyed with a secret of the directory,
//! so nothing on disk holds or reveals the token.
//!
//! - `entry`: one entry's format, its writer (temporary file, then rename) and reader.
//! - `key`: what decides an entry's records, and the keyed hashes.
//! - `store`: the directory: lookup, commit, the size cap (least recently used go first),
//!   info and clear.
//! - `finished`: whether a page's records are all final.
//! - `envelope`: a results page's body around records read from a `/download` stream.

mod entry;
pub mod envelope;
mod finished;
mod key;
mod store;

pub use entry::{EntryHeader, EntryReader, EntryWriter, Frame};
pub use finished::all_final;
pub use key::EntryKey;
pub use store::{Cache, CacheInfo, DEFAULT_MAX_BYTES};

#[cfg(test)]
mod tests;
