"""A batch split into page ranges that workers fetch themselves: `BatchPartition`.

`BatchResults.partitions()` reads the first page once (totals, page count, the limit the
service applied, a schema sample) and plans page ranges; each `BatchPartition` is a small
frozen dataclass that pickles (plain pickle and cloudpickle), tokenizes deterministically
for Dask and fetches exactly its own pages, with one HTTP client per worker process.
Dask and Ray readers (`dask_reader.py`, `ray_reader.py`) are built on it.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import _core
from .errors import BatchChangedError
from .fixed_schema import conform, extra_column, plan_schema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .client import Client

__all__ = ["BatchQuery", "BatchRead", "BatchPartition", "plan_partitions", "ON_CHANGE"]

#: What a partition does when the batch moved under the plan: raise `BatchChangedError`, or warn.
ON_CHANGE = ("raise", "warn")

# Default partition size: about this many records, or this many bytes of Arrow, whichever is less.
_ROWS_PER_PARTITION = 100_000
_BYTES_PER_PARTITION = 64 * 1024 * 1024


@dataclass(frozen=True)
class BatchQuery:
    """What a read of a batch asks the service for, every page alike."""

    batch_id: str
    raw: bool = False
    status: Optional[str] = None
    limit: int = 200
    chunks: Optional[bool] = None
    speech_information: Optional[bool] = None
    max_retries: Optional[int] = None
    #: Dotted paths each record is narrowed to (None: whole records).
    fields: Optional[Tuple[str, ...]] = None

    def stream(
        self,
        client: _core.Client,
        first_page: int,
        last_page: Optional[int],
        *,
        max_items: Optional[int] = None,
        on_change: str = "warn",
    ) -> _core.PageStream:
        """A stream of pages `first_page..=last_page` of this query, never a page past them."""
        return client.stream(
            self.batch_id,
            raw=self.raw,
            status=self.status,
            limit=self.limit,
            chunks=self.chunks,
            speech_information=self.speech_information,
            start_page=first_page,
            end_page=last_page,
            max_items=max_items,
            max_retries=self.max_retries,
            fields=self.fields,
            on_change=on_change,
        )


@dataclass(frozen=True)
class BatchRead:
    """A read as `iter_files`/`iter_jobs` was asked for it: what partitions are planned from."""

    client: "Client"
    query: BatchQuery
    start_page: int = 1
    max_items: Optional[int] = None


# -- one client per worker process ---------------------------------------------------------

_clients: Dict[bytes, "Client"] = {}
_clients_lock = threading.Lock()


def _client_in_this_process(config: bytes) -> "Client":
    """The client for a pickled configuration, built once per process and then reused: its
    connections and runtime serve every partition the process reads (forked children rebuild
    theirs, the core sees the new pid)."""
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = pickle.loads(config)
        return client


# -- the partition ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPartition:
    """Pages `pages` of one batch query: `num_rows` records (exact, from the totals of the
    plan), rows `first_row..first_row + num_rows` of the whole read.

    Its tables (`to_arrow`, `to_pandas`) have the plan's schema: the first page's columns,
    flattened (`result.text`), plus an `extra` column of JSON text keeping any field or value
    the plan has no room for (see `soket_transcribe.fixed_schema`). If the totals it sees
    differ from the plan's (the batch changed since), it raises `st.BatchChangedError`
    naming itself, or warns when planned with `on_change="warn"`.

    The client configuration travels pickled: a token passed explicitly travels with it, a
    token from `SOKET_API_TOKEN` is read again on the worker. It is never in the repr.
    """

    query: BatchQuery
    index: int
    pages: range
    num_rows: int
    first_row: int
    planned_total: int
    planned_pages: int
    base_url: str
    schema: "pa.Schema" = field(repr=False)
    on_change: str = "raise"
    #: Rows cut from the end of the last page (`max_items` of the read ends inside it).
    rows_cut: int = 0
    client_config: bytes = field(default=b"", repr=False)

    @property
    def batch_id(self) -> str:
        return self.query.batch_id

    @property
    def client(self) -> "Client":
        """This process's client for the partition's configuration (one per process)."""
        return _client_in_this_process(self.client_config)

    def __repr__(self) -> str:
        return (
            f"BatchPartition(batch_id={self.batch_id!r}, index={self.index}, pages={self.pages!r}, "
            f"num_rows={self.num_rows}, first_row={self.first_row})"
        )

    def __dask_tokenize__(self) -> Tuple[Any, ...]:
        # Everything that decides the data, and not the token.
        return (
            "soket_transcribe.BatchPartition",
            dataclasses.astuple(self.query),
            self.index,
            self.pages.start,
            self.pages.stop,
            self.num_rows,
            self.first_row,
            self.planned_total,
            self.planned_pages,
            self.base_url,
            self.schema.to_string(show_field_metadata=True),
            self.on_change,
            self.rows_cut,
        )

    def _stream(self, columns: Optional[Sequence[str]] = None) -> _core.PageStream:
        query = self.query
        if columns and extra_column(self.schema) not in columns:
            # The projection reaches the decoder: only those paths of each record are read.
            query = dataclasses.replace(query, fields=tuple(columns))
        return query.stream(self.client, self.pages.start, self.pages.stop - 1)

    def _check(self, stream: _core.PageStream, rows: int) -> None:
        """Raises (or warns) if what this partition saw is not what the plan expected."""
        expected_rows = self.num_rows + self.rows_cut
        seen = (stream.total, stream.total_pages)
        if seen == (self.planned_total, self.planned_pages) and rows == expected_rows and not stream.warnings:
            return
        first, last = self.pages.start, self.pages.stop - 1
        where = f"page {first}" if first == last else f"pages {first}-{last}"
        message = (
            f"batch {self.batch_id!r} changed since the partitions were planned: partition {self.index} "
            f"({where}) expected {expected_rows} records of a batch of {self.planned_total} "
            f"records over {self.planned_pages} pages, and read {rows} records while page {first} "
            f"reported {_show(stream.total)} records over {_show(stream.total_pages)} pages"
        )
        if stream.warnings:
            message += " (" + "; ".join(stream.warnings) + ")"
        message += ". Wait for the batch to complete before a distributed read (client.wait(batch_id))"
        if self.on_change == "warn":
            warnings.warn(message + "; records may be missing or repeated across partitions", RuntimeWarning, stacklevel=3)
            return
        raise BatchChangedError(message + ", or plan with on_change='warn'", page=first)

    def records(self) -> Iterator[Any]:
        """The records of the partition's pages, as dicts, in page order."""
        stream = self._stream()
        rows = 0
        wanted = self.num_rows
        for page in stream:
            items = page.items
            rows += len(items)
            if wanted > 0:
                yield from items[:wanted]
                wanted -= min(len(items), wanted)
        self._check(stream, rows)

    def _arrow(self, columns: Optional[Sequence[str]] = None) -> Tuple["pa.Table", int]:
        """The partition's table, and its row count (a table of no columns has no rows)."""
        import pyarrow as pa

        stream = self._stream(columns)
        table = pa.table(_core.read_arrow(stream, flatten=True))
        self._check(stream, table.num_rows)
        table = table.slice(0, self.num_rows)
        return conform(table, self.schema, columns), table.num_rows

    def to_arrow(self, columns: Optional[Sequence[str]] = None) -> "pa.Table":
        """The partition as a `pyarrow.Table` of the plan's schema (or only its `columns`)."""
        from .tables import require

        require("pyarrow")
        return self._arrow(columns)[0]

    def iter_arrow(self, columns: Optional[Sequence[str]] = None) -> Iterator["pa.Table"]:
        """One table of the plan's schema per page, as pages arrive (pages without records skipped)."""
        from .tables import require

        pa = require("pyarrow")
        stream = self._stream(columns)
        rows = 0
        for batch in _core.arrow_batches(stream, flatten=True):
            page = pa.Table.from_batches([pa.record_batch(batch)])
            kept = max(min(page.num_rows, self.num_rows - rows), 0)
            rows += page.num_rows
            if kept:
                yield conform(page.slice(0, kept), self.schema, columns)
        self._check(stream, rows)

    def to_pandas(self, columns: Optional[Sequence[str]] = None) -> "pd.DataFrame":
        """The partition as a `pandas.DataFrame` (dtypes as `BatchResults.to_pandas()` gives),
        indexed by row number in the whole read."""
        from .tables import arrow_to_pandas, require

        pd = require("pandas")
        table, rows = self._arrow(columns)
        frame = arrow_to_pandas(table, pd, None)
        if len(frame.columns) == 0:  # no column asked for: the rows still count
            frame = pd.DataFrame(index=range(rows))
        frame.index = pd.RangeIndex(self.first_row, self.first_row + rows)
        return frame

    def empty_pandas(self, columns: Optional[Sequence[str]] = None) -> "pd.DataFrame":
        """A frame with no rows and the dtypes of `to_pandas()`: Dask's `meta`."""
        from .tables import arrow_to_pandas, require

        pd = require("pandas")
        names = self.schema.names if columns is None else list(columns)
        return arrow_to_pandas(self.schema.empty_table().select(names), pd, None)


def _show(value: Optional[int]) -> str:
    return "?" if value is None else str(value)


# -- the plan ---------------------------------------------------------------------------------


def _rows_on_pages(first: int, last: int, total: int, limit: int) -> int:
    """Records on pages `first..=last` of a batch of `total` records, `limit` a page."""
    return max(0, min(last * limit, total) - (first - 1) * limit)


def plan_partitions(
    read: BatchRead, pages_per_partition: Optional[int] = None, *, on_change: str = "raise"
) -> List[BatchPartition]:
    """Reads the first page of `read` once and splits its pages into partitions (see
    `BatchResults.partitions`)."""
    from .tables import require

    pa = require("pyarrow")
    if pages_per_partition is not None and (
        isinstance(pages_per_partition, bool) or not isinstance(pages_per_partition, int) or pages_per_partition < 1
    ):
        raise ValueError(f"pages_per_partition must be an integer >= 1 or None; got {pages_per_partition!r}")
    if on_change not in ON_CHANGE:
        raise ValueError(f"on_change must be one of {ON_CHANGE}; got {on_change!r}")
    if read.max_items is not None and read.max_items < 0:
        raise ValueError(f"max_items must be >= 0; got {read.max_items}")
    query, start = read.query, read.start_page

    first = query.stream(read.client, start, start)
    sample = pa.table(_core.read_arrow(first, flatten=True))
    total, total_pages = first.total or 0, first.total_pages or 0
    # The service may apply a smaller limit than asked: a full first page tells which.
    limit = sample.num_rows if total_pages > start and sample.num_rows > 0 else query.limit
    if limit != query.limit:
        query = dataclasses.replace(query, limit=limit)

    wanted_rows = _rows_on_pages(start, max(total_pages, start), total, limit)
    last_page = max(total_pages, start)
    if read.max_items is not None and read.max_items < wanted_rows:
        wanted_rows = read.max_items
        last_page = start + max(math.ceil(wanted_rows / limit), 1) - 1
    if pages_per_partition is None:
        bytes_per_row = sample.nbytes / max(sample.num_rows, 1)
        rows = min(_ROWS_PER_PARTITION, _BYTES_PER_PARTITION / max(bytes_per_row, 1.0))
        pages_per_partition = max(1, int(rows // limit))

    schema = plan_schema(sample.schema)
    config = pickle.dumps(read.client)
    base_url = read.client.base_url
    partitions: List[BatchPartition] = []
    first_row = 0
    for index, page in enumerate(range(start, last_page + 1, pages_per_partition)):
        end = min(page + pages_per_partition - 1, last_page)
        on_pages = _rows_on_pages(page, end, total, limit)
        rows = min(on_pages, wanted_rows - first_row)
        partitions.append(
            BatchPartition(
                query=query,
                index=index,
                pages=range(page, end + 1),
                num_rows=rows,
                first_row=first_row,
                planned_total=total,
                planned_pages=total_pages,
                base_url=base_url,
                schema=schema,
                on_change=on_change,
                rows_cut=on_pages - rows,
                client_config=config,
            )
        )
        first_row += rows
    return partitions
