//! `_core.Client`: configuration, one page on demand, and page streams.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::Error;
use crate::fetch::{parse_base_url, ApiClient, ClientConfig, DEFAULT_BASE_URL};
use crate::pipeline::{PagePipeline, PipelineOptions};
use crate::query::{Query, Status};
use crate::retry::RetryPolicy;

use super::errors::IntoPyResult;
use super::page::PyPage;
use super::stream::PageStream;
use super::wait::{awaitable, wait};

const TOKEN_ENV: &str = "SOKET_API_TOKEN";
const BASE_URL_ENV: &str = "SOKET_BASE_URL";

/// The HTTP side of the client, rebuilt in a forked child (its connections belong to the parent).
#[pyclass(frozen, name = "Client", module = "soket_transcribe._core")]
pub struct PyClient {
    config: ClientConfig,
    api: Mutex<Option<(u32, Arc<ApiClient>)>>,
}

impl PyClient {
    fn api(&self) -> PyResult<Arc<ApiClient>> {
        super::refresh_logging();
        let pid = std::process::id();
        let mut slot = self.api.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, api)) = slot.as_ref() {
            if *owner == pid {
                return Ok(Arc::clone(api));
            }
        }
        let api = Arc::new(ApiClient::new(self.config.clone()).py_err()?);
        if let Some(inherited) = slot.replace((pid, Arc::clone(&api))) {
            // Its connection pool lives on the parent's runtime: never run its destructor here.
            std::mem::forget(inherited);
        }
        Ok(api)
    }

    fn retry(&self, max_retries: Option<u32>) -> RetryPolicy {
        let mut retry = self.config.retry.clone();
        if let Some(n) = max_retries {
            retry.max_retries = n;
        }
        retry
    }
}

#[allow(clippy::too_many_arguments)]
fn build_query(
    batch_id: &str,
    page: u64,
    limit: i64,
    status: Option<&str>,
    raw: bool,
    chunks: Option<bool>,
    speech_information: Option<bool>,
) -> PyResult<Query> {
    let limit = u32::try_from(limit).unwrap_or(0);
    let query = Query {
        batch_id: batch_id.to_owned(),
        page,
        limit,
        status: status.map(Status::parse).transpose().py_err()?,
        raw,
        chunks,
        speech_information,
    };
    query.validate().py_err()?;
    Ok(query)
}

fn positive_page(name: &str, page: i64) -> PyResult<u64> {
    u64::try_from(page)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be >= 1; got {page}")))
}

#[pymethods]
impl PyClient {
    #[new]
    #[pyo3(signature = (token=None, base_url=None, *, timeout=60.0, max_retries=3, concurrency=4, max_body_bytes=256 * 1024 * 1024))]
    fn new(
        token: Option<String>,
        base_url: Option<String>,
        timeout: f64,
        max_retries: u32,
        concurrency: usize,
        max_body_bytes: usize,
    ) -> PyResult<PyClient> {
        let token = token.or_else(|| std::env::var(TOKEN_ENV).ok()).filter(|t| !t.is_empty()).ok_or_else(|| {
            PyValueError::new_err(format!("no API token: pass token=... or set the {TOKEN_ENV} environment variable"))
        })?;
        let base_url = base_url
            .or_else(|| std::env::var(BASE_URL_ENV).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(PyValueError::new_err(format!("timeout must be a positive number of seconds; got {timeout}")));
        }
        if !(1..=64).contains(&concurrency) {
            return Err(PyValueError::new_err(format!("concurrency must be between 1 and 64; got {concurrency}")));
        }
        if max_body_bytes == 0 {
            return Err(PyValueError::new_err("max_body_bytes must be positive"));
        }
        let config = ClientConfig {
            base_url: parse_base_url(&base_url).py_err()?,
            token,
            timeout: Duration::from_secs_f64(timeout),
            retry: RetryPolicy { max_retries, ..RetryPolicy::default() },
            concurrency,
            max_body_bytes,
        };
        // Fail now on a token that cannot be sent, not on the first request.
        ApiClient::new(config.clone()).py_err()?;
        Ok(PyClient { config, api: Mutex::new(None) })
    }

    #[getter]
    fn base_url(&self) -> &str {
        self.config.base_url.as_str()
    }

    #[getter]
    fn token(&self) -> &str {
        &self.config.token
    }

    #[getter]
    fn timeout(&self) -> f64 {
        self.config.timeout.as_secs_f64()
    }

    #[getter]
    fn max_retries(&self) -> u32 {
        self.config.retry.max_retries
    }

    #[getter]
    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    #[getter]
    fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// (requests sent, retries made) by this client in this process.
    fn stats(&self) -> PyResult<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let api = self.api()?;
        Ok((api.stats.requests.load(Relaxed), api.stats.retries.load(Relaxed)))
    }

    #[pyo3(signature = (batch_id, page=1, limit=50, *, status=None, raw=false, chunks=None, speech_information=None, max_retries=None))]
    #[allow(clippy::too_many_arguments)]
    fn get_page(
        &self,
        py: Python<'_>,
        batch_id: &str,
        page: i64,
        limit: i64,
        status: Option<&str>,
        raw: bool,
        chunks: Option<bool>,
        speech_information: Option<bool>,
        max_retries: Option<u32>,
    ) -> PyResult<PyPage> {
        let query =
            build_query(batch_id, positive_page("page", page)?, limit, status, raw, chunks, speech_information)?;
        let api = self.api()?;
        let retry = self.retry(max_retries);
        let page = wait(py, async move { api.fetch_page(&query, &retry).await })?.py_err()?;
        PyPage::from_page(py, &page)
    }

    #[pyo3(signature = (batch_id, page=1, limit=50, *, status=None, raw=false, chunks=None, speech_information=None, max_retries=None))]
    #[allow(clippy::too_many_arguments)]
    fn get_page_async<'py>(
        &self,
        py: Python<'py>,
        batch_id: &str,
        page: i64,
        limit: i64,
        status: Option<&str>,
        raw: bool,
        chunks: Option<bool>,
        speech_information: Option<bool>,
        max_retries: Option<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query =
            build_query(batch_id, positive_page("page", page)?, limit, status, raw, chunks, speech_information)?;
        let api = self.api()?;
        let retry = self.retry(max_retries);
        awaitable(py, async move {
            let page = api.fetch_page(&query, &retry).await.py_err()?;
            Python::attach(|py| PyPage::from_page(py, &page))
        })
    }

    /// The pages of a batch in order, `concurrency` fetched at a time.
    #[pyo3(signature = (batch_id, *, raw=false, status=None, limit=200, chunks=None, speech_information=None, start_page=1, max_items=None, max_retries=None))]
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        batch_id: &str,
        raw: bool,
        status: Option<&str>,
        limit: i64,
        chunks: Option<bool>,
        speech_information: Option<bool>,
        start_page: i64,
        max_items: Option<i64>,
        max_retries: Option<u32>,
    ) -> PyResult<PageStream> {
        let start_page = positive_page("start_page", start_page)?;
        let query = build_query(batch_id, start_page, limit, status, raw, chunks, speech_information)?;
        let max_items = max_items
            .map(|m| u64::try_from(m).map_err(|_| PyValueError::new_err(format!("max_items must be >= 0; got {m}"))))
            .transpose()?;
        let options = PipelineOptions {
            start_page,
            max_items,
            concurrency: self.config.concurrency,
            retry: self.retry(max_retries),
        };
        let pipeline = PagePipeline::new(self.api()?, query, options).map_err(|e: Error| super::errors::to_pyerr(e))?;
        Ok(PageStream::new(pipeline))
    }

    fn __repr__(&self) -> String {
        format!(
            "Client(base_url={:?}, token='***', timeout={}, max_retries={}, concurrency={})",
            self.config.base_url.as_str(),
            self.config.timeout.as_secs_f64(),
            self.config.retry.max_retries,
            self.config.concurrency
        )
    }
}
