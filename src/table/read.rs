//! Reading pages as they arrive into tables: a whole table (`read_table`: which pages are read
//! into Arrow where, how they are joined into batches, when the follower hears of each page),
//! or one batch per page for streaming (`BatchReader`).

use std::collections::VecDeque;
use std::future::Future;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::task::{spawn_blocking, JoinError, JoinHandle};

use crate::error::{Error, Result};
use crate::page::Page;

use super::build::{PageBatcher, PageTable, TableBuilder};
use super::reshape::{BatchExploder, Shape};

/// The pages of a table, in order, and whoever follows its reading.
pub trait PageSource: Send {
    /// What taking a page, or telling of it, can fail with; the table's own errors become one.
    type Error: From<Error> + Send;

    /// The next page; None at the end.
    fn next_page(&mut self) -> impl Future<Output = std::result::Result<Option<Page>, Self::Error>> + Send;

    /// Called after each page is taken, and once at the end; its error ends the read.
    fn page_taken(&mut self) -> std::result::Result<(), Self::Error>;
}

/// Pages read into Arrow at once at most: one per core, so a fetch that runs ahead of the
/// reading waits rather than piling up page bytes.
fn reading_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Rows a batch of a whole table holds, about: pages are joined up to this.
const BATCH_ROWS: usize = 4_096;

/// Every remaining page of `source` as one table: its schema (that of all the records, shaped)
/// and its batches, at least one. Each page is read into Arrow on a blocking thread of the
/// runtime as soon as it arrives, while the next ones are fetched, and its bytes are dropped
/// once read; pages read are joined a group at a time (also on a blocking thread) into batches
/// of about `BATCH_ROWS`, and the per-page schemas unified at the end.
pub async fn read_table<S: PageSource>(
    source: &mut S,
    shape: Shape,
) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), S::Error> {
    let mut pages = PagesUnderWay::default();
    loop {
        let page = source.next_page().await?;
        let done = page.is_none();
        if let Some(page) = page.filter(|p| !p.records.is_empty()) {
            pages.reading.push_back(spawn_blocking(move || PageTable::read(&page)));
        }
        source.page_taken()?;
        pages.take_read(done).await?;
        if done {
            break;
        }
    }
    Ok(pages.finish(shape).await?)
}

/// The pages of a table being read into Arrow, and those read, joined a group at a time.
#[derive(Default)]
struct PagesUnderWay {
    reading: VecDeque<JoinHandle<Result<PageTable>>>,
    group: Vec<PageTable>,
    joining: Vec<JoinHandle<Result<PageTable>>>,
}

impl PagesUnderWay {
    /// Takes the pages read, in order (every page, at the end), waiting for the first while too
    /// many are under way; a group that reaches `BATCH_ROWS` is joined.
    async fn take_read(&mut self, all: bool) -> Result<()> {
        let at_once = reading_at_once();
        while self.reading.front().is_some_and(|r| all || r.is_finished() || self.reading.len() > at_once) {
            let read = self.reading.pop_front().expect("a page under way");
            self.group.push(outcome(read).await?);
            if self.group.iter().map(PageTable::rows).sum::<usize>() >= BATCH_ROWS {
                self.join_group();
            }
        }
        Ok(())
    }

    fn join_group(&mut self) {
        let pages = std::mem::take(&mut self.group);
        self.joining.push(spawn_blocking(move || PageTable::concat(pages)));
    }

    /// The table, once every page is read: unified and shaped on a blocking thread.
    async fn finish(mut self, shape: Shape) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        if !self.group.is_empty() {
            self.join_group();
        }
        let mut builder = TableBuilder::new();
        for joined in self.joining {
            builder.push(outcome(joined).await?);
        }
        outcome(spawn_blocking(move || shaped(builder, &shape))).await
    }
}

fn shaped(builder: TableBuilder, shape: &Shape) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let (schema, batches) = builder.finish()?;
    if shape.is_plain() {
        return Ok((schema, batches));
    }
    let batches = batches.into_iter().map(|b| shape.apply(b)).collect::<Result<Vec<_>>>()?;
    Ok((batches[0].schema(), batches))
}

async fn outcome<T>(task: JoinHandle<Result<T>>) -> Result<T> {
    task.await.map_err(reader_failed)?
}

fn reader_failed(e: JoinError) -> Error {
    Error::internal(format!("reading a page into Arrow failed: {e}"))
}

/// Batches for streaming, one per page, shaped as asked (see `PageBatcher`).
pub struct BatchReader {
    batcher: PageBatcher,
    shape: Shape,
    exploder: Option<BatchExploder>,
}

impl BatchReader {
    /// Pages decoded into `fixed` when given, else under the schema of the pages so far.
    pub fn new(fixed: Option<SchemaRef>, shape: Shape) -> BatchReader {
        let exploder = shape.explode.clone().map(BatchExploder::new);
        BatchReader { batcher: PageBatcher::new(fixed), shape, exploder }
    }

    /// The batch of `page`, or None where it gives no rows: an empty page, or a page before the
    /// exploded list first shows (see `BatchExploder`).
    pub fn page(&mut self, page: &Page) -> Result<Option<RecordBatch>> {
        if page.records.is_empty() {
            return Ok(None);
        }
        let batch = self.batcher.batch(page)?;
        match &mut self.exploder {
            Some(exploder) => exploder.explode(&batch),
            None => self.shape.apply(batch).map(Some),
        }
    }

    /// At the end of the stream: a list that no page had fails, as it fails a whole table.
    pub fn finish(&self) -> Result<()> {
        self.exploder.as_ref().map_or(Ok(()), BatchExploder::finish)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow_array::cast::AsArray;

    use super::super::testing::page;
    use super::*;
    use crate::fetch::{parse_base_url, ApiClient, ClientConfig};
    use crate::mock::{MockConfig, MockServer};
    use crate::pipeline::{PagePipeline, PipelineOptions};
    use crate::query::Query;
    use crate::retry::RetryPolicy;

    /// A batch's pages from the mock, over TCP: the records of each page taken (None for the
    /// end), and their file ids, in the order taken.
    struct MockPages {
        pipeline: PagePipeline,
        told: Vec<Option<u64>>,
        ids: Vec<String>,
        /// `page_taken` fails once this many pages have been told of.
        fail_after: Option<usize>,
    }

    impl MockPages {
        fn new(server: &MockServer, limit: u32) -> MockPages {
            let retry = RetryPolicy { initial: Duration::from_millis(1), ..RetryPolicy::default() };
            let config = ClientConfig {
                base_url: parse_base_url(&server.url()).unwrap(),
                token: "test-token".into(),
                timeout: Duration::from_secs(10),
                retry: retry.clone(),
                concurrency: 4,
                max_body_bytes: 1 << 24,
            };
            let query = Query { limit, ..Query::new(server.batch_id()) };
            let client = Arc::new(ApiClient::new(&config).unwrap());
            let pipeline = PagePipeline::new(client, query, PipelineOptions::new(4, retry)).unwrap();
            MockPages { pipeline, told: Vec::new(), ids: Vec::new(), fail_after: None }
        }
    }

    impl PageSource for MockPages {
        type Error = Error;

        async fn next_page(&mut self) -> Result<Option<Page>> {
            let page = self.pipeline.next().await?;
            self.told.push(page.as_ref().map(|p| p.records.len() as u64));
            if let Some(p) = &page {
                let ids = (0..p.records.len()).map(|i| {
                    let record: serde_json::Value = serde_json::from_slice(p.record_json(i)).unwrap();
                    record["file_id"].as_str().unwrap().to_owned()
                });
                self.ids.extend(ids);
            }
            Ok(page)
        }

        fn page_taken(&mut self) -> Result<()> {
            match self.fail_after {
                Some(pages) if self.told.len() > pages => Err(Error::invalid("the follower stops the read")),
                _ => Ok(()),
            }
        }
    }

    fn read(source: &mut MockPages, shape: Shape) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(read_table(source, shape))
    }

    fn file_ids(batches: &[RecordBatch]) -> Vec<String> {
        let ids = batches.iter().flat_map(|b| {
            let column = b.column_by_name("file_id").expect("a file_id column").as_string::<i32>();
            column.iter().map(|id| id.unwrap().to_owned()).collect::<Vec<_>>()
        });
        ids.collect()
    }

    #[test]
    fn rows_come_in_page_order_joined_into_batches_of_about_batch_rows() {
        let server = MockServer::start(MockConfig { files: 10_000, ..MockConfig::default() }).unwrap();
        let mut pages = MockPages::new(&server, 100);
        let (schema, batches) = read(&mut pages, Shape::default()).unwrap();
        let mut told = vec![Some(100); 100];
        told.push(None);
        assert_eq!(pages.told, told, "each page, then the end, told of once");
        // 41 pages of 100 rows reach 4,096: two such groups, and the rest.
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [4_100, 4_100, 1_800]);
        assert!(batches.iter().all(|b| b.schema() == schema));
        assert_eq!(file_ids(&batches), pages.ids, "every record once, in page order");
    }

    #[test]
    fn a_table_is_shaped_as_asked() {
        let server = MockServer::start(MockConfig { files: 450, ..MockConfig::default() }).unwrap();
        let mut pages = MockPages::new(&server, 100);
        let (schema, flattened) = read(&mut pages, Shape { flatten: true, explode: None }).unwrap();
        assert_eq!(file_ids(&flattened), pages.ids);
        assert!(schema.fields().iter().all(|f| !matches!(f.data_type(), arrow_schema::DataType::Struct(_))));
        assert!(schema.fields().iter().any(|f| f.name().contains('.')), "{schema:?}");
    }

    #[test]
    fn an_error_telling_of_a_page_ends_the_read() {
        let server = MockServer::start(MockConfig { files: 1_000, ..MockConfig::default() }).unwrap();
        let mut pages = MockPages { fail_after: Some(3), ..MockPages::new(&server, 100) };
        let err = read(&mut pages, Shape::default()).unwrap_err();
        assert!(err.to_string().contains("the follower stops the read"), "{err}");
        assert_eq!(pages.told.len(), 4, "no page taken after the failing one");
    }

    #[test]
    fn an_empty_batch_is_a_table_of_no_rows() {
        let server = MockServer::start(MockConfig { files: 0, ..MockConfig::default() }).unwrap();
        let mut pages = MockPages::new(&server, 100);
        let (schema, batches) = read(&mut pages, Shape::default()).unwrap();
        assert_eq!((schema.fields().len(), batches.len(), batches[0].num_rows()), (0, 1, 0));
    }

    #[test]
    fn streamed_batches_skip_empty_pages_and_explode_as_a_whole_table_does() {
        let mut reader = BatchReader::new(None, Shape { flatten: false, explode: Some("items".into()) });
        assert!(reader.page(&page(1, &[])).unwrap().is_none(), "an empty page gives no batch");
        assert!(reader.page(&page(2, &[r#"{"id": 1}"#])).unwrap().is_none(), "no list yet");
        assert!(reader.finish().is_err(), "a list no page had fails at the end");
        let batch = reader.page(&page(3, &[r#"{"id": 2, "items": [1, 2]}"#])).unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(reader.finish().is_ok());
    }
}
