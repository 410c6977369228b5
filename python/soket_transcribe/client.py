"""`Client`: the entry point. Holds configuration; the work happens in the Rust core."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import _core
from .partitions import BatchQuery, BatchRead
from .results import BatchResults

__all__ = ["Client"]


class Client:
    """A client of the Soket AI batch transcription results API.

    `token` defaults to the `SOKET_API_TOKEN` environment variable and `base_url` to
    `SOKET_BASE_URL`, else `https://api.soket.ai/transcribe`. Plain `http://` is only
    accepted for a loopback host. A client is safe to share between threads, keeps
    working in a child process after `os.fork()`, and pickles its configuration
    (token included) so it can be shipped to Dask or Ray workers.
    """

    def __init__(
        self,
        token: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        max_body_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._core = _core.Client(
            token,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            concurrency=concurrency,
            max_body_bytes=max_body_bytes,
        )

    @property
    def base_url(self) -> str:
        """The service's base URL, e.g. `https://api.soket.ai/transcribe`."""
        return self._core.base_url

    @property
    def timeout(self) -> float:
        """Seconds to wait for each answer (connecting gets at most 10 s of it)."""
        return self._core.timeout

    @property
    def max_retries(self) -> int:
        """Retries of a failed request (connection errors, 408, 429, 5xx) before raising."""
        return self._core.max_retries

    @property
    def concurrency(self) -> int:
        """Pages fetched at once while iterating."""
        return self._core.concurrency

    def __repr__(self) -> str:
        return self._core.__repr__()

    def __reduce__(self) -> Tuple[Any, ...]:
        core = self._core
        kwargs = dict(
            timeout=core.timeout,
            max_retries=core.max_retries,
            concurrency=core.concurrency,
            max_body_bytes=core.max_body_bytes,
        )
        return (_rebuild, (core.token, core.base_url, kwargs))

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
    ) -> _core.Page:
        """One page of results, as the service sends it."""
        return self._core.get_page(
            batch_id,
            page,
            limit,
            status=status,
            raw=raw,
            chunks=chunks,
            speech_information=speech_information,
            max_retries=max_retries,
        )

    async def get_page_async(
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
    ) -> _core.Page:
        """`get_page` for asyncio."""
        return await self._core.get_page_async(
            batch_id,
            page,
            limit,
            status=status,
            raw=raw,
            chunks=chunks,
            speech_information=speech_information,
            max_retries=max_retries,
        )

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
        max_retries: Optional[int] = None,
    ) -> BatchResults:
        """Every file result of a batch (merged per file), in page order, each once.

        Nothing is fetched until iteration starts. Yields dicts, or `FileResult` with
        `as_dataclass=True`.
        """
        return self._results(batch_id, False, status, limit, chunks, speech_information, start_page, max_items, as_dataclass, max_retries)

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
        max_retries: Optional[int] = None,
    ) -> BatchResults:
        """Every raw job record of a batch (`raw=true`), in page order, each once.

        Yields dicts, or `JobResult` with `as_dataclass=True`.
        """
        return self._results(batch_id, True, status, limit, chunks, speech_information, start_page, max_items, as_dataclass, max_retries)

    def _results(
        self,
        batch_id: str,
        raw: bool,
        status: Optional[str],
        limit: int,
        chunks: Optional[bool],
        speech_information: Optional[bool],
        start_page: int,
        max_items: Optional[int],
        as_dataclass: bool,
        max_retries: Optional[int],
    ) -> BatchResults:
        stream = self._core.stream(
            batch_id,
            raw=raw,
            status=status,
            limit=limit,
            chunks=chunks,
            speech_information=speech_information,
            start_page=start_page,
            max_items=max_items,
            max_retries=max_retries,
        )
        query = BatchQuery(batch_id, raw, status, limit, chunks, speech_information, max_retries)
        read = BatchRead(self, query, start_page, max_items)
        return BatchResults(stream, raw=raw, as_dataclass=as_dataclass, read=read)


def _rebuild(token: str, base_url: str, kwargs: Any) -> Client:
    return Client(token, base_url, **kwargs)
