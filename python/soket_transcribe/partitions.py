"""A batch split into page ranges that workers fetch themselves: `BatchPartition`.

`BatchResults.partitions()` reads the first and the last page of the read once (totals, page
count, the limit the service applied, a schema sample) and plans page ranges; each
`BatchPartition` is a small frozen dataclass that pickles (plain pickle and cloudpickle),
tokenizes deterministically for Dask and fetches exactly its own pages, with one HTTP client
per configuration in each worker process. Dask and Ray readers (`dask_reader.py`,
`ray_reader.py`) are built on it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import hmac
import math
import operator
import os
import pickle
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple

from . import _core
from .errors import BatchChangedError, SoketError
from .fixed_schema import conform, extra_column, plan_schema
from .query import BatchQuery, BatchRead

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["BatchPartition", "PickledClient", "plan_partitions", "ON_CHANGE"]

#: What a partition does when the batch moved under the plan: raise `BatchChangedError`, or warn.
ON_CHANGE = ("raise", "warn")

# Default partition size: about this many records, or this many bytes of Arrow, whichever is less.
_ROWS_PER_PARTITION = 100_000
_BYTES_PER_PARTITION = 64 * 1024 * 1024


# -- the client configuration, and one client per configuration and process -----------------

# Keys Dask's tokens by the configuration without the token being recoverable from them.
_TOKEN_KEY = os.urandom(32)
# A worker keeps the clients of the few most recent configurations; older ones are closed.
_CACHED_CLIENTS = 4


class PickledClient:
    """A client's pickled configuration, as a partition carries it. It may hold the token, so
    every generic view sees it opaque: repr, `dataclasses.asdict`, Dask's tokenize (a keyed hash)."""

    __slots__ = ("_config",)

    def __init__(self, config: bytes) -> None:
        self._config = config

    @classmethod
    def of(cls, client: _core.Client) -> "PickledClient":
        return cls(pickle.dumps(client))

    def __repr__(self) -> str:
        return "PickledClient(<configuration hidden>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PickledClient) and hmac.compare_digest(self._config, other._config)

    def __hash__(self) -> int:
        return hash(self._config)

    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]:
        return (PickledClient, (self._config,))

    def __deepcopy__(self, memo: Any) -> "PickledClient":
        return self  # immutable (and `dataclasses.asdict` copies, never shows, it)

    def __dask_tokenize__(self) -> str:
        return hashlib.blake2b(self._config, key=_TOKEN_KEY, digest_size=16).hexdigest()

    def _cache_key(self) -> Tuple[bytes, Optional[str]]:
        # A client without a token of its own reads SOKET_API_TOKEN when unpickled: a new
        # value on the worker is a new client.
        return (self._config, os.environ.get("SOKET_API_TOKEN"))

    def client(self) -> _core.Client:
        """This process's client for the configuration: built once, reused by every partition
        read here, rebuilt if closed (forked children rebuild their connections: the core sees
        the new pid)."""
        key = self._cache_key()
        with _clients_lock:
            cached = _clients.get(key)
            if cached is None or cached[0].closed:
                cached = (pickle.loads(self._config), True)
            evicted = _remember(key, cached)
        _close(evicted)
        return cached[0]

    def adopt(self, client: _core.Client) -> None:
        """Partitions read in the planning process use the planning client itself, so its
        `close()` closes their connections too (no twin left open)."""
        with _clients_lock:
            evicted = _remember(self._cache_key(), (client, False))
        _close(evicted)


# key -> (client, built here: ours to close), least recently used first.
_clients: "collections.OrderedDict[Tuple[bytes, Optional[str]], Tuple[_core.Client, bool]]" = collections.OrderedDict()
_clients_lock = threading.Lock()


def _remember(key: Tuple[bytes, Optional[str]], entry: Tuple[_core.Client, bool]) -> List[_core.Client]:
    """Caches `entry` as the most recent; returns the clients evicted that are ours to close."""
    _clients[key] = entry
    _clients.move_to_end(key)
    evicted = []
    while len(_clients) > _CACHED_CLIENTS:
        client, ours = _clients.popitem(last=False)[1]
        if ours:
            evicted.append(client)
    return evicted


def _close(clients: List[_core.Client]) -> None:
    # A read in flight keeps its own handle on the connections: closing only stops new calls.
    for client in clients:
        client.close()


# -- the partition ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPartition:
    """Pages `pages` of one batch query: `num_rows` records (exact, from the plan), rows
    `first_row..first_row + num_rows` of the whole read.

    Its tables (`to_arrow`, `to_pandas`) have the plan's schema: the columns of the first and
    last pages, flattened (`result.text`), plus an `extra` column of JSON text keeping any field
    or value the plan has no room for (see `soket_transcribe.fixed_schema`). If the totals it
    sees differ from the plan's (the batch changed since), it raises `st.BatchChangedError`
    naming itself, or warns when planned with `on_change="warn"` (on a Dask worker the warning
    also reaches the client that computes).

    The client configuration travels pickled (`PickledClient`): a token passed explicitly
    travels with it, a token from `SOKET_API_TOKEN` is read again on the worker. It is never
    shown.
    """

    query: BatchQuery
    index: int
    pages: range
    num_rows: int
    first_row: int
    #: Totals the first page reported at planning (None: the service does not say).
    planned_total: Optional[int]
    planned_pages: int
    base_url: str
    client_config: PickledClient
    schema: "pa.Schema"
    on_change: str = "raise"
    #: Rows cut from the end of the last page (`max_items` of the read ends inside it).
    rows_cut: int = 0

    @property
    def batch_id(self) -> str:
        return self.query.batch_id

    @property
    def client(self) -> _core.Client:
        """This process's client for the partition's configuration (one per process)."""
        return self.client_config.client()

    def __repr__(self) -> str:
        return (
            f"BatchPartition(batch_id={self.batch_id!r}, index={self.index}, pages={self.pages!r}, "
            f"num_rows={self.num_rows}, first_row={self.first_row})"
        )

    def __dask_tokenize__(self) -> Tuple[Any, ...]:
        # Everything that decides the data or how it is fetched; the client only as a keyed hash.
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
            self.client_config.__dask_tokenize__(),
            self.schema.to_string(show_field_metadata=True),
            self.on_change,
            self.rows_cut,
        )

    def _where(self) -> str:
        first, last = self.pages.start, self.pages.stop - 1
        pages = f"page {first}" if first == last else f"pages {first}-{last}"
        return f"partition {self.index} ({pages})"

    @contextlib.contextmanager
    def _naming_itself(self) -> Iterator[None]:
        """An error while fetching names the partition too (a worker's traceback names no task)."""
        try:
            yield
        except SoketError as e:
            if e.args and isinstance(e.args[0], str):
                e.args = (f"{self._where()} of batch {self.batch_id!r}: {e.args[0]}",) + e.args[1:]
            raise

    def _stream(self, columns: Optional[Sequence[str]] = None) -> _core.PageStream:
        query = self.query
        if columns is not None and extra_column(self.schema) not in columns:
            # The projection reaches the decoder: only those paths of each record are read (no
            # column asked for: one, to count the rows).
            paths = tuple(columns) or self.schema.names[:1]
            query = dataclasses.replace(query, fields=paths)
        with self._naming_itself():
            return query.page_range(self.pages.start, self.pages.stop - 1).open(self.client)

    def _kept(self, rows: int) -> int:
        """How many of the `rows` read are this partition's: all of them, unless `max_items`
        ends inside its last page (a moved batch read with `on_change="warn"` keeps every one)."""
        return min(rows, self.num_rows) if self.rows_cut else rows

    def _check(self, stream: _core.PageStream, rows: int) -> None:
        """Raises (or warns) if what this partition saw is not what the plan expected."""
        expected_rows = self.num_rows + self.rows_cut
        seen = (stream.total, stream.total_pages)
        if seen == (self.planned_total, self.planned_pages) and rows == expected_rows and not stream.warnings:
            return
        message = (
            f"batch {self.batch_id!r} changed since the partitions were planned: {self._where()} "
            f"expected {expected_rows} records of a batch of {_show(self.planned_total)} "
            f"records over {self.planned_pages} pages, and read {rows} records while page "
            f"{self.pages.start} reported {_show(stream.total)} records over {_show(stream.total_pages)} pages"
        )
        if stream.warnings:
            message += " (" + "; ".join(stream.warnings) + ")"
        message += ". Wait for the batch to complete before a distributed read (client.wait(batch_id))"
        if self.on_change == "warn":
            _warn(message + "; records may be missing or repeated across partitions")
            return
        raise BatchChangedError(message + ", or plan with on_change='warn'", page=self.pages.start)

    def records(self) -> Iterator[Any]:
        """The records of the partition's pages, as dicts, in page order."""
        stream = self._stream()
        rows = 0
        with self._naming_itself():
            for page in stream:
                items = page.items
                kept = max(self._kept(rows + len(items)) - rows, 0)
                rows += len(items)
                yield from items[:kept]
        self._check(stream, rows)

    def _arrow(self, columns: Optional[Sequence[str]] = None) -> Tuple["pa.Table", int]:
        """The partition's table, and its row count (a table of no columns has no rows)."""
        import pyarrow as pa

        stream = self._stream(columns)
        with self._naming_itself():
            table = pa.table(_core.read_arrow(stream, flatten=True))
        self._check(stream, table.num_rows)
        table = table.slice(0, self._kept(table.num_rows))
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
        with self._naming_itself():
            for batch in _core.arrow_batches(stream, flatten=True):
                page = pa.Table.from_batches([pa.record_batch(batch)])
                kept = max(self._kept(rows + page.num_rows) - rows, 0)
                rows += page.num_rows
                if kept:
                    yield conform(page.slice(0, kept), self.schema, columns)
        self._check(stream, rows)

    def to_pandas(self, columns: Optional[Sequence[str]] = None) -> "pd.DataFrame":
        """The partition as a `pandas.DataFrame` of exactly `empty_pandas()`'s dtypes (nullable
        `Int64` and `boolean` for integers and booleans), indexed by row number in the read."""
        from .tables import require

        pd = require("pandas")
        table, rows = self._arrow(columns)
        frame = _to_pandas(table, pd)
        if len(frame.columns) == 0:  # no column asked for: the rows still count
            frame = pd.DataFrame(index=range(rows))
        frame.index = pd.RangeIndex(self.first_row, self.first_row + rows)
        return frame

    def empty_pandas(self, columns: Optional[Sequence[str]] = None) -> "pd.DataFrame":
        """A frame with no rows and the dtypes of `to_pandas()`: Dask's `meta`."""
        from .tables import require

        pd = require("pandas")
        names = self.schema.names if columns is None else list(columns)
        return _to_pandas(self.schema.empty_table().select(names), pd)


def _to_pandas(table: "pa.Table", pd: Any) -> "pd.DataFrame":
    """Every partition alike, whatever its values: integers and booleans as pandas' nullable
    dtypes (any partition may hold a null), nested columns in Arrow memory (`pd.ArrowDtype`)."""
    import pyarrow as pa

    def dtype(arrow_type: "pa.DataType") -> Any:
        if pa.types.is_nested(arrow_type):
            return pd.ArrowDtype(arrow_type)
        if pa.types.is_boolean(arrow_type):
            return pd.BooleanDtype()
        if pa.types.is_integer(arrow_type):
            return pd.api.types.pandas_dtype(str(arrow_type).capitalize().replace("Uint", "UInt"))
        return None

    return table.to_pandas(types_mapper=dtype, split_blocks=True, self_destruct=True)


def _warn(message: str) -> None:
    """A warning where the caller sees it: on a Dask worker, sent to the computing client too."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        distributed.warn(message, RuntimeWarning)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _show(value: Optional[int]) -> str:
    return "?" if value is None else str(value)


# -- the plan ---------------------------------------------------------------------------------


def _rows_on_pages(first: int, last: int, total: int, limit: int) -> int:
    """Records on pages `first..=last` of a batch of `total` records, `limit` a page."""
    return max(0, min(last * limit, total) - (first - 1) * limit)


def _pages_per_partition(value: Any) -> Optional[int]:
    if value is None:
        return None
    try:
        pages = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        pages = None
    if pages is None or pages < 1:
        raise ValueError(f"pages_per_partition must be an integer >= 1 or None; got {value!r}")
    return pages


def _check_the_view_holds_still(read: BatchRead, on_change: str) -> None:
    """A `status=` view of a running batch moves at constant size as files finish: no totals
    can see it, so partitions would mix snapshots. Refused (or warned of, with "warn")."""
    status = read.client.status(read.query.batch_id)
    if not status.in_progress:
        return
    message = (
        f"batch {read.query.batch_id!r} is still {status.status}: its status={read.query.status!r} "
        "view moves while partitions read it, so they would mix snapshots. Wait for the batch "
        "(client.wait(batch_id)), or read it unfiltered and filter the frame (ddf[ddf['status'] == ...])"
    )
    if on_change == "warn":
        warnings.warn(message + "; planned anyway: records may be missing or repeated", RuntimeWarning, stacklevel=4)
        return
    raise BatchChangedError(message + ", or plan with on_change='warn'")


def _read_page(read: BatchRead, query: BatchQuery, page: int) -> Tuple["pa.Table", _core.PageStream]:
    import pyarrow as pa

    stream = query.page_range(page, page).open(read.client)
    return pa.table(_core.read_arrow(stream, flatten=True)), stream


def plan_partitions(
    read: BatchRead, pages_per_partition: Optional[int] = None, *, on_change: str = "raise"
) -> List[BatchPartition]:
    """Reads the first and last pages of `read` once and splits its pages into partitions (see
    `BatchResults.partitions`)."""
    from .tables import require

    require("pyarrow")
    pages_per_partition = _pages_per_partition(pages_per_partition)
    if on_change not in ON_CHANGE:
        raise ValueError(f"on_change must be one of {ON_CHANGE}; got {on_change!r}")
    if read.query.status is not None:
        _check_the_view_holds_still(read, on_change)
    query, start = read.query, read.query.start_page

    sample, first = _read_page(read, query, start)
    # The core refuses a page without `total_pages`; `total_files` may be missing.
    reported_total, total_pages = first.total, first.total_pages or 0
    # The service may apply a smaller limit than asked: a full first page tells which.
    limit = sample.num_rows if total_pages > start and sample.num_rows > 0 else query.limit
    if limit != query.limit:
        query = dataclasses.replace(query, limit=limit)

    last_page = max(total_pages, start)
    if read.query.max_items is not None:
        last_page = min(last_page, start + max(math.ceil(read.query.max_items / limit), 1) - 1)
    # The last page is a second sample (page 1 may hold only failed files) and, when the
    # service gives no total, the count of records on the last page.
    tail = _read_page(read, query, last_page)[0] if last_page > start else sample
    total = reported_total if reported_total is not None else (last_page - 1) * limit + tail.num_rows
    wanted_rows = _rows_on_pages(start, last_page, total, limit)
    if read.query.max_items is not None:
        wanted_rows = min(wanted_rows, read.query.max_items)
    samples = [sample] if tail is sample else [sample, tail]
    if pages_per_partition is None:
        pages_per_partition = _default_pages_per_partition(samples, limit)

    config = PickledClient.of(read.client)
    config.adopt(read.client)
    schema = plan_schema(*(s.schema for s in samples))
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
                planned_total=reported_total,
                planned_pages=total_pages,
                base_url=read.client.base_url,
                client_config=config,
                schema=schema,
                on_change=on_change,
                rows_cut=on_pages - rows,
            )
        )
        first_row += rows
    return partitions


def _default_pages_per_partition(samples: Sequence["pa.Table"], limit: int) -> int:
    """About `_ROWS_PER_PARTITION` records or `_BYTES_PER_PARTITION` bytes of Arrow, whichever is less."""
    rows = sum(s.num_rows for s in samples)
    bytes_per_row = sum(s.nbytes for s in samples) / max(rows, 1)
    per_partition = min(_ROWS_PER_PARTITION, _BYTES_PER_PARTITION / max(bytes_per_row, 1.0))
    return max(1, int(per_partition // limit))
