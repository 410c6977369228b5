"""Type stubs of the native module `soket_transcribe._core` (the Rust core's bindings)."""

import os
from types import TracebackType
from typing import Any, Awaitable, Callable, Coroutine, Dict, Generator, List, Literal, Optional, Protocol, Sequence, Tuple, Type, Union, final, overload

from typing_extensions import Self, disjoint_base

from soket_transcribe.models import BatchStatus, FileResult

__version__: str

def _shutdown() -> None:
    """Stops the Rust runtime's threads; registered with `atexit`."""

def _batch_stage(status: str, total_files: Optional[int], files_completed: Optional[int], files_failed: Optional[int]) -> str:
    """`"final"`, `"running"` or `"unknown"`: the core's rule behind `BatchStatus.is_final`."""

def _error_classes() -> List[str]:
    """The name of every class of `soket_transcribe.errors` a core error can become."""

@final
class Page:
    """One page of results, as the service sent it."""

    @property
    def batch_id(self) -> Optional[str]: ...
    @property
    def page(self) -> int: ...
    @property
    def limit(self) -> Optional[int]: ...
    @property
    def total_pages(self) -> int: ...
    @property
    def total(self) -> Optional[int]:
        """`total_files`, or `total_jobs` when `raw`."""
    @property
    def count(self) -> int: ...
    @property
    def items(self) -> List[Any]:
        """The records (`files`, or `jobs` when `raw`), untouched."""
    @property
    def raw(self) -> bool: ...
    def to_dict(self) -> Dict[str, Any]:
        """The page as the dict the service sent."""
    def __len__(self) -> int: ...

@final
class PageStream:
    """The pages of one query, in order, each once. Single consumer."""

    def __iter__(self) -> "PageStream": ...
    def __next__(self) -> Page: ...
    def __aiter__(self) -> "PageStream": ...
    def __anext__(self) -> Awaitable[Any]: ...
    @property
    def total(self) -> Optional[int]: ...
    @property
    def total_pages(self) -> Optional[int]: ...
    @property
    def next_page(self) -> int: ...
    @property
    def items_delivered(self) -> int: ...
    @property
    def duplicates_skipped(self) -> int: ...
    @property
    def warnings(self) -> List[str]: ...
    @property
    def changed(self) -> bool: ...
    @property
    def complete(self) -> bool: ...
    @property
    def done(self) -> bool: ...

@disjoint_base
class Client:
    """A client of the results API (`soket_transcribe.Client` subclasses it)."""

    def __new__(
        cls,
        token: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        max_body_bytes: int = ...,
        max_requests_per_second: Optional[float] = None,
        rate_limit_timeout: float = 300.0,
        cache_dir: Union[str, "os.PathLike[str]", None] = None,
        cache_max_bytes: Optional[int] = None,
    ) -> Self: ...
    def __getnewargs_ex__(self) -> Tuple[Tuple[Optional[str], Optional[str]], Dict[str, Any]]: ...
    def close(self) -> None:
        """Closes this client's connections; calls made afterwards raise."""
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...
    def __aenter__(self) -> Coroutine[Any, Any, Self]: ...
    def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Coroutine[Any, Any, None]: ...
    @property
    def base_url(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def closed(self) -> bool:
        """Whether `close()` was called (a closed client raises on every call)."""
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_requests_per_second(self) -> Optional[float]: ...
    @property
    def rate_limit_timeout(self) -> float: ...
    @property
    def cache_dir(self) -> Optional[str]:
        """The cache directory (`cache_dir=`, else `SOKET_CACHE_DIR`); None without a cache."""
    def cache_info(self) -> Optional[Dict[str, Any]]:
        """`{"dir", "entries", "bytes", "batches", "max_bytes"}` of the cache; None without one."""
    def clear_cache(self, batch_id: Optional[str] = None) -> int:
        """Removes the cache's entries of `batch_id` (every entry when None); returns how many went."""
    @property
    def stats(self) -> Dict[str, int]:
        """What this client did in this process: `{"requests": sent, "retries": made}`."""
    def get_page(
        self,
        batch_id: str,
        page: int = 1,
        limit: int = 50,
        *,
        status: Optional[str] = None,
        raw: bool = False,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        max_retries: Optional[int] = None,
    ) -> Page:
        """One page of results, as the service sent it."""
    def get_page_async(
        self,
        batch_id: str,
        page: int = 1,
        limit: int = 50,
        *,
        status: Optional[str] = None,
        raw: bool = False,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        max_retries: Optional[int] = None,
    ) -> Coroutine[Any, Any, Page]:
        """`get_page` for asyncio."""
    def _stream(self, query: Any) -> PageStream:
        """The pages of one read (an `st.BatchQuery`, checked here, once), in order."""
    def status(self, batch_id: str, *, max_retries: Optional[int] = None) -> BatchStatus:
        """A batch's progress (`GET /status/batch/{batch_id}`)."""
    def status_async(self, batch_id: str, *, max_retries: Optional[int] = None) -> Coroutine[Any, Any, BatchStatus]:
        """`status` for asyncio."""
    def _poll_status(self, batch_id: str, seconds: Optional[float], persist: bool) -> Tuple[Optional[BatchStatus], Optional[str]]:
        """One poll of `wait`: `(status, None)`, or `(None, why)` once `seconds` ran out."""
    def _poll_status_async(
        self, batch_id: str, seconds: Optional[float], persist: bool
    ) -> Coroutine[Any, Any, Tuple[Optional[BatchStatus], Optional[str]]]:
        """`_poll_status` for asyncio."""
    @overload
    def get_file(
        self,
        file_id: str,
        *,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: Literal[False] = False,
        max_retries: Optional[int] = None,
    ) -> Dict[str, Any]:
        """One file's record (`GET /results/file/{file_id}`): a dict, or an `st.FileResult`."""
    @overload
    def get_file(
        self,
        file_id: str,
        *,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: Literal[True],
        max_retries: Optional[int] = None,
    ) -> FileResult: ...
    @overload
    def get_file_async(
        self,
        file_id: str,
        *,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: Literal[False] = False,
        max_retries: Optional[int] = None,
    ) -> Coroutine[Any, Any, Dict[str, Any]]:
        """`get_file` for asyncio."""
    @overload
    def get_file_async(
        self,
        file_id: str,
        *,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: Literal[True],
        max_retries: Optional[int] = None,
    ) -> Coroutine[Any, Any, FileResult]: ...

def _cache_info(cache_dir: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """`{"dir", "entries", "bytes", "batches"}` of the cache in `cache_dir`, with no client."""

def _clear_cache(cache_dir: Union[str, "os.PathLike[str]"], batch_id: Optional[str] = None) -> int:
    """`Client.clear_cache` for the cache in `cache_dir`, with no client."""

def as_dataclasses(items: List[Any], cls: type, names: Tuple[str, ...]) -> List[Any]:
    """Parsed records turned in place into instances of the dataclass `cls` (fields `names` + `extra`)."""

def flat_name(keys: List[str]) -> str:
    """The flattened column name of the path `keys` (a dot in a key written `\\.`, a backslash `\\\\`, a NUL `\\0`)."""

def split_flat_name(name: str) -> List[str]:
    """The keys of a flattened column name or `fields=` path; ValueError on a bad escape."""

@disjoint_base
class MockServer:
    """The embedded mock of the results API (`soket_transcribe.testing.MockServer`)."""

    def __new__(
        cls,
        files: int = 1000,
        *,
        seed: int = 0,
        token: str = "test-token",
        latency_ms: int = 0,
        fault_rate: float = 0.0,
        statuses: Optional[Dict[str, float]] = None,
        batch_id: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        gzip: bool = True,
        not_found_status: int = 404,
        redirect_to: Optional[str] = None,
        processing_seconds: Optional[float] = None,
        log_limit: int = 100_000,
        rate_limit: Optional[float] = None,
        burst: Optional[int] = None,
        retry_after: Optional[float] = 1.0,
    ) -> "MockServer": ...
    @property
    def url(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def token(self) -> str: ...
    @property
    def batch_id(self) -> str: ...
    @property
    def faults_injected(self) -> int: ...
    @property
    def throttled(self) -> int: ...
    def add_batch(
        self,
        files: int = 0,
        *,
        seed: int = 0,
        batch_id: Optional[str] = None,
        grow_per_request: int = 0,
        grow_at: str = "end",
        complete_per_request: int = 0,
        processing_seconds: Optional[float] = None,
        statuses: Optional[Dict[str, float]] = None,
        records: Optional[Sequence[Dict[str, Any]]] = None,
        totals: bool = True,
    ) -> str: ...
    def fail_next(
        self,
        kind: str,
        times: int = 1,
        *,
        status: Optional[int] = None,
        retry_after: Union[str, int, float, None] = None,
        stall_s: Optional[float] = None,
        shift_by: Optional[int] = None,
    ) -> None: ...
    def clear_faults(self) -> int: ...
    @property
    def requests(self) -> List[Dict[str, Any]]: ...
    @property
    def requests_total(self) -> int: ...
    def clear_requests(self) -> None: ...
    def stop(self) -> None: ...
    def __enter__(self) -> "MockServer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
        /,
    ) -> None: ...

# -- tables (src/python/table.rs) ---------------------------------------------------------

class _ArrowStream(Protocol):
    """An Arrow table, read through the Arrow PyCapsule interface (`pa.table(x)`, `pl.DataFrame(x)`)."""

    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...

class _ArrowArray(Protocol):
    """An Arrow record batch, read through the Arrow PyCapsule interface (`pa.record_batch(x)`)."""

    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_array__(self, requested_schema: Optional[object] = None) -> Tuple[object, object]: ...

def read_arrow(
    stream: PageStream,
    *,
    progress: Optional[Callable[[int, Optional[int]], object]] = None,
    flatten: bool = False,
    explode: Optional[str] = None,
) -> _ArrowStream:
    """Every remaining record of `stream` as one table, its schema inferred over all of them.
    `progress(items_delivered, total)` is called after each page."""

def read_arrow_async(
    stream: PageStream,
    *,
    progress: Optional[Callable[[int, Optional[int]], object]] = None,
    flatten: bool = False,
    explode: Optional[str] = None,
) -> Awaitable[_ArrowStream]:
    """`read_arrow` for asyncio: an awaitable of the table."""

@final
class ArrowBatches:
    """One record batch per page of a `PageStream`, as pages arrive."""

    def __iter__(self) -> "ArrowBatches": ...
    def __next__(self) -> _ArrowArray: ...

def arrow_batches(
    stream: PageStream,
    *,
    schema: Optional[object] = None,
    flatten: bool = False,
    explode: Optional[str] = None,
) -> ArrowBatches:
    """The remaining pages of `stream` as record batches, one per page (empty pages skipped)."""
