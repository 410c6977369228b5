//! Reshaping tables for dataframes: struct columns flattened into dotted columns (named as
//! `names` says), and a list column exploded into one row per element.

use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, FieldRef, Fields, Schema};

use crate::error::{Error, Result};

use super::kind::is_json;
use super::names::{flat_field, flat_name, join, split_flat_name};

/// How a table's batches are handed over: struct columns flattened and/or a list column
/// exploded (into one row per element, flattened too), or as read.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    pub flatten: bool,
    pub explode: Option<String>,
}

impl Shape {
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match (&self.explode, self.flatten) {
            (Some(path), _) => explode(&batch, path),
            (None, true) => flatten(&batch),
            (None, false) => Ok(batch),
        }
    }

    /// True when batches are handed over as read.
    pub fn is_plain(&self) -> bool {
        !self.flatten && self.explode.is_none()
    }
}

/// Struct columns replaced by their fields, recursively, named `parent.child`; a null parent
/// makes its fields null. Lists are left as they are.
pub fn flatten(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, column) in batch.schema().fields().iter().zip(batch.columns()) {
        flatten_into(&flat_field(f.name()), f, Arc::clone(column), &mut fields, &mut columns)?;
    }
    with_columns(fields, columns, batch.num_rows())
}

fn flatten_into(
    name: &str,
    f: &FieldRef,
    column: ArrayRef,
    fields: &mut Vec<FieldRef>,
    columns: &mut Vec<ArrayRef>,
) -> Result<()> {
    if let DataType::Struct(children) = f.data_type() {
        let array = column.as_any().downcast_ref::<StructArray>().expect("a struct column is a StructArray");
        for (i, child) in children.iter().enumerate() {
            let values = with_parent_nulls(array.column(i), array.nulls())?;
            flatten_into(&join(name, child.name()), child, values, fields, columns)?;
        }
        return Ok(());
    }
    fields.push(Arc::new(f.as_ref().clone().with_name(name)));
    columns.push(column);
    Ok(())
}

/// `child` with a null wherever its parent is null.
fn with_parent_nulls(child: &ArrayRef, parent: Option<&NullBuffer>) -> Result<ArrayRef> {
    let Some(parent) = parent else { return Ok(Arc::clone(child)) };
    if child.data_type() == &DataType::Null || parent.null_count() == 0 {
        return Ok(Arc::clone(child));
    }
    let nulls = NullBuffer::union(Some(parent), child.nulls());
    let data = child.to_data().into_builder().nulls(nulls).build().map_err(arrow_error)?;
    Ok(make_array(data))
}

fn with_columns(fields: Vec<FieldRef>, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).map_err(arrow_error)
}

fn arrow_error(e: ArrowError) -> Error {
    Error::Internal(format!("Arrow: {e}"))
}

/// `name` (flattened, dotted) is `path` or ends with it after a dot that is not escaped.
fn names_path(name: &str, path: &str) -> bool {
    name.strip_suffix(path).is_some_and(|head| {
        let backslashes = head.strip_suffix('.').map(|h| h.len() - h.trim_end_matches('\\').len());
        head.is_empty() || backslashes.is_some_and(|n| n % 2 == 0)
    })
}

/// `explode` over a stream of batches (a page's each, whose schema only grows), failing where
/// `explode` over the whole table would: a page before the list first shows gives no rows; a
/// stream where it never shows, or where it stops showing (its parent turned JSON text), fails.
pub struct BatchExploder {
    path: String,
    seen: bool,
    json_text: Vec<String>,
}

impl BatchExploder {
    pub fn new(path: String) -> BatchExploder {
        BatchExploder { path, seen: false, json_text: Vec::new() }
    }

    /// The batch exploded, or None while no column is at the path yet.
    pub fn explode(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        if self.seen || has_path(batch.schema().fields(), "", &self.path) {
            self.seen = true;
            return explode(batch, &self.path).map(Some);
        }
        self.json_text = batch.schema().fields().iter().filter(|f| is_json(f)).map(|f| f.name().clone()).collect();
        Ok(None)
    }

    /// At the end of the stream: an error if no batch had the column.
    pub fn finish(&self) -> Result<()> {
        if self.seen {
            return Ok(());
        }
        Err(no_column_to_explode(&self.path, &self.json_text.iter().map(String::as_str).collect::<Vec<_>>()))
    }
}

/// True if a field (at any level, by its flattened name) is at `path`.
fn has_path(fields: &Fields, prefix: &str, path: &str) -> bool {
    fields.iter().any(|f| {
        let name = if prefix.is_empty() { flat_field(f.name()).into_owned() } else { join(prefix, f.name()) };
        names_path(&name, path)
            || matches!(f.data_type(), DataType::Struct(children) if has_path(children, &name, path))
    })
}

/// The error when no column is at `path`, with a hint at how to get one.
fn no_column_to_explode(path: &str, json_text: &[&str]) -> Error {
    let hint = match path {
        "segments" => " (they come with speech_information=True, for completed files)".to_owned(),
        "chunk_results" => " (they come with chunks=True)".to_owned(),
        "chunks" => " (the chunks of each file are in \"chunk_results\", with chunks=True)".to_owned(),
        _ => String::new(),
    };
    let inside_text = match json_text {
        [] => String::new(),
        names => format!(
            "; {names:?} hold JSON text, not columns, because their values differ in type between records \
             (an object in one, a string in another), so nothing inside them can be exploded: \
             read those records by iteration"
        ),
    };
    Error::InvalidArgument(format!("these results have no {path:?} column to explode{hint}{inside_text}"))
}

/// The top-level columns that name a row, carried onto exploded rows.
const KEY_COLUMNS: [&str; 2] = ["file_id", "job_id"];

/// One row per element of the list column `path` (`segments`, `chunk_results`, or a dotted
/// path such as `result.segments`), with the row's `file_id` (and `job_id`) in front; struct
/// elements are flattened into columns. Rows whose list is null or empty give no row.
pub fn explode(batch: &RecordBatch, path: &str) -> Result<RecordBatch> {
    let flat = flatten(batch)?;
    let schema = flat.schema();
    let Some(index) = schema.fields().iter().position(|f| names_path(f.name(), path)) else {
        let texts: Vec<&str> = schema.fields().iter().filter(|f| is_json(f)).map(|f| f.name().as_str()).collect();
        return Err(no_column_to_explode(path, &texts));
    };
    let list_field = schema.field(index);
    let column = flat.column(index);
    let (offsets, values): (Vec<i64>, ArrayRef) = match column.data_type() {
        DataType::List(_) => {
            let list = column.as_any().downcast_ref::<arrow_array::ListArray>().expect("a list column");
            (list.value_offsets().iter().map(|&o| o as i64).collect(), Arc::clone(list.values()))
        }
        DataType::LargeList(_) => {
            let list = column.as_any().downcast_ref::<arrow_array::LargeListArray>().expect("a large list column");
            (list.value_offsets().to_vec(), Arc::clone(list.values()))
        }
        _ if is_json(list_field) => {
            return Err(Error::InvalidArgument(format!(
                "column {:?} holds JSON text, not a list, because its values differ in type between records \
                 (a list in one, something else in another): cannot explode it; read those records by iteration",
                list_field.name()
            )))
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "column {:?} is not a list (it is {other}): cannot explode it",
                list_field.name()
            )))
        }
    };
    let mut parents = Vec::new();
    let mut elements = Vec::new();
    for row in 0..flat.num_rows() {
        if column.is_valid(row) {
            for element in offsets[row]..offsets[row + 1] {
                parents.push(row as u32);
                elements.push(element as u32);
            }
        }
    }
    let (parents, elements) = (UInt32Array::from(parents), UInt32Array::from(elements));
    let take = |a: &dyn Array, idx: &UInt32Array| arrow_select::take::take(a, idx, None).map_err(arrow_error);

    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for key in KEY_COLUMNS {
        if let Ok(i) = schema.index_of(key) {
            fields.push(Arc::new(schema.field(i).clone()));
            columns.push(take(flat.column(i).as_ref(), &parents)?);
        }
    }
    let element_field = match column.data_type() {
        DataType::List(f) | DataType::LargeList(f) => Arc::clone(f),
        _ => unreachable!(),
    };
    let taken = take(values.as_ref(), &elements)?;
    let keys = fields.len();
    let keys_of_list = split_flat_name(list_field.name())?;
    let short = flat_name(&keys_of_list[keys_of_list.len() - 1..]);
    match element_field.data_type() {
        DataType::Struct(children) => {
            let array = taken.as_any().downcast_ref::<StructArray>().expect("a struct list");
            for (i, child) in children.iter().enumerate() {
                let values = with_parent_nulls(array.column(i), array.nulls())?;
                flatten_into(&flat_field(child.name()), child, values, &mut fields, &mut columns)?;
            }
        }
        _ => {
            fields.push(Arc::new(element_field.as_ref().clone().with_name(&short)));
            columns.push(taken);
        }
    }
    // An element's own `file_id` is named apart from the row's: `segments.file_id`.
    for at in keys..fields.len() {
        if fields[..keys].iter().any(|key| key.name() == fields[at].name()) {
            let name = join(&short, fields[at].name());
            fields[at] = Arc::new(fields[at].as_ref().clone().with_name(name));
        }
    }
    with_columns(fields, columns, parents.len())
}

#[cfg(test)]
mod tests {
    use super::super::build::PageBatcher;
    use super::super::testing::{page, table, texts};
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;

    #[test]
    fn flatten_names_with_dots_and_nulls_follow_parents() {
        let (_, batch) = table(&[&[
            r#"{"file_id": "a", "result": {"text": "hi", "meta": {"lang": "hi"}, "segments": [{"s": 1}]}}"#,
            r#"{"file_id": "b", "result": null}"#,
        ]]);
        let flat = flatten(&batch).unwrap();
        let names: Vec<_> = flat.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["file_id", "result.text", "result.meta.lang", "result.segments"]);
        assert_eq!(texts(&flat, 1), [Some("hi".into()), None]);
        assert_eq!(texts(&flat, 2), [Some("hi".into()), None]);
        assert!(matches!(flat.schema().field(3).data_type(), DataType::List(_)), "lists stay lists");
        assert!(flat.column(3).is_null(1));
    }

    #[test]
    fn explode_gives_one_row_per_element_with_its_file() {
        let (_, batch) = table(&[&[
            r#"{"file_id": "a", "result": {"segments": [{"start": 0.0, "text": "x"}, {"start": 1.5, "text": "y", "tone": {"v": 1}}]}}"#,
            r#"{"file_id": "b", "status": "failed"}"#,
            r#"{"file_id": "c", "result": {"segments": []}}"#,
            r#"{"file_id": "d", "result": {"segments": [{"start": 2.0}]}, "chunk_results": [{"chunk_index": 0}]}"#,
        ]]);
        let segments = explode(&batch, "segments").unwrap();
        let names: Vec<_> = segments.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["file_id", "start", "text", "tone.v"]);
        assert_eq!(texts(&segments, 0), [Some("a".into()), Some("a".into()), Some("d".into())]);
        assert_eq!(segments.column(1).as_primitive::<Float64Type>().values(), &[0.0, 1.5, 2.0]);
        assert_eq!(explode(&batch, "result.segments").unwrap().num_rows(), 3);
        assert_eq!(explode(&batch, "chunk_results").unwrap().num_rows(), 1);
        assert!(!names_path("result.segments", "ments") && names_path("result.segments", "segments"));
        assert!(!names_path("result\\.segments", "segments") && names_path("a\\\\.segments", "segments"));
        let err = explode(&batch, "words").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn flattened_names_are_unique_and_escaped() {
        let (_, batch) = table(&[&[r#"{"a.b": 1, "a": {"b": 2, "c.d": {"e": 3}}, "k\\": {"x": 4}}"#]]);
        let flat = flatten(&batch).unwrap();
        let names: Vec<_> = flat.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a\\.b", "a.b", "a.c\\.d.e", "k\\\\.x"]);
        let keys: Vec<_> = names.iter().map(|n| split_flat_name(n).unwrap()).collect();
        assert_eq!(keys, [vec!["a.b"], vec!["a", "b"], vec!["a", "c.d", "e"], vec!["k\\", "x"]]);
    }

    #[test]
    fn an_elements_own_file_id_is_named_apart() {
        let (_, batch) = table(&[&[r#"{"file_id": "a", "result": {"segments": [{"file_id": "x", "s": 1}]}}"#]]);
        let segments = explode(&batch, "segments").unwrap();
        let names: Vec<_> = segments.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["file_id", "segments.file_id", "s"]);
        assert_eq!(texts(&segments, 1), [Some("x".into())]);
    }

    #[test]
    fn explode_says_why_a_path_is_not_a_list() {
        let (_, batch) = table(&[&[r#"{"file_id": "a", "result": {"segments": [{"s": 1}]}}"#, r#"{"result": "odd"}"#]]);
        let err = explode(&batch, "segments").unwrap_err().to_string();
        assert!(err.contains(r#"["result"] hold JSON text"#) && err.contains("differ in type"), "{err}");
        let err = explode(&batch, "chunks").unwrap_err().to_string();
        assert!(err.contains(r#"in "chunk_results", with chunks=True"#), "{err}");
        let (_, batch) = table(&[&[r#"{"result": {"segments": [1]}}"#, r#"{"result": {"segments": 5}}"#]]);
        let err = explode(&batch, "segments").unwrap_err().to_string();
        assert!(err.contains(r#""result.segments" holds JSON text, not a list"#), "{err}");
    }

    #[test]
    fn a_stream_explodes_as_a_whole_table_does() {
        let batches = |pages: &[&[&str]]| {
            let mut batcher = PageBatcher::new(None);
            let mut exploder = BatchExploder::new("segments".into());
            let mut rows = Vec::new();
            for (i, records) in pages.iter().enumerate() {
                let batch = batcher.batch(&page(i as u64 + 1, records)).unwrap();
                rows.push(exploder.explode(&batch)?.map(|b| b.num_rows()));
            }
            exploder.finish().map(|()| rows)
        };
        let before = [r#"{"file_id": "a", "status": "failed"}"#];
        let with = [r#"{"file_id": "b", "result": {"segments": [{"s": 1}, {"s": 2}]}}"#];
        let odd = [r#"{"file_id": "c", "result": {"segments": 5}}"#];
        assert_eq!(batches(&[&before, &with]).unwrap(), [None, Some(2)], "no rows before the list shows");
        assert!(batches(&[&before, &before]).unwrap_err().to_string().contains("no \"segments\" column"));
        assert!(batches(&[&with, &odd]).unwrap_err().to_string().contains("not a list"), "as a whole table");
    }

    #[test]
    fn explode_a_list_of_scalars() {
        let (_, batch) =
            table(&[&[r#"{"file_id": "a", "errors": ["x", "y"]}"#, r#"{"file_id": "b", "errors": null}"#]]);
        let errors = explode(&batch, "errors").unwrap();
        assert_eq!(texts(&errors, 1), [Some("x".into()), Some("y".into())]);
        assert_eq!(errors.schema().field(1).name(), "errors");
    }
}
