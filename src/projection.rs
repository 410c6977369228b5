//! `fields=`: each record narrowed to the paths asked for, in Rust, on the runtime's worker
//! threads, so only those values ever become Python objects (or Arrow columns).
//!
//! Paths are flattened names (`result.text`; a dot inside a key written `\.`, see
//! `table::split_flat_name`). Records keep their nesting (`result.text` gives
//! `{"result": {"text": ...}}`); a path missing from a record is absent from it, and so is an
//! object left with nothing asked for; a path that goes through a value that is not an object
//! (`null`, a list) stops there and is absent too. A key given twice counts once, with its last
//! value, as whole records (Python's `json`) have it. Values are copied as the service sent them.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::page::{has_digit_run, Page, Record};
use crate::table::scan::{Scan, Scanner};
use crate::table::split_flat_name;

/// The paths asked for, as a tree of keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Projection {
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Node {
    children: Vec<Child>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Child {
    name: String,
    /// `"name":`, JSON-escaped once.
    key: Vec<u8>,
    /// None: the whole value; Some: only these keys of it (it must be an object).
    only: Option<Node>,
}

impl Projection {
    /// Flattened names (`"file_id"`, `"result.text"`): at least one, none with an empty key.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Projection> {
        if paths.is_empty() {
            return Err(Error::invalid("fields must name at least one field (or be None for whole records)"));
        }
        let mut root = Node::default();
        for path in paths {
            let path = path.as_ref();
            let keys = split_flat_name(path)?;
            if keys.iter().any(String::is_empty) {
                return Err(Error::invalid(format!(
                    "fields: {path:?} is not a dotted path (empty segment); e.g. \"result.text\" (a dot inside a key is written \\.)"
                )));
            }
            root.insert(keys.iter().map(String::as_str));
        }
        Ok(Projection { root })
    }

    /// The page with each record narrowed; ids (for de-duplication) are kept from the whole record.
    pub fn apply(&self, page: &Page) -> Result<Page> {
        let mut body = Vec::with_capacity(page.records.len() * 64 + 2);
        let mut records = Vec::with_capacity(page.records.len());
        body.push(b'[');
        for (i, record) in page.records.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let start = body.len();
            let json = page.record_json(i);
            self.record(json, &mut body).map_err(|e| {
                Error::format(format!("a record is not valid JSON: {e}"), json, true).on_page(page.meta.page)
            })?;
            let span = start..body.len();
            let long_numbers = record.long_numbers && has_digit_run(&body[span.clone()], 19);
            records.push(Record { span, key: record.key, long_numbers, lone_surrogates: record.lone_surrogates });
        }
        body.push(b']');
        let array = 0..body.len();
        Ok(Page { meta: page.meta.clone(), body: Bytes::from(body), array, records, intact: true })
    }

    /// One record narrowed into `out` (a record that is not an object is kept whole).
    fn record(&self, json: &[u8], out: &mut Vec<u8>) -> Scan<()> {
        let mut scanner = Scanner::new(json);
        if scanner.peek()? != b'{' {
            out.extend_from_slice(json);
            return Ok(());
        }
        object(&mut scanner, json, &self.root, out).map(drop)
    }
}

impl Node {
    fn insert<'a>(&mut self, mut segments: impl Iterator<Item = &'a str>) {
        let Some(name) = segments.next() else { return };
        let rest: Vec<&str> = segments.collect();
        let at = match self.children.iter().position(|c| c.name == name) {
            Some(at) => at,
            None => {
                let mut key = serde_json::to_vec(name).expect("a string serializes");
                key.push(b':');
                self.children.push(Child { name: name.to_owned(), key, only: Some(Node::default()) });
                self.children.len() - 1
            }
        };
        let child = &mut self.children[at];
        if rest.is_empty() {
            child.only = None; // the whole value, whatever else was asked inside it
        } else if let Some(only) = &mut child.only {
            only.insert(rest.into_iter());
        }
    }
}

/// Copies the asked-for members of the object whose `{` is next into `out`; returns how many.
/// A member asked for again replaces the first one where it stood (or removes it, if the
/// last value gives nothing).
fn object(scanner: &mut Scanner, json: &[u8], node: &Node, out: &mut Vec<u8>) -> Scan<usize> {
    out.push(b'{');
    // Where each child's member was written (key to value, no comma), in `out`.
    let mut written: Vec<Option<(usize, usize)>> = vec![None; node.children.len()];
    scanner.object(|scanner, key| {
        let Some(at) = node.children.iter().position(|c| key.means(&c.name)) else { return scanner.skip_value() };
        let child = &node.children[at];
        let before = out.len();
        if out[before - 1] != b'{' {
            out.push(b',');
        }
        let start = out.len();
        out.extend_from_slice(&child.key);
        let kept = match &child.only {
            None => {
                scanner.peek()?;
                let value = scanner.at;
                scanner.skip_value()?;
                out.extend_from_slice(&json[value..scanner.at]);
                true
            }
            Some(only) if scanner.peek()? == b'{' => object(scanner, json, only, out)? > 0,
            Some(_) => {
                scanner.skip_value()?;
                false
            }
        };
        let member = if kept { out[start..].to_vec() } else { Vec::new() };
        match written[at] {
            None if kept => written[at] = Some((start, out.len())),
            None => out.truncate(before),
            Some(first) => {
                out.truncate(before);
                replace_member(out, &mut written, at, first, member);
            }
        }
        Ok(())
    })?;
    out.push(b'}');
    Ok(written.iter().flatten().count())
}

/// The member of child `at`, written at `first`, replaced by `member` (its last value), or
/// removed with a comma beside it if that gave nothing; the members after it move.
fn replace_member(
    out: &mut Vec<u8>,
    written: &mut [Option<(usize, usize)>],
    at: usize,
    first: (usize, usize),
    member: Vec<u8>,
) {
    let (start, end) = first;
    let (removed, inserted) = if !member.is_empty() {
        (start..end, member.len())
    } else if out[start - 1] == b',' {
        (start - 1..end, 0)
    } else {
        (start..end + usize::from(out.get(end) == Some(&b',')), 0)
    };
    let (from, gone) = (removed.start, removed.len());
    written[at] = (inserted > 0).then_some((start, start + inserted));
    out.splice(removed, member);
    for range in written.iter_mut().flatten().filter(|(s, _)| *s > from) {
        *range = (range.0 + inserted - gone, range.1 + inserted - gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::parse_page;

    fn project(paths: &[&str], record: &str) -> String {
        let mut out = Vec::new();
        Projection::new(paths).unwrap().record(record.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keeps_nesting_and_only_what_was_asked() {
        let record = r#"{"file_id":"a","status":"completed","result":{"text":"héllo \"x\"","segments":[1,2],"language":"hi"},"errors":[]}"#;
        assert_eq!(
            project(&["file_id", "status", "result.text"], record),
            r#"{"file_id":"a","status":"completed","result":{"text":"héllo \"x\""}}"#
        );
        assert_eq!(
            project(&["result"], record),
            r#"{"result":{"text":"héllo \"x\"","segments":[1,2],"language":"hi"}}"#
        );
        assert_eq!(project(&["result.text", "result"], record), project(&["result"], record), "the whole value wins");
    }

    #[test]
    fn missing_paths_are_absent() {
        assert_eq!(project(&["file_id", "result.text"], r#"{"file_id":"a","result":null}"#), r#"{"file_id":"a"}"#);
        assert_eq!(project(&["x.y"], r#"{"x":[{"y":1}]}"#), "{}");
        assert_eq!(project(&["result.text"], r#"{"result":{}}"#), "{}");
        assert_eq!(
            project(&["file_id", "result.nope"], r#"{"file_id":"a","result":{"text":"x"}}"#),
            r#"{"file_id":"a"}"#
        );
        assert_eq!(project(&["r.a.b", "s"], r#"{"r":{"a":{"c":1},"x":2},"s":3}"#), r#"{"s":3}"#, "nothing left inside");
        assert_eq!(project(&["a"], r#" { "b" : 1 , "a" : [ 1 ] } "#), r#"{"a":[ 1 ]}"#);
        assert_eq!(project(&["a"], "7"), "7", "a record that is not an object is kept");
    }

    #[test]
    fn a_key_given_twice_counts_with_its_last_value() {
        assert_eq!(project(&["r.t"], r#"{"r":{"t":"x"},"r":5}"#), "{}", "as json.loads: r is 5");
        assert_eq!(project(&["r"], r#"{"r":{"t":"x"},"q":1,"r":5}"#), r#"{"r":5}"#);
        assert_eq!(
            project(&["r", "q"], r#"{"r":1,"q":2,"r":{"n":[3]}}"#),
            r#"{"r":{"n":[3]},"q":2}"#,
            "in its first place"
        );
        assert_eq!(project(&["r.t", "q"], r#"{"r":{"t":1},"q":2,"r":{"u":3}}"#), r#"{"q":2}"#);
        assert_eq!(project(&["q", "r.t"], r#"{"q":2,"r":{"t":1},"r":[]}"#), r#"{"q":2}"#);
        assert_eq!(project(&["q", "r.t"], r#"{"r":7,"q":2,"r":{"t":1,"t":[2]}}"#), r#"{"q":2,"r":{"t":[2]}}"#);
    }

    #[test]
    fn paths_escape_dots_and_keys_may_be_escaped() {
        let record = r#"{"a.b":1,"a":{"b":2},"m":{"x.y":3},"k\u0000":4,"c\\d":5}"#;
        assert_eq!(project(&["a\\.b"], record), r#"{"a.b":1}"#);
        assert_eq!(project(&["a.b"], record), r#"{"a":{"b":2}}"#);
        assert_eq!(project(&["m.x\\.y"], record), r#"{"m":{"x.y":3}}"#);
        assert_eq!(project(&["k\\0", "c\\\\d"], record), r#"{"k\u0000":4,"c\\d":5}"#);
        assert_eq!(project(&["a"], r#"{"\u0061":6}"#), r#"{"a":6}"#);
    }

    #[test]
    fn records_jiter_refuses_are_projected() {
        let deep = format!(r#"{{"file_id":"a","d":{}1{},"t":"cut \ud83d"}}"#, "[".repeat(300), "]".repeat(300));
        assert_eq!(project(&["t", "file_id"], &deep), r#"{"file_id":"a","t":"cut \ud83d"}"#);
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(Projection::new::<&str>(&[]).is_err());
        for bad in ["", "a..b", ".a", "a."] {
            assert!(Projection::new(&[bad]).unwrap_err().to_string().contains("dotted path"), "{bad}");
        }
        assert!(Projection::new(&["a\\b", "a\\x"]).unwrap_err().to_string().contains("backslash"));
    }

    #[test]
    fn a_page_keeps_ids_and_flags() {
        let body =
            r#"{"total_pages":1,"files":[{"file_id":"a","n":123456789012345678901,"x":1},{"file_id":"b","n":1}]}"#;
        let page = parse_page(Bytes::from(body), false, 1).unwrap();
        let narrowed = Projection::new(&["file_id"]).unwrap().apply(&page).unwrap();
        assert_eq!(&*narrowed.records_json(), br#"[{"file_id":"a"},{"file_id":"b"}]"#);
        assert_eq!(narrowed.records[0].key, page.records[0].key);
        assert!(!narrowed.records[0].long_numbers, "the long number was left out");
        let with_n = Projection::new(&["n"]).unwrap().apply(&page).unwrap();
        assert!(with_n.records[0].long_numbers);
    }
}
