//! The records the mock serves: deterministic for (seed, file index), realistic in shape
//! and in size (see `API.md`), and written straight into the response buffer.

use super::json::{push_fixed, push_str, push_timestamp, push_uint};
use super::rng::{hash, unit, Rng};
use super::words::{ASCII_STEMS, CJK_STEMS, EMOJI_STEMS, ENGLISH, FRENCH_STEMS, HINDI, HINDI_STEMS};

pub(crate) const COMPLETED: u8 = 0;
pub(crate) const FAILED: u8 = 1;
pub(crate) const RETRYING: u8 = 2;
pub(crate) const PROCESSING: u8 = 3;
/// Status names, indexed by the constants above.
pub(crate) const STATUS_NAMES: [&str; 4] = ["completed", "failed", "retrying", "processing"];
pub(crate) const DEFAULT_WEIGHTS: [f64; 4] = [0.85, 0.10, 0.03, 0.02];

pub(crate) fn status_index(name: &str) -> Option<u8> {
    STATUS_NAMES.iter().position(|s| *s == name).map(|i| i as u8)
}

// One salt per independent draw, so that adding a field never shifts another.
const SALT_STATUS: u64 = 1;
const SALT_JOBS: u64 = 2;
const SALT_FACTS: u64 = 3;
const SALT_FILE_ID: u64 = 4;
const SALT_JOB_ID: u64 = 5;
const SALT_BATCH_ID: u64 = 6;
const SALT_DURATION: u64 = 7;
const SALT_FINAL_STATUS: u64 = 8;
const SALT_FINISH: u64 = 9;

/// 2025-01-06T00:00:00Z: the batch's files were uploaded from then on.
const EPOCH_MS: u64 = 1_736_121_600_000;

/// Cumulative distribution of the four statuses from their weights.
pub(crate) fn status_cdf(weights: [f64; 4]) -> Option<[f64; 4]> {
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) || weights.iter().any(|w| *w < 0.0 || !w.is_finite()) {
        return None;
    }
    let mut cdf = [0.0; 4];
    let mut acc = 0.0;
    for (c, w) in cdf.iter_mut().zip(weights) {
        acc += w / total;
        *c = acc;
    }
    // Rounding must never leave a gap below 1.0 after the last status that can occur.
    let last = weights.iter().rposition(|w| *w > 0.0).unwrap_or(3);
    cdf[last..].fill(1.0);
    Some(cdf)
}

pub(crate) fn file_status(seed: u64, index: u64, cdf: &[f64; 4]) -> u8 {
    let u = unit(hash(seed, index, SALT_STATUS));
    cdf.iter().position(|&c| u < c).unwrap_or(3) as u8
}

/// The status an unfinished file ends with: completed or failed, in the proportion the
/// weights give those two (completed when both weigh 0).
pub(crate) fn final_status(seed: u64, index: u64, cdf: &[f64; 4]) -> u8 {
    let (completed, failed) = (cdf[0], cdf[1] - cdf[0]);
    let u = unit(hash(seed, index, SALT_FINAL_STATUS));
    if u * (completed + failed) < failed {
        FAILED
    } else {
        COMPLETED
    }
}

/// When an unfinished file finishes, as a fraction (0..1) of the batch's processing time.
pub(crate) fn finish_fraction(seed: u64, index: u64) -> f64 {
    unit(hash(seed, index, SALT_FINISH))
}

/// How many chunk jobs a file was split into: 1 (half the files), 2 or 3.
pub(crate) fn job_count(seed: u64, index: u64) -> u8 {
    match hash(seed, index, SALT_JOBS) % 10 {
        0..=4 => 1,
        5..=7 => 2,
        _ => 3,
    }
}

/// A file's status is its last chunk's; the chunks before it completed.
pub(crate) fn chunk_status(file_status: u8, chunk: u8, jobs: u8) -> u8 {
    if chunk + 1 == jobs {
        file_status
    } else {
        COMPLETED
    }
}

/// A version-4-shaped uuid drawn from (seed, index, salt), as 128 bits.
fn uuid_bits(seed: u64, index: u64, salt: u64) -> u128 {
    let hi = hash(seed, index, salt);
    let lo = hash(seed, index, salt ^ 0x5555_5555_5555_5555);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    u128::from_be_bytes(bytes)
}

/// Appends a uuid in its canonical form (lowercase hex, hyphens at 8-4-4-4-12).
fn push_uuid_bits(out: &mut Vec<u8>, bits: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bits.to_be_bytes().iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

fn push_uuid(out: &mut Vec<u8>, seed: u64, index: u64, salt: u64) {
    push_uuid_bits(out, uuid_bits(seed, index, salt));
}

/// The `file_id` of file `index`, as 128 bits.
pub(crate) fn file_uuid(seed: u64, index: u64) -> u128 {
    uuid_bits(seed, index, SALT_FILE_ID)
}

/// A uuid in the canonical form the mock writes, to its 128 bits; anything else is `None`.
pub(crate) fn parse_uuid(text: &str) -> Option<u128> {
    let hex: String = text.split('-').collect();
    let bits = u128::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 32)?;
    let mut canonical = Vec::with_capacity(36);
    push_uuid_bits(&mut canonical, bits);
    (canonical == text.as_bytes()).then_some(bits)
}

/// The id of a batch created without one: the `ordinal`-th batch of a server seeded `seed`.
pub(crate) fn batch_uuid(seed: u64, ordinal: u64) -> String {
    let mut out = Vec::with_capacity(36);
    push_uuid(&mut out, seed, ordinal, SALT_BATCH_ID);
    String::from_utf8(out).expect("hex is ascii")
}

/// Audio duration of a file in tenths of a second, 5 s to 10 min (a draw of its own:
/// the status endpoint sums it over the whole batch).
pub(crate) fn duration_tenths(seed: u64, index: u64) -> u64 {
    50 + hash(seed, index, SALT_DURATION) % 5951
}

/// Which record to write: a file (merged view), or one of its chunk jobs (raw view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub index: u64,
    /// The file's status (a job's own follows from it: [`chunk_status`]).
    pub status: u8,
    pub jobs: u8,
    /// The chunk of a job record; `None` for a file record.
    pub chunk: Option<u8>,
}

/// What the caller asked to be included in each record.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Include {
    pub chunks: bool,
    pub speech: bool,
}

const EXTENSIONS: &[&str] = &["wav", "mp3", "m4a", "flac"];
const ODD_STEMS: &[&str] = &["take \"final\" v2", "C:\\recordings\\clip", "tab\there", "Recording (2)"];

const LANGUAGES: &[(&str, f64)] = &[("hi", 0.85), ("en", 0.1), ("hi", 0.5), ("mr", 0.7)];
const TONES: &[&str] = &["neutral", "neutral", "positive", "negative", "frustrated", "calm", "excited"];
const ACCENTS: &[&str] =
    &["north-indian", "south-indian", "mumbai", "bengali", "neutral-indian", "american", "british"];
const SOURCES: &[&str] = &["upload", "upload", "s3", "gcs", "url"];
const ERRORS: &[(&str, &str)] = &[
    ("AUDIO_DECODE_ERROR", "Could not decode audio stream: unsupported codec"),
    ("EMPTY_AUDIO", "No speech detected in the audio"),
    ("FILE_TOO_LARGE", "Audio exceeds the 4 GB limit"),
    ("TRANSCRIPTION_TIMEOUT", "Transcription timed out after 3 attempts"),
    ("SOURCE_UNREACHABLE", "Source URL answered HTTP 403"),
];

const MAX_SEGMENTS: usize = 2;
const MAX_WORDS: usize = 5 * MAX_SEGMENTS;

/// Everything about one file, drawn once in a fixed order so that no option shifts a draw.
struct Facts {
    stem: &'static str,
    number: u64,
    extension: &'static str,
    duration: u64,
    language: &'static str,
    confidence: u64,
    words: [&'static str; MAX_WORDS],
    segment_words: [usize; MAX_SEGMENTS],
    segments: usize,
    speakers: [u64; MAX_SEGMENTS],
    tones: [&'static str; MAX_SEGMENTS],
    accent: &'static str,
    segment_confidence: [u64; MAX_SEGMENTS],
    created_ms: u64,
    source: &'static str,
    trace_id: Option<u128>,
    error: usize,
}

impl Facts {
    fn new(seed: u64, index: u64) -> Facts {
        let mut rng = Rng::new(seed, index, SALT_FACTS);
        let family = rng.below(100);
        let stem = match family {
            0..=54 => rng.pick(&ASCII_STEMS),
            55..=69 => rng.pick(&HINDI_STEMS),
            70..=81 => rng.pick(&FRENCH_STEMS),
            82..=91 => rng.pick(&CJK_STEMS),
            92..=97 => rng.pick(&EMOJI_STEMS),
            _ => rng.pick(ODD_STEMS),
        };
        let number = rng.below(100_000);
        let extension = rng.pick(EXTENSIONS);
        let duration = duration_tenths(seed, index);
        let (language, hindi_share) = rng.pick(LANGUAGES);
        let confidence = rng.between(70, 99);
        let segments = if rng.chance(0.3) { 2 } else { 1 };
        let mut words = [""; MAX_WORDS];
        let mut segment_words = [0; MAX_SEGMENTS];
        let mut n = 0;
        for count in segment_words.iter_mut().take(segments) {
            *count = rng.between(2, 5) as usize;
            for _ in 0..*count {
                words[n] = if rng.chance(hindi_share) { rng.pick(&HINDI) } else { rng.pick(&ENGLISH) };
                n += 1;
            }
        }
        let mut speakers = [1; MAX_SEGMENTS];
        let mut tones = [""; MAX_SEGMENTS];
        let mut segment_confidence = [0; MAX_SEGMENTS];
        for i in 0..MAX_SEGMENTS {
            speakers[i] = rng.between(1, 2);
            tones[i] = rng.pick(TONES);
            segment_confidence[i] = rng.between(60, 99);
        }
        let accent = rng.pick(ACCENTS);
        let created_ms = EPOCH_MS + index * 1500 + rng.below(1000);
        let source = rng.pick(SOURCES);
        // A rare integer past 2**64 (one record in a thousand, the 8th of each), for clients
        // that would squeeze it into a u64 or a double.
        let big = rng.next_u64();
        let trace_id = (index % 1000 == 7).then(|| (1u128 << 64) + u128::from(big));
        let error = rng.below(ERRORS.len() as u64) as usize;
        Facts {
            stem,
            number,
            extension,
            duration,
            language,
            confidence,
            words,
            segment_words,
            segments,
            speakers,
            tones,
            accent,
            segment_confidence,
            created_ms,
            source,
            trace_id,
            error,
        }
    }

    fn word_count(&self) -> usize {
        self.segment_words[..self.segments].iter().sum()
    }

    fn push_filename(&self, out: &mut Vec<u8>) {
        let sep = if self.stem.ends_with(|c: char| c.is_alphabetic()) && !self.stem.contains(' ') { "_" } else { " " };
        push_str(out, &format!("{}{}{:05}.{}", self.stem, sep, self.number, self.extension));
    }

    /// Words `from..to` joined by spaces, as a JSON string (the vocabulary needs no escaping).
    fn push_words(&self, out: &mut Vec<u8>, from: usize, to: usize) {
        out.push(b'"');
        for (i, w) in self.words[from..to].iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(w.as_bytes());
        }
        out.push(b'"');
    }

    /// The file's `k`-th of `parts` equal slices: (first word, end word, start, end) in tenths.
    fn slice(&self, k: usize, parts: usize) -> (usize, usize, u64, u64) {
        let n = self.word_count();
        let d = self.duration;
        let p = parts as u64;
        let k64 = k as u64;
        (k * n / parts, (k + 1) * n / parts, k64 * d / p, (k64 + 1) * d / p)
    }

    fn push_segment(&self, out: &mut Vec<u8>, i: usize, words: (usize, usize), span: (u64, u64)) {
        out.extend_from_slice(b"{\"start\":");
        push_fixed(out, span.0, 1);
        out.extend_from_slice(b",\"end\":");
        push_fixed(out, span.1, 1);
        out.extend_from_slice(b",\"text\":");
        self.push_words(out, words.0, words.1);
        out.extend_from_slice(b",\"speaker_id\":\"S");
        push_uint(out, u128::from(self.speakers[i]));
        out.extend_from_slice(b"\",\"tone\":\"");
        out.extend_from_slice(self.tones[i].as_bytes());
        out.extend_from_slice(b"\",\"accent\":\"");
        out.extend_from_slice(self.accent.as_bytes());
        out.extend_from_slice(b"\",\"confidence\":");
        push_fixed(out, self.segment_confidence[i], 2);
        out.push(b'}');
    }

    /// `"result":{...}` for the words `from..to` spanning `start..end`.
    fn push_result(&self, out: &mut Vec<u8>, words: (usize, usize), span: (u64, u64), segments: Option<&[usize]>) {
        out.extend_from_slice(b",\"result\":{\"text\":");
        self.push_words(out, words.0, words.1);
        out.extend_from_slice(b",\"language\":\"");
        out.extend_from_slice(self.language.as_bytes());
        out.extend_from_slice(b"\",\"duration_seconds\":");
        push_fixed(out, span.1 - span.0, 1);
        out.extend_from_slice(b",\"confidence\":");
        push_fixed(out, self.confidence, 2);
        if let Some(segment_indices) = segments {
            out.extend_from_slice(b",\"segments\":[");
            for (n, &i) in segment_indices.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                let (w0, w1, t0, t1) = self.slice(i, self.segments);
                // A job sees the part of each segment inside its chunk only.
                self.push_segment(out, i, clip((w0, w1), words), clip((t0, t1), span));
            }
            out.push(b']');
        }
        out.push(b'}');
    }

    fn push_errors(&self, out: &mut Vec<u8>, failed: bool) {
        out.extend_from_slice(b",\"errors\":[");
        if failed {
            let (code, message) = ERRORS[self.error];
            out.extend_from_slice(b"{\"code\":\"");
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(b"\",\"message\":\"");
            out.extend_from_slice(message.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
    }

    fn push_metadata(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"metadata\":{\"source\":\"");
        out.extend_from_slice(self.source.as_bytes());
        out.extend_from_slice(b"\",\"client_ref\":null");
        if let Some(trace_id) = self.trace_id {
            out.extend_from_slice(b",\"trace_id\":");
            push_uint(out, trace_id);
        }
        out.push(b'}');
    }
}

/// `inner` cut to `outer`, never reversed.
fn clip<T: Ord + Copy>(inner: (T, T), outer: (T, T)) -> (T, T) {
    let start = inner.0.max(outer.0);
    (start, inner.1.min(outer.1).max(start))
}

/// Appends the merged record (`raw=false`) of file `index`.
pub(crate) fn push_file(out: &mut Vec<u8>, seed: u64, item: Item, include: Include) {
    let Item { index, status, jobs, .. } = item;
    let f = Facts::new(seed, index);
    out.extend_from_slice(b"{\"file_id\":\"");
    push_uuid(out, seed, index, SALT_FILE_ID);
    out.extend_from_slice(b"\",\"filename\":");
    f.push_filename(out);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(STATUS_NAMES[usize::from(status)].as_bytes());
    out.push(b'"');
    match status {
        COMPLETED => {
            let all: [usize; MAX_SEGMENTS] = std::array::from_fn(|i| i);
            let segments = include.speech.then_some(&all[..f.segments]);
            f.push_result(out, (0, f.word_count()), (0, f.duration), segments);
        }
        FAILED => {}
        _ => out.extend_from_slice(b",\"result\":null"),
    }
    f.push_errors(out, status == FAILED);
    if include.chunks {
        out.extend_from_slice(b",\"chunk_results\":[");
        for c in 0..jobs {
            if c > 0 {
                out.push(b',');
            }
            let chunk = chunk_status(status, c, jobs);
            let (w0, w1, t0, t1) = f.slice(usize::from(c), usize::from(jobs));
            out.extend_from_slice(b"{\"chunk_index\":");
            push_uint(out, u128::from(c));
            out.extend_from_slice(b",\"status\":\"");
            out.extend_from_slice(STATUS_NAMES[usize::from(chunk)].as_bytes());
            out.extend_from_slice(b"\",\"start\":");
            push_fixed(out, t0, 1);
            out.extend_from_slice(b",\"end\":");
            push_fixed(out, t1, 1);
            out.extend_from_slice(b",\"text\":");
            if chunk == COMPLETED {
                f.push_words(out, w0, w1);
            } else {
                out.extend_from_slice(b"null");
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"created_at\":");
    push_timestamp(out, f.created_ms);
    f.push_metadata(out);
    out.push(b'}');
}

/// Appends the raw job record (`raw=true`) of chunk `chunk` of file `index`.
pub(crate) fn push_job(out: &mut Vec<u8>, batch_id: &str, seed: u64, item: Item, include: Include) {
    let Item { index, status: file_status, jobs, chunk } = item;
    let chunk = chunk.unwrap_or(0);
    let f = Facts::new(seed, index);
    let status = chunk_status(file_status, chunk, jobs);
    out.extend_from_slice(b"{\"job_id\":\"");
    push_uuid(out, seed, index * 4 + u64::from(chunk), SALT_JOB_ID);
    out.extend_from_slice(b"\",\"file_id\":\"");
    push_uuid(out, seed, index, SALT_FILE_ID);
    out.extend_from_slice(b"\",\"batch_id\":");
    push_str(out, batch_id);
    out.extend_from_slice(b",\"filename\":");
    f.push_filename(out);
    out.extend_from_slice(b",\"chunk_index\":");
    push_uint(out, u128::from(chunk));
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(STATUS_NAMES[usize::from(status)].as_bytes());
    out.push(b'"');
    match status {
        COMPLETED => {
            let (w0, w1, t0, t1) = f.slice(usize::from(chunk), usize::from(jobs));
            // The segments that overlap this chunk.
            let overlapping: Vec<usize> = (0..f.segments)
                .filter(|&i| {
                    let (_, _, s0, s1) = f.slice(i, f.segments);
                    s0 < t1 && s1 > t0
                })
                .collect();
            f.push_result(out, (w0, w1), (t0, t1), include.speech.then_some(&overlapping[..]));
        }
        FAILED => {}
        _ => out.extend_from_slice(b",\"result\":null"),
    }
    f.push_errors(out, status == FAILED);
    out.extend_from_slice(b",\"created_at\":");
    push_timestamp(out, f.created_ms + 250 * u64::from(chunk));
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn file(seed: u64, index: u64, status: u8, jobs: u8, include: Include) -> Value {
        let mut out = Vec::new();
        push_file(&mut out, seed, Item { index, status, jobs, chunk: None }, include);
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    fn job(index: u64, chunk: u8, status: u8, jobs: u8) -> Value {
        let mut out = Vec::new();
        let item = Item { index, status, jobs, chunk: Some(chunk) };
        push_job(&mut out, "b/\"1", 0, item, Include { chunks: false, speech: true });
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    const ALL: Include = Include { chunks: true, speech: true };

    #[test]
    fn vocabulary_needs_no_escaping() {
        for w in HINDI.iter().chain(&ENGLISH) {
            assert!(!w.contains(['"', '\\', ' ']) && !w.chars().any(char::is_control), "{w}");
        }
    }

    #[test]
    fn records_are_deterministic_by_seed_and_index() {
        assert_eq!(file(3, 17, COMPLETED, 2, ALL), file(3, 17, COMPLETED, 2, ALL));
        assert_ne!(file(3, 17, COMPLETED, 2, ALL)["file_id"], file(4, 17, COMPLETED, 2, ALL)["file_id"]);
        assert_ne!(file(3, 17, COMPLETED, 2, ALL)["file_id"], file(3, 18, COMPLETED, 2, ALL)["file_id"]);
    }

    #[test]
    fn every_record_is_valid_json_of_the_documented_shape() {
        for index in 0..3000 {
            for status in 0..4u8 {
                let jobs = job_count(0, index);
                let v = file(0, index, status, jobs, ALL);
                assert_eq!(v["file_id"].as_str().unwrap().len(), 36);
                assert_eq!(v["status"], STATUS_NAMES[usize::from(status)]);
                assert_eq!(v["chunk_results"].as_array().unwrap().len(), usize::from(jobs));
                match status {
                    COMPLETED => {
                        assert!(v["result"]["text"].as_str().unwrap().len() > 3);
                        assert!(!v["result"]["segments"].as_array().unwrap().is_empty());
                        assert_eq!(v["errors"], serde_json::json!([]));
                    }
                    FAILED => {
                        assert!(v.get("result").is_none());
                        assert!(v["errors"][0]["code"].is_string());
                    }
                    _ => assert!(v["result"].is_null()),
                }
                for c in 0..jobs {
                    let j = job(index, c, status, jobs);
                    assert_eq!(j["file_id"], v["file_id"]);
                    assert_eq!(j["batch_id"], "b/\"1");
                    assert_eq!(j["status"], STATUS_NAMES[usize::from(chunk_status(status, c, jobs))]);
                }
            }
        }
    }

    #[test]
    fn options_add_fields_only_when_asked() {
        let v = file(0, 5, COMPLETED, 2, Include::default());
        assert!(v.get("chunk_results").is_none());
        assert!(v["result"].get("segments").is_none());
        assert!(v["metadata"]["client_ref"].is_null());
    }

    #[test]
    fn data_looks_real() {
        let mut names = std::collections::HashSet::new();
        let (mut bytes, mut big, mut unicode) = (0, 0, 0);
        let n = 2000;
        for index in 0..n {
            let mut out = Vec::new();
            let item = Item { index, status: COMPLETED, jobs: 1, chunk: None };
            push_file(&mut out, 0, item, Include { chunks: false, speech: true });
            bytes += out.len();
            let v: Value = serde_json::from_slice(&out).unwrap();
            let name = v["filename"].as_str().unwrap().to_string();
            unicode += usize::from(!name.is_ascii());
            names.insert(name);
            big += usize::from(v["metadata"].get("trace_id").is_some_and(|t| t.as_u64().is_none()));
        }
        let average = bytes / n as usize;
        assert!((450..560).contains(&average), "average completed record {average} bytes");
        assert!(names.len() > 1900);
        assert!(unicode > 400 && unicode < 1200, "{unicode}");
        assert!(big > 0 && big < 60, "{big}");
    }

    #[test]
    fn status_weights_are_honoured() {
        let cdf = status_cdf(DEFAULT_WEIGHTS).unwrap();
        let mut counts = [0u32; 4];
        for i in 0..20_000 {
            counts[usize::from(file_status(1, i, &cdf))] += 1;
        }
        assert!((16_600..17_400).contains(&counts[0]), "{counts:?}");
        assert!((1_800..2_200).contains(&counts[1]), "{counts:?}");
        let only_failed = status_cdf([0.0, 1.0, 0.0, 0.0]).unwrap();
        assert!((0..1000).all(|i| file_status(1, i, &only_failed) == FAILED));
        assert!(status_cdf([0.0; 4]).is_none());
        assert!(status_cdf([1.0, -1.0, 0.0, 0.0]).is_none());
    }
}
