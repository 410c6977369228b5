"""`BatchQuery`: one read of a batch, as it travels to the core whole.

Built by keyword (`Client.iter_files`, `iter_jobs`, `follow`), derived with
`dataclasses.replace` (a partition's page range, a re-read from a page), checked once, in the
core, when a stream is opened (`src/read.rs`: the messages users see come from there).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

from . import _core

__all__ = ["BatchQuery", "BatchRead", "paths"]


@dataclass(frozen=True, kw_only=True)
class BatchQuery:
    """What each page asks the service for, which pages are read, and how they are handed over."""

    batch_id: str
    #: Raw per-job records (`raw=true`) instead of merged per-file results.
    raw: bool = False
    #: The service's filter (`status=`).
    status: Optional[str] = None
    limit: int = 200
    chunks: Optional[bool] = None
    speech_information: Optional[bool] = None
    #: Dotted paths each record is narrowed to (None: whole records).
    fields: Optional[Tuple[str, ...]] = None
    #: Retries of this read (None: the client's).
    max_retries: Optional[int] = None
    #: "pages", or "download": the same pages from one `/download` stream.
    transport: str = "pages"
    start_page: int = 1
    #: The last page read (inclusive): no page past it is requested.
    end_page: Optional[int] = None
    max_items: Optional[int] = None
    #: "warn" or "raise" when the batch moves under the read by more than it can make up for.
    on_change: str = "warn"
    #: Read from the service even when the client's cache holds the batch.
    refresh: bool = False
    #: Read the whole batch and keep the records of this status (never with `status`).
    filter_status: Optional[str] = None

    def open(self, client: _core.Client) -> _core.PageStream:
        """The pages of this read, in order (nothing is sent until the first is asked for)."""
        return client._stream(self)

    def page_range(self, first: int, last: int) -> "BatchQuery":
        """Pages `first..=last` of this read's view, read as pages whatever the read's transport
        (a partition, a planning sample: one stream cannot be split), every record of them."""
        return replace(self, start_page=first, end_page=last, max_items=None, transport="pages", refresh=False)


@dataclass(frozen=True)
class BatchRead:
    """A read and the client it is read with: what a `BatchResults` starts again from after a
    failed table read, and what partitions are planned from."""

    client: _core.Client
    query: BatchQuery


def paths(fields: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """`fields=` as a tuple of dotted paths (a string alone is a mistake, not a path)."""
    if fields is None:
        return None
    if isinstance(fields, str):
        raise ValueError(f"fields must be a list of dotted paths, not a string; got {fields!r}")
    found = tuple(fields)
    for path in found:
        if not isinstance(path, str):
            raise ValueError(f"fields must hold dotted paths as strings; got {path!r}")
    return found
