//! Helpers for the tests of the table modules: pages of given records, and tables read from them.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use serde_json::Value;

use crate::page::Page;

use super::build::{PageTable, TableBuilder};

/// A page of records written as JSON text (json! would sort their keys).
pub fn page(number: u64, records: &[&str]) -> Page {
    let body = format!(r#"{{"page":{number},"total_pages":9,"files":[{}]}}"#, records.join(","));
    crate::page::parse_page(Bytes::from(body), false, number).unwrap()
}

/// A table of pages of given records, read apart and unified, as one batch.
pub fn table(pages: &[&[&str]]) -> (SchemaRef, RecordBatch) {
    let mut builder = TableBuilder::new();
    for (i, records) in pages.iter().enumerate() {
        builder.push(PageTable::read(&page(i as u64 + 1, records)).unwrap());
    }
    let (schema, batches) = builder.finish().unwrap();
    assert!(batches.iter().all(|b| b.schema() == schema));
    (Arc::clone(&schema), arrow_select::concat::concat_batches(&schema, &batches).unwrap())
}

/// `v` without its null members, at any depth.
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        v => v.clone(),
    }
}

/// The cells of a Utf8 column.
pub fn texts(batch: &RecordBatch, column: usize) -> Vec<Option<String>> {
    batch.column(column).as_string::<i32>().iter().map(|s| s.map(str::to_owned)).collect()
}
