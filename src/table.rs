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

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::page::Page;

/// Field metadata marking a column of JSON text. Not the `arrow.json` extension type: pyarrow's
/// pandas conversion and older polars stumble on extension types; a plain string column does not.
pub const JSON_TEXT_KEY: &str = "soket_transcribe.json";

/// Integers beyond this magnitude are not exact as a double.
const F64_EXACT: u64 = 1 << 53;

// ---------------------------------------------------------------------------------------
// Inference

/// What the values seen at one place of the records have in common.
#[derive(Debug, Clone, Default, PartialEq)]
enum Kind {
    /// Only nulls (or nothing) seen.
    #[default]
    Null,
    Bool,
    /// `beyond_f64`: some value is not exact as a double (matters once floats show up).
    Int {
        beyond_f64: bool,
    },
    Float {
        beyond_f64: bool,
    },
    Str,
    List(Box<Kind>),
    Object(IndexMap<String, Kind>),
    /// Values disagree: the column holds JSON text. `quoted`: some value is a string, list or
    /// object, whose text must be written for the decoder (numbers and booleans it writes itself).
    Json {
        quoted: bool,
    },
}

impl Kind {
    fn quoted(&self) -> bool {
        match self {
            Kind::Str | Kind::List(_) | Kind::Object(_) => true,
            Kind::Json { quoted } => *quoted,
            Kind::Null | Kind::Bool | Kind::Int { .. } | Kind::Float { .. } => false,
        }
    }

    /// Values of `self` and of `other` together, where they cannot share a type.
    fn conflict(&self, other_quoted: bool) -> Kind {
        Kind::Json { quoted: self.quoted() || other_quoted }
    }
}

/// The schema of records, grown one record at a time.
#[derive(Debug, Clone, Default)]
pub struct SchemaInference {
    fields: IndexMap<String, Kind>,
    rows: u64,
}

impl SchemaInference {
    pub fn new() -> SchemaInference {
        SchemaInference::default()
    }

    /// Records seen so far.
    pub fn rows(&self) -> u64 {
        self.rows
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
            .map_err(|e| record_error(format!("a record is not valid JSON: {e}"), json))?;
        self.rows += 1;
        Ok(())
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.iter().map(|(name, kind)| field(name, kind)).collect::<Vec<_>>()))
    }

    /// A decoder for the schema so far, rewriting only the values that need it.
    pub fn decoder(&self, batch_rows: usize) -> Result<RecordDecoder> {
        RecordDecoder::with_plan(self.schema(), object_kind_plan(&self.fields), batch_rows)
    }
}

fn not_an_object(json: &[u8]) -> Error {
    record_error("a record is not a JSON object, so it cannot be a table row".into(), json)
}

fn record_error(message: String, json: &[u8]) -> Error {
    Error::Format {
        message,
        excerpt: crate::error::excerpt(&String::from_utf8_lossy(&json[..json.len().min(400)]), 200),
        page: None,
        malformed: false,
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
    if depth > MAX_DEPTH {
        return Err("nested too deeply");
    }
    let first = scanner.peek()?;
    if let Kind::Json { quoted } = kind {
        *quoted |= matches!(first, b'"' | b'[' | b'{');
        return scanner.skip_value();
    }
    match first {
        b'n' => scanner.skip_value(),
        b't' | b'f' => {
            meet(kind, Kind::Bool);
            scanner.skip_value()
        }
        b'"' => {
            meet(kind, Kind::Str);
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
            let number = number_kind(scanner.number()?);
            meet(kind, number);
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

/// Widens a scalar kind to also cover `other`.
fn meet(kind: &mut Kind, other: Kind) {
    if *kind == other {
        return;
    }
    *kind = match (&*kind, other) {
        (Kind::Null, other) => other,
        (Kind::Bool, Kind::Bool) | (Kind::Str, Kind::Str) => return,
        (Kind::Int { beyond_f64: a }, Kind::Int { beyond_f64: b }) => Kind::Int { beyond_f64: *a || b },
        (
            Kind::Int { beyond_f64: a } | Kind::Float { beyond_f64: a },
            Kind::Int { beyond_f64: b } | Kind::Float { beyond_f64: b },
        ) => Kind::Float { beyond_f64: *a || b },
        (kind, other) => kind.conflict(other.quoted()),
    };
}

fn json_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(JSON_TEXT_KEY.to_owned(), "true".to_owned())]))
}

fn field(name: &str, kind: &Kind) -> Field {
    let data_type = match kind {
        Kind::Null => DataType::Null,
        Kind::Bool => DataType::Boolean,
        Kind::Int { .. } => DataType::Int64,
        Kind::Float { beyond_f64: false } => DataType::Float64,
        Kind::Str => DataType::Utf8,
        Kind::List(element) => DataType::List(Arc::new(field("item", element))),
        Kind::Object(fields) if !fields.is_empty() => {
            DataType::Struct(fields.iter().map(|(name, kind)| field(name, kind)).collect::<Fields>())
        }
        Kind::Float { beyond_f64: true } | Kind::Object(_) | Kind::Json { .. } => return json_field(name),
    };
    Field::new(name, data_type, true)
}

/// True for a column of JSON text.
pub fn is_json(field: &Field) -> bool {
    field.metadata().get(JSON_TEXT_KEY).is_some_and(|v| v == "true")
}

// ---------------------------------------------------------------------------------------
// Scanning

/// Deeper than this is refused (the page parser refuses it before us).
const MAX_DEPTH: usize = 512;

type Scan<T> = std::result::Result<T, &'static str>;

/// A JSON reader for what inference and rewriting need: structure, keys, the first byte of
/// each value, number texts; strings are skipped with memchr. Records were validated when their
/// page was parsed, and arrow-json validates them again: this reader only has to be safe.
struct Scanner<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(json: &'a [u8]) -> Scanner<'a> {
        Scanner { json, at: 0 }
    }

    /// The next byte that is not whitespace (not consumed).
    fn peek(&mut self) -> Scan<u8> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.json.get(self.at) {
            self.at += 1;
        }
        self.json.get(self.at).copied().ok_or("unexpected end")
    }

    fn eat(&mut self, byte: u8, what: &'static str) -> Scan<()> {
        if self.next_is(byte)? {
            Ok(())
        } else {
            Err(what)
        }
    }

    /// Passes over the string whose `"` is next; true if it has escapes.
    fn skip_string(&mut self) -> Scan<bool> {
        self.at += 1;
        let mut escaped = false;
        loop {
            let rest = self.json.get(self.at..).ok_or("unterminated string")?;
            match memchr::memchr2(b'"', b'\\', rest) {
                Some(i) if rest[i] == b'"' => {
                    self.at += i + 1;
                    return Ok(escaped);
                }
                Some(i) => {
                    escaped = true;
                    self.at += i + 2;
                }
                None => return Err("unterminated string"),
            }
        }
    }

    /// The key whose `"` is next.
    fn key(&mut self) -> Scan<Key<'a>> {
        let start = self.at;
        let escaped = self.skip_string()?;
        Ok(Key { quoted: &self.json[start..self.at], escaped })
    }

    fn number(&mut self) -> Scan<&'a [u8]> {
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.json.get(self.at) {
            self.at += 1;
        }
        if self.at == start {
            return Err("unexpected character");
        }
        Ok(&self.json[start..self.at])
    }

    /// Calls `member` for each key of the object whose `{` is next, with the value next.
    fn object(&mut self, mut member: impl FnMut(&mut Self, Key<'a>) -> Scan<()>) -> Scan<()> {
        let mut more = self.open(b'}')?;
        while more {
            if self.peek()? != b'"' {
                return Err("expected a key");
            }
            let key = self.key()?;
            self.eat(b':', "expected ':'")?;
            member(self, key)?;
            more = self.next(b'}')?;
        }
        Ok(())
    }

    /// Calls `element` for each element of the array whose `[` is next.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Scan<()>) -> Scan<()> {
        let mut more = self.open(b']')?;
        while more {
            element(self)?;
            more = self.next(b']')?;
        }
        Ok(())
    }

    /// Consumes the opening bracket; false if `close` follows at once (consumed too).
    fn open(&mut self, close: u8) -> Scan<bool> {
        self.at += 1;
        self.next_is(close).map(|closed| !closed)
    }

    /// After a member or an element: true at a `,`, false at `close` (either consumed).
    fn next(&mut self, close: u8) -> Scan<bool> {
        if self.peek()? == b',' {
            self.at += 1;
            return Ok(true);
        }
        if self.next_is(close)? {
            return Ok(false);
        }
        Err("expected ',' or a closing bracket")
    }

    fn next_is(&mut self, byte: u8) -> Scan<bool> {
        let found = self.peek()? == byte;
        if found {
            self.at += 1;
        }
        Ok(found)
    }

    /// Passes over one value, counting brackets.
    fn skip_value(&mut self) -> Scan<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.skip_string()?;
                }
                b'[' | b'{' => {
                    depth += 1;
                    self.at += 1;
                }
                b']' | b'}' => {
                    depth = depth.checked_sub(1).ok_or("unbalanced brackets")?;
                    self.at += 1;
                }
                b',' | b':' if depth > 0 => self.at += 1,
                _ => {
                    let start = self.at;
                    while self
                        .json
                        .get(self.at)
                        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
                    {
                        self.at += 1;
                    }
                    if self.at == start {
                        return Err("unexpected character");
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

/// A key as written, quotes included.
struct Key<'a> {
    quoted: &'a [u8],
    escaped: bool,
}

impl<'a> Key<'a> {
    /// True if the key is `name` (cheap: no UTF-8 check for the common case).
    fn is(&self, name: &str) -> bool {
        !self.escaped && &self.quoted[1..self.quoted.len() - 1] == name.as_bytes()
    }

    /// The key's text, unescaped only when it has escapes.
    fn text(&self) -> Scan<Cow<'a, str>> {
        if self.escaped {
            serde_json::from_slice::<String>(self.quoted).map(Cow::Owned).map_err(|_| "bad string")
        } else {
            std::str::from_utf8(&self.quoted[1..self.quoted.len() - 1]).map(Cow::Borrowed).map_err(|_| "bad UTF-8")
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Where the records must be rewritten before arrow-json reads them: the values of JSON text
/// columns become JSON strings holding their compact text.
#[derive(Debug, PartialEq)]
enum Rewrite {
    Keep,
    Text,
    Object(HashMap<String, Rewrite>),
    List(Box<Rewrite>),
}

fn rewrite_plan(field: &Field) -> Rewrite {
    if is_json(field) {
        return Rewrite::Text;
    }
    match field.data_type() {
        DataType::Struct(fields) => object_plan(fields),
        DataType::List(element) | DataType::LargeList(element) => match rewrite_plan(element) {
            Rewrite::Keep => Rewrite::Keep,
            plan => Rewrite::List(Box::new(plan)),
        },
        _ => Rewrite::Keep,
    }
}

/// The rewrite an inferred kind needs: only values whose JSON text the decoder cannot write
/// itself (strings, lists, objects; not numbers or booleans, which `coerce_primitive` writes).
fn kind_plan(kind: &Kind) -> Rewrite {
    match kind {
        Kind::Json { quoted: true } => Rewrite::Text,
        Kind::Object(fields) if fields.is_empty() => Rewrite::Text,
        Kind::Object(fields) => object_kind_plan(fields),
        Kind::List(element) => match kind_plan(element) {
            Rewrite::Keep => Rewrite::Keep,
            plan => Rewrite::List(Box::new(plan)),
        },
        _ => Rewrite::Keep,
    }
}

fn object_kind_plan(fields: &IndexMap<String, Kind>) -> Rewrite {
    let plans: HashMap<String, Rewrite> = fields
        .iter()
        .filter_map(|(name, kind)| match kind_plan(kind) {
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

fn object_plan(fields: &Fields) -> Rewrite {
    let plans: HashMap<String, Rewrite> = fields
        .iter()
        .filter_map(|f| match rewrite_plan(f) {
            Rewrite::Keep => None,
            plan => Some((f.name().clone(), plan)),
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
        let plan = object_plan(schema.fields());
        RecordDecoder::with_plan(schema, plan, batch_rows)
    }

    fn with_plan(schema: SchemaRef, plan: Rewrite, batch_rows: usize) -> Result<RecordDecoder> {
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

    /// Adds every record of a page; returns the batches completed on the way.
    pub fn push_page(&mut self, page: &Page, out: &mut Vec<RecordBatch>) -> Result<()> {
        for i in 0..page.records.len() {
            if let Some(batch) = self.push(page.record_json(i)).map_err(|e| e.on_page(page.meta.page))? {
                out.push(batch);
            }
        }
        Ok(())
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
        decode_page(decoder, page)
    }
}

/// One page as one batch.
fn decode_page(mut decoder: RecordDecoder, page: &Page) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    decoder.push_page(page, &mut batches)?;
    batches.extend(decoder.flush().map_err(|e| e.on_page(page.meta.page))?);
    Ok(batches.pop().unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(decoder.schema()))))
}

/// A whole table. Each page is decoded on arrival under the schema inferred so far, so the work
/// overlaps the fetching of the next pages; at the end the pages decoded under a schema that
/// later pages widened (rare after the first page) are decoded again, so that every row gets
/// the schema of all rows. Pages are kept until then.
#[derive(Default)]
pub struct TableBuilder {
    inference: SchemaInference,
    decoded: Vec<(Page, RecordBatch)>,
}

impl TableBuilder {
    pub fn new() -> TableBuilder {
        TableBuilder::default()
    }

    pub fn push(&mut self, page: Page) -> Result<()> {
        if page.records.is_empty() {
            return Ok(());
        }
        self.inference.observe_page(&page)?;
        let batch = decode_page(self.inference.decoder(page.records.len())?, &page)?;
        self.decoded.push((page, batch));
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.inference.rows()
    }

    /// The schema and the batches, at least one (maybe empty), all of that schema.
    pub fn finish(self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let schema = self.inference.schema();
        let mut batches = Vec::with_capacity(self.decoded.len().max(1));
        for (page, batch) in self.decoded {
            if *batch.schema() == *schema {
                batches.push(batch);
            } else {
                batches.push(decode_page(self.inference.decoder(page.records.len())?, &page)?);
            }
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(Arc::clone(&schema)));
        }
        Ok((schema, batches))
    }
}

// ---------------------------------------------------------------------------------------
// Reshaping

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
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use bytes::Bytes;
    use serde_json::Value;

    /// A page of records written as JSON text (json! would sort their keys).
    fn page(number: u64, records: &[&str]) -> Page {
        let body = format!(r#"{{"page":{number},"total_pages":9,"files":[{}]}}"#, records.join(","));
        crate::page::parse_page(Bytes::from(body), false, number).unwrap()
    }

    fn values(records: &[&str]) -> Vec<Value> {
        records.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
    }

    fn table(pages: &[&[&str]]) -> (SchemaRef, RecordBatch) {
        let mut builder = TableBuilder::new();
        for (i, records) in pages.iter().enumerate() {
            builder.push(page(i as u64 + 1, records)).unwrap();
        }
        let (schema, batches) = builder.finish().unwrap();
        assert!(batches.iter().all(|b| b.schema() == schema));
        (Arc::clone(&schema), arrow_select::concat::concat_batches(&schema, &batches).unwrap())
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

    fn without_nulls(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
            v => v.clone(),
        }
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

    fn texts(batch: &RecordBatch, column: usize) -> Vec<Option<String>> {
        batch.column(column).as_string::<i32>().iter().map(|s| s.map(str::to_owned)).collect()
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
    fn malformed_records_are_errors_not_panics() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(600), "]".repeat(600));
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
            deep.as_str(),
        ] {
            let mut inference = SchemaInference::new();
            assert!(inference.observe_record(json.as_bytes()).is_err(), "{json}");
            let mut decoder = RecordDecoder::new(Arc::new(Schema::new(vec![json_field("a")])), 8).unwrap();
            let _ = decoder.push(json.as_bytes()).and_then(|_| decoder.flush());
        }
    }

    #[test]
    fn a_record_that_is_not_an_object_names_its_page() {
        let mut builder = TableBuilder::new();
        let err = builder.push(page(3, &[r#"{"a": 1}"#, "7"])).unwrap_err();
        assert!(matches!(err, Error::Format { page: Some(3), .. }), "{err:?}");
        assert!(err.to_string().contains("not a JSON object"), "{err}");
    }

    #[test]
    fn an_empty_batch_is_an_empty_table() {
        let (schema, batches) = TableBuilder::new().finish().unwrap();
        assert_eq!(schema.fields().len(), 0);
        assert_eq!(batches[0].num_rows(), 0);
    }

    #[test]
    fn tables_are_batched_and_dropped_records_stay_dropped() {
        let records: Vec<String> = (0..5).map(|i| format!(r#"{{"file_id": "f{i}"}}"#)).collect();
        let mut p = page(1, &records.iter().map(String::as_str).collect::<Vec<_>>());
        p.truncate(3);
        let mut decoder =
            RecordDecoder::new(Arc::new(Schema::new(vec![Field::new("file_id", DataType::Utf8, true)])), 2).unwrap();
        let mut batches = Vec::new();
        decoder.push_page(&p, &mut batches).unwrap();
        batches.extend(decoder.flush().unwrap());
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn a_given_schema_takes_numbers_as_text_and_ignores_other_fields() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let batch =
            PageBatcher::new(Some(schema)).batch(&page(1, &[r#"{"id": 12, "x": 1}"#, r#"{"id": "a"}"#])).unwrap();
        assert_eq!(batch.num_columns(), 1);
        assert_eq!(texts(&batch, 0), [Some("12".into()), Some("a".into())]);
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
