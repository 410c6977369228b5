//! Column names, one rule for every table method, `fields=` paths and the distributed readers.
//!
//! A field's name is its key, with a backslash written `\\` and a NUL `\0` (Arrow's C interface
//! refuses NUL in names). A flattened name joins the names of its levels with `.`, a dot inside
//! a key written `\.`: `{"a.b": 1, "a": {"b": 2}}` gives the columns `a\.b` and `a.b`. So names
//! never collide and `split_flat_name` gives the keys back.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, LargeListArray, ListArray, RecordBatch, RecordBatchOptions, StructArray};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema};

use crate::error::{Error, Result};

/// The name of the field holding `key`.
pub fn field_name(key: &str) -> Cow<'_, str> {
    escape(key, false)
}

/// The flattened name of the path `keys`.
pub fn flat_name<S: AsRef<str>>(keys: &[S]) -> String {
    keys.iter().map(|k| escape(k.as_ref(), true)).collect::<Vec<_>>().join(".")
}

/// The flattened name of a top-level field named `name` (a field name: its dots escaped).
pub(super) fn flat_field(name: &str) -> Cow<'_, str> {
    match name.contains('.') {
        true => Cow::Owned(name.replace('.', "\\.")),
        false => Cow::Borrowed(name),
    }
}

/// `parent` (a flattened name) and the child field named `child` (a field name) as one name.
pub(super) fn join(parent: &str, child: &str) -> String {
    format!("{parent}.{}", flat_field(child))
}

fn escape(key: &str, dots: bool) -> Cow<'_, str> {
    if !key.bytes().any(|b| b == b'\\' || b == 0 || (dots && b == b'.')) {
        return Cow::Borrowed(key);
    }
    let mut name = String::with_capacity(key.len() + 2);
    for c in key.chars() {
        match c {
            '\\' => name.push_str("\\\\"),
            '\0' => name.push_str("\\0"),
            '.' if dots => name.push_str("\\."),
            c => name.push(c),
        }
    }
    Cow::Owned(name)
}

/// The keys of a flattened name (or of a `fields=` path).
pub fn split_flat_name(name: &str) -> Result<Vec<String>> {
    let mut keys = vec![String::new()];
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        let key = keys.last_mut().expect("never empty");
        match c {
            '.' => keys.push(String::new()),
            '\\' => match chars.next() {
                Some('\\') => key.push('\\'),
                Some('.') => key.push('.'),
                Some('0') => key.push('\0'),
                _ => {
                    return Err(Error::invalid(format!(
                        "{name:?}: a backslash must start \\\\, \\. or \\0 (a backslash, a dot or a NUL inside a key)"
                    )))
                }
            },
            c => key.push(c),
        }
    }
    Ok(keys)
}

/// `batch` with every field named by `field_name` (no copy; the batch itself when no name changes).
pub fn with_field_names(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| needs_renaming(f)) {
        return Ok(batch);
    }
    let fields: Fields = schema.fields().iter().map(|f| renamed_field(f)).collect();
    let columns = batch
        .columns()
        .iter()
        .zip(&fields)
        .map(|(column, field)| renamed_array(column, field.data_type()))
        .collect::<std::result::Result<Vec<ArrayRef>, ArrowError>>()
        .map_err(arrow_error)?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).map_err(arrow_error)
}

fn arrow_error(e: ArrowError) -> Error {
    Error::Internal(format!("Arrow: renaming fields: {e}"))
}

fn needs_renaming(field: &Field) -> bool {
    matches!(field_name(field.name()), Cow::Owned(_)) || children(field.data_type()).iter().any(|f| needs_renaming(f))
}

fn children(data_type: &DataType) -> Vec<FieldRef> {
    match data_type {
        DataType::Struct(fields) => fields.iter().cloned().collect(),
        DataType::List(item) | DataType::LargeList(item) => vec![Arc::clone(item)],
        _ => vec![],
    }
}

fn renamed_field(field: &FieldRef) -> FieldRef {
    let data_type = match field.data_type() {
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(renamed_field).collect()),
        DataType::List(item) => DataType::List(renamed_field(item)),
        DataType::LargeList(item) => DataType::LargeList(renamed_field(item)),
        other => other.clone(),
    };
    Arc::new(field.as_ref().clone().with_name(field_name(field.name())).with_data_type(data_type))
}

/// `array` under the type `to`: the same values, its fields renamed (buffers shared, not copied).
fn renamed_array(array: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, ArrowError> {
    Ok(match to {
        DataType::Struct(fields) => {
            let parent = array.as_struct();
            let columns = fields
                .iter()
                .zip(parent.columns())
                .map(|(f, c)| renamed_array(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Arc::new(StructArray::try_new_with_length(fields.clone(), columns, parent.nulls().cloned(), parent.len())?)
        }
        DataType::List(item) => {
            let list = array.as_list::<i32>();
            let values = renamed_array(list.values(), item.data_type())?;
            Arc::new(ListArray::try_new(Arc::clone(item), list.offsets().clone(), values, list.nulls().cloned())?)
        }
        DataType::LargeList(item) => {
            let list = array.as_list::<i64>();
            let values = renamed_array(list.values(), item.data_type())?;
            Arc::new(LargeListArray::try_new(Arc::clone(item), list.offsets().clone(), values, list.nulls().cloned())?)
        }
        _ => Arc::clone(array),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_split_back() {
        for keys in [
            vec!["file_id"],
            vec!["result", "text"],
            vec!["a.b"],
            vec!["a", "b"],
            vec!["m", "x.y"],
            vec!["back\\slash", "nul\0", ".", "", "\\."],
        ] {
            let name = flat_name(&keys);
            assert_eq!(split_flat_name(&name).unwrap(), keys, "{name}");
        }
        assert_eq!(flat_name(&["a.b"]), "a\\.b");
        assert_eq!(flat_name(&["a", "b"]), "a.b");
        assert_eq!(flat_name(&["k\0x", "c\\d"]), "k\\0x.c\\\\d");
        assert_eq!(join(&field_name("a\\"), &field_name("x.y")), flat_name(&["a\\", "x.y"]));
        assert!(split_flat_name("a\\b").unwrap_err().to_string().contains("backslash"));
        assert!(split_flat_name("a\\").is_err());
    }
}
