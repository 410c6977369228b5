//! `_core.Client`: configuration, one page on demand, and page streams.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::cache::Cache;
use crate::fetch::{parse_base_url, seconds, ApiClient, ClientConfig, DEFAULT_BASE_URL};
use crate::pipeline::{CacheRead, PagePipeline};
use crate::read::{page_number, page_query, Read, ReadSpec, Transport};
use crate::retry::RetryPolicy;
use crate::runtime::ForkLocal;
use crate::status::{check_id, fetch_file, fetch_status, FileQuery};

use super::cache::CACHE_DIR_ENV;
use super::errors::IntoPyResult;
use super::page::PyPage;
use super::query::PyBatchQuery;
use super::status::{batch_status, file_record};
use super::stream::PyPageStream;
use super::wait::{awaitable, wait};

const TOKEN_ENV: &str = "SOKET_API_TOKEN";
const BASE_URL_ENV: &str = "SOKET_BASE_URL";

/// A client of the results API: its configuration, and the HTTP side rebuilt per process
/// (a forked child's connections belong to its parent). `soket_transcribe.Client` subclasses it.
#[pyclass(frozen, subclass, name = "Client", module = "soket_transcribe._core")]
pub struct PyClient {
    config: ClientConfig,
    /// The token came from `SOKET_API_TOKEN`: a pickle leaves it out, to be read again there.
    token_from_env: bool,
    api: ForkLocal<ApiClient>,
    closed: AtomicBool,
    /// Finished batches kept on disk (`cache_dir=`, else `SOKET_CACHE_DIR`), if any.
    cache: Option<Arc<Cache>>,
    /// The cache directory came from `SOKET_CACHE_DIR`: a pickle leaves it out, to be read again there.
    cache_dir_from_env: bool,
}

impl PyClient {
    fn api(&self) -> PyResult<Arc<ApiClient>> {
        super::refresh_logging();
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("this Client is closed; create a new one"));
        }
        self.api.get_or_try_init(|| ApiClient::new(&self.config)).py_err()
    }

    fn retry(&self, max_retries: Option<u32>) -> RetryPolicy {
        let mut retry = self.config.retry.clone();
        if let Some(n) = max_retries {
            retry.max_retries = n;
        }
        retry
    }
}

/// An environment variable's value: None when unset, an error naming it when set but empty or
/// blank (an empty `SOKET_BASE_URL` must not quietly mean the production service).
fn env_value(name: &str) -> PyResult<Option<String>> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => {
            Err(PyValueError::new_err(format!("{name} is set but empty; give it a value or unset it")))
        }
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(PyValueError::new_err(format!("{name} is not valid UTF-8"))),
    }
}

/// `max_requests_per_second`: a positive, finite number.
fn requests_per_second(value: f64) -> PyResult<f64> {
    if value.is_finite() && value > 0.0 {
        return Ok(value);
    }
    Err(PyValueError::new_err(format!("max_requests_per_second must be a positive number; got {value}")))
}

#[pymethods]
impl PyClient {
    #[new]
    #[pyo3(signature = (token=None, base_url=None, *, timeout=60.0, max_retries=3, concurrency=4, max_body_bytes=256 * 1024 * 1024, max_requests_per_second=None, rate_limit_timeout=300.0, cache_dir=None, cache_max_bytes=None))]
    fn new(
        py: Python<'_>,
        token: Option<String>,
        base_url: Option<String>,
        timeout: f64,
        max_retries: u32,
        concurrency: usize,
        max_body_bytes: usize,
        max_requests_per_second: Option<f64>,
        rate_limit_timeout: f64,
        cache_dir: Option<PathBuf>,
        cache_max_bytes: Option<i64>,
    ) -> PyResult<PyClient> {
        let token_from_env = token.is_none();
        let token = match token {
            Some(token) => token,
            None => env_value(TOKEN_ENV)?.ok_or_else(|| {
                PyValueError::new_err(format!(
                    "no API token: pass token=... or set the {TOKEN_ENV} environment variable"
                ))
            })?,
        };
        let base_url = match base_url {
            Some(url) => url,
            None => env_value(BASE_URL_ENV)?.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
        };
        let config = ClientConfig {
            base_url: parse_base_url(&base_url).py_err()?,
            token,
            timeout: seconds("timeout", timeout).py_err()?,
            retry: RetryPolicy {
                max_retries,
                rate_limit_timeout: seconds("rate_limit_timeout", rate_limit_timeout).py_err()?,
                max_requests_per_second: max_requests_per_second.map(requests_per_second).transpose()?,
                ..RetryPolicy::default()
            },
            concurrency,
            max_body_bytes,
        };
        config.validate().py_err()?;
        let cache_dir_from_env = cache_dir.is_none();
        let cache_dir = match cache_dir {
            Some(dir) => Some(dir),
            None => env_value(CACHE_DIR_ENV)?.map(PathBuf::from),
        };
        let cache = super::cache::open(py, cache_dir, cache_max_bytes)?;
        let closed = AtomicBool::new(false);
        Ok(PyClient { config, token_from_env, api: ForkLocal::new(), closed, cache, cache_dir_from_env })
    }

    /// For pickle (Dask, Ray, multiprocessing): the configuration; a token read from
    /// `SOKET_API_TOKEN` is left out, to be read from the environment where it is unpickled.
    fn __getnewargs_ex__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let token = (!self.token_from_env).then_some(self.config.token.as_str());
        let args = PyTuple::new(py, [token, Some(self.config.base_url.as_str())])?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("timeout", self.config.timeout.as_secs_f64())?;
        kwargs.set_item("max_retries", self.config.retry.max_retries)?;
        kwargs.set_item("concurrency", self.config.concurrency)?;
        kwargs.set_item("max_body_bytes", self.config.max_body_bytes)?;
        kwargs.set_item("max_requests_per_second", self.config.retry.max_requests_per_second)?;
        kwargs.set_item("rate_limit_timeout", self.config.retry.rate_limit_timeout.as_secs_f64())?;
        if !self.cache_dir_from_env {
            kwargs.set_item("cache_dir", self.cache_dir())?;
        }
        kwargs.set_item("cache_max_bytes", self.cache.as_ref().map(|c| c.max_bytes()))?;
        Ok((args, kwargs))
    }

    /// Closes this client's connections; calls made afterwards raise.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Relaxed);
        if let Some(api) = self.api.take() {
            // Dropping the HTTP client closes its pooled connections (on the runtime's threads).
            py.detach(move || drop(api));
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _exc_type: Bound<'_, PyAny>, _exc: Bound<'_, PyAny>, _tb: Bound<'_, PyAny>) {
        self.close(py);
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.into_any().unbind();
        awaitable(py, async move { Ok(this) })
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Bound<'py, PyAny>,
        _exc: Bound<'py, PyAny>,
        _tb: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py);
        awaitable(py, async move { Ok(()) })
    }

    /// Whether `close()` was called (a closed client raises on every call).
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    #[getter]
    fn base_url(&self) -> &str {
        self.config.base_url.as_str()
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

    #[getter]
    fn max_requests_per_second(&self) -> Option<f64> {
        self.config.retry.max_requests_per_second
    }

    #[getter]
    fn rate_limit_timeout(&self) -> f64 {
        self.config.retry.rate_limit_timeout.as_secs_f64()
    }

    /// The cache directory, None without a cache.
    #[getter]
    fn cache_dir(&self) -> Option<String> {
        self.cache.as_ref().map(|c| c.dir().to_string_lossy().into_owned())
    }

    /// `{"dir", "entries", "bytes", "batches", "max_bytes"}` of this client's cache; None without one.
    fn cache_info<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.cache.as_deref().map(|cache| super::cache::info(py, cache)).transpose()
    }

    /// Removes the cache's entries of `batch_id` (every entry when None); returns how many went.
    #[pyo3(signature = (batch_id=None))]
    fn clear_cache(&self, py: Python<'_>, batch_id: Option<&str>) -> PyResult<u64> {
        self.cache.as_deref().map_or(Ok(0), |cache| super::cache::clear(py, cache, batch_id))
    }

    /// What this client did in this process: `{"requests": sent, "retries": made, "throttled":
    /// answers that asked for a slower pace, "rate": the paced requests/s, None when not pacing,
    /// "cache_hits": pages served from the cache}`.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let api = self.api()?;
        let stats = PyDict::new(py);
        stats.set_item("requests", api.stats.requests.load(Ordering::Relaxed))?;
        stats.set_item("retries", api.stats.retries.load(Ordering::Relaxed))?;
        stats.set_item("throttled", api.rate.throttled.load(Ordering::Relaxed))?;
        stats.set_item("rate", api.rate.rate())?;
        stats.set_item("cache_hits", self.cache.as_ref().map_or(0, |c| c.hits()))?;
        Ok(stats)
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
        let query = page_number("page", page)
            .and_then(|page| page_query(batch_id, page, limit, status, raw, chunks, speech_information))
            .py_err()?;
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
        let query = page_number("page", page)
            .and_then(|page| page_query(batch_id, page, limit, status, raw, chunks, speech_information))
            .py_err()?;
        let api = self.api()?;
        let retry = self.retry(max_retries);
        awaitable(py, async move {
            let page = api.fetch_page(&query, &retry).await.py_err()?;
            Python::attach(|py| PyPage::from_page(py, &page))
        })
    }

    /// The pages of one read (an `st.BatchQuery`, checked here, in the core, once), in order,
    /// `concurrency` fetched at a time: what `iter_files`, `iter_jobs`, partitions and `follow`
    /// read. A `status=` read with no `end_page` first asks whether the batch is still running:
    /// if so, the whole batch is read and filtered by the client (its filtered view moves).
    #[pyo3(name = "_stream")]
    fn open_stream(&self, query: PyBatchQuery) -> PyResult<PyPageStream> {
        let Read { query, mut options, transport, refresh, max_retries } = ReadSpec::from(query).validate().py_err()?;
        options.concurrency = self.config.concurrency;
        options.retry = self.retry(max_retries);
        options.cache = self.cache.as_ref().map(|cache| CacheRead {
            key: cache.key(&self.config.base_url, &query, &self.config.token),
            cache: Arc::clone(cache),
            refresh,
        });
        let pipeline = match transport {
            Transport::Download => PagePipeline::download(self.api()?, query, options),
            Transport::Pages => PagePipeline::new(self.api()?, query, options),
        };
        Ok(PyPageStream::new(pipeline.py_err()?))
    }

    /// A batch's progress (`GET /status/batch/{batch_id}`) as an `st.BatchStatus`.
    #[pyo3(signature = (batch_id, *, max_retries=None))]
    fn status<'py>(&self, py: Python<'py>, batch_id: &str, max_retries: Option<u32>) -> PyResult<Bound<'py, PyAny>> {
        let (api, retry, batch_id) = (self.api()?, self.retry(max_retries), batch_id.to_owned());
        let answer = wait(py, async move { fetch_status(&api, &batch_id, &retry).await })?.py_err()?;
        batch_status(py, &answer)
    }

    /// `status` for asyncio.
    #[pyo3(signature = (batch_id, *, max_retries=None))]
    fn status_async<'py>(
        &self,
        py: Python<'py>,
        batch_id: &str,
        max_retries: Option<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // Refused when called, as `get_page_async` is, not only once awaited (the core's check
        // runs inside the future).
        check_id("batch_id", batch_id).py_err()?;
        let (api, retry, batch_id) = (self.api()?, self.retry(max_retries), batch_id.to_owned());
        awaitable(py, async move {
            let answer = fetch_status(&api, &batch_id, &retry).await.py_err()?;
            Python::attach(|py| batch_status(py, &answer).map(Bound::unbind))
        })
    }

    /// One poll of `wait` (see `crate::status::poll_status`): `(status, None)`, or `(None, why)`
    /// once `seconds` ran out.
    fn _poll_status<'py>(
        &self,
        py: Python<'py>,
        batch_id: &str,
        seconds: Option<f64>,
        persist: bool,
    ) -> PyResult<super::status::WaitPoll<'py>> {
        let (api, retry, batch_id) = (self.api()?, self.retry(None), batch_id.to_owned());
        let within = super::status::within(seconds);
        let poll = async move { crate::status::poll_status(&api, &batch_id, &retry, within, persist).await };
        super::status::polled(py, wait(py, poll)?.py_err()?)
    }

    /// `_poll_status` for asyncio.
    fn _poll_status_async<'py>(
        &self,
        py: Python<'py>,
        batch_id: &str,
        seconds: Option<f64>,
        persist: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (api, retry, batch_id) = (self.api()?, self.retry(None), batch_id.to_owned());
        let within = super::status::within(seconds);
        awaitable(py, async move {
            let answer = crate::status::poll_status(&api, &batch_id, &retry, within, persist).await.py_err()?;
            Python::attach(|py| super::status::polled(py, answer).map(|(status, why)| (status.map(Bound::unbind), why)))
        })
    }

    /// One file's record (`GET /results/file/{file_id}`): a dict, or an `st.FileResult`.
    #[pyo3(signature = (file_id, *, chunks=None, speech_information=None, as_dataclass=false, max_retries=None))]
    fn get_file<'py>(
        &self,
        py: Python<'py>,
        file_id: &str,
        chunks: Option<bool>,
        speech_information: Option<bool>,
        as_dataclass: bool,
        max_retries: Option<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query = FileQuery { file_id: file_id.to_owned(), chunks, speech_information };
        let (api, retry) = (self.api()?, self.retry(max_retries));
        let body = wait(py, async move { fetch_file(&api, &query, &retry).await })?.py_err()?;
        file_record(py, &body, as_dataclass)
    }

    /// `get_file` for asyncio.
    #[pyo3(signature = (file_id, *, chunks=None, speech_information=None, as_dataclass=false, max_retries=None))]
    fn get_file_async<'py>(
        &self,
        py: Python<'py>,
        file_id: &str,
        chunks: Option<bool>,
        speech_information: Option<bool>,
        as_dataclass: bool,
        max_retries: Option<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        check_id("file_id", file_id).py_err()?; // refused when called, as in `status_async`
        let query = FileQuery { file_id: file_id.to_owned(), chunks, speech_information };
        let (api, retry) = (self.api()?, self.retry(max_retries));
        awaitable(py, async move {
            let body = fetch_file(&api, &query, &retry).await.py_err()?;
            Python::attach(|py| file_record(py, &body, as_dataclass).map(Bound::unbind))
        })
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
