//! One response body: its envelope read in Rust, its records kept as byte spans
//! so they are parsed once, straight into the consumer's final form.

use std::cell::Cell;
use std::hash::BuildHasher;
use std::ops::Range;

use bytes::Bytes;
use jiter::{Jiter, JiterError, JiterErrorType, JsonErrorType, NumberInt, Peek};

use crate::error::{excerpt_bytes, Error, Missing, Result};

mod lenient;

pub use lenient::{unescape, without_lone_surrogates};

/// The envelope of a results page (every field but the records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMeta {
    pub batch_id: Option<String>,
    pub page: u64,
    pub limit: Option<u64>,
    pub total_pages: u64,
    /// `total_files`, or `total_jobs` for raw records.
    pub total: Option<u64>,
    pub count: u64,
    pub raw: bool,
}

/// One record of a page: where it sits in the body, and a hash of its id for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub span: Range<usize>,
    pub key: Option<u64>,
    /// The record has a run of 19+ digits: it may hold an integer beyond 64 bits, which only
    /// an exact parser keeps (checked here, off the GIL, so the fast path can be chosen safely).
    pub long_numbers: bool,
    /// The record holds a lone surrogate escape (`"\ud83d"`, a string JavaScript cut mid-emoji),
    /// which Python's `json` reads and most parsers refuse.
    pub lone_surrogates: bool,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub meta: PageMeta,
    pub body: Bytes,
    /// The `files`/`jobs` array, brackets included.
    pub array: Range<usize>,
    pub records: Vec<Record>,
    /// False once records were dropped (duplicates, `max_items`): then each is parsed alone.
    pub intact: bool,
}

impl Page {
    /// The JSON of the records array as delivered (re-assembled if records were dropped).
    pub fn records_json(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.intact {
            return self.body[self.array.clone()].into();
        }
        let mut out = Vec::with_capacity(self.records.iter().map(|r| r.span.len() + 1).sum::<usize>() + 2);
        out.push(b'[');
        for (i, r) in self.records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.body[r.span.clone()]);
        }
        out.push(b']');
        out.into()
    }

    /// One page made of the records of `parts`, in order, under `meta` (pages read again
    /// around a change, merged into the page delivered). The bytes are copied into one body.
    pub fn concat(meta: PageMeta, parts: &[&Page]) -> Page {
        let size = parts.iter().flat_map(|p| &p.records).map(|r| r.span.len() + 1).sum::<usize>();
        let mut body = Vec::with_capacity(size + 2);
        let mut records = Vec::with_capacity(parts.iter().map(|p| p.records.len()).sum());
        body.push(b'[');
        for part in parts {
            for (i, r) in part.records.iter().enumerate() {
                if body.len() > 1 {
                    body.push(b',');
                }
                let start = body.len();
                body.extend_from_slice(part.record_json(i));
                records.push(Record { span: start..body.len(), ..r.clone() });
            }
        }
        body.push(b']');
        let array = 0..body.len();
        Page { meta, body: Bytes::from(body), array, records, intact: true }
    }

    /// Whether any record may hold an integer beyond 64 bits.
    #[cfg(test)]
    pub fn long_numbers(&self) -> bool {
        self.records.iter().any(|r| r.long_numbers)
    }

    pub fn record_json(&self, i: usize) -> &[u8] {
        &self.body[self.records[i].span.clone()]
    }

    /// Whether record `i` is an object whose top-level `"status"` (the first such member) is a
    /// string that `test` accepts: what the client-side filter and the cache's finality check read.
    pub fn record_status_is(&self, i: usize, test: impl FnOnce(&str) -> bool) -> jiter::JiterResult<bool> {
        top_level_status_is(self.record_json(i), test)
    }

    /// Keep the first `n` records.
    pub fn truncate(&mut self, n: usize) {
        if n < self.records.len() {
            self.records.truncate(n);
            self.intact = false;
        }
    }

    /// Drop the records for which `keep` is false; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&Record) -> bool) -> usize {
        let before = self.records.len();
        self.records.retain(|r| keep(r));
        let dropped = before - self.records.len();
        if dropped > 0 {
            self.intact = false;
        }
        dropped
    }
}

/// The keys of a page's shape: `files`/`total_files`/`file_id`, or the `jobs` ones when raw.
struct Names {
    items: &'static str,
    total: &'static str,
    id: &'static str,
}

fn names(raw: bool) -> Names {
    if raw {
        Names { items: "jobs", total: "total_jobs", id: "job_id" }
    } else {
        Names { items: "files", total: "total_files", id: "file_id" }
    }
}

/// A fixed hasher, so ids hash the same in every process and run.
fn id_hash(id: &str) -> u64 {
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id)
}

/// Reads a page body. Errors name no page; the caller stamps it.
///
/// Records are read by jiter; one it refuses is read again by `lenient::read_record`, as
/// Python's `json` would (lone surrogates, nesting beyond jiter's 200 levels), and the body is
/// read on after it by a new jiter (`base`: where that one starts).
pub fn parse_page(body: Bytes, raw: bool, requested_page: u64) -> Result<Page> {
    match read_page(body.clone(), raw, requested_page) {
        Err(err @ Error::Format { .. }) => {
            // A lone surrogate escape in the envelope (a batch id, an error message, a field not
            // read here): Python's `json` reads it, jiter refuses it. The envelope is read from a
            // copy with each written `\ufffd`, which has the same length, so the records' spans
            // hold; the records stay the body as sent, marked where the copy differs.
            let Some(clean) = surrogates_replaced(&body) else { return Err(err) };
            let mut page = match read_page(Bytes::from(clean), raw, requested_page) {
                Ok(page) => page,
                Err(Error::Format { .. }) => return Err(err),
                Err(answer) => return Err(answer), // an error body, now read
            };
            for record in &mut page.records {
                record.lone_surrogates |= page.body[record.span.clone()] != body[record.span.clone()];
            }
            page.body = body;
            Ok(page)
        }
        read => read,
    }
}

/// `body` with each lone surrogate escape written `\ufffd` (the same number of bytes), or None
/// when it holds none.
pub fn surrogates_replaced(body: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(body, b"\\u")?;
    Some(without_lone_surrogates(body)).filter(|clean| clean[..] != body[..])
}

fn read_page(body: Bytes, raw: bool, requested_page: u64) -> Result<Page> {
    let shape = names(raw);
    let base = Cell::new(0);
    let format_error = |message: String, malformed: bool| Error::format(message, &body, malformed);
    let json_error = |mut e: JiterError| {
        e.index += base.get();
        // Nesting beyond a parser's limit is no transient fault: asking again cannot help.
        let deterministic = matches!(e.error_type, JiterErrorType::JsonError(JsonErrorType::RecursionLimitExceeded));
        format_error(format!("response body is not valid JSON: {e}"), !deterministic)
    };

    let mut jiter = Jiter::new(&body);
    let mut meta =
        PageMeta { batch_id: None, page: requested_page, limit: None, total_pages: 0, total: None, count: 0, raw };
    let mut seen_total_pages = false;
    let mut seen_count = false;
    let mut error_message: Option<String> = None;
    let mut array: Option<Range<usize>> = None;
    let mut records = Vec::new();

    if jiter.peek().map_err(json_error)? != Peek::Object {
        jiter.next_skip().map_err(json_error)?;
        jiter.finish().map_err(json_error)?;
        return Err(format_error("response body is JSON but not an object".into(), false));
    }
    let mut key = jiter.known_object().map_err(json_error)?.map(str::to_owned);
    while let Some(k) = key {
        let field_error = |what: &str| format_error(format!("field {k:?} of the response is not {what}"), false);
        match k.as_str() {
            "page" => {
                meta.page = read_count(&mut jiter).map_err(json_error)?.ok_or_else(|| field_error("a page number"))?
            }
            "total_pages" => {
                meta.total_pages = read_count(&mut jiter).map_err(json_error)?.ok_or_else(|| field_error("a count"))?;
                seen_total_pages = true;
            }
            "count" => {
                meta.count = read_count(&mut jiter).map_err(json_error)?.ok_or_else(|| field_error("a count"))?;
                seen_count = true;
            }
            "limit" => meta.limit = read_count(&mut jiter).map_err(json_error)?,
            "batch_id" => meta.batch_id = read_string(&mut jiter).map_err(json_error)?,
            "error" => {
                error_message = Some(match read_string(&mut jiter).map_err(json_error)? {
                    Some(s) => s,
                    None => "unknown error".into(),
                })
            }
            k if k == shape.total => meta.total = read_count(&mut jiter).map_err(json_error)?,
            k if k == shape.items => {
                let start = base.get() + jiter.current_index();
                if jiter.peek().map_err(json_error)? != Peek::Array {
                    return Err(field_error("an array"));
                }
                let mut peek = jiter.known_array().map_err(json_error)?;
                while let Some(p) = peek {
                    let begin = base.get() + jiter.current_index();
                    let (key, lone_surrogates) = match read_record(&mut jiter, p, shape.id) {
                        Ok(key) => (key, false),
                        Err(refused) => {
                            let refused = || not_json(json_error(refused));
                            let record = lenient::read_record(&body, begin, shape.id).ok_or_else(refused)?;
                            base.set(record.end);
                            jiter = Jiter::new(&body[record.end..]);
                            (record.key, record.lone_surrogates)
                        }
                    };
                    let span = begin..base.get() + jiter.current_index();
                    let long_numbers = has_digit_run(&body[span.clone()], 19);
                    records.push(Record { span, key, long_numbers, lone_surrogates });
                    peek = jiter.array_step().map_err(json_error)?;
                }
                array = Some(start..base.get() + jiter.current_index());
            }
            _ => jiter.next_skip().map_err(json_error)?,
        }
        key = jiter.next_key().map_err(json_error)?.map(str::to_owned);
    }
    jiter.finish().map_err(json_error)?;

    if let Some(message) = error_message {
        if array.is_none() {
            return Err(error_body(200, message, &body));
        }
    }
    let Some(array) = array else {
        let other = names(!raw).items;
        let hint = if contains_key(&body, other) {
            format!(" (it has {other:?}: was raw={} expected?)", !raw)
        } else {
            String::new()
        };
        return Err(format_error(format!("response has no {:?} array{hint}", shape.items), false));
    };
    if !seen_total_pages {
        return Err(format_error("response has no \"total_pages\"".into(), false));
    }
    if !seen_count {
        meta.count = records.len() as u64;
    }
    Ok(Page { meta, body, array, records, intact: true })
}

/// A record neither jiter nor the lenient reader reads is not JSON, whatever jiter said first
/// (a body cut inside deep nesting is refused by jiter for its depth): worth a retry.
fn not_json(error: Error) -> Error {
    match error {
        Error::Format { message, excerpt, page, .. } => Error::Format { message, excerpt, page, malformed: true },
        other => other,
    }
}

/// The error for a `{"error": ...}` body: `batch not found` and `file not found` get their own type.
pub fn error_body(status: u16, message: String, body: &[u8]) -> Error {
    let body = excerpt_bytes(body, 500);
    let missing = match message.trim().to_ascii_lowercase().as_str() {
        "batch not found" => Some(Missing::Batch),
        "file not found" => Some(Missing::File),
        _ => None,
    };
    match missing {
        Some(what) => {
            Error::NotFound { what, status, message: format!("{} (HTTP {status})", message.trim()), body, page: None }
        }
        None => Error::Api {
            status,
            message: format!("service error (HTTP {status}): {message}"),
            body,
            page: None,
            retry_after: None,
        },
    }
}

/// The error a 2xx answer stands for, if it is an error body: one whose only meaning is the
/// error, an object with an `"error"` string and none of `fields`, the answer's own (non-null).
/// An answer that has them is an answer, its `"error"` one field among others (a failed file's
/// reason, a failed batch's cause). The rule of every endpoint: a page's own field is its array.
pub fn error_answer(status: u16, body: &[u8], fields: &[&str]) -> Option<Error> {
    let message = match error_answer_in(body, fields) {
        Ok(message) => message,
        Err(_) => error_answer_in(&surrogates_replaced(body)?, fields).ok().flatten(),
    };
    Some(error_body(status, message?, body))
}

/// The message of an error body (see `error_answer`); Err when jiter refuses the body.
fn error_answer_in(body: &[u8], fields: &[&str]) -> jiter::JiterResult<Option<String>> {
    let Some(message) = error_member(body)? else { return Ok(None) };
    let mut jiter = Jiter::new(body);
    let mut key = jiter.next_object()?.map(str::to_owned);
    while let Some(k) = key {
        let null = jiter.peek()? == Peek::Null;
        if !null && fields.contains(&k.as_str()) {
            return Ok(None);
        }
        jiter.next_skip()?;
        key = jiter.next_key()?.map(str::to_owned);
    }
    Ok(Some(message))
}

/// The `"error"` member of a JSON error body, if it is one (a lone surrogate escape in the body
/// read as U+FFFD, as Python's `json` reads the body and our parsers cannot).
pub fn error_message(body: &[u8]) -> Option<String> {
    match error_member(body) {
        Ok(message) => message,
        Err(_) => error_member(&surrogates_replaced(body)?).ok().flatten(),
    }
}

/// The `"error"` string of an object; Err when jiter refuses what it reads before it.
fn error_member(body: &[u8]) -> jiter::JiterResult<Option<String>> {
    let mut jiter = Jiter::new(body);
    let mut key = jiter.next_object()?.map(str::to_owned);
    while let Some(k) = key {
        if k == "error" {
            return read_string(&mut jiter);
        }
        jiter.next_skip()?;
        key = jiter.next_key()?.map(str::to_owned);
    }
    Ok(None)
}

/// Whether `bytes` holds `n` ASCII digits in a row (in a number or in a string: either way
/// the answer errs on the side of exactness).
pub fn has_digit_run(bytes: &[u8], n: usize) -> bool {
    let mut run = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            run += 1;
            if run >= n {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

fn contains_key(body: &[u8], key: &str) -> bool {
    let needle = format!("\"{key}\"");
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A non-negative integer, or None for null or any other type (consumed either way).
fn read_count(jiter: &mut Jiter) -> jiter::JiterResult<Option<u64>> {
    let peek = jiter.peek()?;
    if peek.is_num() {
        if let Ok(NumberInt::Int(i)) = jiter.known_int(peek) {
            return Ok(u64::try_from(i).ok());
        }
        return Ok(None);
    }
    jiter.known_skip(peek)?;
    Ok(None)
}

fn read_string(jiter: &mut Jiter) -> jiter::JiterResult<Option<String>> {
    let peek = jiter.peek()?;
    if peek == Peek::String {
        return Ok(Some(jiter.known_str()?.to_owned()));
    }
    jiter.known_skip(peek)?;
    Ok(None)
}

/// Skips one record, returning the hash of its top-level string id when it has one.
fn read_record(jiter: &mut Jiter, peek: Peek, id_field: &str) -> jiter::JiterResult<Option<u64>> {
    if peek != Peek::Object {
        jiter.known_skip(peek)?;
        return Ok(None);
    }
    let mut id = None;
    let mut is_id = jiter.known_object()?.map(|k| k == id_field);
    while let Some(this_is_id) = is_id {
        let p = jiter.peek()?;
        if this_is_id && p == Peek::String {
            id = Some(id_hash(jiter.known_str()?));
        } else {
            jiter.known_skip(p)?;
        }
        is_id = jiter.next_key()?.map(|k| k == id_field);
    }
    Ok(id)
}

fn top_level_status_is(json: &[u8], test: impl FnOnce(&str) -> bool) -> jiter::JiterResult<bool> {
    let mut jiter = Jiter::new(json);
    if jiter.peek()? != Peek::Object {
        return Ok(false);
    }
    let mut key = jiter.known_object()?.map(|k| k == "status");
    while let Some(is_status) = key {
        if is_status {
            return Ok(jiter.peek()? == Peek::String && test(jiter.known_str()?));
        }
        jiter.next_skip()?;
        key = jiter.next_key()?.map(|k| k == "status");
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, raw: bool) -> Result<Page> {
        parse_page(Bytes::from(body.to_owned()), raw, 1)
    }

    #[test]
    fn files_page() {
        let body = r#"{"batch_id":"b","page":2,"limit":2,"total_pages":3,"total_files":5,"count":2,
            "files":[{"file_id":"f1","x":{"deep":[1,2,{"a":null}]}}, {"filename":"é","file_id":"f2"}],"extra":true}"#;
        let page = parse_page(Bytes::from(body), false, 2).unwrap();
        assert_eq!(
            page.meta,
            PageMeta {
                batch_id: Some("b".into()),
                page: 2,
                limit: Some(2),
                total_pages: 3,
                total: Some(5),
                count: 2,
                raw: false
            }
        );
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.record_json(0), br#"{"file_id":"f1","x":{"deep":[1,2,{"a":null}]}}"#);
        assert_eq!(page.record_json(1), r#"{"filename":"é","file_id":"f2"}"#.as_bytes());
        assert_eq!(page.records[1].key, Some(id_hash("f2")));
        assert!(page.records_json().starts_with(b"[{\"file_id\":\"f1\""));
    }

    #[test]
    fn jobs_page_and_shape_mismatch() {
        let body = r#"{"page":1,"total_pages":1,"total_jobs":1,"count":1,"jobs":[{"job_id":"j","file_id":"f"}]}"#;
        let page = parse(body, true).unwrap();
        assert_eq!(page.meta.total, Some(1));
        assert_eq!(page.records[0].key, Some(id_hash("j")));
        let err = parse(body, false).unwrap_err();
        assert!(err.to_string().contains("was raw=true expected"), "{err}");
        assert!(matches!(err, Error::Format { malformed: false, .. }));
    }

    #[test]
    fn dropping_records_reassembles_the_array() {
        let body = r#"{"total_pages":1,"files":[{"file_id":"a"}, 7 ,{"file_id":"c"}]}"#;
        let mut page = parse(body, false).unwrap();
        assert_eq!(page.meta.count, 3, "count defaults to the records present");
        assert_eq!(page.retain(|r| r.key != Some(id_hash("a"))), 1);
        assert_eq!(&*page.records_json(), br#"[7,{"file_id":"c"}]"#);
        page.truncate(1);
        assert_eq!(&*page.records_json(), b"[7]");
    }

    #[test]
    fn concat_keeps_records_and_keys() {
        let a = parse(r#"{"total_pages":2,"files":[{"file_id":"a"},{"file_id":"b"}]}"#, false).unwrap();
        let mut b = parse(r#"{"total_pages":2,"files":[{"file_id":"c","n":123456789012345678901}]}"#, false).unwrap();
        b.retain(|_| true);
        let merged = Page::concat(b.meta.clone(), &[&a, &b]);
        assert_eq!(
            &*merged.records_json(),
            br#"[{"file_id":"a"},{"file_id":"b"},{"file_id":"c","n":123456789012345678901}]"#
        );
        assert_eq!(
            merged.records.iter().map(|r| r.key).collect::<Vec<_>>(),
            [a.records[0].key, a.records[1].key, b.records[0].key]
        );
        assert!(merged.records[2].long_numbers && merged.intact);
        assert_eq!(merged.record_json(1), br#"{"file_id":"b"}"#);
    }

    #[test]
    fn not_found_body_on_200() {
        let err = parse(r#"{"error": "batch not found"}"#, false).unwrap_err();
        assert!(matches!(err, Error::NotFound { what: Missing::Batch, status: 200, .. }), "{err:?}");
        assert_eq!(err.to_string(), "batch not found (HTTP 200)");
        let err = parse(r#"{"error": "file not found"}"#, false).unwrap_err();
        assert!(matches!(err, Error::NotFound { what: Missing::File, .. }), "{err:?}");
        let err = parse(r#"{"error": "quota exceeded"}"#, false).unwrap_err();
        assert!(matches!(err, Error::Api { status: 200, .. }), "{err:?}");
        assert_eq!(error_message(br#"{"detail":1,"error":"batch not found"}"#).as_deref(), Some("batch not found"));
        assert_eq!(error_message(b"not json"), None);
    }

    #[test]
    fn broken_bodies_are_format_errors() {
        for (body, malformed) in [
            ("", true),
            ("<html>502</html>", true),
            (r#"{"total_pages":1,"files":[{"file_id":"a"}"#, true),
            (r#"{"total_pages":1,"files":[]} trailing"#, true),
            ("[1,2]", false),
            (r#"{"files":[]}"#, false),
            (r#"{"total_pages":"many","files":[]}"#, false),
            (r#"{"total_pages":1,"files":{}}"#, false),
            (r#"{"total_pages":1}"#, false),
        ] {
            match parse(body, false) {
                Err(Error::Format { malformed: m, .. }) => assert_eq!(m, malformed, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_nesting_is_read_without_recursion() {
        let deep = format!(
            r#"{{"total_pages":1,"files":[{}{},{{"file_id":"b"}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let page = parse(&deep, false).unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.record_json(1), br#"{"file_id":"b"}"#, "read on after the deep one");
        let unbalanced = format!(r#"{{"total_pages":1,"files":[{}]}}"#, "[".repeat(100_000));
        assert!(matches!(parse(&unbalanced, false), Err(Error::Format { malformed: true, .. })));
        // Outside the records, nesting beyond jiter's limit is deterministic: never retried.
        let envelope = format!(r#"{{"total_pages":1,"x":{}{},"files":[]}}"#, "[".repeat(300), "]".repeat(300));
        let err = parse(&envelope, false).unwrap_err();
        assert!(matches!(err, Error::Format { malformed: false, .. }) && !err.is_retryable(), "{err:?}");
    }

    #[test]
    fn records_python_reads_are_read_and_the_page_kept() {
        // A lone surrogate (a string JavaScript cut mid-emoji) and 250 levels: jiter refuses both.
        let deep = format!(r#"{{"file_id":"c","d":{}1{}}}"#, "[".repeat(250), "]".repeat(250));
        let body = format!(
            r#"{{"total_pages":1,"files":[{{"file_id":"a","t":"cut \ud83d"}} , {{"file_id":"b"}},{deep},{{"n":12345678901234567890}}]}}"#
        );
        let page = parse(&body, false).unwrap();
        assert_eq!(page.record_json(0), br#"{"file_id":"a","t":"cut \ud83d"}"#);
        assert_eq!(page.record_json(2), deep.as_bytes());
        let keys: Vec<_> = page.records.iter().map(|r| r.key).collect();
        assert_eq!(keys, [Some(id_hash("a")), Some(id_hash("b")), Some(id_hash("c")), None]);
        let flags: Vec<_> = page.records.iter().map(|r| (r.lone_surrogates, r.long_numbers)).collect();
        assert_eq!(flags, [(true, false), (false, false), (false, false), (false, true)]);
        assert_eq!(&page.body[page.array.clone()], &body.as_bytes()[25..body.len() - 1]);
    }

    #[test]
    fn lone_surrogates_in_the_envelope_are_read_as_python_reads_them() {
        // In the batch id, a field not read, a key: the envelope reads as U+FFFD; the body and
        // the records stay as sent, a record with its own lone surrogate still marked.
        let body = r#"{"batch_id":"b\ud800","note":"x\udc00","k\ud83d":1,"total_pages":1,"total_files":2,
            "files":[{"file_id":"a","t":"\u00e9\ud83d\ude00"},{"file_id":"b","t":"cut \ud83d"}]}"#;
        let page = parse(body, false).unwrap();
        assert_eq!(page.meta.batch_id.as_deref(), Some("b\u{fffd}"));
        assert_eq!((page.meta.total, page.records.len()), (Some(2), 2));
        assert_eq!(&page.body[..], body.as_bytes());
        assert_eq!(page.record_json(1), br#"{"file_id":"b","t":"cut \ud83d"}"#);
        let flags: Vec<_> = page.records.iter().map(|r| (r.key, r.lone_surrogates)).collect();
        assert_eq!(flags, [(Some(id_hash("a")), false), (Some(id_hash("b")), true)]);
        // An error body keeps its meaning; a body broken elsewhere stays the error it was.
        let err = parse(r#"{"error":"batch not found","why":"\udc00"}"#, false).unwrap_err();
        assert!(matches!(err, Error::NotFound { what: Missing::Batch, .. }), "{err:?}");
        assert_eq!(error_message(br#"{"why":"\udc00","error":"bad \ud800 id"}"#).as_deref(), Some("bad \u{fffd} id"));
        let err = parse(r#"{"batch_id":"\ud800","total_pages":1,"files":[}"#, false).unwrap_err();
        assert!(matches!(err, Error::Format { malformed: true, .. }), "{err:?}");
        assert_eq!(surrogates_replaced(br#"{"a":"\ud83d\ude00 \u00e9"}"#), None, "nothing lone: no copy");
    }

    #[test]
    fn long_numbers_are_flagged() {
        let small = parse(r#"{"total_pages":1,"files":[{"n":9223372036854775807,"s":"123"}]}"#, false).unwrap();
        assert!(small.long_numbers(), "19 digits may already pass i64 for larger values");
        let tiny = parse(r#"{"total_pages":1,"files":[{"n":922337203685477580,"x":1.5}]}"#, false).unwrap();
        assert!(!tiny.long_numbers());
        let big = parse(r#"{"total_pages":1,"files":[{"n":1},{"n":18446744073709551617},{"s":"x"}]}"#, false).unwrap();
        let flags: Vec<bool> = big.records.iter().map(|r| r.long_numbers).collect();
        assert_eq!(flags, [false, true, false], "flagged per record");
        assert!(!has_digit_run(b"12a45", 3) && has_digit_run(b"a123", 3));
    }

    #[test]
    fn negative_or_null_counts() {
        let page = parse(r#"{"total_pages":1,"total_files":null,"limit":-1,"files":[]}"#, false).unwrap();
        assert_eq!(page.meta.total, None);
        assert_eq!(page.meta.limit, None);
    }

    // Fuzzing: hostile bodies never panic, and whatever parses has spans inside the body.
    // CI runs the default 256 cases; `PROPTEST_CASES=200000 cargo test --release --lib fuzz` for longer.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        const VALID: &str = r#"{"batch_id":"b","page":1,"limit":3,"total_pages":2,"total_files":4,"count":3,
            "files":[{"file_id":"a","result":{"text":"नमस्ते","segments":[{"start":0.5,"end":1e3}]}},
                     {"file_id":"b","errors":[{"code":"X"}],"n":123456789012345678901234567890},
                     {"file_id":"c","result":null,"deep":[[[[{"k":[true,false,null]}]]]]}]}"#;

        fn check(body: Vec<u8>, raw: bool) {
            if let Ok(page) = parse_page(Bytes::from(body.clone()), raw, 1) {
                assert!(page.array.end <= body.len());
                for r in &page.records {
                    assert!(r.span.start < r.span.end && r.span.end <= page.array.end);
                }
                let _ = page.records_json();
            }
        }

        proptest! {
            #[test]
            fn fuzz_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512), raw in any::<bool>()) {
                check(body, raw);
            }

            #[test]
            fn fuzz_mutated_valid_page(
                edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
            ) {
                let mut body = VALID.as_bytes().to_vec();
                for (at, byte, op) in edits {
                    if body.is_empty() { break; }
                    let i = at.index(body.len());
                    match op {
                        0 => body[i] = byte,
                        1 => { body.remove(i); }
                        _ => body.truncate(i),
                    }
                }
                check(body, false);
            }

            #[test]
            fn fuzz_structural_noise(pieces in proptest::collection::vec(
                prop::sample::select(vec!["{", "}", "[", "]", ",", ":", "\"files\"", "\"total_pages\"", "1", "-1", "\"x\"", "null", "\"\\u", "1e999", "\"error\""]), 0..64)) {
                check(pieces.concat().into_bytes(), false);
            }
        }

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            use serde_json::Value;
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                any::<String>().prop_map(Value::String),
                "[a-z\"\\\\/\n\té👋]{0,6}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map("[a-z_.]{0,4}|file_id", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            // On valid input the page parser agrees with serde_json: the same records, values
            // and ids, however the body is laid out.
            #[test]
            fn records_are_serde_jsons(
                records in proptest::collection::vec(json_value(), 0..6),
                pretty in any::<bool>(),
                raw in any::<bool>(),
            ) {
                let (items, id) = if raw { ("jobs", "job_id") } else { ("files", "file_id") };
                let body = serde_json::json!({"page": 3, "total_pages": 4, items: records, "count": records.len()});
                let text = if pretty { serde_json::to_vec_pretty(&body) } else { serde_json::to_vec(&body) }.unwrap();
                let whole: serde_json::Value = serde_json::from_slice(&text).unwrap();
                let records = whole[items].as_array().unwrap().clone();
                let page = parse_page(Bytes::from(text), raw, 1).unwrap();
                prop_assert_eq!((page.meta.page, page.meta.total_pages, page.meta.count), (3, 4, records.len() as u64));
                prop_assert_eq!(page.records.len(), records.len());
                for (i, expected) in records.iter().enumerate() {
                    let got: serde_json::Value = serde_json::from_slice(page.record_json(i)).unwrap();
                    prop_assert_eq!(&got, expected);
                    prop_assert_eq!(page.records[i].key, expected.get(id).and_then(|v| v.as_str()).map(id_hash));
                    prop_assert!(!page.records[i].lone_surrogates);
                }
                let array: serde_json::Value = serde_json::from_slice(&page.records_json()).unwrap();
                prop_assert_eq!(array, serde_json::Value::Array(records));
            }
        }

        #[test]
        fn valid_page_parses() {
            let page = parse_page(Bytes::from(VALID), false, 1).unwrap();
            assert_eq!(page.records.len(), 3);
        }
    }
}
