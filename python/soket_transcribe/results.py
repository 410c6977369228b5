"""`BatchResults`: every record of a batch, in page order, each once; sync or asyncio."""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Generator, Iterator, List, Optional, Type, Union

from . import _core, subtitles
from .models import FileResult, JobResult
from .progress import ProgressArg, close_progress, progress_callback
from .tables import arrow_to_pandas, require

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import polars as pl
    import pyarrow as pa
    import ray.data

    from .partitions import BatchPartition, BatchRead

__all__ = ["BatchResults"]


class BatchResults:
    """The records of one batch query, fetched `concurrency` pages at a time and yielded in order.

    Iterate it once, with `for` or `async for` (not both, and from one consumer at a time).
    `total` and `total_pages` are known once the first page has arrived; `next_page` is the
    first page not yet fully yielded: after an error, pass it as `start_page=` to resume
    without losing or repeating a record.
    """

    def __init__(
        self, stream: _core.PageStream, *, raw: bool, as_dataclass: bool, read: Optional["BatchRead"] = None
    ) -> None:
        self._stream = stream
        self._read = read  # what partitions are planned from
        self._raw = raw
        self._dataclass: Union[Type[FileResult], Type[JobResult], None] = None
        if as_dataclass:
            self._dataclass = JobResult if raw else FileResult
        self._next_page = stream.next_page
        self._iterator: Optional[Generator[Any, None, None]] = None
        self._warned = 0
        self._table_read = False

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
        """True when the batch was seen to change while it was read (totals moved, records repeated)."""
        return self._stream.changed

    @property
    def complete(self) -> bool:
        """False once the client saw that records may be missing from what it yielded (the batch
        moved by a page or more between two reads, a short page, fewer records than announced);
        `warnings` says where. True otherwise, including after a change it could make up for."""
        return self._stream.complete

    @property
    def warnings(self) -> List[str]:
        """What was noticed while paging: a batch that changed, short pages, repeats skipped."""
        return self._stream.warnings

    @property
    def duplicates_skipped(self) -> int:
        """Records already yielded that a later page repeated, and that were not yielded again."""
        return self._stream.duplicates_skipped

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

    # Both faces share the bookkeeping: `_opened` before a page's records are handed out,
    # `_closed` once they all were (so `next_page` is the page to resume at, whatever happens).

    def _opened(self, page: _core.Page) -> Any:
        self._report()
        self._next_page = page.page
        if self._dataclass is None:
            return page.items
        return _core.as_dataclasses(page.items, self._dataclass, self._dataclass._NAMED)

    def _closed(self) -> None:
        self._next_page = self._stream.next_page

    def _handed_whole(self, page: _core.Page) -> _core.Page:
        self._report()
        self._closed()
        return page

    def _sync_pages(self) -> Iterator[_core.Page]:
        return self._stream

    async def _async_pages(self) -> AsyncIterator[_core.Page]:
        async for fetched in self._stream:
            yield fetched.parse()  # on the loop's thread, not a runtime thread holding the GIL
            # A page already fetched is taken without suspending: let the loop's other tasks
            # run between pages, before the next is taken (so a cancel here loses nothing).
            await asyncio.sleep(0)

    # -- records -------------------------------------------------------------------------

    def _records(self) -> Generator[Any, None, None]:
        for page in self._sync_pages():
            yield from self._opened(page)
            self._closed()

    async def _arecords(self) -> AsyncIterator[Any]:
        async for page in self._async_pages():
            for item in self._opened(page):
                yield item
            self._closed()

    def __iter__(self) -> Iterator[Any]:
        # After an error, iterating again goes on from the page that failed, with what was
        # learnt so far (the records yielded, the totals seen): nothing lost, nothing repeated.
        iterator = self._iterator
        if iterator is None or getattr(iterator, "gi_frame", None) is None:  # ended (by an error)
            iterator = self._iterator = self._records()
        return iterator

    def __next__(self) -> Any:
        return next(iter(self))

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._arecords()

    # -- tables --------------------------------------------------------------------------
    # Built in Rust from the page bytes (never through Python dicts): each page is read into
    # Arrow on the runtime's threads as it arrives, while the next are fetched; see `tables.py`
    # for the column types. Each reads the records not yet read, once: a table cannot be built
    # after `for` has started, nor twice (the Arrow PyCapsule interface keeps its table instead).

    _capsule_table: Any = None  # what `__arrow_c_stream__` hands out, kept for the next ask

    def _claim_for_table(self) -> None:
        if self._iterator is not None or self._table_read:
            raise RuntimeError(
                "this BatchResults was already read (by iteration or into a table); "
                "call iter_files() again for a table"
            )
        self._table_read = True

    def _read_table(self, *, flatten: bool = False, explode: Optional[str] = None, progress: ProgressArg = False) -> Any:
        self._claim_for_table()
        callback = progress_callback(progress)
        try:
            return _core.read_arrow(self._stream, progress=callback, flatten=flatten, explode=explode)
        finally:
            close_progress(callback)
            self._next_page = self._stream.next_page
            self._report()

    async def _read_table_async(
        self, *, flatten: bool = False, explode: Optional[str] = None, progress: ProgressArg = False
    ) -> Any:
        self._claim_for_table()
        callback = progress_callback(progress)
        try:
            return await _core.read_arrow_async(self._stream, progress=callback, flatten=flatten, explode=explode)
        finally:
            close_progress(callback)
            self._next_page = self._stream.next_page
            self._report()

    def to_arrow(self, *, flatten: bool = False, explode: Optional[str] = None, progress: ProgressArg = False) -> "pa.Table":
        """The whole result as a `pyarrow.Table`, its schema inferred over every record.

        `flatten=True` turns struct columns into dotted columns (`result.text`); `explode=`
        `"segments"` (or `"chunk_results"`, or any list column) gives one row per element
        with its `file_id`. `progress=True` shows a bar (or pass a callable `(done, total)`).
        """
        pa = require("pyarrow")
        return pa.table(self._read_table(flatten=flatten, explode=explode, progress=progress))

    async def to_arrow_async(
        self, *, flatten: bool = False, explode: Optional[str] = None, progress: ProgressArg = False
    ) -> "pa.Table":
        """`to_arrow()` for asyncio: the event loop runs other tasks while the pages are read.
        A `progress` callable is called from a thread of the client's runtime, not the loop's."""
        pa = require("pyarrow")
        return pa.table(await self._read_table_async(flatten=flatten, explode=explode, progress=progress))

    def _whole_table(self) -> Any:
        # DuckDB (and others) ask for the stream, or its schema, more than once: read it once.
        if self._capsule_table is None:
            self._capsule_table = self._read_table()
        return self._capsule_table

    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object:
        """The Arrow PyCapsule stream interface: `pa.table(res)`, `pl.DataFrame(res)`,
        `duckdb.sql("... from res")`, `pd.DataFrame.from_arrow(res)` (pandas >= 3) read the whole
        result as one table. The first ask reads it (each page fetched once); later asks, by the
        same consumer or another, get the same table."""
        return self._whole_table().__arrow_c_stream__(requested_schema)

    def __arrow_c_schema__(self) -> object:
        """The schema of the table `__arrow_c_stream__` gives (reading it, if not read yet)."""
        return self._whole_table().__arrow_c_schema__()

    def iter_arrow_batches(
        self, *, schema: Optional[object] = None, flatten: bool = False, explode: Optional[str] = None
    ) -> Iterator["pa.RecordBatch"]:
        """One `pyarrow.RecordBatch` per page as pages arrive, for results larger than memory.

        Each page is decoded under the schema inferred over every page so far, so a batch's
        schema may gain fields or widen a type over the previous one (rarely after the first
        page); pass `schema=` (a `pyarrow.Schema`) to decode every page into that one instead
        (fields it lacks are dropped). Pages without records are skipped.
        """
        pa = require("pyarrow")
        self._claim_for_table()
        batches = _core.arrow_batches(self._stream, schema=schema, flatten=flatten, explode=explode)
        try:
            for batch in batches:
                self._report()
                self._next_page = self._stream.next_page
                yield pa.record_batch(batch)
        finally:
            self._next_page = self._stream.next_page

    def to_pandas(
        self,
        *,
        flatten: bool = True,
        explode: Optional[str] = None,
        progress: ProgressArg = False,
        dtype_backend: Optional[str] = None,
    ) -> "pd.DataFrame":
        """The whole result as a `pandas.DataFrame`: dotted columns (`result.text`), lists kept as lists.

        List (and, with `flatten=False`, struct) columns stay in Arrow memory as `pd.ArrowDtype`
        columns: a cell reads as a Python list (or dict) when touched, and `.list` / `.struct`
        accessors work on the whole column. `explode="segments"` gives one row per speech
        segment (`speech_information=True`), `"chunk_results"` one per chunk (`chunks=True`),
        each with its `file_id`. Other columns: numpy dtypes as pyarrow converts them
        (`dtype_backend=None`), pandas' nullable dtypes (`"numpy_nullable"`: integers with nulls
        stay integers), or all Arrow (`"pyarrow"`, no copy at all).
        """
        pd = require("pandas")
        table = self.to_arrow(flatten=flatten, explode=explode, progress=progress)
        return arrow_to_pandas(table, pd, dtype_backend)

    async def to_pandas_async(
        self,
        *,
        flatten: bool = True,
        explode: Optional[str] = None,
        progress: ProgressArg = False,
        dtype_backend: Optional[str] = None,
    ) -> "pd.DataFrame":
        """`to_pandas()` for asyncio: the pages are read, and the table converted (in a worker
        thread), while the event loop runs other tasks."""
        pd = require("pandas")
        table = await self.to_arrow_async(flatten=flatten, explode=explode, progress=progress)
        return await asyncio.to_thread(arrow_to_pandas, table, pd, dtype_backend)

    def to_polars(self, *, flatten: bool = True, explode: Optional[str] = None, progress: ProgressArg = False) -> "pl.DataFrame":
        """The whole result as a `polars.DataFrame` (see `to_pandas` for `flatten` and `explode`).
        Needs polars only: the table crosses over by the Arrow PyCapsule interface."""
        pl = require("polars")
        return pl.DataFrame(self._read_table(flatten=flatten, explode=explode, progress=progress))

    async def to_polars_async(
        self, *, flatten: bool = True, explode: Optional[str] = None, progress: ProgressArg = False
    ) -> "pl.DataFrame":
        """`to_polars()` for asyncio: the event loop runs other tasks while the pages are read."""
        pl = require("polars")
        return pl.DataFrame(await self._read_table_async(flatten=flatten, explode=explode, progress=progress))

    def segments(self, *, progress: ProgressArg = False) -> "pd.DataFrame":
        """One row per speech segment with its `file_id` (results fetched with `speech_information=True`)."""
        return self.to_pandas(explode="segments", progress=progress)

    def chunks(self, *, progress: ProgressArg = False) -> "pd.DataFrame":
        """One row per chunk result with its `file_id` (results fetched with `chunks=True`)."""
        return self.to_pandas(explode="chunk_results", progress=progress)

    # -- subtitles -----------------------------------------------------------------------

    def write_subtitles(self, directory: Union[str, "os.PathLike[str]"], format: str = "srt") -> List[Path]:
        """One subtitle file (`format` "srt" or "vtt") per completed file into `directory`, named
        after its `filename` made safe for every OS (collisions get ` (2)`...); returns the paths.
        Needs the segments: fetch with `speech_information=True`."""
        return subtitles.write_subtitles(self, directory, format)

    # -- scale out (partitions.py, dask_reader.py, ray_reader.py) ----------------------------

    def partitions(self, pages_per_partition: Optional[int] = None, *, on_change: str = "raise") -> List["BatchPartition"]:
        """The read split into page ranges for workers to fetch (`st.BatchPartition`), planned
        from the first and last pages, fetched here once each. Default size: about 100k records or 64 MiB of
        Arrow per partition. `on_change="warn"`: a partition that finds the batch changed warns
        instead of raising `st.BatchChangedError`."""
        from .partitions import plan_partitions

        if self._read is None:
            raise RuntimeError("only the BatchResults of Client.iter_files/iter_jobs can be partitioned")
        return plan_partitions(self._read, pages_per_partition, on_change=on_change)

    def to_dask(self, pages_per_partition: Optional[int] = None, *, on_change: str = "raise") -> "dd.DataFrame":
        """The read as a `dask.dataframe.DataFrame`, one partition per page range, fetched by
        the workers (see `partitions`); columns as `to_pandas()` gives, plus `extra`."""
        require("dask.dataframe", "dask")
        from .dask_reader import to_dask

        return to_dask(self.partitions(pages_per_partition, on_change=on_change))

    def to_ray(self, pages_per_partition: Optional[int] = None, *, on_change: str = "raise") -> "ray.data.Dataset":
        """The read as a `ray.data.Dataset`: one read task per page range, one block per page."""
        require("ray.data", "ray")
        from .ray_reader import to_ray

        return to_ray(self.partitions(pages_per_partition, on_change=on_change))


class _Pages:
    """`BatchResults.pages()`: iterate pages with `for` or `async for`."""

    def __init__(self, results: BatchResults) -> None:
        self._results = results

    def __iter__(self) -> Iterator[_core.Page]:
        for page in self._results._sync_pages():
            yield self._results._handed_whole(page)

    async def __aiter__(self) -> AsyncIterator[_core.Page]:  # type: ignore[misc]
        async for page in self._results._async_pages():
            yield self._results._handed_whole(page)
