"""`Client`: the entry point. The Rust class holds the configuration and does the work
(its methods and their signatures live once, in Rust, and in `_core.pyi`); this subclass
adds the Python-side readers built on it."""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Sequence, Union, overload

from . import _core, waiting
from .follow import FollowResults
from .models import BatchStatus, FileResult, JobResult
from .progress import ProgressArg
from .query import BatchQuery, BatchRead, paths
from .results import BatchResults

__all__ = ["Client"]


class Client(_core.Client):
    """A client of the Soket AI batch transcription results API.

    `token` defaults to the `SOKET_API_TOKEN` environment variable and `base_url` to
    `SOKET_BASE_URL`, else `https://api.soket.ai/transcribe`. Plain `http://` is only
    accepted for a loopback host. A client is safe to share between threads, keeps
    working in a child process after `os.fork()`, closes its connections on `close()` or
    at the end of a `with` (or `async with`) block, and pickles its configuration so it can
    be shipped to Dask or Ray workers: an explicit token travels in the pickle, a token
    read from `SOKET_API_TOKEN` is read again where the client is unpickled. `cache_dir` (or
    `SOKET_CACHE_DIR`) keeps each finished batch read whole on disk and serves it again with no
    request (see `iter_files`); `cache_max_bytes` caps it (1 GiB by default, least recently used
    entries go first).
    """

    @overload
    def iter_files(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: Literal[False] = False,
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[Dict[str, Any]]: ...

    @overload
    def iter_files(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: Literal[True],
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[FileResult]: ...

    @overload
    def iter_files(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: bool,
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[Union[Dict[str, Any], FileResult]]: ...

    def iter_files(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: bool = False,
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[Any]:
        """Every file result of a batch (merged per file), in page order, each once.

        Nothing is fetched until iteration starts. Yields dicts, or `FileResult` with
        `as_dataclass=True`. `fields=["file_id", "result.text"]` keeps only those (dotted)
        paths of each record, nested as given. `on_change="raise"` raises `BatchChangedError`
        when the batch moved under the reader so that records may be missing; the default,
        "warn", says so in `warnings` and `complete` (a loop makes up for most changes itself:
        `partitions()` raises by default, as a distributed read cannot). With a
        `cache_dir`, a batch read whole once every file is final is served again from disk with
        no request; `refresh=True` reads the service anyway and replaces what was kept.
        `transport="download"` reads the same records, in the same pages, from one
        `/download/batch` NDJSON stream instead of one request per page (a cut stream is read on
        from where it stopped).
        """
        return self._read(
            batch_id, raw=False, as_dataclass=as_dataclass, fields=fields,
            status=status, limit=limit, chunks=chunks, speech_information=speech_information,
            start_page=start_page, max_items=max_items,
            on_change=on_change, max_retries=max_retries, refresh=refresh, transport=transport,
        )

    @overload
    def iter_jobs(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: Literal[False] = False,
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[Dict[str, Any]]: ...

    @overload
    def iter_jobs(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: Literal[True],
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[JobResult]: ...

    @overload
    def iter_jobs(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: bool,
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[Union[Dict[str, Any], JobResult]]: ...

    def iter_jobs(
        self,
        batch_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        start_page: int = 1,
        max_items: Optional[int] = None,
        as_dataclass: bool = False,
        fields: Optional[Sequence[str]] = None,
        on_change: str = "warn",
        max_retries: Optional[int] = None,
        refresh: bool = False,
        transport: str = "pages",
    ) -> BatchResults[Any]:
        """Every raw job record of a batch (`raw=true`), in page order, each once.

        Yields dicts, or `JobResult` with `as_dataclass=True` (see `iter_files` for the rest).
        """
        return self._read(
            batch_id, raw=True, as_dataclass=as_dataclass, fields=fields,
            status=status, limit=limit, chunks=chunks, speech_information=speech_information,
            start_page=start_page, max_items=max_items,
            on_change=on_change, max_retries=max_retries, refresh=refresh, transport=transport,
        )

    def wait(
        self, batch_id: str, *, poll_interval: float = 5.0, timeout: Optional[float] = None, progress: ProgressArg = False
    ) -> BatchStatus:
        """Polls `status(batch_id)` until no file is `processing` or `retrying`; returns the final status.

        Polls every `poll_interval` seconds (at most 60), later when the service estimates it needs
        longer, never more than a minute apart. `timeout` raises `WaitTimeoutError` (`.status`: the
        last one seen). `progress=True` shows files done / total (or pass a callable `(done, total)`).
        """
        return waiting.wait(self, batch_id, poll_interval=poll_interval, timeout=timeout, progress=progress)

    async def wait_async(
        self, batch_id: str, *, poll_interval: float = 5.0, timeout: Optional[float] = None, progress: ProgressArg = False
    ) -> BatchStatus:
        """`wait` for asyncio."""
        return await waiting.wait_async(self, batch_id, poll_interval=poll_interval, timeout=timeout, progress=progress)

    @overload
    def follow(
        self,
        batch_id: str,
        *,
        poll_interval: float = 5.0,
        timeout: Optional[float] = None,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: Literal[False] = False,
        fields: Optional[Sequence[str]] = None,
        progress: ProgressArg = False,
        limit: int = 200,
    ) -> FollowResults[Dict[str, Any]]: ...

    @overload
    def follow(
        self,
        batch_id: str,
        *,
        poll_interval: float = 5.0,
        timeout: Optional[float] = None,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: Literal[True],
        fields: Optional[Sequence[str]] = None,
        progress: ProgressArg = False,
        limit: int = 200,
    ) -> FollowResults[FileResult]: ...

    @overload
    def follow(
        self,
        batch_id: str,
        *,
        poll_interval: float = 5.0,
        timeout: Optional[float] = None,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: bool,
        fields: Optional[Sequence[str]] = None,
        progress: ProgressArg = False,
        limit: int = 200,
    ) -> FollowResults[Union[Dict[str, Any], FileResult]]: ...

    def follow(
        self,
        batch_id: str,
        *,
        poll_interval: float = 5.0,
        timeout: Optional[float] = None,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: bool = False,
        fields: Optional[Sequence[str]] = None,
        progress: ProgressArg = False,
        limit: int = 200,
    ) -> FollowResults[Any]:
        """Every file of a batch, each once, as soon as a poll finds it final (`completed` or
        `failed`), until every file is: for `for` or `async for`.

        The first poll reads every page; later ones, at most every `poll_interval` seconds, read
        only the pages that still hold a file in flight. `timeout` raises `WaitTimeoutError` once
        every file final by then was yielded. Nothing is fetched until iteration starts.
        """
        return FollowResults(
            self,
            batch_id,
            poll_interval=poll_interval,
            timeout=timeout,
            limit=limit,
            chunks=chunks,
            speech_information=speech_information,
            as_dataclass=as_dataclass,
            fields=paths(fields),
            progress=progress,
        )

    def _read(
        self, batch_id: str, raw: bool, as_dataclass: bool, fields: Optional[Sequence[str]], **read: Any
    ) -> BatchResults[Any]:
        """`iter_files` (raw=False) and `iter_jobs` (raw=True): their other keywords are
        `BatchQuery`'s fields, by the same names."""
        query = BatchQuery(batch_id=batch_id, raw=raw, fields=paths(fields), **read)
        stream = query.open(self)  # checks the whole read, in the core, before anything is sent
        return BatchResults(stream, raw=query.raw, as_dataclass=as_dataclass, read=BatchRead(self, query))
