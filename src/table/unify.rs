//! One schema for pages read apart: their kinds widened as if their records had been read in
//! one pass (`Kind::widen`), and each page's batch brought to the widened schema. A field a
//! page lacks reads as nulls, an integer column that widened becomes floats, and a column that
//! became JSON text elsewhere becomes the JSON text of its values (written back by arrow-json).

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{new_null_array, Array, ArrayRef, ListArray, RecordBatch, RecordBatchOptions, StructArray};
use arrow_json::writer::{make_encoder, Encoder, EncoderFactory, EncoderOptions, NullableEncoder};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, SchemaRef};
use indexmap::IndexMap;

use crate::error::{Error, Result};

use super::kind::{is_json, Kind};

/// `batch`, read under `from` (its page's kinds), under the table's `to` and `schema`.
pub(super) fn conform(
    batch: RecordBatch,
    from: &IndexMap<String, Kind>,
    to: &IndexMap<String, Kind>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let columns = to
        .iter()
        .zip(schema.fields())
        .map(|((name, kind), field)| match from.get_full(name) {
            Some((i, _, was)) => conform_array(batch.column(i), was, kind, field),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(arrow_error)
}

/// `array`, read as `from`, as the values of `to` (whose field is `field`).
fn conform_array(array: &ArrayRef, from: &Kind, to: &Kind, field: &Field) -> Result<ArrayRef> {
    if array.data_type() == field.data_type() && from.is_text() == is_json(field) {
        return Ok(Arc::clone(array));
    }
    let mismatch = || Error::Internal(format!("a page's {from:?} column cannot become {to:?}"));
    Ok(match (from, to) {
        (Kind::Null, _) => new_null_array(field.data_type(), array.len()),
        (_, to) if to.is_text() => json_text(array)?,
        (Kind::Int { .. }, Kind::Float { .. }) => {
            Arc::new(array.as_primitive::<Int64Type>().unary::<_, Float64Type>(|v| v as f64))
        }
        (Kind::List(from), Kind::List(to)) => {
            let DataType::List(element) = field.data_type() else { return Err(mismatch()) };
            let list = array.as_list::<i32>();
            let values = conform_array(list.values(), from, to, element)?;
            let nulls = list.nulls().cloned();
            Arc::new(
                ListArray::try_new(Arc::clone(element), list.offsets().clone(), values, nulls).map_err(arrow_error)?,
            )
        }
        (Kind::Object(from), Kind::Object(to)) => {
            let DataType::Struct(fields) = field.data_type() else { return Err(mismatch()) };
            // A page that saw only `{}` here holds its text: the objects, with no member.
            let children: Option<&StructArray> = (!from.is_empty()).then(|| array.as_struct());
            let columns = to
                .iter()
                .zip(fields)
                .map(|((name, kind), child)| match (children, from.get_full(name)) {
                    (Some(array), Some((i, _, was))) => conform_array(array.column(i), was, kind, child),
                    _ => Ok(new_null_array(child.data_type(), array.len())),
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(fields.clone(), columns, array.nulls().cloned()).map_err(arrow_error)?)
        }
        _ => return Err(mismatch()),
    })
}

/// Each value's compact JSON text (nulls stay null); JSON text inside is written as it is.
fn json_text(array: &ArrayRef) -> Result<ArrayRef> {
    let field: FieldRef = Arc::new(Field::new("", array.data_type().clone(), true));
    let options = EncoderOptions::default().with_encoder_factory(Arc::new(JsonTextAsIs));
    let mut encoder = make_encoder(&field, array.as_ref(), &options).map_err(arrow_error)?;
    let mut texts = StringBuilder::with_capacity(array.len(), array.get_array_memory_size());
    let mut buffer = Vec::new();
    for i in 0..array.len() {
        if array.is_null(i) {
            texts.append_null();
            continue;
        }
        buffer.clear();
        encoder.encode(i, &mut buffer);
        texts.append_value(std::str::from_utf8(&buffer).map_err(|e| Error::Internal(format!("JSON text: {e}")))?);
    }
    Ok(Arc::new(texts.finish()))
}

/// Writes a JSON text column's cells as the JSON they hold, not as strings.
#[derive(Debug)]
struct JsonTextAsIs;

impl EncoderFactory for JsonTextAsIs {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> std::result::Result<Option<NullableEncoder<'a>>, ArrowError> {
        // A list's values come with the list's field (arrow-json passes it down): look through.
        let mut values_field = field.as_ref();
        while let DataType::List(element) | DataType::LargeList(element) = values_field.data_type() {
            values_field = element;
        }
        if array.data_type() != &DataType::Utf8 || !is_json(values_field) {
            return Ok(None);
        }
        let texts = array.as_string::<i32>();
        Ok(Some(NullableEncoder::new(Box::new(AsIs(texts)), texts.nulls().cloned())))
    }
}

struct AsIs<'a>(&'a arrow_array::StringArray);

impl Encoder for AsIs<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.value(idx).as_bytes());
    }
}

fn arrow_error(e: ArrowError) -> Error {
    Error::Internal(format!("Arrow: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::build::{PageTable, TableBuilder};
    use super::super::testing::{page, table, without_nulls};
    use super::*;
    use arrow_array::types::Float64Type;
    use arrow_json::writer::{JsonArray, WriterBuilder};
    use serde_json::Value;

    /// The rows as JSON, JSON text columns as the values they hold, null members left out.
    fn values(batch: &RecordBatch) -> Vec<Value> {
        let mut writer =
            WriterBuilder::new().with_encoder_factory(Arc::new(JsonTextAsIs)).build::<_, JsonArray>(Vec::new());
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        let out = writer.into_inner();
        let rows: Vec<Value> = if out.is_empty() { vec![] } else { serde_json::from_slice(&out).unwrap() };
        rows.iter().map(without_nulls).collect()
    }

    const RECORDS: [&str; 10] = [
        r#"{"id": 1, "x": 1, "v": {"a": 1, "b": [true, null]}, "l": [], "o": {}, "s": "x", "w": {"in": 1}}"#,
        r#"{"id": 2, "x": 2.5, "v": "text \"q\" \u00e9", "l": [{"k": 1}], "o": {"p": 1}, "n": null, "w": {"in": "x"}}"#,
        r#"{"id": 3, "v": null, "l": [{"k": "one"}], "deep": {"seg": [{"sp": "S1", "t": 1}]}, "w": 5}"#,
        r#"{"id": 4, "deep": {"seg": [{"sp": 2, "t": 2.5}], "flag": true}, "big": 9007199254740993}"#,
        r#"{"id": 5, "big": 0.5, "deep": {"seg": [{"sp": {"id": 3}}, null]}, "s": {"k": "é"}, "late": [1, 2]}"#,
        r#"{"id": 6, "nested": {"inner": {"j": 1}, "list": [[1], []]}, "x": -3, "o": {}}"#,
        r#"{"id": 7, "nested": {"inner": "now text", "other": 1, "list": [[2.5]]}, "huge": 123456789012345678901234567890}"#,
        r#"{"id": 8, "nested": {"inner": {"j": [1]}}, "huge": 1, "l": null, "o": null}"#,
        r#"{"id": 9, "late": {"x": 1}, "deep": null, "w": {"in": {"deeper": [1, "a"]}}}"#,
        r#"{"id": 10, "only": {"empty": {}}, "x": 7}"#,
    ];

    #[test]
    fn pages_read_apart_give_the_table_of_one_pass() {
        let (schema, whole) = table(&[&RECORDS]);
        let expected = values(&whole);
        for per_page in [1, 2, 3, 4, 7] {
            let pages: Vec<&[&str]> = RECORDS.chunks(per_page).collect();
            let (apart_schema, apart) = table(&pages);
            assert_eq!(apart_schema, schema, "{per_page} a page");
            assert_eq!(values(&apart), expected, "{per_page} a page");
        }
        // Pages joined in groups first, then unified, give the same again.
        for group in [2, 3] {
            let mut builder = TableBuilder::new();
            let pages: Vec<_> =
                RECORDS.chunks(1).enumerate().map(|(i, r)| PageTable::read(&page(i as u64 + 1, r)).unwrap()).collect();
            let mut pages = pages.into_iter().peekable();
            while pages.peek().is_some() {
                builder.push(PageTable::concat(pages.by_ref().take(group).collect()).unwrap());
            }
            let (grouped_schema, batches) = builder.finish().unwrap();
            assert_eq!(grouped_schema, schema, "groups of {group}");
            let grouped = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
            assert_eq!(values(&grouped), expected, "groups of {group}");
        }
    }

    #[test]
    fn widened_and_missing_columns() {
        let (schema, batch) = table(&[&[r#"{"x": 1}"#], &[r#"{"y": "a"}"#], &[r#"{"x": 2.5, "y": null}"#]]);
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
        assert_eq!(
            batch.column(0).as_primitive::<Float64Type>().iter().collect::<Vec<_>>(),
            [Some(1.0), None, Some(2.5)]
        );
        assert_eq!(batch.column(1).as_string::<i32>().iter().collect::<Vec<_>>(), [None, Some("a"), None]);
    }

    #[test]
    fn a_typed_column_that_became_text_elsewhere_holds_its_values_text() {
        let (schema, batch) = table(&[
            &[r#"{"v": {"a": 1.5, "b": null, "c": ["x", {"d": true}]}}"#, r#"{"v": {"a": 2, "e": {"f": "g"}}}"#],
            &[r#"{"v": "plain"}"#],
        ]);
        assert!(is_json(schema.field(0)));
        let texts: Vec<_> = batch.column(0).as_string::<i32>().iter().collect();
        // Null members are left out, and members come in the schema's order.
        assert_eq!(
            texts,
            [Some(r#"{"a":1.5,"c":["x",{"d":true}]}"#), Some(r#"{"a":2.0,"e":{"f":"g"}}"#), Some(r#""plain""#)]
        );
    }

    /// Numbers as doubles: a value's JSON text may be written as `2` on one side, `2.0` on the other.
    fn numbers_as_doubles(v: &Value) -> Value {
        match v {
            Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
            Value::Array(a) => Value::Array(a.iter().map(numbers_as_doubles).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), numbers_as_doubles(v))).collect()),
            v => v.clone(),
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            (-3i64..3).prop_map(|i| i.to_string()),
            Just("9007199254740993".to_owned()),
            Just("18446744073709551616".to_owned()),
            (-3i64..3).prop_map(|i| format!("{i}.5")),
            "[a-c\"é]{0,3}".prop_map(|t| serde_json::to_string(&t).unwrap()),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::btree_map("[abc]", inner, 0..3).prop_map(|m| {
                    let members: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_split_into_pages_gives_the_one_pass_table(
            records in proptest::collection::vec(proptest::collection::btree_map("[xyz]", json_value(), 0..3), 1..10),
            per_page in 1usize..4,
        ) {
            let records: Vec<String> = records
                .iter()
                .map(|m| format!("{{{}}}", m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")))
                .collect();
            let records: Vec<&str> = records.iter().map(String::as_str).collect();
            let (schema, whole) = table(&[&records]);
            let pages: Vec<&[&str]> = records.chunks(per_page).collect();
            let (apart_schema, apart) = table(&pages);
            proptest::prop_assert_eq!(apart_schema, schema);
            let normal = |b: &RecordBatch| values(b).iter().map(numbers_as_doubles).collect::<Vec<_>>();
            proptest::prop_assert_eq!(normal(&apart), normal(&whole));
        }
    }
}
