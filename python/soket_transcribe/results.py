"""`BatchResults`: every record of a batch, in page order, each once; sync or asyncio."""

from __future__ import annotations

import warnings
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional

from . import _core
from .models import FileResult, JobResult

__all__ = ["BatchResults"]


class BatchResults:
    """The records of one batch query, fetched `concurrency` pages at a time and yielded in order.

    Iterate it once, with `for` or `async for` (not both, and from one consumer at a time).
    `total` and `total_pages` are known once the first page has arrived; `next_page` is the
    first page not yet fully yielded: after an error, pass it as `start_page=` to resume
    without losing or repeating a record.
    """

    def __init__(self, stream: _core.PageStream, *, raw: bool, as_dataclass: bool) -> None:
        self._stream = stream
        self._raw = raw
        self._convert: Optional[Callable[[Any], Any]] = None
        if as_dataclass:
            self._convert = JobResult.from_dict if raw else FileResult.from_dict
        self._next_page = stream.next_page
        self._iterator: Optional[Iterator[Any]] = None
        self._warned = 0

    # -- what the caller can read at any time -------------------------------------------

    @property
    def total(self) -> Optional[int]:
        """`total_files` (`total_jobs` for raw records) from the first page; None before it."""
        return self._stream.total

    @property
    def total_pages(self) -> Optional[int]:
        """`total_pages` from the first page; None before it."""
        return self._stream.total_pages

    @property
    def next_page(self) -> int:
        """The first page not yet fully yielded: resume with `start_page=next_page`."""
        return self._next_page

    @property
    def changed_while_reading(self) -> bool:
        """True when the batch changed under us (pages or totals moved, duplicates skipped)."""
        return bool(self._stream.warnings)

    @property
    def warnings(self) -> List[str]:
        """What was noticed while paging: a batch that changed, empty pages, duplicates skipped."""
        return self._stream.warnings

    @property
    def duplicates_skipped(self) -> int:
        """Records already yielded that a later page repeated, and that were not yielded again."""
        return self._stream.duplicates_dropped

    def __length_hint__(self) -> int:
        total = self._stream.total
        return 0 if total is None else max(total - self._stream.items_delivered, 0)

    def __repr__(self) -> str:
        kind = "jobs" if self._raw else "files"
        return f"<BatchResults {kind} total={self.total} total_pages={self.total_pages} next_page={self.next_page}>"

    # -- pages ---------------------------------------------------------------------------

    def _report(self) -> None:
        fresh = self._stream.warnings[self._warned :]
        for message in fresh:
            warnings.warn(message, RuntimeWarning, stacklevel=4)
        self._warned += len(fresh)

    def pages(self) -> "_Pages":
        """The pages themselves (`st.Page`), for `for` or `async for`."""
        return _Pages(self)

    def _sync_pages(self) -> Iterator[_core.Page]:
        for page in self._stream:
            self._report()
            yield page

    async def _async_pages(self) -> AsyncIterator[_core.Page]:
        async for page in self._stream:
            self._report()
            yield page

    # -- records -------------------------------------------------------------------------

    def _records(self) -> Iterator[Any]:
        convert = self._convert
        for page in self._sync_pages():
            self._next_page = page.page
            if convert is None:
                yield from page.items
            else:
                yield from map(convert, page.items)
            self._next_page = self._stream.next_page

    async def _arecords(self) -> AsyncIterator[Any]:
        convert = self._convert
        async for page in self._async_pages():
            self._next_page = page.page
            for item in page.items if convert is None else map(convert, page.items):
                yield item
            self._next_page = self._stream.next_page

    def __iter__(self) -> Iterator[Any]:
        if self._iterator is None:
            self._iterator = self._records()
        return self._iterator

    def __next__(self) -> Any:
        return next(iter(self))

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._arecords()


class _Pages:
    """`BatchResults.pages()`: iterate pages with `for` or `async for`."""

    def __init__(self, results: BatchResults) -> None:
        self._results = results

    def __iter__(self) -> Iterator[_core.Page]:
        for page in self._results._sync_pages():
            self._results._next_page = self._results._stream.next_page
            yield page

    async def __aiter__(self) -> AsyncIterator[_core.Page]:  # type: ignore[misc]
        async for page in self._results._async_pages():
            self._results._next_page = self._results._stream.next_page
            yield page
