//! The body of a results page written around records that came another way (a `/download`
//! stream), so that an entry holds pages as the results endpoint sends them and every reader of
//! an entry (`parse_page`) serves them unchanged. The totals are known only once the stream has
//! ended, so a body is cut in two: the head (the envelope's start and the page's own fields,
//! then the records' array) is known as each page is gathered, and the tail (the totals) at the
//! end. JSON leaves the order of an object's fields free, so the totals may come last.

/// `{"batch_id":…,"page":…,"limit":…,"count":…,"files":` (`"jobs":` for raw records): what
/// precedes the records' array.
pub fn head(batch_id: &str, page: u64, limit: u64, count: u64, raw: bool) -> Vec<u8> {
    let id = serde_json::to_string(batch_id).expect("a string serializes");
    let items = if raw { "jobs" } else { "files" };
    format!(r#"{{"batch_id":{id},"page":{page},"limit":{limit},"count":{count},"{items}":"#).into_bytes()
}

/// `,"total_pages":…,"total_files":…}` (`"total_jobs"` for raw records): what follows the array,
/// the totals of the view as the results endpoint gives them on every page.
pub fn tail(total: u64, limit: u64, raw: bool) -> Vec<u8> {
    let pages = total.div_ceil(limit.max(1));
    let field = if raw { "total_jobs" } else { "total_files" };
    format!(r#","total_pages":{pages},"{field}":{total}}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::parse_page;

    fn body(head: &[u8], array: &str, tail: &[u8]) -> bytes::Bytes {
        [head, array.as_bytes(), tail].concat().into()
    }

    #[test]
    fn a_written_page_reads_back_as_the_results_endpoint_sends_it() {
        let array = r#"[{"file_id":"a","status":"completed"},{"file_id":"b","status":"failed"}]"#;
        let written = body(&head("b/\"1\"", 3, 2, 2, false), array, &tail(5, 2, false));
        let page = parse_page(written, false, 1).unwrap();
        // The mock's page 3 of 5 files, 2 a page, says the same.
        let sent = format!(
            r#"{{"batch_id":"b/\"1\"","page":3,"limit":2,"total_pages":3,"total_files":5,"count":2,"files":{array}}}"#
        );
        let expected = parse_page(sent.into(), false, 1).unwrap();
        assert_eq!(page.meta, expected.meta);
        assert_eq!(page.meta.batch_id.as_deref(), Some("b/\"1\""));
        assert_eq!((page.meta.page, page.meta.total_pages, page.meta.total), (3, 3, Some(5)));
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.record_json(1), expected.record_json(1));
    }

    #[test]
    fn jobs_and_an_empty_view_have_their_own_fields() {
        let jobs = parse_page(body(&head("b", 1, 50, 1, true), r#"[{"job_id":"j"}]"#, &tail(1, 50, true)), true, 1);
        let jobs = jobs.unwrap();
        assert_eq!((jobs.meta.total, jobs.meta.total_pages, jobs.meta.raw), (Some(1), 1, true));
        let empty = parse_page(body(&head("b", 1, 50, 0, false), "[]", &tail(0, 50, false)), false, 1).unwrap();
        assert_eq!((empty.meta.total, empty.meta.total_pages, empty.meta.count), (Some(0), 0, 0));
        assert!(empty.records.is_empty());
    }
}
