"""`Client.follow`: every file of a running batch, each once, as soon as a poll finds it final.

The unfiltered view of a batch holds its files, fixed at submission, in a stable order, whatever
their status. The first poll reads every page; later polls re-read only the pages that still
hold a file that is not final (`completed` or `failed`). Both faces (`for`, `async for`) follow
one plan (`_FollowPlan`): they differ only in how they fetch and sleep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
import warnings
from collections import deque
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Generic,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    TypeVar,
)

from . import _core
from .errors import APIError, BatchNotFoundError, ResponseFormatError, WaitTimeoutError
from .models import BatchStatus, FileResult
from .progress import ProgressArg, close_progress, progress_callback
from .query import BatchQuery
from .waiting import checked_poll_interval, deadline_after


__all__ = ["FollowResults", "FINAL_STATES"]

#: The states a file never leaves.
FINAL_STATES = frozenset({"completed", "failed"})

_log = logging.getLogger("soket_transcribe.follow")

#: The record type a `FollowResults` yields: `dict`, or `FileResult` (`as_dataclass=True`).
_R = TypeVar("_R")

# Needed to tell a record's finality and identity, whatever `fields=` asks for.
_KEYS = ("file_id", "status")


def _run_ranges(pages: Sequence[int]) -> List[Tuple[int, int]]:
    """Sorted page numbers as runs of consecutive pages: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: List[Tuple[int, int]] = []
    for number in sorted(pages):
        if runs and runs[-1][1] + 1 == number:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


class _FollowPlan:
    """What a follow knows between polls: which pages to read, which records are new and final,
    whether the view moved, when to poll again and when to give up."""

    def __init__(self, batch_id: str, poll_interval: float, timeout: Optional[float], fields: Optional[Sequence[str]]):
        self.batch_id = batch_id
        self.poll_interval = checked_poll_interval(poll_interval)
        self.timeout = timeout
        self.deadline = deadline_after(timeout)
        self.requested = None if fields is None else tuple(fields)
        self.fields = None if fields is None else tuple(fields) + tuple(k for k in _KEYS if k not in fields)
        self.total: Optional[int] = None
        self.total_pages: Optional[int] = None
        self.polls = 0
        self.pages_read = 0
        self.warnings: List[str] = []
        self.last_status: Optional[BatchStatus] = None
        # `last_status` was asked after the last pages were read: still the news a timeout tells.
        self.status_is_latest = False
        self._yielded: Set[str] = set()  # each final file taken
        self.failed = 0  # of the files taken, those that failed (the rest completed)
        # Final records taken from pages, not yet handed over (a `break` keeps them for the next loop).
        self.outbox: Deque[Any] = deque()
        self._full_read = True
        # A poll begun and not read to its end (a `break`, an error): the next loop goes on with it.
        self.poll_open = False
        # Pages still holding a file that is not final, with the ids that page held at its last read.
        self._pending: Optional[Dict[int, List[str]]] = None  # None: every page (the first poll)
        self._moved = False
        self._poll_started = 0.0
        self._done_at_last_status: Optional[int] = None

    # -- the state the caller sees -----------------------------------------------------------

    @property
    def taken(self) -> int:
        return len(self._yielded)

    @property
    def done(self) -> int:
        return self.taken - len(self.outbox)

    @property
    def finished(self) -> bool:
        whole_read_cut = self.poll_open and self._full_read  # pages after the cut are not known yet
        return self._pending is not None and not self._pending and not self._moved and not whole_read_cut

    # -- one poll ----------------------------------------------------------------------------

    def runs(self) -> List[Tuple[int, int]]:
        """The page ranges this poll reads: all of them on the first poll, after the view moved,
        and again when such a read was cut (what it took is not taken twice)."""
        self.polls += 1
        self._poll_started = time.monotonic()
        self.status_is_latest = False
        self._full_read = self._pending is None or self._moved or (self.poll_open and self._full_read)
        self.poll_open = True
        if self._full_read:
            self._moved = False
            self._pending = None
            return [(1, 1)]
        return _run_ranges(list(self._pending or {}))

    def stream_read(self, stream: _core.PageStream) -> None:
        """A stream's pages read: one that saw the view shift under it (a page repeating files
        of the page before, so others may have been skipped) is the view moving."""
        if not stream.complete:
            self._view_moved("a page repeated files of the page before it, so some may have been skipped")

    def poll_read(self) -> None:
        """Every page of the poll was read."""
        self.poll_open = False

    def end_page(self, last: int) -> Optional[int]:
        """The last page a stream reads: a whole read goes on to the page count its pages report."""
        return None if self._full_read else last

    def take(self, page: _core.Page) -> List[Dict[str, Any]]:
        """The records of `page` that are final and not yet taken; notes what remains."""
        self.pages_read += 1
        self._check_totals(page)
        records = page.items
        ids = [_key(record, page.page, index) for index, record in enumerate(records)]
        if self._pending is not None and page.page in self._pending and self._pending[page.page] != ids:
            self._view_moved(f"page {page.page} holds other files than at its last read")
        fresh = []
        unfinished = False
        for key, record in zip(ids, records):
            if not isinstance(record, dict):
                raise ResponseFormatError(f"page {page.page} holds a record that is not an object: {record!r:.80}")
            status = record.get("status")
            if status not in FINAL_STATES:
                unfinished = True
            elif key not in self._yielded:
                self._yielded.add(key)
                self.failed += status == "failed"
                fresh.append(self._narrowed(record))
        pending = self._pending if self._pending is not None else {}
        if unfinished:
            pending[page.page] = ids
        else:
            pending.pop(page.page, None)
        self._pending = pending
        return fresh

    def _narrowed(self, record: Dict[str, Any]) -> Dict[str, Any]:
        if self.requested is not None:
            for key in _KEYS:
                if key not in self.requested:
                    record.pop(key, None)
        return record

    def _check_totals(self, page: _core.Page) -> None:
        if self.total_pages is None:
            self.total_pages, self.total = page.total_pages, page.total
            return
        if (page.total_pages, page.total) != (self.total_pages, self.total):
            self._view_moved(
                f"the batch went from {self.total} files in {self.total_pages} pages to {page.total} in {page.total_pages}"
            )
            self.total_pages, self.total = page.total_pages, page.total

    def _view_moved(self, why: str) -> None:
        if self._moved:
            return
        self._moved = True
        message = (
            f"batch {self.batch_id} moved while followed ({why}): reading the whole batch again; "
            "files already yielded are not yielded again"
        )
        self.warnings.append(message)
        _log.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    # -- between polls -----------------------------------------------------------------------

    def ask_status_first(self) -> bool:
        """A status request costs one page's: worth it only when it may spare reading two or more."""
        return self._pending is not None and not self._moved and len(self._pending) >= 2

    def nothing_moved(self, status: BatchStatus) -> bool:
        """The status says no file finished since the last poll: skip reading the pages."""
        self.last_status, self.status_is_latest = status, True
        done = status.files_done
        unchanged = done is not None and done == self._done_at_last_status and status.in_progress
        self._done_at_last_status = done
        if unchanged:  # the status request was this interval's poll: the next is an interval on
            self._poll_started = time.monotonic()
        return unchanged

    def delay(self) -> Optional[float]:
        """Seconds to sleep before the next poll; None once the time is spent."""
        delay = max(0.0, self._poll_started + self.poll_interval - time.monotonic())
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return None
            delay = min(delay, left)
        return delay

    def timed_out(self, status: Optional[BatchStatus]) -> WaitTimeoutError:
        status = status or self.last_status
        total = "?" if self.total is None else f"{self.total:,}"
        return WaitTimeoutError(
            f"batch {self.batch_id}: {self.done:,} of {total} files final after {self.timeout:g} s of following",
            status=status,
        )


def _key(record: Any, page: int, index: int) -> str:
    file_id = record.get("file_id") if isinstance(record, dict) else None
    return file_id if isinstance(file_id, str) else f"#{page}:{index}"


def _could_not_ask(err: APIError) -> bool:
    """A status endpoint this service may not have: follow on the records alone."""
    return err.status_code in (404, 405, 501) and not isinstance(err, BatchNotFoundError)


class FollowResults(Generic[_R]):
    """Every file of a batch, each once, as soon as a poll finds it final (`completed` or
    `failed`), until every file is; for `for` or `async for`. Made by `Client.follow`; generic in
    its record type for type checkers (`FollowResults[FileResult]` with `as_dataclass=True`)."""

    def __init__(
        self,
        client: _core.Client,
        batch_id: str,
        *,
        poll_interval: float = 5.0,
        timeout: Optional[float] = None,
        limit: int = 200,
        chunks: Optional[bool] = None,
        speech_information: Optional[bool] = None,
        as_dataclass: bool = False,
        fields: Optional[Sequence[str]] = None,
        progress: ProgressArg = False,
    ) -> None:
        self._client = client
        self._plan = _FollowPlan(batch_id, poll_interval, timeout, fields)
        self._query = BatchQuery(
            batch_id=batch_id,
            limit=limit,
            chunks=chunks,
            speech_information=speech_information,
            fields=self._plan.fields,
        )
        self._query.open(client)  # checks every argument now, in the core; sends nothing
        self._dataclass: Optional[Type[FileResult]] = FileResult if as_dataclass else None
        if progress is not True:
            progress_callback(progress)  # refuses a bad `progress` now
        self._progress_arg = progress
        self._owner: Any = None  # the loop reading it (a generator, or an async generator)

    # -- where it stands ---------------------------------------------------------------------

    @property
    def batch_id(self) -> str:
        return self._plan.batch_id

    @property
    def done(self) -> int:
        """Files yielded so far (each final)."""
        return self._plan.done

    @property
    def total(self) -> Optional[int]:
        """`total_files` of the batch; None before the first page."""
        return self._plan.total

    @property
    def polls(self) -> int:
        return self._plan.polls

    @property
    def pages_read(self) -> int:
        return self._plan.pages_read

    @property
    def finished(self) -> bool:
        """Every file of the batch was final, and yielded."""
        return self._plan.finished

    @property
    def warnings(self) -> List[str]:
        return list(self._plan.warnings)

    def __repr__(self) -> str:
        return (
            f"<FollowResults batch={self.batch_id} done={self.done} total={self.total} polls={self.polls}"
            f" pages_read={self.pages_read}>"
        )

    def _repr_html_(self) -> str:
        from .html import batch_bar

        plan = self._plan  # the files known final (those a `break` left to hand over too)
        return batch_bar(
            f"following {self.batch_id}",
            completed=plan.taken - plan.failed,
            failed=plan.failed,
            total=self.total,
            notes=[f"{self.polls} polls, {self.pages_read} pages read"] + self.warnings,
        )

    # -- the two faces -----------------------------------------------------------------------

    def _own(self, loop: Callable[[List[Any]], Any]) -> Any:
        """A new loop over this follow. It goes on where the last one stopped (a `break`, an
        error, a cancelled task): that one, idle at a `yield`, is set aside. One in the middle
        of a step (another thread or task reading now) is not: that is a RuntimeError."""
        owner = self._owner
        if owner is not None and (getattr(owner, "gi_running", False) or getattr(owner, "ag_running", False)):
            raise RuntimeError(
                "this follow is being read (by another thread or task); call client.follow() again for a second reader"
            )
        if inspect.isgenerator(owner):
            owner.close()  # its open stream goes now (an async one goes when it is collected)
        me: List[Any] = []
        me.append(loop(me))
        self._owner = me[0]
        return me[0]

    def _check_owner(self, me: List[Any]) -> None:
        if self._owner is not me[0]:
            raise RuntimeError("another loop took this follow over (one loop at a time reads it)")

    def _stream(self, first: int, last: int) -> _core.PageStream:
        end = self._plan.end_page(last)
        return dataclasses.replace(self._query, start_page=first, end_page=end).open(self._client)

    def _take(self, page: _core.Page) -> None:
        fresh: List[Any] = self._plan.take(page)
        if self._dataclass is not None and fresh:
            fresh = _core.as_dataclasses(fresh, self._dataclass, self._dataclass._NAMED)
        self._plan.outbox.extend(fresh)

    def __iter__(self) -> Iterator[_R]:
        return self._own(self._loop)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[_R]:
        return self._own(self._async_loop)  # type: ignore[no-any-return]

    def _loop(self, me: List[Any]) -> Iterator[_R]:
        plan, outbox = self._plan, self._plan.outbox
        progress = progress_callback(self._progress_arg)
        try:
            while True:
                while outbox:
                    yield outbox.popleft()
                    self._check_owner(me)
                if plan.finished:
                    return
                if plan.polls and not plan.poll_open:
                    if not self._wait_for_change():
                        raise plan.timed_out(self._last_status())
                for first, last in plan.runs():
                    stream = self._stream(first, last)
                    for page in stream:
                        self._take(page)
                        while outbox:
                            yield outbox.popleft()
                            self._check_owner(me)
                        if progress is not None:
                            progress(plan.done, plan.total)
                    plan.stream_read(stream)
                plan.poll_read()
        finally:
            close_progress(progress)

    async def _async_loop(self, me: List[Any]) -> AsyncIterator[_R]:
        plan, outbox = self._plan, self._plan.outbox
        progress = progress_callback(self._progress_arg)
        try:
            while True:
                while outbox:
                    yield outbox.popleft()
                    self._check_owner(me)
                if plan.finished:
                    return
                if plan.polls and not plan.poll_open:
                    if not await self._wait_for_change_async():
                        raise plan.timed_out(await self._last_status_async())
                for first, last in plan.runs():
                    stream = self._stream(first, last)
                    async for fetched in stream:
                        self._take(fetched.parse())
                        while outbox:
                            yield outbox.popleft()
                            self._check_owner(me)
                        if progress is not None:
                            progress(plan.done, plan.total)
                    plan.stream_read(stream)
                plan.poll_read()
        finally:
            close_progress(progress)

    # Between polls: sleep out the interval, and skip a poll the status says would find nothing.
    # False once the timeout is spent.

    def _wait_for_change(self) -> bool:
        while True:
            delay = self._plan.delay()
            if delay is None:
                return False
            time.sleep(delay)  # Ctrl-C (KeyboardInterrupt) ends the sleep at once
            if not self._plan.ask_status_first():
                return True
            status = self._ask(self._client.status)
            if status is None or not self._plan.nothing_moved(status):
                return True

    async def _wait_for_change_async(self) -> bool:
        while True:
            delay = self._plan.delay()
            if delay is None:
                return False
            await asyncio.sleep(delay)
            if not self._plan.ask_status_first():
                return True
            try:
                status = await self._client.status_async(self.batch_id)
            except APIError as err:
                if not _could_not_ask(err):
                    raise
                return True
            if not self._plan.nothing_moved(status):
                return True

    def _ask(self, status: Any) -> Optional[BatchStatus]:
        try:
            return status(self.batch_id)
        except APIError as err:
            if not _could_not_ask(err):
                raise
            return None

    def _last_status(self) -> Optional[BatchStatus]:
        if self._plan.status_is_latest:
            return self._plan.last_status
        try:
            return self._ask(self._client.status)
        except Exception:  # the timeout is what the caller hears of; the status is a courtesy
            return None

    async def _last_status_async(self) -> Optional[BatchStatus]:
        if self._plan.status_is_latest:
            return self._plan.last_status
        try:
            return await self._client.status_async(self.batch_id)
        except Exception:  # as in `_last_status`
            return None
