//! `status=` applied by the client: the records of a page of the whole batch whose `"status"`
//! is the one asked for. A filtered view of a running batch moves under offset paging (files
//! leave and join it as they finish), while the whole batch does not: reading the whole batch
//! and filtering here is what keeps every record once.

use crate::error::{Error, Result};
use crate::page::Page;
use crate::query::Status;

/// The page with only the records whose top-level `"status"` is `want` (the rest dropped).
pub(super) fn keep_status(mut page: Page, want: Status) -> Result<Page> {
    let keep = (0..page.records.len())
        .map(|i| {
            page.record_status_is(i, |s| s == want.as_str()).map_err(|e| {
                Error::format(format!("a record is not valid JSON: {e}"), page.record_json(i), true)
                    .on_page(page.meta.page)
            })
        })
        .collect::<Result<Vec<bool>>>()?;
    let mut keep = keep.into_iter();
    // `Vec::retain` visits the records in order, once each.
    page.retain(|_| keep.next().unwrap_or(false));
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(files: &str) -> Page {
        let body = format!(r#"{{"page":2,"total_pages":3,"total_files":9,"files":[{files}]}}"#);
        crate::page::parse_page(bytes::Bytes::from(body), false, 2).unwrap()
    }

    #[test]
    fn only_records_of_the_status_asked_for_are_kept_in_order() {
        let files = r#"{"file_id":"a","status":"completed"},{"file_id":"b","status":"failed"},
            {"status":"completed","file_id":"c","result":{"status":"failed"}},{"file_id":"d"},
            {"file_id":"e","status":null},{"file_id":"f","status":"Completed"},[1],
            {"file_id":"g","nested":{"status":"completed"},"status":"completed"}"#;
        let kept = keep_status(page(files), Status::Completed).unwrap();
        let ids: Vec<String> = (0..kept.records.len())
            .map(|i| serde_json::from_slice::<serde_json::Value>(kept.record_json(i)).unwrap()["file_id"].to_string())
            .collect();
        assert_eq!(ids, [r#""a""#, r#""c""#, r#""g""#]);
        assert_eq!(kept.meta.total, Some(9), "the page's totals are the whole batch's, kept for the checks");
        let none = keep_status(page(r#"{"status":"failed"}"#), Status::Processing).unwrap();
        assert!(none.records.is_empty());
    }
}
