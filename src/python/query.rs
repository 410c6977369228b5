//! `st.BatchQuery` (python/soket_transcribe/query.py) read into the core's `ReadSpec`, field by
//! field: the one way a read crosses from Python to Rust. Nothing is checked here.

use pyo3::prelude::*;

use crate::read::ReadSpec;

#[derive(FromPyObject)]
pub struct PyBatchQuery {
    #[pyo3(attribute)]
    batch_id: String,
    #[pyo3(attribute)]
    raw: bool,
    #[pyo3(attribute)]
    status: Option<String>,
    #[pyo3(attribute)]
    limit: i64,
    #[pyo3(attribute)]
    chunks: Option<bool>,
    #[pyo3(attribute)]
    speech_information: Option<bool>,
    #[pyo3(attribute)]
    fields: Option<Vec<String>>,
    #[pyo3(attribute)]
    max_retries: Option<u32>,
    #[pyo3(attribute)]
    transport: String,
    #[pyo3(attribute)]
    start_page: i64,
    #[pyo3(attribute)]
    end_page: Option<i64>,
    #[pyo3(attribute)]
    max_items: Option<i64>,
    #[pyo3(attribute)]
    on_change: String,
    #[pyo3(attribute)]
    refresh: bool,
    #[pyo3(attribute)]
    filter_status: Option<String>,
}

impl From<PyBatchQuery> for ReadSpec {
    fn from(q: PyBatchQuery) -> ReadSpec {
        ReadSpec {
            batch_id: q.batch_id,
            raw: q.raw,
            status: q.status,
            limit: q.limit,
            chunks: q.chunks,
            speech_information: q.speech_information,
            fields: q.fields,
            max_retries: q.max_retries,
            transport: q.transport,
            start_page: q.start_page,
            end_page: q.end_page,
            max_items: q.max_items,
            on_change: q.on_change,
            refresh: q.refresh,
            filter_status: q.filter_status,
        }
    }
}
