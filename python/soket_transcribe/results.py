"""`BatchResults`: every record of a batch, in page order, each once; sync or asyncio."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import warnings
import weakref
from operator import length_hint
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, List, Optional, Type, TypeVar, Union

from . import _core, subtitles
from .errors import ResponseFormatError
from .models import FileResult, JobResult
from .progress import ProgressArg, close_progress, progress_callback
from .query import BatchRead
from .tables import arrow_to_pandas, check_dtype_backend, require, require_async

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import polars as pl
    import pyarrow as pa
    import ray.data

    from .partitions import BatchPartition

__all__ = ["BatchResults"]

_T = TypeVar("_T")
#: The record type a `BatchResults` yields: `dict`, or `FileResult` / `JobResult` (`as_dataclass=True`).
_R = TypeVar("_R")

_IN_USE = (
    "this BatchResults is already being read by another consumer (an iterator still alive, a thread or a task); "
    "each BatchResults is single-consumer: call iter_files() again for a second reader"
)

# Results being read in this process: a forked child must not go on with them (the parent's
# fetches never answer there), not even with the records of a page already in memory.
_reading: "weakref.WeakSet[BatchResults]" = weakref.WeakSet()


def _forget_readers_in_child() -> None:
    for results in list(_reading):
        results._owner = None  # every next step takes the slow path, which names the process


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_readers_in_child)


class BatchResults(Generic[_R]):
    """The records of one batch query, fetched `concurrency` pages at a time and yielded in order.

    Iterate it with `for` or `async for`, from one consumer at a time (another loop, thread or
    task reading at the same time gets a `RuntimeError`); a loop that stops (`break`, an error,
    a cancel) leaves the rest to the next one, from the record after the last yielded.
    `total` and `total_pages` are known once the first page has arrived; `next_page` is the
    first page not yet fully yielded: after an error, pass it as `start_page=` to resume
    without losing or repeating a record. For type checkers it is generic in its record type:
    `BatchResults[dict[str, Any]]`, or `BatchResults[FileResult]` with `as_dataclass=True`.
    """

    def __init__(
        self,
        stream: _core.PageStream,
        *,
        raw: bool,
        as_dataclass: bool,
        read: Optional[BatchRead] = None,
    ) -> None:
        self._stream = stream
        self._read = read  # what partitions are planned from, and a failed table read restarts from
        self._raw = raw
        self._dataclass: Union[Type[FileResult], Type[JobResult], None] = None
        if as_dataclass:
            self._dataclass = JobResult if raw else FileResult
        self._pid = os.getpid()
        # One cursor for every loop, sync or async: the records of the current page not yet
        # yielded (the list iterator keeps the position) and that page's number.
        self._cursor: Iterator[Any] = iter(())
        self._cursor_page = 0
        # The loop reading now (a weak reference: a loop that ends drops its reader), and the
        # lock that makes taking over from it one step.
        self._owner: Optional["weakref.ref[_Reader]"] = None
        self._lock = threading.Lock()
        self._handed_out = False  # a record or a page was handed out: tables would miss them
        self._table_start: Optional[int] = None  # a table read is under way from this page
        self._table_done = False
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
        """The first page not yet fully yielded: resume with `start_page=next_page`. A table
        read hands over nothing until it returns: until then (or after it failed), its first page."""
        if self._table_start is not None:
            return self._table_start
        if length_hint(self._cursor):
            return self._cursor_page
        return self._stream.next_page

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
        waiting = length_hint(self._cursor)
        return waiting if total is None else max(total - self._stream.items_delivered, 0) + waiting

    def __repr__(self) -> str:
        kind = "jobs" if self._raw else "files"
        return f"<BatchResults {kind} total={self.total} total_pages={self.total_pages} next_page={self.next_page}>"

    def _repr_html_(self) -> str:
        """In a notebook: what was read so far, of how many, and any warning."""
        from .html import progress_block

        kind = "jobs" if self._raw else "files"
        pages = f"page {self.next_page - 1} of {self.total_pages}" if self.total_pages else "no page read yet"
        return progress_block(
            f"batch read ({kind})",
            done=self._stream.items_delivered - length_hint(self._cursor),  # handed to the caller
            total=self.total,
            unit=f"{kind} yielded",
            notes=[pages + ("" if self.complete else "; records may be missing")] + self.warnings,
        )

    def _report(self, stacklevel: int) -> None:
        fresh = self._stream.warnings[self._warned :]
        for message in fresh:
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
        self._warned += len(fresh)

    # -- one consumer at a time ------------------------------------------------------------

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(f"this BatchResults belongs to process {self._pid}; start a new read in this one")

    def _claim(self, reader: "_Reader") -> None:
        """Makes `reader` the one loop reading, unless another one is alive or a table is being read."""
        self._check_process()
        with self._lock:
            owner = self._owner() if self._owner is not None else None
            if (owner is not None and owner is not reader) or self._table_start is not None:
                raise RuntimeError(_IN_USE)
            self._owner = reader.ref
        _reading.add(self)

    def _release(self, reader: "_Reader") -> None:
        """A loop that raised (an error, the end, a cancel, Ctrl-C) is over: the next may take over."""
        if self._owner is reader.ref:
            self._owner = None

    # -- records and pages, through the one cursor -----------------------------------------

    def _open(self, page: _core.Page) -> None:
        """`page` becomes the cursor's: its records are the next ones yielded."""
        self._report(stacklevel=5)
        items = page.items
        if self._dataclass is not None:
            _check_objects(items, page.page, self._dataclass)
            items = _core.as_dataclasses(items, self._dataclass, self._dataclass._NAMED)
        self._cursor = iter(items)
        self._cursor_page = page.page
        self._handed_out = True

    def _whole(self, page: _core.Page) -> _core.Page:
        if length_hint(self._cursor):
            raise RuntimeError(
                f"page {self._cursor_page} is partly read by a loop over records: go on with that loop "
                "(or `for f in results`) before reading pages"
            )
        self._report(stacklevel=5)
        self._handed_out = True
        return page

    def _step(self, reader: "_Reader", take: Callable[[], _T]) -> _T:
        """One step of a sync loop: `take()` as `reader`, which stops owning the cursor if it raises."""
        self._claim(reader)
        try:
            return take()
        except BaseException:
            self._release(reader)
            raise

    def _next_record(self) -> Any:
        for record in self._cursor:
            return record
        while True:
            self._open(next(self._stream))
            for record in self._cursor:
                return record

    def _next_whole_page(self) -> _core.Page:
        return self._whole(next(self._stream))

    async def _anext_record(self, reader: "_Reader") -> Any:
        self._claim(reader)
        try:
            for record in self._cursor:
                return record
            while True:
                # Let the loop's other tasks run between pages (a page already fetched is taken
                # without suspending); a cancel here, or while the page is awaited, loses nothing.
                await asyncio.sleep(0)
                fetched = await self._stream.__anext__()
                self._open(fetched.parse())
                for record in self._cursor:
                    return record
        except BaseException:
            self._release(reader)
            raise

    async def _anext_whole_page(self, reader: "_Reader") -> _core.Page:
        self._claim(reader)
        try:
            await asyncio.sleep(0)
            fetched = await self._stream.__anext__()
            return self._whole(fetched.parse())
        except BaseException:
            self._release(reader)
            raise

    def __iter__(self) -> Iterator[_R]:
        # Every loop shares the cursor: after a `break` or an error, a new loop goes on from the
        # record after the last yielded, with what was learnt so far (the totals, the ids seen).
        return _Records(self)

    def __next__(self) -> _R:
        records: _Records[_R] = _Records(self)
        return next(records)

    def __aiter__(self) -> "_Records[_R]":
        return _Records(self)

    def pages(self) -> "_Pages":
        """The pages themselves (`st.Page`), for `for` or `async for`."""
        return _Pages(self)

    # -- tables --------------------------------------------------------------------------
    # Built in Rust from the page bytes (never through Python dicts): each page is read into
    # Arrow on the runtime's threads as it arrives, while the next are fetched; see `tables.py`
    # for the column types. A table holds every record not yet read, so it cannot be built once
    # a loop has handed records out, nor twice (the Arrow PyCapsule interface keeps its table).
    # A table read hands nothing over until it returns: if it fails (an error, Ctrl-C, a
    # cancel, a bad `explode`), the pages it read are read again by the next call.

    _capsule_table: Any = None  # what `__arrow_c_stream__` hands out, kept for the next ask

    def _check_unread(self) -> None:
        """Refuses a read that needs every record (a table, subtitles) once some were handed out."""
        if self._handed_out or self._table_done:
            raise RuntimeError(
                "this BatchResults was already read (by iteration or into a table); "
                "call iter_files() again for a table"
            )

    def _begin_table(self) -> None:
        self._check_process()
        with self._lock:
            self._check_unread()
            owner = self._owner() if self._owner is not None else None
            if owner is not None or self._table_start is not None:
                raise RuntimeError(_IN_USE)
            self._table_start = self._stream.next_page

    def _end_table(self, read: bool) -> None:
        if read:
            self._table_done = True
            self._report(stacklevel=4)
        else:
            self._restart(self._table_start or 1)
        self._table_start = None

    def _restart(self, page: int) -> None:
        """The pipeline went past pages no one got: a new one for the same read, from `page`."""
        read = self._read
        if read is None:  # a BatchResults made by hand around a stream: nothing to start again from
            self._table_done = True
            return
        self._stream = dataclasses.replace(read.query, start_page=page).open(read.client)
        self._warned = 0

    def _read_table(self, *, flatten: bool = False, explode: Optional[str] = None, progress: ProgressArg = False) -> Any:
        _check_table_args(explode, progress)
        self._begin_table()
        callback = progress_callback(progress, "jobs" if self._raw else "files")
        read = False
        try:
            table = _core.read_arrow(self._stream, progress=callback, flatten=flatten, explode=explode)
            read = True
            return table
        finally:
            close_progress(callback)
            self._end_table(read)

    async def _read_table_async(
        self, *, flatten: bool = False, explode: Optional[str] = None, progress: ProgressArg = False
    ) -> Any:
        _check_table_args(explode, progress)
        self._begin_table()
        callback = progress_callback(progress, "jobs" if self._raw else "files")
        read = False
        try:
            table = await _core.read_arrow_async(self._stream, progress=callback, flatten=flatten, explode=explode)
            read = True
            return table
        finally:
            close_progress(callback)
            self._end_table(read)

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
        """`to_arrow()` for asyncio: the event loop runs other tasks while the pages are read
        (and while pyarrow is imported, the first time). A `progress` callable is called from a
        thread of the client's runtime, not the loop's."""
        pa = await require_async("pyarrow")
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
        _check_table_args(explode, False)
        batches = _core.arrow_batches(self._stream, schema=schema, flatten=flatten, explode=explode)
        return self._batches(pa, batches)

    def _batches(self, pa: Any, batches: Iterator[Any]) -> Iterator["pa.RecordBatch"]:
        # Batches are handed over as they come, like records: the loop owns the read meanwhile.
        reader = _Reader(self)
        with self._lock:
            self._check_unread()
        self._claim(reader)
        self._handed_out = True
        try:
            for batch in batches:
                self._report(stacklevel=3)
                yield pa.record_batch(batch)
        finally:
            self._release(reader)

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
        check_dtype_backend(dtype_backend)
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
        check_dtype_backend(dtype_backend)
        pd = await require_async("pandas")
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
        pl = await require_async("polars")
        return pl.DataFrame(await self._read_table_async(flatten=flatten, explode=explode, progress=progress))

    def segments(self, *, progress: ProgressArg = False) -> "pd.DataFrame":
        """One row per speech segment with its `file_id` (results fetched with `speech_information=True`)."""
        return self.to_pandas(explode="segments", progress=progress)

    def chunks(self, *, progress: ProgressArg = False) -> "pd.DataFrame":
        """One row per chunk result with its `file_id` (results fetched with `chunks=True`)."""
        return self.to_pandas(explode="chunk_results", progress=progress)

    # -- subtitles -----------------------------------------------------------------------

    def write_subtitles(
        self: "BatchResults[Any]", directory: Union[str, "os.PathLike[str]"], format: str = "srt"
    ) -> List[Path]:
        """One subtitle file (`format` "srt" or "vtt") per completed file into `directory`, named
        after its `filename` made safe for every OS (collisions get ` (2)`...); returns the paths.
        Needs the segments: fetch with `speech_information=True`. A `BatchResults` already read
        (iterated, or into a table) would write only what a loop left: refused, as `to_pandas` is."""
        return subtitles.write_subtitles(self, directory, format)

    # -- scale out (partitions.py, dask_reader.py, ray_reader.py) ----------------------------

    def partitions(self, pages_per_partition: Optional[int] = None, *, on_change: str = "raise") -> List["BatchPartition"]:
        """The read split into page ranges for workers to fetch (`st.BatchPartition`), planned
        from the first and last pages, fetched here once each. Default size: about 100k records or 64 MiB of
        Arrow per partition. `on_change="warn"`: a partition that finds the batch changed warns
        instead of raising `st.BatchChangedError`. The default is "raise", where a loop's is "warn":
        a partition is read apart, on a worker, with only the plan to check against, so a change
        means records missing or repeated, its warning lands in a worker's log, and a frame mixing
        snapshots is worse than an error."""
        from .partitions import plan_partitions

        if self._read is None:
            raise RuntimeError("only the BatchResults of Client.iter_files/iter_jobs can be partitioned")
        return plan_partitions(self._read, pages_per_partition, on_change=on_change)

    def to_dask(self, pages_per_partition: Optional[int] = None, *, on_change: str = "raise") -> "dd.DataFrame":
        """The read as a `dask.dataframe.DataFrame`, one partition per page range, fetched by
        the workers (see `partitions`, also for why `on_change` raises by default); columns as
        `to_pandas()` gives, plus `extra`."""
        require("dask.dataframe", "dask")
        from .dask_reader import to_dask

        return to_dask(self.partitions(pages_per_partition, on_change=on_change))

    def to_ray(self, pages_per_partition: Optional[int] = None, *, on_change: str = "raise") -> "ray.data.Dataset":
        """The read as a `ray.data.Dataset`: one read task per page range, one block per page
        (see `partitions`, also for why `on_change` raises by default)."""
        require("ray.data", "ray")
        from .ray_reader import to_ray

        return to_ray(self.partitions(pages_per_partition, on_change=on_change))


class _Reader:
    """One loop over a `BatchResults` (each `for`, `async for`, `iter_arrow_batches()`): while it
    is alive and has not raised, it alone may read."""

    __slots__ = ("results", "ref", "__weakref__")

    def __init__(self, results: "BatchResults[Any]") -> None:
        self.results = results
        self.ref = weakref.ref(self)


class _Records(_Reader, Generic[_R]):
    """A loop over the records: the cursor's next record at once when this loop owns it."""

    __slots__ = ()

    def __iter__(self) -> "_Records[_R]":
        return self

    def __next__(self) -> _R:
        results = self.results
        if results._owner is self.ref:
            for record in results._cursor:
                return record
        return results._step(self, results._next_record)

    def __aiter__(self) -> "_Records[_R]":
        return self

    async def __anext__(self) -> _R:
        results = self.results
        if results._owner is self.ref:
            for record in results._cursor:
                return record
        return await results._anext_record(self)


class _PageReader(_Reader):
    """A loop over whole pages."""

    __slots__ = ()

    def __iter__(self) -> "_PageReader":
        return self

    def __next__(self) -> _core.Page:
        return self.results._step(self, self.results._next_whole_page)

    def __aiter__(self) -> "_PageReader":
        return self

    async def __anext__(self) -> _core.Page:
        return await self.results._anext_whole_page(self)


class _Pages:
    """`BatchResults.pages()`: iterate pages with `for` or `async for`."""

    def __init__(self, results: "BatchResults[Any]") -> None:
        self._results = results

    def __iter__(self) -> _PageReader:
        return _PageReader(self._results)

    def __aiter__(self) -> _PageReader:
        return _PageReader(self._results)


def _check_table_args(explode: Optional[str], progress: ProgressArg) -> None:
    """Argument errors before any request (and before the read is claimed)."""
    if explode is not None and (not isinstance(explode, str) or not explode):
        raise ValueError(f"explode must be the name (or dotted path) of a list column; got {explode!r}")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be a bool or a callable (done, total); got {type(progress).__name__}")


def _check_objects(items: List[Any], page: int, cls: type) -> None:
    """A record that is not a JSON object cannot be a dataclass: say so, as tables do."""
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise ResponseFormatError(
                f"page {page}: record {i} is not a JSON object ({type(item).__name__}), "
                f"so it cannot be a {cls.__name__}",
                excerpt=repr(item)[:200],
                page=page,
            )
