"""`Client.wait`: poll a batch's status until it is final, sync or under asyncio.

Both faces follow one plan (`_PollPlan`): they differ only in how they sleep and ask.

Final is the core's rule (`BatchStatus.is_final`): `completed` or `failed` in any case, or,
whatever other word the service sends, every file counted done. The timeout is a deadline for
everything: each status request, its retries and the pauses between polls. While waiting, a
transient failure (5xx, 429, a dropped connection) is tried again until the deadline; with no
timeout, the first poll gives up after `max_retries` as any call does (a wrong URL fails at
once), the later ones keep trying through an outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Callable, Optional

from . import _core
from .errors import WaitTimeoutError
from .models import BatchStatus
from .progress import ProgressArg, close_progress, progress_callback


__all__ = ["wait", "wait_async", "poll_delay", "MAX_POLL_GAP"]

#: The longest wait between two polls, whatever the service estimates.
MAX_POLL_GAP = 60.0

_log = logging.getLogger("soket_transcribe.wait")


def poll_delay(status: BatchStatus, poll_interval: float) -> float:
    """Seconds until the next poll of a batch not final: `poll_interval`, or later when the
    service expects to need longer (`estimated_completion_seconds`), never more than a minute."""
    estimate = status.estimated_completion_seconds
    if estimate is None or not math.isfinite(estimate):
        return poll_interval
    return max(poll_interval, min(estimate, MAX_POLL_GAP))


def checked_poll_interval(poll_interval: float) -> float:
    """`poll_interval=` of `wait` and `follow`: seconds in (0, 60]."""
    if not (isinstance(poll_interval, (int, float)) and 0 < poll_interval <= MAX_POLL_GAP):
        raise ValueError(f"poll_interval must be a number of seconds in (0, {MAX_POLL_GAP:g}]; got {poll_interval!r}")
    return float(poll_interval)


def deadline_after(timeout: Optional[float]) -> Optional[float]:
    """The `time.monotonic()` at which `timeout=` (None: never) runs out."""
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be None or a number of seconds >= 0; got {timeout!r}")
    return None if timeout is None else time.monotonic() + timeout


class _PollPlan:
    """When to poll next, when to give up, and the progress shown meanwhile."""

    def __init__(self, batch_id: str, poll_interval: float, timeout: Optional[float], progress: ProgressArg) -> None:
        if not batch_id or not isinstance(batch_id, str):
            raise ValueError("batch_id must be a non-empty string")
        self.batch_id = batch_id
        self.poll_interval = checked_poll_interval(poll_interval)
        self.timeout = timeout
        self.deadline = deadline_after(timeout)
        self.progress: Optional[Callable[[int, Optional[int]], Any]] = progress_callback(progress)
        self.last: Optional[BatchStatus] = None
        self.out_of_time = False
        self.unknown_logged = False

    def request(self) -> tuple[Optional[float], bool]:
        """The next poll's arguments: the seconds it may take (None: no bound), and whether to
        keep trying through transient failures. Raises `WaitTimeoutError` once time is out."""
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if self.out_of_time or (left is not None and left <= 0):
            raise self.timed_out(None)
        return left, self.deadline is not None or self.last is not None

    def answered(self, status: Optional[BatchStatus], failure: Optional[str]) -> BatchStatus:
        """The status a poll came back with, shown as progress. A poll that came back without
        one ran out of time: raises `WaitTimeoutError` (`failure`: why its requests failed)."""
        if status is None:
            raise self.timed_out(failure)
        self.last = status
        if self.progress is not None:
            self.progress(status.files_done, status.total_files)
        return status

    def delay(self, status: BatchStatus) -> float:
        """Seconds to sleep before polling a batch that is not final (see `poll_delay`)."""
        if status.stage == "unknown" and not self.unknown_logged:
            self.unknown_logged = True
            _log.warning(
                "batch %s: status %r is not one the service documents; waiting until it says completed or"
                " failed, or every file is counted done",
                self.batch_id,
                status.status,
            )
        delay = poll_delay(status, self.poll_interval)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if delay >= left:  # the next poll would come too late: sleep out the time, then give up
                self.out_of_time = True
                return max(left, 0.0)
        return delay

    def timed_out(self, failure: Optional[str]) -> WaitTimeoutError:
        """What is known when time is out: the last status seen (if any), and why the last
        poll's requests did not answer (if they failed)."""
        status = self.last
        if status is None:
            message = f"batch {self.batch_id}: no status answer within {self.timeout:g} s"
        else:
            message = f"batch {self.batch_id} still {status.status or '(no status)'} after {self.timeout:g} s ({_files_done(status)})"
        if failure:
            message += f"; the last status request failed: {failure}"
        return WaitTimeoutError(message, status=status)

    def close(self) -> None:
        close_progress(self.progress)


def _files_done(status: BatchStatus) -> str:
    if status.total_files is None:
        return f"{status.files_done} files done, total not known"
    return f"{status.files_done}/{status.total_files} files done"


def wait(
    client: _core.Client, batch_id: str, *, poll_interval: float, timeout: Optional[float], progress: ProgressArg
) -> BatchStatus:
    plan = _PollPlan(batch_id, poll_interval, timeout, progress)
    try:
        while True:
            status = plan.answered(*client._poll_status(batch_id, *plan.request()))
            if status.is_final:
                return status
            time.sleep(plan.delay(status))  # a signal handler that raises (Ctrl-C: KeyboardInterrupt) ends the sleep at once
    finally:
        plan.close()


async def wait_async(
    client: _core.Client, batch_id: str, *, poll_interval: float, timeout: Optional[float], progress: ProgressArg
) -> BatchStatus:
    plan = _PollPlan(batch_id, poll_interval, timeout, progress)
    try:
        while True:
            status = plan.answered(*await client._poll_status_async(batch_id, *plan.request()))
            if status.is_final:
                return status
            await asyncio.sleep(plan.delay(status))
    finally:
        plan.close()
