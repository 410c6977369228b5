//! Schema inference: the kind of each place of the records (see `kind`), widened value by value
//! as the records are scanned, and the schema of those kinds.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use indexmap::IndexMap;

use crate::error::Result;
use crate::page::Page;

use super::decode::{members_plan, not_an_object, record_error, RecordDecoder};
use super::kind::{widen_members, Kind};
use super::scan::{Scan, Scanner};
use super::unify::conform;

/// Integers beyond this magnitude are not exact as a double.
const F64_EXACT: u64 = 1 << 53;

/// Objects and lists nested deeper than this (a top-level field is at depth 1) become JSON
/// text: Arrow readers refuse deep types (pyarrow's C interface stops at 64 levels).
pub(super) const MAX_TYPE_DEPTH: usize = 32;

/// The schema of records, grown one record at a time.
#[derive(Debug, Clone, Default)]
pub struct SchemaInference {
    fields: IndexMap<String, Kind>,
}

impl SchemaInference {
    pub fn new() -> SchemaInference {
        SchemaInference::default()
    }

    pub fn observe_page(&mut self, page: &Page) -> Result<()> {
        for i in 0..page.records.len() {
            self.observe_record(page.record_json(i)).map_err(|e| e.on_page(page.meta.page))?;
        }
        Ok(())
    }

    /// Adds one record (a JSON object) to what is known.
    pub fn observe_record(&mut self, json: &[u8]) -> Result<()> {
        let mut scanner = Scanner::new(json);
        if scanner.peek() != Ok(b'{') {
            return Err(not_an_object(json));
        }
        observe_object(&mut self.fields, &mut scanner, 0)
            .map_err(|e| record_error(format!("a record is not valid JSON: {e}"), json))
    }

    /// Adds what `other` knows, as if its records had been read after these.
    pub fn absorb(&mut self, other: &SchemaInference) {
        widen_members(&mut self.fields, &other.fields);
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.iter().map(|(name, kind)| kind.field(name)).collect::<Vec<_>>()))
    }

    /// `batch`, read under `page`'s inference, under the schema (`self.schema()`) of this one.
    pub fn conform(&self, batch: RecordBatch, page: &SchemaInference, schema: &SchemaRef) -> Result<RecordBatch> {
        conform(batch, &page.fields, &self.fields, schema)
    }

    /// A decoder for the schema so far, rewriting only the values that need it.
    pub fn decoder(&self, batch_rows: usize) -> Result<RecordDecoder> {
        RecordDecoder::with_plan(self.schema(), members_plan(&self.fields), batch_rows)
    }
}

/// Walks an object whose `{` is next, growing `fields`.
fn observe_object(fields: &mut IndexMap<String, Kind>, scanner: &mut Scanner, depth: usize) -> Scan<()> {
    // Records mostly repeat their keys in the same order: try the field after the last one
    // before hashing. Keys are copied only the first time they are seen.
    let mut next = 0;
    scanner.object(|scanner, key| {
        let index = match fields.get_index(next) {
            Some((name, _)) if key.is(name) => next,
            _ => {
                let key = key.text()?;
                match fields.get_index_of(key.as_ref()) {
                    Some(i) => i,
                    None => fields.insert_full(key.into_owned(), Kind::Null).0,
                }
            }
        };
        next = index + 1;
        observe(&mut fields[index], scanner, depth + 1)
    })
}

/// Reads one value and widens `kind` to cover it.
fn observe(kind: &mut Kind, scanner: &mut Scanner, depth: usize) -> Scan<()> {
    let first = scanner.peek()?;
    if depth > MAX_TYPE_DEPTH && matches!(first, b'[' | b'{') {
        *kind = Kind::Json { quoted: true };
    }
    if let Kind::Json { quoted } = kind {
        *quoted |= matches!(first, b'"' | b'[' | b'{');
        return scanner.skip_value();
    }
    match first {
        b'n' => scanner.skip_value(),
        b't' | b'f' => {
            kind.widen(&Kind::Bool);
            scanner.skip_value()
        }
        b'"' => {
            kind.widen(&Kind::Str);
            scanner.skip_string().map(drop)
        }
        b'[' => {
            if *kind == Kind::Null {
                *kind = Kind::List(Box::new(Kind::Null));
            }
            let Kind::List(element) = kind else {
                *kind = kind.conflict(true);
                return scanner.skip_value();
            };
            scanner.array(|scanner| observe(element, scanner, depth + 1))
        }
        b'{' => {
            if *kind == Kind::Null {
                *kind = Kind::Object(IndexMap::new());
            }
            let Kind::Object(fields) = kind else {
                *kind = kind.conflict(true);
                return scanner.skip_value();
            };
            observe_object(fields, scanner, depth)
        }
        _ => {
            kind.widen(&number_kind(scanner.number()?));
            Ok(())
        }
    }
}

/// Int (noting whether it is exact as a double), Float, or Json for an integer beyond i64.
fn number_kind(text: &[u8]) -> Kind {
    if text.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Kind::Float { beyond_f64: false };
    }
    match std::str::from_utf8(text).ok().and_then(|t| t.parse::<i64>().ok()) {
        Some(i) => Kind::Int { beyond_f64: i.unsigned_abs() > F64_EXACT },
        None => Kind::Json { quoted: false },
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field};

    use super::super::kind::{is_json, json_field};
    use super::*;

    #[test]
    fn values_nested_too_deep_for_arrow_are_json_text() {
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let mut inference = SchemaInference::new();
        let record = format!(r#"{{"ok":{},"deep":{},"o":{{"a":{}}}}}"#, deep(31), deep(100_000), deep(40));
        inference.observe_record(record.as_bytes()).unwrap();
        let schema = inference.schema();
        // The lists around a field's values, and the field of those values.
        let lists = |field: &Field| {
            let (mut levels, mut field) = (0, field.clone());
            while let DataType::List(item) = field.data_type().clone() {
                (levels, field) = (levels + 1, item.as_ref().clone());
            }
            (levels, field)
        };
        let (levels, values) = lists(schema.field(0));
        assert_eq!((levels, values.data_type()), (31, &DataType::Int64), "within the limit: typed");
        let (levels, values) = lists(schema.field(1));
        assert!(levels == 32 && is_json(&values), "lists down to depth 32, text below");
        let DataType::Struct(o) = schema.field(2).data_type() else { panic!("o is a struct") };
        let (levels, values) = lists(&o[0]);
        assert!(levels == 31 && is_json(&values), "lists down to depth 32, text below");
        let mut decoder = inference.decoder(1).unwrap();
        let batch = decoder.push(record.as_bytes()).unwrap().unwrap();
        let mut column = Arc::clone(batch.column(1));
        for _ in 0..32 {
            column = Arc::clone(column.as_any().downcast_ref::<arrow_array::ListArray>().unwrap().values());
        }
        let text = column.as_any().downcast_ref::<arrow_array::StringArray>().unwrap().value(0).to_owned();
        assert_eq!(text, deep(100_000 - 32));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        for json in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\" 1}",
            "{\"a\":\"x",
            "{\"a\":\"\\",
            "{\"a\":[1,}",
            "{\"a\":tru",
            "{\"a\":1,}",
            "{\"a\":}",
            "{\"a\":{\"b\":]}}",
            "{\"a\":@}",
            "{1:2}",
        ] {
            let mut inference = SchemaInference::new();
            assert!(inference.observe_record(json.as_bytes()).is_err(), "{json}");
            let mut decoder = RecordDecoder::new(Arc::new(Schema::new(vec![json_field("a")])), 8).unwrap();
            let _ = decoder.push(json.as_bytes()).and_then(|_| decoder.flush());
        }
    }
}

/// Inference over mock records, with the hand-written scanner and with jiter: both must read
/// the same schema (checked on every run, over 2,000 records), and the figure quoted in
/// `scan.rs` (`cargo test --release --lib scanner_against_jiter -- --ignored --nocapture`).
#[cfg(test)]
mod scanner_against_jiter {
    use std::io::{Read, Write};
    use std::time::Instant;

    use jiter::{Jiter, Peek};

    use super::*;
    use crate::mock::{MockConfig, MockServer};

    /// The mock's pages with speech information and chunks, over one plain HTTP/1.1 request each.
    fn mock_pages(files: u64) -> Vec<Page> {
        let server = MockServer::start(MockConfig { files, ..MockConfig::default() }).unwrap();
        let path = format!("/transcribe/results/batch/{}", server.batch_id());
        (1..=files / 200)
            .map(|page| {
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
                let query = "limit=200&speech_information=true&chunks=true";
                let head = "Authorization: Bearer test-token\r\nConnection: close";
                write!(tcp, "GET {path}?page={page}&{query} HTTP/1.1\r\nHost: mock\r\n{head}\r\n\r\n").unwrap();
                let mut reply = Vec::new();
                tcp.read_to_end(&mut reply).unwrap();
                let body = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                crate::page::parse_page(reply.split_off(body).into(), false, page).unwrap()
            })
            .collect()
    }

    /// `observe`, with jiter reading the values.
    fn observe_with_jiter(kind: &mut Kind, jiter: &mut Jiter, peek: Peek) {
        if let Kind::Json { quoted } = kind {
            *quoted |= matches!(peek, Peek::String | Peek::Array | Peek::Object);
            return jiter.known_skip(peek).unwrap();
        }
        match peek {
            Peek::Null => jiter.known_null().unwrap(),
            Peek::True | Peek::False => {
                kind.widen(&Kind::Bool);
                jiter.known_skip(peek).unwrap();
            }
            Peek::String => {
                kind.widen(&Kind::Str);
                jiter.known_skip(peek).unwrap();
            }
            Peek::Array => {
                if *kind == Kind::Null {
                    *kind = Kind::List(Box::new(Kind::Null));
                }
                let Kind::List(element) = kind else {
                    *kind = kind.conflict(true);
                    return jiter.known_skip(peek).unwrap();
                };
                let mut next = jiter.known_array().unwrap();
                while let Some(peek) = next {
                    observe_with_jiter(element, jiter, peek);
                    next = jiter.array_step().unwrap();
                }
            }
            Peek::Object => {
                if *kind == Kind::Null {
                    *kind = Kind::Object(IndexMap::new());
                }
                let Kind::Object(fields) = kind else {
                    *kind = kind.conflict(true);
                    return jiter.known_skip(peek).unwrap();
                };
                observe_object_with_jiter(fields, jiter, true);
            }
            _ => kind.widen(&number_kind(jiter.known_number_bytes(peek).unwrap())),
        }
    }

    /// `observe_object`, with jiter reading the keys (no copy unless new, as there).
    fn observe_object_with_jiter(fields: &mut IndexMap<String, Kind>, jiter: &mut Jiter, opened: bool) {
        let mut next = 0;
        let mut key = if opened { jiter.known_object() } else { jiter.next_object() }.unwrap();
        while let Some(name) = key {
            let index = match fields.get_index(next) {
                Some((known, _)) if known == name => next,
                _ => match fields.get_index_of(name) {
                    Some(i) => i,
                    None => fields.insert_full(name.to_owned(), Kind::Null).0,
                },
            };
            next = index + 1;
            let peek = jiter.peek().unwrap();
            observe_with_jiter(&mut fields[index], jiter, peek);
            key = jiter.next_key().unwrap();
        }
    }

    fn by_scanner(pages: &[Page]) -> SchemaRef {
        let mut inference = SchemaInference::new();
        pages.iter().for_each(|p| inference.observe_page(p).unwrap());
        inference.schema()
    }

    fn by_jiter(pages: &[Page]) -> SchemaRef {
        let mut fields = IndexMap::new();
        for page in pages {
            for i in 0..page.records.len() {
                observe_object_with_jiter(&mut fields, &mut Jiter::new(page.record_json(i)), false);
            }
        }
        SchemaInference { fields }.schema()
    }

    #[test]
    fn scanner_and_jiter_read_the_same_schema() {
        let pages = mock_pages(2_000);
        let schema = by_scanner(&pages);
        assert!(schema.fields().len() >= 6, "{schema:?}");
        assert_eq!(schema, by_jiter(&pages));
    }

    #[test]
    #[ignore = "a measurement, not a check: run it with --ignored --nocapture"]
    fn scanner_against_jiter() {
        const FILES: u64 = 100_000;
        let pages = mock_pages(FILES);
        let bytes: usize = pages.iter().flat_map(|p| p.records.iter().map(|r| r.span.len())).sum();
        let best_of = |infer: &dyn Fn(&[Page]) -> SchemaRef| {
            let mut best = f64::MAX;
            let mut schema = None;
            for _ in 0..5 {
                let start = Instant::now();
                schema = Some(infer(&pages));
                best = best.min(start.elapsed().as_secs_f64());
            }
            (best, schema.unwrap())
        };
        let (scanner, schema_by_scanner) = best_of(&by_scanner);
        let (jiter, schema_by_jiter) = best_of(&by_jiter);
        assert_eq!(schema_by_scanner, schema_by_jiter, "both read the same schema");
        println!(
            "inference over {FILES} mock records ({:.0} MB): scanner {:.0} ms, jiter {:.0} ms",
            bytes as f64 / 1e6,
            scanner * 1e3,
            jiter * 1e3
        );
    }
}
