//! `fields=`: each record narrowed to the dotted paths asked for, in Rust, on the runtime's
//! worker threads, so only those values ever become Python objects (or Arrow columns).
//!
//! Records keep their nesting (`result.text` gives `{"result": {"text": ...}}`); a path missing
//! from a record is absent from it; a path that goes through a value that is not an object
//! (`null`, a list) stops there and is absent too. Values are copied as the service sent them.

use bytes::Bytes;
use jiter::{Jiter, JiterResult, Peek};

use crate::error::{Error, Result};
use crate::page::{has_digit_run, Page, Record};

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
    /// Dotted paths (`"file_id"`, `"result.text"`): at least one, none with an empty segment.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Projection> {
        if paths.is_empty() {
            return Err(Error::invalid("fields must name at least one field (or be None for whole records)"));
        }
        let mut root = Node::default();
        for path in paths {
            let path = path.as_ref();
            if path.split('.').any(str::is_empty) {
                return Err(Error::invalid(format!(
                    "fields: {path:?} is not a dotted path (empty segment); e.g. \"result.text\""
                )));
            }
            root.insert(path.split('.'));
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
            records.push(Record { span, key: record.key, long_numbers });
        }
        body.push(b']');
        let array = 0..body.len();
        Ok(Page { meta: page.meta.clone(), body: Bytes::from(body), array, records, intact: true })
    }

    /// One record narrowed into `out` (a record that is not an object is kept whole).
    fn record(&self, json: &[u8], out: &mut Vec<u8>) -> JiterResult<()> {
        let mut jiter = Jiter::new(json);
        if jiter.peek()? != Peek::Object {
            out.extend_from_slice(json);
            return Ok(());
        }
        object(&mut jiter, json, &self.root, out)
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

/// Copies the asked-for members of the object at the jiter's position into `out`.
fn object(jiter: &mut Jiter, json: &[u8], node: &Node, out: &mut Vec<u8>) -> JiterResult<()> {
    out.push(b'{');
    let mut written = false;
    let mut key = jiter.known_object()?.map(|k| node.children.iter().position(|c| c.name == k));
    while let Some(wanted) = key {
        match wanted.map(|at| &node.children[at]) {
            Some(child) => {
                let peek = jiter.peek()?;
                match &child.only {
                    None => {
                        let start = jiter.current_index();
                        jiter.known_skip(peek)?;
                        comma(out, &mut written);
                        out.extend_from_slice(&child.key);
                        out.extend_from_slice(json[start..jiter.current_index()].trim_ascii_start());
                    }
                    Some(only) if peek == Peek::Object => {
                        comma(out, &mut written);
                        out.extend_from_slice(&child.key);
                        object(jiter, json, only, out)?;
                    }
                    Some(_) => jiter.known_skip(peek)?,
                }
            }
            None => jiter.next_skip()?,
        }
        key = jiter.next_key()?.map(|k| node.children.iter().position(|c| c.name == k));
    }
    out.push(b'}');
    Ok(())
}

fn comma(out: &mut Vec<u8>, written: &mut bool) {
    if *written {
        out.push(b',');
    }
    *written = true;
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
        assert_eq!(project(&["result.text"], r#"{"result":{}}"#), r#"{"result":{}}"#);
        assert_eq!(project(&["a"], r#" { "b" : 1 , "a" : [ 1 ] } "#), r#"{"a":[ 1 ]}"#);
        assert_eq!(project(&["a"], "7"), "7", "a record that is not an object is kept");
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(Projection::new::<&str>(&[]).is_err());
        for bad in ["", "a..b", ".a", "a."] {
            assert!(Projection::new(&[bad]).unwrap_err().to_string().contains("dotted path"), "{bad}");
        }
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
