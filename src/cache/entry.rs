//! One entry: the page bodies of a whole read, as the service sent them, each compressed and
//! checksummed, written front to back as pages arrive and closed by an index.
//!
//! Layout (integers little-endian):
//! ```text
//! "STCACHE1"                      magic
//! frame 1 .. frame n              zstd of each page body, page 1 first
//! header                          JSON of `EntryHeader`
//! index                           n x (offset u64, stored length u32, body length u32, crc32 u32)
//! trailer (32 bytes)              header length u32, pages u32, header crc32, index crc32,
//!                                 crc32 of those 16 bytes, 4 zero bytes, "STCEND01"
//! ```
//! Opening checks the trailer, the header and the index; each page is checked as it is read,
//! so a partial read of a large entry reads only its pages. Damage of any kind is an
//! `InvalidData` error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::key::EntryKey;

const MAGIC: &[u8; 8] = b"STCACHE1";
const END_MAGIC: &[u8; 8] = b"STCEND01";
const TRAILER_LEN: u64 = 32;
const INDEX_ROW_LEN: u64 = 20;
/// zstd's default: compresses faster than the pages arrive and smaller than gzip's answers.
const LEVEL: i32 = 3;

/// What an entry says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    pub key: EntryKey,
    pub pages: u64,
    /// Records in all pages, as the service sent them.
    pub records: u64,
    /// The page bodies' size, uncompressed.
    pub body_bytes: u64,
}

/// A page body compressed and checksummed, ready to be appended (made on a worker thread).
#[derive(Debug, Clone)]
pub struct Frame {
    stored: Vec<u8>,
    body_len: u32,
    crc: u32,
    records: u64,
}

impl Frame {
    pub fn compress(body: &[u8], records: u64) -> io::Result<Frame> {
        let body_len = u32::try_from(body.len()).map_err(|_| damaged("a page body over 4 GiB"))?;
        let stored = compressed(body)?;
        let crc = crc32fast::hash(&stored);
        Ok(Frame { stored, body_len, crc, records })
    }

    /// The body continued by `more`, compressed apart: zstd frames stored one after the other
    /// decompress as one body (a page whose end is known later: see `envelope`).
    pub fn then(mut self, more: &[u8]) -> io::Result<Frame> {
        let body_len =
            u32::try_from(self.body_len as usize + more.len()).map_err(|_| damaged("a page body over 4 GiB"))?;
        self.stored.extend_from_slice(&compressed(more)?);
        self.stored.shrink_to_fit();
        Ok(Frame { crc: crc32fast::hash(&self.stored), body_len, ..self })
    }

    /// Records in the page.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes it holds (a read that keeps its frames until its end counts them).
    pub fn stored_len(&self) -> u64 {
        self.stored.len() as u64
    }
}

/// zstd of `body`, holding no more memory than its size (the compressor's buffer is sized for
/// the worst case, larger than the body itself).
fn compressed(body: &[u8]) -> io::Result<Vec<u8>> {
    let mut stored = zstd::bulk::compress(body, LEVEL)?;
    stored.shrink_to_fit();
    Ok(stored)
}

#[derive(Debug, Clone, Copy)]
struct IndexRow {
    offset: u64,
    stored_len: u32,
    body_len: u32,
    crc: u32,
}

/// An entry being written to a temporary file; dropped unfinished, the file is removed.
pub struct EntryWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    index: Vec<IndexRow>,
    position: u64,
    records: u64,
    body_bytes: u64,
}

impl EntryWriter {
    /// Writes into `temp`, a file just created (and so owned) by the caller.
    pub(super) fn new(file: File, temp: PathBuf) -> io::Result<EntryWriter> {
        let mut file = BufWriter::with_capacity(1 << 16, file);
        file.write_all(MAGIC)?;
        let position = MAGIC.len() as u64;
        Ok(EntryWriter { file: Some(file), temp, index: Vec::new(), position, records: 0, body_bytes: 0 })
    }

    /// Appends the next page (pages go in order, page 1 first).
    pub fn append(&mut self, frame: &Frame) -> io::Result<()> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("the entry is closed"))?;
        let stored_len = u32::try_from(frame.stored.len()).map_err(|_| damaged("a page over 4 GiB"))?;
        file.write_all(&frame.stored)?;
        self.index.push(IndexRow { offset: self.position, stored_len, body_len: frame.body_len, crc: frame.crc });
        self.position += u64::from(stored_len);
        self.records += frame.records;
        self.body_bytes += u64::from(frame.body_len);
        Ok(())
    }

    pub fn pages(&self) -> u64 {
        self.index.len() as u64
    }

    /// Closes the entry under `key`, flushed to disk, and renames it to `dest` (atomically: a
    /// reader sees the old entry or the new one, never a part). Returns its size.
    pub(super) fn finish(mut self, key: EntryKey, dest: &Path) -> io::Result<u64> {
        let header = EntryHeader { key, pages: self.pages(), records: self.records, body_bytes: self.body_bytes };
        let header = serde_json::to_vec(&header).map_err(io::Error::other)?;
        let mut index = Vec::with_capacity(self.index.len() * INDEX_ROW_LEN as usize);
        for row in &self.index {
            index.extend_from_slice(&row.offset.to_le_bytes());
            index.extend_from_slice(&row.stored_len.to_le_bytes());
            index.extend_from_slice(&row.body_len.to_le_bytes());
            index.extend_from_slice(&row.crc.to_le_bytes());
        }
        let header_len = u32::try_from(header.len()).map_err(io::Error::other)?;
        let pages = u32::try_from(self.index.len()).map_err(|_| io::Error::other("too many pages for one entry"))?;
        let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
        trailer.extend_from_slice(&header_len.to_le_bytes());
        trailer.extend_from_slice(&pages.to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(&trailer).to_le_bytes());
        trailer.extend_from_slice(&[0; 4]);
        trailer.extend_from_slice(END_MAGIC);

        let mut file = self.file.take().expect("an open entry");
        file.write_all(&header)?;
        file.write_all(&index)?;
        file.write_all(&trailer)?;
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        std::fs::rename(&self.temp, dest)?;
        Ok(size)
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// An entry opened for reading: its header and index checked, its pages read on demand.
#[derive(Debug)]
pub struct EntryReader {
    file: File,
    header: EntryHeader,
    index: Vec<IndexRow>,
}

impl EntryReader {
    pub fn open(path: &Path) -> io::Result<EntryReader> {
        let mut file = File::open(path)?;
        let (header, index) = read_layout(&mut file)?;
        Ok(EntryReader { file, header, index })
    }

    pub fn header(&self) -> &EntryHeader {
        &self.header
    }

    /// The body of page `number` (from 1), checked against its checksum and length;
    /// None past the last page.
    pub fn page(&self, number: u64) -> io::Result<Option<Bytes>> {
        let Some(row) = number.checked_sub(1).and_then(|i| self.index.get(usize::try_from(i).ok()?)) else {
            return Ok(None);
        };
        let mut stored = vec![0; row.stored_len as usize];
        read_at(&self.file, &mut stored, row.offset)?;
        if crc32fast::hash(&stored) != row.crc {
            return Err(damaged(&format!("page {number} fails its checksum")));
        }
        let body = zstd::bulk::decompress(&stored, row.body_len as usize)
            .map_err(|e| damaged(&format!("page {number} does not decompress: {e}")))?;
        if body.len() != row.body_len as usize {
            return Err(damaged(&format!("page {number} has another length than its index says")));
        }
        Ok(Some(Bytes::from(body)))
    }
}

/// The header alone (for listing entries), checked as `EntryReader::open` checks it.
pub fn read_header(path: &Path) -> io::Result<EntryHeader> {
    let mut file = File::open(path)?;
    read_layout(&mut file).map(|(header, _)| header)
}

fn read_layout(file: &mut File) -> io::Result<(EntryHeader, Vec<IndexRow>)> {
    let len = file.metadata()?.len();
    if len < MAGIC.len() as u64 + TRAILER_LEN {
        return Err(damaged("the entry is truncated"));
    }
    let mut magic = [0; 8];
    read_at(file, &mut magic, 0)?;
    let mut trailer = [0; TRAILER_LEN as usize];
    read_at(file, &mut trailer, len - TRAILER_LEN)?;
    if &magic != MAGIC || trailer[20..24] != [0; 4] || &trailer[24..] != END_MAGIC {
        return Err(damaged("the entry is truncated or not an entry"));
    }
    let word = |at: usize| u32::from_le_bytes(trailer[at..at + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(&trailer[..16]) != word(16) {
        return Err(damaged("the entry's trailer fails its checksum"));
    }
    let (header_len, pages) = (u64::from(word(0)), u64::from(word(4)));
    let index_start = (len - TRAILER_LEN)
        .checked_sub(pages * INDEX_ROW_LEN)
        .filter(|&start| start >= header_len + MAGIC.len() as u64)
        .ok_or_else(|| damaged("the entry's trailer does not fit its size"))?;
    let header_start = index_start - header_len;

    let mut header = vec![0; header_len as usize];
    read_at(file, &mut header, header_start)?;
    let mut index = vec![0; (pages * INDEX_ROW_LEN) as usize];
    read_at(file, &mut index, index_start)?;
    if crc32fast::hash(&header) != word(8) || crc32fast::hash(&index) != word(12) {
        return Err(damaged("the entry's header or index fails its checksum"));
    }
    let header: EntryHeader =
        serde_json::from_slice(&header).map_err(|e| damaged(&format!("the entry's header is unreadable: {e}")))?;
    let rows: Vec<IndexRow> = index.chunks_exact(INDEX_ROW_LEN as usize).map(index_row).collect();
    let in_bounds = |r: &IndexRow| r.offset >= MAGIC.len() as u64 && r.offset + u64::from(r.stored_len) <= header_start;
    if header.pages != pages || !rows.iter().all(in_bounds) {
        return Err(damaged("the entry's index does not fit its pages"));
    }
    Ok((header, rows))
}

fn index_row(row: &[u8]) -> IndexRow {
    let word = |at: usize| u32::from_le_bytes(row[at..at + 4].try_into().expect("4 bytes"));
    IndexRow {
        offset: u64::from_le_bytes(row[..8].try_into().expect("8 bytes")),
        stored_len: word(8),
        body_len: word(12),
        crc: word(16),
    }
}

/// Reads exactly `buf.len()` bytes at `offset` without moving a shared cursor (pages are read
/// by several workers at once).
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).map_err(short_read)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(damaged("the entry is truncated")),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A file shorter than its index says is a damaged entry, not an I/O failure.
fn short_read(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        damaged("the entry is truncated")
    } else {
        e
    }
}

#[cold]
pub fn damaged(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("damaged cache entry: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EntryKey {
        EntryKey {
            base_url: "http://127.0.0.1:1/".into(),
            batch_id: "b-1".into(),
            limit: 50,
            raw: false,
            status: None,
            chunks: Some(true),
            speech_information: None,
            token_id: "00".repeat(32),
        }
    }

    fn bodies() -> Vec<Vec<u8>> {
        (1..=3)
            .map(|p| {
                format!(r#"{{"page":{p},"total_pages":3,"files":[{}]}}"#, "{\"a\":1},".repeat(40) + "{}").into_bytes()
            })
            .collect()
    }

    fn written(dir: &Path) -> PathBuf {
        let temp = dir.join(".tmp-test");
        let mut writer = EntryWriter::new(File::create(&temp).unwrap(), temp).unwrap();
        for body in bodies() {
            writer.append(&Frame::compress(&body, 41).unwrap()).unwrap();
        }
        let dest = dir.join("e.entry");
        writer.finish(key(), &dest).unwrap();
        dest
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("soket-entry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn pages_read_back_as_written_by_number() {
        let dir = temp_dir("round");
        let reader = EntryReader::open(&written(&dir)).unwrap();
        assert_eq!(reader.header().key, key());
        assert_eq!((reader.header().pages, reader.header().records), (3, 123));
        let bodies = bodies();
        assert_eq!(reader.page(3).unwrap().unwrap(), bodies[2], "random access");
        assert_eq!(reader.page(1).unwrap().unwrap(), bodies[0]);
        assert_eq!(reader.header().body_bytes, bodies.iter().map(|b| b.len() as u64).sum::<u64>());
        assert!(reader.page(4).unwrap().is_none() && reader.page(0).unwrap().is_none());
        assert!(!dir.join(".tmp-test").exists(), "the temporary file was renamed");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_frame_continued_reads_back_as_one_body() {
        let dir = temp_dir("continued");
        let temp = dir.join(".tmp-c");
        let mut writer = EntryWriter::new(File::create(&temp).unwrap(), temp).unwrap();
        let head = br#"{"page":1,"files":[{"a":1},{"a":2}]"#;
        let frame = Frame::compress(head, 2).unwrap().then(br#","total_pages":1}"#).unwrap();
        assert_eq!(frame.stored_len(), frame.stored.capacity() as u64, "no spare memory is held");
        writer.append(&frame).unwrap();
        let dest = dir.join("c.entry");
        writer.finish(key(), &dest).unwrap();
        let reader = EntryReader::open(&dest).unwrap();
        assert_eq!(reader.page(1).unwrap().unwrap(), &br#"{"page":1,"files":[{"a":1},{"a":2}],"total_pages":1}"#[..]);
        assert_eq!(reader.header().records, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unfinished_writer_leaves_no_file() {
        let dir = temp_dir("unfinished");
        let temp = dir.join(".tmp-x");
        let mut writer = EntryWriter::new(File::create(&temp).unwrap(), temp.clone()).unwrap();
        writer.append(&Frame::compress(b"{}", 0).unwrap()).unwrap();
        drop(writer);
        assert!(!temp.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_truncation_is_noticed() {
        let dir = temp_dir("truncate");
        let path = written(&dir);
        let whole = std::fs::read(&path).unwrap();
        for cut in (0..whole.len()).step_by(7) {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let err = EntryReader::open(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "cut at {cut}: {err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every flipped byte is noticed, on open (trailer, header, index) or when its page is read.
    #[test]
    fn every_flipped_byte_is_noticed() {
        let dir = temp_dir("flip");
        let path = written(&dir);
        let whole = std::fs::read(&path).unwrap();
        for at in 0..whole.len() {
            let mut bad = whole.clone();
            bad[at] ^= 0x20;
            std::fs::write(&path, &bad).unwrap();
            let noticed = match EntryReader::open(&path) {
                Err(err) => err.kind() == io::ErrorKind::InvalidData,
                Ok(reader) => (1..=3).any(|p| reader.page(p).is_err()),
            };
            assert!(noticed, "byte {at} flipped unnoticed");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
