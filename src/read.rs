//! One read of a batch as its caller describes it (`st.BatchQuery` in Python), checked once,
//! here, before any request: what each page asks the service for, which pages, and how the
//! pages are handed over.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pipeline::{OnChange, PipelineOptions};
use crate::projection::Projection;
use crate::query::{Query, Status, MAX_LIMIT};

/// Where the pages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /results/batch/{id}`, a request per page.
    Pages,
    /// One `GET /download/batch/{id}` stream, gathered into pages (see `crate::pipeline`'s download).
    Download,
}

/// A read as given, its numbers as wide as a caller may pass them (so that a bad one is named,
/// not overflowed). `validate` turns it into the query and options the pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSpec {
    pub batch_id: String,
    pub raw: bool,
    pub status: Option<String>,
    pub limit: i64,
    pub chunks: Option<bool>,
    pub speech_information: Option<bool>,
    /// Dotted paths each record is narrowed to (`fields=`).
    pub fields: Option<Vec<String>>,
    pub max_retries: Option<u32>,
    pub transport: String,
    pub start_page: i64,
    pub end_page: Option<i64>,
    pub max_items: Option<i64>,
    pub on_change: String,
    /// Read from the service even when the cache holds the batch (and keep the read again).
    pub refresh: bool,
    /// Read the whole batch and keep the records of this status (never with `status`).
    pub filter_status: Option<String>,
}

impl Default for ReadSpec {
    fn default() -> ReadSpec {
        ReadSpec {
            batch_id: String::new(),
            raw: false,
            status: None,
            limit: 200,
            chunks: None,
            speech_information: None,
            fields: None,
            max_retries: None,
            transport: "pages".into(),
            start_page: 1,
            end_page: None,
            max_items: None,
            on_change: "warn".into(),
            refresh: false,
            filter_status: None,
        }
    }
}

/// A read checked: the first page's query and the pipeline's options (its concurrency, retry
/// policy and cache left to the client that runs it).
#[derive(Debug)]
pub struct Read {
    pub query: Query,
    pub options: PipelineOptions,
    pub transport: Transport,
    pub refresh: bool,
    pub max_retries: Option<u32>,
}

/// A page number (`start_page`, `page`, `end_page`): 1 or more.
pub fn page_number(name: &str, page: i64) -> Result<u64> {
    u64::try_from(page)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| Error::invalid(format!("{name} must be >= 1; got {page}")))
}

/// The query of one page, every argument checked (what `get_page` and every read send).
pub fn page_query(
    batch_id: &str,
    page: u64,
    limit: i64,
    status: Option<&str>,
    raw: bool,
    chunks: Option<bool>,
    speech_information: Option<bool>,
) -> Result<Query> {
    let limit = u32::try_from(limit)
        .map_err(|_| Error::invalid(format!("limit must be between 1 and {MAX_LIMIT}; got {limit}")))?;
    let query = Query {
        batch_id: batch_id.to_owned(),
        page,
        limit,
        status: status.map(Status::parse).transpose()?,
        raw,
        chunks,
        speech_information,
    };
    query.validate()?;
    Ok(query)
}

impl ReadSpec {
    pub fn validate(&self) -> Result<Read> {
        let transport = match self.transport.as_str() {
            "pages" => Transport::Pages,
            "download" => Transport::Download,
            other => return Err(Error::invalid(format!("transport must be 'pages' or 'download'; got {other:?}"))),
        };
        if self.status.is_some() && self.filter_status.is_some() {
            return Err(Error::invalid("pass status= (the service filters) or filter_status=, not both"));
        }
        let start_page = page_number("start_page", self.start_page)?;
        let end_page = self.end_page.map(|e| page_number("end_page", e)).transpose()?;
        if let Some(end) = end_page.filter(|&end| end < start_page) {
            return Err(Error::invalid(format!("end_page must be >= start_page ({start_page}); got {end}")));
        }
        let query = page_query(
            &self.batch_id,
            start_page,
            self.limit,
            self.status.as_deref(),
            self.raw,
            self.chunks,
            self.speech_information,
        )?;
        let max_items = self
            .max_items
            .map(|m| u64::try_from(m).map_err(|_| Error::invalid(format!("max_items must be >= 0; got {m}"))))
            .transpose()?;
        let options = PipelineOptions {
            start_page,
            end_page,
            max_items,
            on_change: OnChange::parse(&self.on_change)?,
            projection: self.fields.as_deref().map(Projection::new).transpose()?.map(Arc::new),
            filter: self.filter_status.as_deref().map(Status::parse).transpose()?,
            check_running: self.status.is_some() && end_page.is_none(),
            ..PipelineOptions::new(1, Default::default())
        };
        Ok(Read { query, options, transport, refresh: self.refresh, max_retries: self.max_retries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(batch_id: &str) -> ReadSpec {
        ReadSpec { batch_id: batch_id.into(), ..ReadSpec::default() }
    }

    #[test]
    fn a_read_is_checked_once_with_the_messages_users_see() {
        let err = |s: ReadSpec| s.validate().unwrap_err().to_string();
        assert_eq!(err(ReadSpec { limit: 0, ..spec("b") }), "limit must be between 1 and 200; got 0");
        assert_eq!(err(ReadSpec { limit: -5, ..spec("b") }), "limit must be between 1 and 200; got -5");
        assert_eq!(err(ReadSpec { start_page: 0, ..spec("b") }), "start_page must be >= 1; got 0");
        assert_eq!(
            err(ReadSpec { start_page: 3, end_page: Some(2), ..spec("b") }),
            "end_page must be >= start_page (3); got 2"
        );
        assert_eq!(err(ReadSpec { max_items: Some(-1), ..spec("b") }), "max_items must be >= 0; got -1");
        assert!(err(ReadSpec { status: Some("done".into()), ..spec("b") }).starts_with("status must be one of"));
        assert!(err(ReadSpec { on_change: "ignore".into(), ..spec("b") }).starts_with("on_change must be"));
        assert!(err(ReadSpec { transport: "ftp".into(), ..spec("b") }).starts_with("transport must be"));
        assert!(err(spec("")).contains("batch_id"));
        assert!(err(spec("a\tb")).contains("batch_id"));
        let both = ReadSpec { status: Some("failed".into()), filter_status: Some("failed".into()), ..spec("b") };
        assert!(err(both).contains("not both"));
    }

    #[test]
    fn a_valid_read_becomes_the_pipelines_query_and_options() {
        let read = ReadSpec {
            status: Some("completed".into()),
            start_page: 3,
            max_items: Some(10),
            fields: Some(vec!["file_id".into()]),
            transport: "download".into(),
            ..spec("b")
        }
        .validate()
        .unwrap();
        assert_eq!((read.query.page, read.query.limit, read.query.status), (3, 200, Some(Status::Completed)));
        assert_eq!((read.options.start_page, read.options.max_items), (3, Some(10)));
        assert!(read.options.check_running && read.options.projection.is_some());
        assert_eq!(read.transport, Transport::Download);
        let bounded = ReadSpec { status: Some("failed".into()), end_page: Some(4), ..spec("b") }.validate().unwrap();
        assert!(!bounded.options.check_running, "a page range of the filtered view is read as asked");
    }
}
