//! A batch of records the caller gives ([`super::BatchSpec::records`]), served exactly: for the
//! shapes generated records never take (dotted keys, keys that collide once flattened, a field
//! that is true, then null, then true again).

use std::io;

use serde_json::Value;

use super::data::{status_index, COMPLETED, FAILED, PROCESSING, RETRYING};
use super::json::push_str;

/// One record: its JSON text, and what the endpoints select it by.
struct Record {
    json: String,
    /// Its `"status"`, when that is one of the four.
    status: Option<u8>,
    file_id: Option<String>,
}

pub(crate) struct Records {
    records: Vec<Record>,
}

impl Records {
    /// Each text must be a JSON object; `InvalidInput` names the first that is not.
    pub(crate) fn new(texts: Vec<String>) -> io::Result<Records> {
        let records = texts.into_iter().enumerate().map(|(n, json)| record(n, json)).collect::<io::Result<_>>()?;
        Ok(Records { records })
    }

    /// Records `offset..offset + limit` of those with `status` (all with `None`), and how many
    /// there are.
    pub(crate) fn select(&self, status: Option<u8>, offset: u64, limit: u64) -> (u64, Vec<&str>) {
        let matching = self.records.iter().filter(|r| status.is_none() || r.status == status);
        let total = matching.clone().count() as u64;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let page = matching.skip(start).take(usize::try_from(limit).unwrap_or(usize::MAX));
        (total, page.map(|r| r.json.as_str()).collect())
    }

    /// The record whose `"file_id"` is `id`.
    pub(crate) fn find(&self, id: &str) -> Option<&str> {
        self.records.iter().find(|r| r.file_id.as_deref() == Some(id)).map(|r| r.json.as_str())
    }

    /// The status endpoint's body: counts by `"status"`; the batch never changes, so it is done
    /// (`failed` when every record failed).
    pub(crate) fn status(&self, batch_id: &str) -> Vec<u8> {
        let count = |s: u8| self.records.iter().filter(|r| r.status == Some(s)).count();
        let (total, failed) = (self.records.len(), count(FAILED));
        let state = if total > 0 && failed == total { "failed" } else { "completed" };
        let mut out = b"{\"batch_id\":".to_vec();
        push_str(&mut out, batch_id);
        let rest = format!(
            ",\"total_files\":{total},\"files_completed\":{},\"files_failed\":{failed},\
             \"estimated_audio_seconds\":0.0,\"estimated_completion_seconds\":0,\"status\":\"{state}\",\
             \"files_retrying\":{},\"files_processing\":{}}}",
            count(COMPLETED),
            count(RETRYING),
            count(PROCESSING),
        );
        out.extend_from_slice(rest.as_bytes());
        out
    }
}

fn record(n: usize, json: String) -> io::Result<Record> {
    let value: Value = serde_json::from_str(&json)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("records[{n}] is not JSON: {e}")))?;
    let Value::Object(fields) = &value else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("records[{n}] must be a JSON object")));
    };
    let text = |key| fields.get(key).and_then(Value::as_str);
    Ok(Record { status: text("status").and_then(status_index), file_id: text("file_id").map(str::to_string), json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Records {
        let texts = [
            r#"{"file_id":"a","status":"completed","a.b":1,"a":{"b":2}}"#,
            r#"{"file_id":"b","status":"failed","flag":null}"#,
            r#"{"file_id":"c","status":"completed","flag":true}"#,
        ];
        Records::new(texts.iter().map(|t| t.to_string()).collect()).unwrap()
    }

    #[test]
    fn pages_serve_the_records_as_given() {
        let r = records();
        assert_eq!(r.select(None, 0, 2), (3, vec![r.records[0].json.as_str(), r.records[1].json.as_str()]));
        assert_eq!(r.select(None, 2, 2).1, [r.records[2].json.as_str()]);
        assert_eq!(r.select(Some(COMPLETED), 1, 5), (2, vec![r.records[2].json.as_str()]));
        assert_eq!(r.select(None, u64::MAX, u64::MAX), (3, vec![]));
        assert_eq!(r.find("b"), Some(r.records[1].json.as_str()));
        assert_eq!(r.find("z"), None);
    }

    #[test]
    fn status_counts_the_records() {
        let v: Value = serde_json::from_slice(&records().status("x\"y")).unwrap();
        assert_eq!(v["batch_id"], "x\"y");
        assert_eq!((v["total_files"].as_u64(), v["files_completed"].as_u64()), (Some(3), Some(2)));
        assert_eq!((v["files_failed"].as_u64(), v["status"].as_str()), (Some(1), Some("completed")));
        let failed = Records::new(vec![r#"{"status":"failed"}"#.to_string()]).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&failed.status("f")).unwrap()["status"], "failed");
    }

    #[test]
    fn records_must_be_json_objects() {
        for (bad, message) in [("[1]", "records[1] must be a JSON object"), ("{", "records[1] is not JSON")] {
            let err = Records::new(vec!["{}".to_string(), bad.to_string()]).err().unwrap();
            assert!(err.to_string().starts_with(message), "{err}");
        }
    }
}
