//! The pipeline against the embedded mock, over TCP.

use super::*;
use crate::fetch::{parse_base_url, ClientConfig};
use crate::mock::{FaultKind, MockConfig, MockServer};
use std::time::Duration;
use workers::Fetched;

fn client(server: &MockServer, concurrency: usize) -> Arc<ApiClient> {
    Arc::new(
        ApiClient::new(&ClientConfig {
            base_url: parse_base_url(&server.url()).unwrap(),
            token: "test-token".into(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy { initial: Duration::from_millis(1), ..RetryPolicy::default() },
            concurrency,
            max_body_bytes: 1 << 24,
        })
        .unwrap(),
    )
}

fn options(concurrency: usize) -> PipelineOptions {
    PipelineOptions::new(concurrency, RetryPolicy { initial: Duration::from_millis(1), ..RetryPolicy::default() })
}

fn read_all(pipeline: &mut PagePipeline) -> Result<Vec<(u64, usize)>> {
    crate::runtime::runtime().unwrap().block_on(async {
        let mut pages = Vec::new();
        while let Some(page) = pipeline.next().await? {
            pages.push((page.meta.page, page.records.len()));
        }
        Ok(pages)
    })
}

#[test]
fn pages_in_order_each_once() {
    let server = MockServer::start(MockConfig { files: 1001, ..MockConfig::default() }).unwrap();
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let mut pipeline = PagePipeline::new(client(&server, 6), query, options(6)).unwrap();
    let pages = read_all(&mut pipeline).unwrap();
    assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), (1..=101).collect::<Vec<_>>());
    assert_eq!(pages.iter().map(|p| p.1).sum::<usize>(), 1001);
    assert_eq!(server.requests().len(), 101, "every page fetched exactly once");
    assert_eq!(pipeline.progress().next_page, 102);
    assert!(pipeline.progress().done && pipeline.progress().warnings.is_empty());
}

#[test]
fn requests_start_in_page_order_with_one_at_a_time() {
    let server = MockServer::start(MockConfig { files: 300, ..MockConfig::default() }).unwrap();
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let mut pipeline = PagePipeline::new(client(&server, 1), query, options(1)).unwrap();
    read_all(&mut pipeline).unwrap();
    let asked: Vec<String> = server.requests().iter().map(|r| r.query.clone()).collect();
    let expected: Vec<String> = (1..=30).map(|p| format!("page={p}&limit=10")).collect();
    assert_eq!(asked, expected);
}

#[test]
fn an_error_names_its_page_and_the_pipeline_can_go_on() {
    let server = MockServer::start(MockConfig { files: 100, ..MockConfig::default() }).unwrap();
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let opts = PipelineOptions { retry: RetryPolicy { max_retries: 0, ..options(1).retry }, ..options(1) };
    let mut pipeline = PagePipeline::new(client(&server, 1), query, opts).unwrap();
    let rt = crate::runtime::runtime().unwrap();
    assert_eq!(rt.block_on(pipeline.next()).unwrap().unwrap().meta.page, 1);
    // Pages are fetched ahead: the fault lands on whichever request reaches the server next.
    server.fail_next(FaultKind::Status(400), 1);
    let mut seen = vec![1];
    let err = loop {
        match rt.block_on(pipeline.next()) {
            Ok(Some(page)) => seen.push(page.meta.page),
            Ok(None) => panic!("no page failed"),
            Err(err) => break err,
        }
    };
    let failed = seen.len() as u64 + 1;
    assert_eq!(err.page(), Some(failed), "{err}");
    assert_eq!(seen, (1..failed).collect::<Vec<_>>());
    assert_eq!(pipeline.progress().next_page, failed);
    let rest = read_all(&mut pipeline).unwrap();
    assert_eq!(rest.first().map(|p| p.0), Some(failed), "going on starts again at the failed page");
    assert_eq!(seen.len() + rest.len(), 10);
}

#[test]
fn fetching_ahead_starts_once_the_first_page_is_read() {
    let server = MockServer::start(MockConfig { files: 1000, ..MockConfig::default() }).unwrap();
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let mut pipeline = PagePipeline::new(client(&server, 2), query, options(2)).unwrap();
    let rt = crate::runtime::runtime().unwrap();
    assert_eq!(rt.block_on(pipeline.next()).unwrap().unwrap().meta.page, 1);
    let window = 1 + WINDOW_PER_REQUEST * 2;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.requests().len() < window && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.requests().len(), window, "the window is fetched while page 1 is read, and no more");
}

#[test]
fn max_items_cuts_a_page_and_resume_starts_at_it() {
    let server = MockServer::start(MockConfig { files: 100, ..MockConfig::default() }).unwrap();
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let opts = PipelineOptions { max_items: Some(25), ..options(4) };
    let mut pipeline = PagePipeline::new(client(&server, 4), query, opts).unwrap();
    let pages = read_all(&mut pipeline).unwrap();
    assert_eq!(pages, vec![(1, 10), (2, 10), (3, 5)]);
    assert_eq!(pipeline.progress().next_page, 3);
}

#[test]
fn paging_guards() {
    let server = MockServer::start(MockConfig { files: 10, ..MockConfig::default() }).unwrap();
    let pipeline =
        |limit| PagePipeline::new(client(&server, 1), Query { limit, ..Query::new("b") }, options(1)).unwrap();
    let page = |n: u64, pages: u64, files: &str| {
        let body = format!(r#"{{"page":{n},"total_pages":{pages},"total_files":9,"files":[{files}]}}"#);
        crate::page::parse_page(bytes::Bytes::from(body), false, n).unwrap()
    };
    let accept = |pipeline: &mut PagePipeline, n: u64, page: Page| {
        let served = page.records.len() as u64;
        pipeline.check(n, Fetched { page, served, kept: None }).and_then(|held| pipeline.deliver(held, None))
    };
    let mut growing = pipeline(1);
    accept(&mut growing, 1, page(1, 3, r#"{"file_id":"a"}"#)).unwrap();
    let wrong = accept(&mut growing, 2, page(3, 3, r#"{"file_id":"b"}"#)).unwrap_err();
    assert!(matches!(wrong, Error::Format { page: Some(2), .. }), "{wrong}");
    assert!(wrong.to_string().contains("asked for page 2"));
    accept(&mut growing, 2, page(2, 3, r#"{"file_id":"b"}"#)).unwrap();
    accept(&mut growing, 3, page(3, 4, r#"{"file_id":"c"}"#)).unwrap();
    assert!(growing.progress().warnings.iter().any(|w| w.contains("changed while it was read")));
    assert!(
        growing.progress().complete && !growing.progress().done,
        "a page count that grows extends the read: {:?}",
        growing.progress()
    );
    accept(&mut growing, 4, page(4, 4, r#"{"file_id":"d"}"#)).unwrap();
    assert!(growing.progress().done);

    let mut short = pipeline(2);
    accept(&mut short, 1, page(1, 3, r#"{"file_id":"a"}"#)).unwrap();
    let said = &short.progress().warnings;
    assert!(said.iter().any(|w| w.contains("page 1 holds 1 record(s), fewer than its limit of 2")), "{said:?}");
    assert!(!short.progress().complete);
}

#[test]
fn duplicates_are_dropped_with_a_warning() {
    // The last page has room, so the shift loses nothing off the end.
    let server = MockServer::start(MockConfig { files: 45, ..MockConfig::default() }).unwrap();
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let mut pipeline = PagePipeline::new(client(&server, 1), query, options(1)).unwrap();
    let rt = crate::runtime::runtime().unwrap();
    rt.block_on(pipeline.next()).unwrap().unwrap();
    server.fail_next(FaultKind::Shift(2), 100);
    let rest = read_all(&mut pipeline).unwrap();
    assert_eq!(rest.iter().map(|p| p.1).sum::<usize>(), 35, "45 unique records in all");
    assert_eq!(pipeline.progress().duplicates_skipped, 2);
    assert!(pipeline.progress().warnings.iter().any(|w| w.contains("repeated 2")));
}

/// The file ids of every record delivered, in order.
fn read_ids(pipeline: &mut PagePipeline) -> Vec<u64> {
    crate::runtime::runtime().unwrap().block_on(async {
        let mut ids = Vec::new();
        while let Some(page) = pipeline.next().await.unwrap() {
            ids.extend(page.records.iter().map(|r| r.key.unwrap()));
        }
        ids
    })
}

#[test]
fn a_shrinking_view_is_read_again_around_each_drop_and_loses_nothing() {
    use crate::mock::BatchSpec;
    let server = MockServer::start(MockConfig { files: 0, ..MockConfig::default() }).unwrap();
    let processing = Some(vec![("processing".to_string(), 1.0)]);
    let twin = server
        .add_batch(BatchSpec { files: 300, seed: 5, statuses: processing.clone(), ..BatchSpec::default() })
        .unwrap();
    let order = read_ids(
        &mut PagePipeline::new(client(&server, 1), Query { limit: 200, ..Query::new(twin) }, options(1)).unwrap(),
    );
    for concurrency in [1, 4] {
        let spec = BatchSpec {
            files: 300,
            seed: 5,
            statuses: processing.clone(),
            complete_per_request: 1,
            ..BatchSpec::default()
        };
        let batch = server.add_batch(spec).unwrap();
        let query = Query { limit: 50, status: Some(crate::query::Status::Processing), ..Query::new(batch.clone()) };
        let mut pipeline = PagePipeline::new(client(&server, concurrency), query, options(concurrency)).unwrap();
        let got = read_ids(&mut pipeline);
        let answered = server.requests().iter().filter(|r| r.path.contains(&batch)).count();
        let unique: std::collections::HashSet<u64> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "each record once");
        assert!(order[answered..].iter().all(|id| unique.contains(id)), "every file that stayed processing");
        assert!(pipeline.progress().complete && pipeline.progress().changed);
        let pages = 6;
        assert!(answered <= pages + 2 * (pages - 1), "at most two extra requests per drop: {answered}");
    }
}

#[test]
fn a_shift_that_slides_a_record_past_every_read_is_said_at_the_end() {
    // Page 2 is served as if one record had been inserted before it: it repeats the last record
    // of page 1, and the record at its own end slides onto page 3's start unseen. The totals
    // never move: only the count of unique records shows it.
    for on_change in [OnChange::Warn, OnChange::Raise] {
        let server = MockServer::start(MockConfig { files: 30, ..MockConfig::default() }).unwrap();
        server.fail_next(FaultKind::Stall(Duration::from_millis(1)), 1);
        server.fail_next(FaultKind::Shift(1), 1);
        let query = Query { limit: 10, ..Query::new(server.batch_id()) };
        let mut pipeline =
            PagePipeline::new(client(&server, 1), query, PipelineOptions { on_change, ..options(1) }).unwrap();
        let got = read_all(&mut pipeline);
        let progress = pipeline.progress();
        assert_eq!((progress.items_delivered, progress.duplicates_skipped), (29, 1));
        assert!(!progress.complete);
        let said =
            "read 29 unique record(s) where the batch announced 30: records may be missing (the view shifted at \
                    page(s) 2, which repeated records of the page before)";
        match on_change {
            OnChange::Warn => {
                assert_eq!(got.unwrap().iter().map(|p| p.1).sum::<usize>(), 29);
                assert!(progress.warnings.iter().any(|w| w == said), "{:?}", progress.warnings);
            }
            OnChange::Raise => {
                let err = got.unwrap_err();
                assert!(matches!(err, Error::BatchChanged { page: Some(3), .. }) && err.to_string() == said, "{err}");
            }
        }
    }
}

#[test]
fn repeats_that_lose_nothing_keep_the_read_complete() {
    // Every page from 2 on shifted alike: repeats only, and the last page has room.
    let server = MockServer::start(MockConfig { files: 45, ..MockConfig::default() }).unwrap();
    server.fail_next(FaultKind::Stall(Duration::from_millis(1)), 1);
    server.fail_next(FaultKind::Shift(2), 100);
    let query = Query { limit: 10, ..Query::new(server.batch_id()) };
    let mut pipeline = PagePipeline::new(client(&server, 1), query, options(1)).unwrap();
    assert_eq!(read_all(&mut pipeline).unwrap().iter().map(|p| p.1).sum::<usize>(), 45);
    assert!(pipeline.progress().complete && pipeline.progress().duplicates_skipped == 2);
}

/// A batch of processing files where each answer completes the first and adds one at the end:
/// its `processing` view keeps its size (300) while it moves by one record per request.
fn churning(server: &MockServer) -> String {
    use crate::mock::BatchSpec;
    let processing = Some(vec![("processing".to_string(), 1.0)]);
    let spec = BatchSpec {
        files: 300,
        seed: 5,
        statuses: processing,
        complete_per_request: 1,
        grow_per_request: 1,
        ..BatchSpec::default()
    };
    server.add_batch(spec).unwrap()
}

#[test]
fn a_status_read_of_a_running_batch_reads_the_whole_batch_and_filters_it() {
    let server = MockServer::start(MockConfig { files: 0, ..MockConfig::default() }).unwrap();
    let twin = read_ids(
        &mut PagePipeline::new(client(&server, 1), Query { limit: 200, ..Query::new(churning(&server)) }, options(1))
            .unwrap(),
    );
    for concurrency in [1, 4, 8] {
        let batch = churning(&server);
        let query = Query { limit: 50, status: Some(crate::query::Status::Processing), ..Query::new(batch.clone()) };
        let opts = PipelineOptions { check_running: true, ..options(concurrency) };
        let mut pipeline = PagePipeline::new(client(&server, concurrency), query, opts).unwrap();
        let got = read_ids(&mut pipeline);
        let asked: Vec<_> = server.requests().into_iter().filter(|r| r.path.contains(&batch)).collect();
        assert!(asked[0].path.contains("/status/batch/"), "the batch's state is asked first");
        assert!(asked[1..].iter().all(|r| r.path.contains("/results/batch/") && !r.query.contains("status=")));
        // Each answer completed the first file still processing: those after them stayed throughout.
        let stayed = &twin[asked.len().min(300)..300];
        let unique: std::collections::HashSet<u64> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "each record once");
        assert!(stayed.iter().all(|id| unique.contains(id)), "every file processing throughout");
        let progress = pipeline.progress();
        assert!(progress.complete && progress.total.is_none(), "{progress:?}");
    }
}

#[test]
fn only_a_status_endpoint_that_cannot_tell_lets_the_filtered_view_be_read() {
    let api =
        |status| Error::Api { status, message: String::new(), body: String::new(), page: None, retry_after: None };
    let missing = crate::page::error_body(200, "batch not found".into(), b"");
    let shape = Error::format("the batch status answer is not the documented shape", b"[]", false);
    for unknown in [api(404), api(405), api(501), missing, shape] {
        assert!(status_unknown(&unknown), "{unknown:?}");
    }
    for raised in [api(401), api(500), api(400), Error::connection("refused", false, true)] {
        assert!(!status_unknown(&raised), "{raised:?}");
    }
}
