//! Whether a page's records are all final: a file `completed` or `failed` no longer changes;
//! one `processing` or `retrying` (or of a status the service does not document) may.

use crate::page::Page;

/// Every record's top-level `"status"` is `completed` or `failed`.
pub fn all_final(page: &Page) -> bool {
    (0..page.records.len()).all(|i| page.record_status_is(i, |s| matches!(s, "completed" | "failed")).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(files: &str) -> Page {
        let body = format!(r#"{{"page":1,"total_pages":1,"files":[{files}]}}"#);
        crate::page::parse_page(bytes::Bytes::from(body), false, 1).unwrap()
    }

    #[test]
    fn only_completed_and_failed_files_are_final() {
        assert!(all_final(&page(r#"{"status":"completed","result":{"status":"processing"}},{"status":"failed"}"#)));
        assert!(all_final(&page("")), "an empty page holds nothing that may change");
        for other in [r#""processing""#, r#""retrying""#, r#""queued""#, r#""Completed""#, "null", "1"] {
            assert!(!all_final(&page(&format!(r#"{{"status":"completed"}},{{"status":{other}}}"#))), "{other}");
        }
        assert!(!all_final(&page(r#"{"file_id":"no status"}"#)));
    }
}
