//! Arrow tables straight from page bytes: the schema is inferred over every record of every
//! page (a light scanner reads only structure and types), then the records are decoded by
//! arrow-json, never through an intermediate value tree.
//!
//! Types: objects become struct columns, arrays list columns, numbers Int64 or Float64.
//! A field whose values disagree in type (object here, string there; list vs scalar; an integer
//! beyond i64, or beyond 2^53 beside floats) becomes a Utf8 column of each value's compact
//! JSON text, marked in its field metadata (`soket_transcribe.json`), so nothing fails and nothing is
//! silently rounded: `json.loads(cell)` gives the value back. A field never seen with a value
//! is of type Null; an object never seen with a key is JSON text too (`"{}"`), as Parquet and
//! pandas have no empty struct. Absent and null both read as null.
//!
//! Modules import only those listed before them: `scan` (a JSON reader), `names`, `kind`
//! (kinds and how they widen), `decode` (records into Arrow), `unify` (a page's batch under the
//! table's schema), `infer` (kinds from records), `reshape` (flatten, explode), `build` (pages
//! into batches and tables), `read` (pages as they arrive: which are read where, and when).

mod build;
mod decode;
mod infer;
mod kind;
mod names;
mod read;
mod reshape;
pub(crate) mod scan;
#[cfg(test)]
mod testing;
mod unify;

pub use build::{PageBatcher, PageTable, TableBuilder};
pub use decode::RecordDecoder;
pub use infer::SchemaInference;
pub use kind::{is_json, JSON_TEXT_KEY};
pub use names::{field_name, flat_name, split_flat_name};
pub use read::{read_table, BatchReader, PageSource};
pub use reshape::{explode, flatten, BatchExploder, Shape};
