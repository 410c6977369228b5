//! Arrow batches from pages: one page at a time for streaming (`PageBatcher`), or pages read
//! apart, on any thread, joined and brought to one schema for a whole table (`PageTable`,
//! `TableBuilder`).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::{Error, Result};
use crate::page::Page;

use super::decode::{decode_page, RecordDecoder};
use super::infer::SchemaInference;
use super::names::with_field_names;

/// Record bytes a batch holds at most (the records' JSON, about the size of their Arrow
/// strings): below the 2 GiB a Utf8 column can hold, with room for JSON text written longer.
const BATCH_BYTES: usize = 1 << 30;

/// Batches for streaming, one per page: each page is decoded under the schema inferred over
/// every page so far (so schemas only grow, and in practice stop changing after the first
/// page), or under a fixed schema when one is given.
#[derive(Default)]
pub struct PageBatcher {
    inference: SchemaInference,
    fixed: Option<SchemaRef>,
}

impl PageBatcher {
    pub fn new(fixed: Option<SchemaRef>) -> PageBatcher {
        PageBatcher { inference: SchemaInference::new(), fixed }
    }

    pub fn batch(&mut self, page: &Page) -> Result<RecordBatch> {
        let decoder = match &self.fixed {
            Some(schema) => RecordDecoder::new(Arc::clone(schema), page.records.len())?,
            None => {
                self.inference.observe_page(page)?;
                self.inference.decoder(page.records.len())?
            }
        };
        let (batch, _) = decode_page(decoder, page, usize::MAX)?.pop().expect("one batch, there being no bound");
        match self.fixed {
            Some(_) => Ok(batch),
            None => with_field_names(batch),
        }
    }
}

/// Pages read into Arrow on their own, on any thread: their batches, under the schema of their
/// own records, and what was learnt of them.
pub struct PageTable {
    inference: SchemaInference,
    /// Each with the bytes of its records' JSON.
    batches: Vec<(RecordBatch, usize)>,
}

impl PageTable {
    pub fn read(page: &Page) -> Result<PageTable> {
        PageTable::read_within(page, BATCH_BYTES)
    }

    /// A page as batches of at most `max_bytes` of records (one record over it is a batch alone).
    fn read_within(page: &Page, max_bytes: usize) -> Result<PageTable> {
        let mut inference = SchemaInference::new();
        inference.observe_page(page)?;
        let batches = decode_page(inference.decoder(page.records.len())?, page, max_bytes)?;
        Ok(PageTable { inference, batches })
    }

    /// Consecutive pages as one, their batches brought to their common schema and joined
    /// (fewer, larger batches: each one costs its consumer a few objects more), as long as a
    /// batch stays within `BATCH_BYTES` (else a string column would overflow its offsets).
    pub fn concat(pages: Vec<PageTable>) -> Result<PageTable> {
        PageTable::concat_within(pages, BATCH_BYTES)
    }

    fn concat_within(pages: Vec<PageTable>, max_bytes: usize) -> Result<PageTable> {
        let mut inference = SchemaInference::new();
        pages.iter().for_each(|p| inference.absorb(&p.inference));
        let schema = inference.schema();
        let mut runs: Vec<(Vec<RecordBatch>, usize)> = Vec::new();
        for page in pages {
            for (batch, bytes) in page.batches {
                let batch = inference.conform(batch, &page.inference, &schema)?;
                match runs.last_mut() {
                    Some((run, size)) if *size + bytes <= max_bytes => {
                        run.push(batch);
                        *size += bytes;
                    }
                    _ => runs.push((vec![batch], bytes)),
                }
            }
        }
        let batches = runs
            .into_iter()
            .map(|(run, bytes)| {
                let joined = arrow_select::concat::concat_batches(&schema, &run)
                    .map_err(|e| Error::Internal(format!("joining pages into one batch: {e}")))?;
                Ok((joined, bytes))
            })
            .collect::<Result<_>>()?;
        Ok(PageTable { inference, batches })
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(|(b, _)| b.num_rows()).sum()
    }
}

/// A whole table from pages read apart (in parallel, as they arrive), pushed in page order.
/// At the end every page's batch is brought to the schema of all records: the same schema, and
/// the same values, as reading every record in one pass would give (see `unify`).
#[derive(Default)]
pub struct TableBuilder {
    inference: SchemaInference,
    pages: Vec<PageTable>,
}

impl TableBuilder {
    pub fn new() -> TableBuilder {
        TableBuilder::default()
    }

    pub fn push(&mut self, page: PageTable) {
        self.inference.absorb(&page.inference);
        self.pages.push(page);
    }

    /// The schema and the batches, at least one (maybe empty), all of that schema, every field
    /// named as `names` says.
    pub fn finish(self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let schema = self.inference.schema();
        let mut batches = Vec::with_capacity(self.pages.len().max(1));
        for page in self.pages {
            for (batch, _) in page.batches {
                batches.push(with_field_names(self.inference.conform(batch, &page.inference, &schema)?)?);
            }
        }
        if batches.is_empty() {
            batches.push(with_field_names(RecordBatch::new_empty(Arc::clone(&schema)))?);
        }
        Ok((batches[0].schema(), batches))
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_schema::{DataType, Field, Schema};
    use serde_json::Value;

    use super::super::kind::is_json;
    use super::super::reshape::explode;
    use super::super::testing::{page, table, texts, without_nulls};
    use super::*;

    fn values(records: &[&str]) -> Vec<Value> {
        records.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
    }

    /// The rows as JSON again (arrow-json's writer leaves nulls out).
    fn rows(batch: &RecordBatch) -> Vec<Value> {
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        let out = writer.into_inner();
        if out.is_empty() {
            return vec![];
        }
        serde_json::from_slice(&out).unwrap()
    }

    fn data_type(schema: &Schema, name: &str) -> DataType {
        schema.field_with_name(name).unwrap().data_type().clone()
    }

    #[test]
    fn schema_comes_from_every_page_and_values_round_trip() {
        let first = [
            r#"{"file_id": "a", "status": "failed", "errors": ["timeout"]}"#,
            r#"{"file_id": "b", "status": "completed", "result": null}"#,
        ];
        let second = [r#"{
            "file_id": "c", "status": "completed", "errors": [],
            "result": {"text": "नमस्ते 👋 \u00e9", "duration_seconds": 65, "segments": [{"start": 0, "end": 4.2, "speaker_id": "S1"}]},
            "late": {"deep": [[1, 2], [3]], "flag": true}
        }"#];
        let (schema, batch) = table(&[&first, &second]);
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["file_id", "status", "errors", "result", "late"]);
        assert_eq!(data_type(&schema, "errors"), DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))));
        let DataType::Struct(result) = data_type(&schema, "result") else { panic!("result is a struct") };
        assert_eq!(result.find("duration_seconds").unwrap().1.data_type(), &DataType::Int64);
        assert!(
            matches!(result.find("segments").unwrap().1.data_type(), DataType::List(f) if matches!(f.data_type(), DataType::Struct(_)))
        );
        let expected: Vec<Value> = values(&first).iter().chain(&values(&second)).map(without_nulls).collect();
        assert_eq!(rows(&batch), expected);
        assert_eq!(batch.column(3).null_count(), 2, "no result, and result: null, are both null");
    }

    #[test]
    fn ints_and_floats_make_floats() {
        let (schema, batch) = table(&[&[r#"{"x": 1}"#, r#"{"x": 2.5}"#, r#"{"x": -3}"#]]);
        assert_eq!(data_type(&schema, "x"), DataType::Float64);
        assert_eq!(batch.column(0).as_primitive::<Float64Type>().values(), &[1.0, 2.5, -3.0]);
    }

    #[test]
    fn conflicting_types_become_json_text() {
        let records = [
            r#"{"v": {"a": 1, "b": [true, null]}, "l": [1, 2], "s": "x"}"#,
            r#"{"v": "plain \"quoted\"\nline", "l": 3, "s": null}"#,
            r#"{"v": null, "l": null, "s": {"k": "é"}}"#,
            r#"{"v": 7}"#,
        ];
        let (schema, batch) = table(&[&records]);
        for name in ["v", "l", "s"] {
            let f = schema.field_with_name(name).unwrap();
            assert!(is_json(f) && f.data_type() == &DataType::Utf8, "{name}: {f:?}");
        }
        let cells = texts(&batch, 0);
        assert_eq!(cells[0].as_deref(), Some(r#"{"a":1,"b":[true,null]}"#));
        assert_eq!(cells[1].as_deref(), Some(r#""plain \"quoted\"\nline""#));
        assert_eq!(cells[2], None, "null stays null");
        assert_eq!(cells[3].as_deref(), Some("7"));
        for (record, cell) in values(&records).iter().zip(&cells) {
            let back = cell.as_deref().map_or(Value::Null, |c| serde_json::from_str(c).unwrap());
            assert_eq!(back, record["v"]);
        }
        assert_eq!(texts(&batch, 1), [Some("[1,2]".into()), Some("3".into()), None, None]);
        assert_eq!(texts(&batch, 2), [Some(r#""x""#.into()), None, Some(r#"{"k":"é"}"#.into()), None]);
    }

    #[test]
    fn conflicts_deep_inside_lists_of_objects() {
        let records = [
            r#"{"file_id": "a", "result": {"segments": [{"speaker_id": "S1", "t": 1}, {"speaker_id": 2, "t": 2}]}}"#,
            r#"{"file_id": "b", "result": {"segments": [{"speaker_id": {"id": 3}}]}}"#,
        ];
        let (schema, batch) = table(&[&records]);
        let DataType::Struct(result) = data_type(&schema, "result") else { panic!() };
        let DataType::List(element) = result[0].data_type() else { panic!() };
        let DataType::Struct(segment) = element.data_type() else { panic!() };
        assert!(is_json(&segment[0]));
        assert_eq!(segment[1].data_type(), &DataType::Int64);
        let exploded = explode(&batch, "segments").unwrap();
        assert_eq!(texts(&exploded, 1), [Some(r#""S1""#.into()), Some("2".into()), Some(r#"{"id":3}"#.into())]);
    }

    #[test]
    fn big_integers_are_never_rounded() {
        let (schema, batch) = table(&[&[
            r#"{"big": 1, "huge": 1, "near": 0.5, "ok": 9007199254740993}"#,
            r#"{"big": 18446744073709551615, "huge": 123, "near": 9007199254740993}"#,
            r#"{"huge": 123456789012345678901234567890}"#,
        ]]);
        assert!(is_json(schema.field_with_name("big").unwrap()));
        assert!(is_json(schema.field_with_name("huge").unwrap()));
        assert!(is_json(schema.field_with_name("near").unwrap()), "2^53 + 1 beside a float");
        assert_eq!(data_type(&schema, "ok"), DataType::Int64, "exact in i64 alone");
        assert_eq!(texts(&batch, 0), [Some("1".into()), Some("18446744073709551615".into()), None]);
        assert_eq!(texts(&batch, 1)[2].as_deref(), Some("123456789012345678901234567890"));
        assert_eq!(texts(&batch, 2)[1].as_deref(), Some("9007199254740993"));
        assert_eq!(batch.column(3).as_primitive::<Int64Type>().value(0), 9007199254740993);
    }

    #[test]
    fn never_valued_fields_are_null_and_empty_objects_text() {
        let (schema, batch) = table(&[&[r#"{"n": null, "e": [], "o": {}}"#, r#"{"o": {}}"#]]);
        assert_eq!(data_type(&schema, "n"), DataType::Null);
        assert_eq!(data_type(&schema, "e"), DataType::List(Arc::new(Field::new("item", DataType::Null, true))));
        assert!(is_json(schema.field_with_name("o").unwrap()));
        assert_eq!(texts(&batch, 2), [Some("{}".into()), Some("{}".into())]);
    }

    #[test]
    fn pretty_printed_json_text_is_compacted() {
        let (_, batch) = table(&[&["{\"v\": { \"a b\" : [ 1 ,\n\t \"x  y\" ] }}", r#"{"v":"s"}"#]]);
        assert_eq!(texts(&batch, 0), [Some(r#"{"a b":[1,"x  y"]}"#.into()), Some(r#""s""#.into())]);
    }

    #[test]
    fn escaped_keys_and_whitespace() {
        let (schema, batch) = table(&[&["{ \"a\\u0062\" :\n[ 1 ,\t2 ] , \"c\" : \"x\\\"y\\\\\" }"]]);
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ab", "c"]);
        assert_eq!(texts(&batch, 1), [Some("x\"y\\".into())]);
    }

    #[test]
    fn a_record_that_is_not_an_object_names_its_page() {
        let err = PageTable::read(&page(3, &[r#"{"a": 1}"#, "7"])).err().unwrap();
        assert!(matches!(err, Error::Format { page: Some(3), .. }), "{err:?}");
        assert!(err.to_string().contains("not a JSON object"), "{err}");
    }

    #[test]
    fn batches_stay_within_the_byte_bound_a_string_column_needs() {
        // The bound is 1 GiB (a Utf8 column holds 2 GiB); here 100 bytes stand for it.
        let records: Vec<String> = (0..7).map(|i| format!(r#"{{"id": {i}, "text": "{}"}}"#, "x".repeat(20))).collect();
        let records: Vec<&str> = records.iter().map(String::as_str).collect();
        let pages: Vec<PageTable> = records
            .chunks(3)
            .enumerate()
            .map(|(i, r)| PageTable::read_within(&page(i as u64 + 1, r), 100).unwrap())
            .collect();
        assert_eq!(pages.iter().map(|p| p.batches.len()).collect::<Vec<_>>(), [2, 2, 1], "a page split");
        let joined = PageTable::concat_within(pages, 100).unwrap();
        assert!(joined.batches.iter().all(|(_, bytes)| *bytes <= 100) && joined.batches.len() == 4);
        let mut builder = TableBuilder::new();
        builder.push(joined);
        let (schema, batches) = builder.finish().unwrap();
        let whole = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
        assert_eq!(rows(&whole), values(&records));
    }

    #[test]
    fn an_empty_batch_is_an_empty_table() {
        let (schema, batches) = TableBuilder::new().finish().unwrap();
        assert_eq!(schema.fields().len(), 0);
        assert_eq!(batches[0].num_rows(), 0);
    }

    #[test]
    fn streamed_schemas_only_grow() {
        let mut batcher = PageBatcher::new(None);
        let first = batcher.batch(&page(1, &[r#"{"id": 1, "v": "x"}"#])).unwrap();
        let same = batcher.batch(&page(2, &[r#"{"id": 2}"#])).unwrap();
        assert_eq!(first.schema(), same.schema(), "a page lacking a field keeps it");
        let wider = batcher.batch(&page(3, &[r#"{"id": 3, "v": {"o": 1}, "late": true}"#])).unwrap();
        let names: Vec<_> = wider.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "v", "late"]);
        assert!(is_json(wider.schema().field(1)));
        assert_eq!(texts(&wider, 1), [Some(r#"{"o":1}"#.into())]);
    }
}
