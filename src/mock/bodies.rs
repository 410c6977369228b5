//! The JSON bodies the endpoints answer with.

use serde_json::json;

use super::batch::{Batch, Selection};
use super::data::{push_file, push_job, Include, Item, COMPLETED, FAILED, PROCESSING, RETRYING};
use super::json::{push_fixed, push_str, push_uint};
use super::query::ResultsQuery;

pub(crate) const BATCH_NOT_FOUND: &[u8] = br#"{"error":"batch not found"}"#;
pub(crate) const FILE_NOT_FOUND: &[u8] = br#"{"error":"file not found"}"#;

/// One page of results: `{batch_id, page, limit, total_pages, total_files|total_jobs, count, files|jobs}`
/// (without `total_files|total_jobs` when `totals` is false).
pub(crate) fn page(batch_id: &str, q: &ResultsQuery, seed: u64, sel: &Selection, totals: bool) -> Vec<u8> {
    let include = Include { chunks: q.chunks, speech: q.speech_information };
    page_of(batch_id, q, sel.total, totals, sel.items.len(), |out, n| {
        let item = sel.items[n];
        match item.chunk {
            Some(_) => push_job(out, batch_id, seed, item, include),
            None => push_file(out, seed, item, include),
        }
    })
}

/// A page of `count` records (of `total` in the view) that `push_record(out, n)` writes.
pub(crate) fn page_of(
    batch_id: &str,
    q: &ResultsQuery,
    total: u64,
    totals: bool,
    count: usize,
    mut push_record: impl FnMut(&mut Vec<u8>, usize),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + count * 700);
    out.extend_from_slice(b"{\"batch_id\":");
    push_str(&mut out, batch_id);
    for (key, value) in [("page", q.page), ("limit", q.limit), ("total_pages", total.div_ceil(q.limit))] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        push_uint(&mut out, u128::from(value));
    }
    if totals {
        out.extend_from_slice(if q.raw { b",\"total_jobs\":" } else { b",\"total_files\":" });
        push_uint(&mut out, u128::from(total));
    }
    out.extend_from_slice(b",\"count\":");
    push_uint(&mut out, count as u128);
    out.extend_from_slice(if q.raw { b",\"jobs\":[" } else { b",\"files\":[" });
    for n in 0..count {
        if n > 0 {
            out.push(b',');
        }
        push_record(&mut out, n);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One file (`GET /results/file/{file_id}`): the record the batch's `files[]` holds for it.
pub(crate) fn file(seed: u64, item: Item, include: Include) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    push_file(&mut out, seed, item, include);
    out
}

/// The aggregate progress of a batch (`GET /status/batch/{batch_id}`): the documented fields in
/// their documented order, then the dev-mode counters.
pub(crate) fn batch_status(batch_id: &str, batch: &Batch) -> Vec<u8> {
    let counts = batch.counts();
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"batch_id\":");
    push_str(&mut out, batch_id);
    let field = |out: &mut Vec<u8>, key: &str, value: u64| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        push_uint(out, u128::from(value));
    };
    field(&mut out, "total_files", batch.len());
    field(&mut out, "files_completed", counts[usize::from(COMPLETED)]);
    field(&mut out, "files_failed", counts[usize::from(FAILED)]);
    out.extend_from_slice(b",\"estimated_audio_seconds\":");
    push_fixed(&mut out, batch.duration_tenths(), 1);
    field(&mut out, "estimated_completion_seconds", batch.estimated_completion_seconds());
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(batch_state(batch, &counts));
    field(&mut out, "files_retrying", counts[usize::from(RETRYING)]);
    field(&mut out, "files_processing", counts[usize::from(PROCESSING)]);
    out.push(b'}');
    out
}

/// The batch's own status: `processing` while in progress; once done, `failed` when every
/// file failed, else `completed`.
fn batch_state(batch: &Batch, counts: &[u64; 4]) -> &'static [u8] {
    if batch.in_progress() {
        b"\"processing\""
    } else if batch.len() > 0 && counts[usize::from(FAILED)] == batch.len() {
        b"\"failed\""
    } else {
        b"\"completed\""
    }
}

/// `{"detail": message}`, FastAPI's shape for HTTP errors.
pub(crate) fn detail(message: &str) -> Vec<u8> {
    json!({ "detail": message }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::batch::Changes;
    use super::super::data::{status_cdf, DEFAULT_WEIGHTS};
    use super::*;
    use serde_json::Value;

    fn query(page: u64, limit: u64, raw: bool) -> ResultsQuery {
        ResultsQuery { status: None, page, limit, raw, chunks: true, speech_information: true }
    }

    #[test]
    fn pages_are_valid_json_with_true_totals() {
        let batch = Batch::new(0, 105, Changes::default(), status_cdf(DEFAULT_WEIGHTS).unwrap());
        for (page_no, count) in [(1, 50), (3, 5), (4, 0)] {
            let q = query(page_no, 50, false);
            let sel = batch.select_files(None, (page_no - 1) * 50, 50);
            let v: Value = serde_json::from_slice(&page("b\"1", &q, 0, &sel, true)).unwrap();
            assert_eq!(v["batch_id"], "b\"1");
            assert_eq!((v["page"].as_u64(), v["limit"].as_u64()), (Some(page_no), Some(50)));
            assert_eq!(v["total_pages"], 3);
            assert_eq!(v["total_files"], 105);
            assert_eq!(v["count"], count);
            assert_eq!(v["files"].as_array().unwrap().len(), count as usize);
        }
        let sel = batch.select_jobs(None, 0, 200);
        let v: Value = serde_json::from_slice(&page("b", &query(1, 200, true), 0, &sel, true)).unwrap();
        assert_eq!(v["total_jobs"].as_u64(), Some(sel.total));
        assert!(sel.total > 105 && sel.total <= 315);
        assert!(v.get("files").is_none() && v["jobs"].as_array().unwrap().len() as u64 == sel.total.min(200));
        let empty = Selection::default();
        let v: Value = serde_json::from_slice(&page("b", &query(1, 50, false), 0, &empty, true)).unwrap();
        assert_eq!((v["total_pages"].as_u64(), v["count"].as_u64()), (Some(0), Some(0)));
        let sel = batch.select_files(None, 0, 50);
        let v: Value = serde_json::from_slice(&page("b", &query(1, 50, false), 0, &sel, false)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["batch_id", "count", "files", "limit", "page", "total_pages"]);
        assert_eq!(v["total_pages"], 3);
    }

    #[test]
    fn status_body_adds_up() {
        let batch = Batch::new(0, 1000, Changes::default(), status_cdf(DEFAULT_WEIGHTS).unwrap());
        let v: Value = serde_json::from_slice(&batch_status("b", &batch)).unwrap();
        let sum: u64 = ["files_completed", "files_failed", "files_retrying", "files_processing"]
            .iter()
            .map(|k| v[k].as_u64().unwrap())
            .sum();
        assert_eq!(sum, 1000);
        assert_eq!(v["status"], "processing");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 9, "{keys:?}");
        assert!(v["estimated_audio_seconds"].as_f64().unwrap() > 1000.0 * 5.0);
    }

    #[test]
    fn a_batch_whose_files_all_failed_has_failed() {
        let state = |weights, files| {
            let batch = Batch::new(0, files, Changes::default(), status_cdf(weights).unwrap());
            serde_json::from_slice::<Value>(&batch_status("b", &batch)).unwrap()["status"].clone()
        };
        assert_eq!(state([0.0, 1.0, 0.0, 0.0], 10), "failed");
        assert_eq!(state([0.5, 0.5, 0.0, 0.0], 10), "completed");
        assert_eq!(state([0.0, 1.0, 0.0, 0.0], 0), "completed");
        assert_eq!(state([0.0, 1.0, 0.0, 1.0], 10), "processing");
    }
}
