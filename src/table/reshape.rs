//! Reshaping tables for dataframes: struct columns flattened into dotted columns, and a list
//! column exploded into one row per element.

use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, FieldRef, Fields, Schema};

use crate::error::{Error, Result};

/// Struct columns replaced by their fields, recursively, named `parent.child`; a null parent
/// makes its fields null. Lists are left as they are.
pub fn flatten(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, column) in batch.schema().fields().iter().zip(batch.columns()) {
        flatten_into(f.name(), f, Arc::clone(column), &mut fields, &mut columns)?;
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
            flatten_into(&format!("{name}.{}", child.name()), child, values, fields, columns)?;
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

/// `name` (flattened, dotted) is `path` or ends with it.
fn names_path(name: &str, path: &str) -> bool {
    name.strip_suffix(path).is_some_and(|head| head.is_empty() || head.ends_with('.'))
}

/// True when `batch` has a list column that `explode(batch, path)` would explode.
pub fn has_list(batch: &RecordBatch, path: &str) -> bool {
    fn find(fields: &Fields, prefix: &str, path: &str) -> bool {
        fields.iter().any(|f| {
            let name = format!("{prefix}{}", f.name());
            match f.data_type() {
                DataType::Struct(children) => find(children, &format!("{name}."), path),
                DataType::List(_) | DataType::LargeList(_) => names_path(&name, path),
                _ => false,
            }
        })
    }
    find(batch.schema().fields(), "", path)
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
        let hint = match path {
            "segments" => " (they come with speech_information=True, for completed files)",
            "chunk_results" => " (they come with chunks=True)",
            _ => "",
        };
        return Err(Error::InvalidArgument(format!("these results have no {path:?} column to explode{hint}")));
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
    match element_field.data_type() {
        DataType::Struct(children) => {
            let array = taken.as_any().downcast_ref::<StructArray>().expect("a struct list");
            for (i, child) in children.iter().enumerate() {
                let values = with_parent_nulls(array.column(i), array.nulls())?;
                flatten_into(child.name(), child, values, &mut fields, &mut columns)?;
            }
        }
        _ => {
            let short = path.rsplit('.').next().unwrap_or(path);
            fields.push(Arc::new(element_field.as_ref().clone().with_name(short)));
            columns.push(taken);
        }
    }
    with_columns(fields, columns, parents.len())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{table, texts};
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
        assert!(has_list(&batch, "segments") && has_list(&batch, "result.segments") && !has_list(&batch, "file_id"));
        assert!(!has_list(&batch, "ments"));
        let err = explode(&batch, "words").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
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
