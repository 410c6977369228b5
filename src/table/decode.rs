//! Decoding records into Arrow: arrow-json reads them, after the values of JSON text columns
//! are rewritten as JSON strings of their compact text (only in records that have some).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, SchemaRef};
use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::page::{without_lone_surrogates, Page};

use super::kind::Kind;
use super::scan::{Scan, Scanner};

pub(super) fn not_an_object(json: &[u8]) -> Error {
    record_error("a record is not a JSON object, so it cannot be a table row".into(), json)
}

/// An error in one record, quoting its start.
pub(super) fn record_error(message: String, json: &[u8]) -> Error {
    Error::Format {
        message,
        excerpt: crate::error::excerpt(&String::from_utf8_lossy(&json[..json.len().min(400)]), 200),
        page: None,
        malformed: false,
    }
}

/// Where the records must be rewritten before arrow-json reads them: the values of JSON text
/// columns become JSON strings holding their compact text.
#[derive(Debug, PartialEq)]
pub(super) enum Rewrite {
    Keep,
    Text,
    Object(HashMap<String, Rewrite>),
    List(Box<Rewrite>),
}

/// The rewrite the values of `kind` need: only those whose JSON text the decoder cannot write
/// itself (strings, lists, objects; not numbers or booleans, which `coerce_primitive` writes).
fn plan(kind: &Kind) -> Rewrite {
    match kind {
        Kind::Json { quoted: true } => Rewrite::Text,
        Kind::Object(fields) if fields.is_empty() => Rewrite::Text,
        Kind::Object(fields) => members_plan(fields),
        Kind::List(element) => match plan(element) {
            Rewrite::Keep => Rewrite::Keep,
            plan => Rewrite::List(Box::new(plan)),
        },
        _ => Rewrite::Keep,
    }
}

/// The rewrite of an object whose members are `fields`.
pub(super) fn members_plan(fields: &IndexMap<String, Kind>) -> Rewrite {
    let plans: HashMap<String, Rewrite> = fields
        .iter()
        .filter_map(|(name, kind)| match plan(kind) {
            Rewrite::Keep => None,
            plan => Some((name.clone(), plan)),
        })
        .collect();
    if plans.is_empty() {
        Rewrite::Keep
    } else {
        Rewrite::Object(plans)
    }
}

/// Copies `json` into `out`, replacing each non-null value that `plan` marks as text.
fn rewrite(json: &[u8], plan: &Rewrite, out: &mut Vec<u8>) -> Scan<()> {
    let mut edits: Vec<(usize, usize)> = Vec::new();
    find_text_values(&mut Scanner::new(json), plan, &mut edits)?;
    let mut copied = 0;
    for (start, end) in edits {
        out.extend_from_slice(&json[copied..start]);
        push_json_text(&json[start..end], out);
        copied = end;
    }
    out.extend_from_slice(&json[copied..]);
    Ok(())
}

fn find_text_values(scanner: &mut Scanner, plan: &Rewrite, edits: &mut Vec<(usize, usize)>) -> Scan<()> {
    match (plan, scanner.peek()?) {
        (Rewrite::Text, first) if first != b'n' => {
            let start = scanner.at;
            scanner.skip_value()?;
            edits.push((start, scanner.at));
            Ok(())
        }
        (Rewrite::Object(fields), b'{') => scanner.object(|scanner, key| match fields.get(key.text()?.as_ref()) {
            Some(plan) => find_text_values(scanner, plan, edits),
            None => scanner.skip_value(),
        }),
        (Rewrite::List(element), b'[') => scanner.array(|scanner| find_text_values(scanner, element, edits)),
        _ => scanner.skip_value(),
    }
}

/// Writes `raw` (one JSON value) as a JSON string of its compact text.
fn push_json_text(raw: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw {
        if !in_string && matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Decodes records into batches of one schema. Columns of JSON text take each value's text;
/// other Utf8 columns also take numbers and booleans as text; fields not in the schema are
/// ignored (an inferred schema has them all).
pub struct RecordDecoder {
    schema: SchemaRef,
    decoder: Decoder,
    plan: Rewrite,
    buffer: Vec<u8>,
    batch_rows: usize,
}

impl RecordDecoder {
    pub fn new(schema: SchemaRef, batch_rows: usize) -> Result<RecordDecoder> {
        let plan = members_plan(&Kind::of_fields(schema.fields()));
        RecordDecoder::with_plan(schema, plan, batch_rows)
    }

    pub(super) fn with_plan(schema: SchemaRef, plan: Rewrite, batch_rows: usize) -> Result<RecordDecoder> {
        let decoder = ReaderBuilder::new(Arc::clone(&schema))
            .with_batch_size(batch_rows.max(1))
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| Error::Internal(format!("building the Arrow decoder: {e}")))?;
        Ok(RecordDecoder { schema, decoder, plan, buffer: Vec::new(), batch_rows: batch_rows.max(1) })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds one record; returns a full batch when one is ready.
    pub fn push(&mut self, json: &[u8]) -> Result<Option<RecordBatch>> {
        if Scanner::new(json).peek() != Ok(b'{') {
            return Err(not_an_object(json));
        }
        let fail = |e: ArrowError| record_error(format!("a record does not fit the table's schema: {e}"), json);
        if self.plan == Rewrite::Keep {
            self.decoder.decode(json).map_err(fail)?;
        } else {
            self.buffer.clear();
            rewrite(json, &self.plan, &mut self.buffer)
                .map_err(|e| record_error(format!("a record is not valid JSON: {e}"), json))?;
            self.decoder.decode(&self.buffer).map_err(fail)?;
        }
        if self.decoder.len() >= self.batch_rows {
            return self.flush();
        }
        Ok(None)
    }

    /// The rows added since the last batch, if any.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>> {
        self.decoder.flush().map_err(|e| Error::Format {
            message: format!("records do not fit the table's schema: {e}"),
            excerpt: String::new(),
            page: None,
            malformed: false,
        })
    }
}

/// A page as batches of at most `max_bytes` of records' JSON (a record over it is a batch
/// alone), each with its bytes; at least one batch, maybe empty.
pub(super) fn decode_page(
    mut decoder: RecordDecoder,
    page: &Page,
    max_bytes: usize,
) -> Result<Vec<(RecordBatch, usize)>> {
    let on_page = |e: Error| e.on_page(page.meta.page);
    let mut batches = Vec::new();
    let mut bytes = 0;
    for (i, record) in page.records.iter().enumerate() {
        let size = record.span.len();
        if bytes > 0 && bytes + size > max_bytes {
            batches.extend(decoder.flush().map_err(on_page)?.map(|b| (b, bytes)));
            bytes = 0;
        }
        bytes += size;
        let json = page.record_json(i);
        // Arrow strings are UTF-8: a lone surrogate is read as U+FFFD.
        let pushed = match record.lone_surrogates {
            true => decoder.push(&without_lone_surrogates(json)),
            false => decoder.push(json),
        };
        if let Some(batch) = pushed.map_err(on_page)? {
            batches.push((batch, bytes));
            bytes = 0;
        }
    }
    batches.extend(decoder.flush().map_err(on_page)?.map(|b| (b, bytes)));
    if batches.is_empty() {
        batches.push((RecordBatch::new_empty(Arc::clone(decoder.schema())), 0));
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::super::build::PageBatcher;
    use super::super::testing::{page, texts};
    use super::*;
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn tables_are_batched_and_dropped_records_stay_dropped() {
        let records: Vec<String> = (0..5).map(|i| format!(r#"{{"file_id": "f{i}"}}"#)).collect();
        let mut p = page(1, &records.iter().map(String::as_str).collect::<Vec<_>>());
        p.truncate(3);
        let schema = Arc::new(Schema::new(vec![Field::new("file_id", DataType::Utf8, true)]));
        let rows = |batches: Vec<(RecordBatch, usize)>| batches.iter().map(|(b, _)| b.num_rows()).collect::<Vec<_>>();
        assert_eq!(
            rows(decode_page(RecordDecoder::new(Arc::clone(&schema), 2).unwrap(), &p, usize::MAX).unwrap()),
            [2, 1]
        );
        let record = records[0].len();
        let split = decode_page(RecordDecoder::new(schema, 8).unwrap(), &p, 2 * record).unwrap();
        assert_eq!(
            split.iter().map(|(b, bytes)| (b.num_rows(), *bytes)).collect::<Vec<_>>(),
            [(2, 2 * record), (1, record)]
        );
    }

    #[test]
    fn lone_surrogates_read_as_replacement_characters() {
        let body = r#"{"total_pages":1,"files":[{"t":"cut \ud83d","\udc00k":1},{"t":"ok \ud83d\ude00"}]}"#;
        let p = crate::page::parse_page(bytes::Bytes::from(body), false, 1).unwrap();
        let batch = PageBatcher::new(None).batch(&p).unwrap();
        assert_eq!(batch.schema().field(1).name(), "\u{FFFD}k");
        assert_eq!(texts(&batch, 0), [Some("cut \u{FFFD}".into()), Some("ok 😀".into())]);
    }

    #[test]
    fn a_given_schema_takes_numbers_as_text_and_ignores_other_fields() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let batch =
            PageBatcher::new(Some(schema)).batch(&page(1, &[r#"{"id": 12, "x": 1}"#, r#"{"id": "a"}"#])).unwrap();
        assert_eq!(batch.num_columns(), 1);
        assert_eq!(texts(&batch, 0), [Some("12".into()), Some("a".into())]);
    }
}
