"""`Client.wait`: poll a batch's status until its files are done, sync or under asyncio.

Both faces follow one plan (`_PollPlan`): they differ only in how they sleep and ask.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import WaitTimeoutError
from .models import BatchStatus
from .progress import ProgressArg, close_progress, progress_callback

if TYPE_CHECKING:
    from .client import Client

__all__ = ["wait", "wait_async", "MAX_POLL_GAP"]

#: The longest wait between two polls, whatever the service estimates.
MAX_POLL_GAP = 60.0


class _PollPlan:
    """When to poll next, when to give up, and the progress shown meanwhile."""

    def __init__(self, batch_id: str, poll_interval: float, timeout: Optional[float], progress: ProgressArg) -> None:
        if not batch_id or not isinstance(batch_id, str):
            raise ValueError("batch_id must be a non-empty string")
        if not (isinstance(poll_interval, (int, float)) and 0 < poll_interval <= MAX_POLL_GAP):
            raise ValueError(f"poll_interval must be a number of seconds in (0, {MAX_POLL_GAP:g}]; got {poll_interval!r}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout >= 0):
            raise ValueError(f"timeout must be None or a number of seconds >= 0; got {timeout!r}")
        self.batch_id = batch_id
        self.poll_interval = float(poll_interval)
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.progress: Optional[Callable[[int, Optional[int]], Any]] = progress_callback(progress)

    def after(self, status: BatchStatus) -> Optional[float]:
        """Seconds to sleep before the next poll, or None when the batch is done.

        Never sooner than `poll_interval`; later when the service expects to need longer (its
        `estimated_completion_seconds`), but never more than a minute. Raises `WaitTimeoutError`
        once the timeout is spent."""
        if self.progress is not None:
            self.progress(status.files_done, status.total_files)
        if not status.in_progress:
            return None
        delay = self.poll_interval
        estimate = status.estimated_completion_seconds
        if estimate is not None and math.isfinite(estimate):
            delay = max(delay, min(estimate, MAX_POLL_GAP))
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError(
                    f"batch {self.batch_id} still {status.status} after {self.timeout:g} s"
                    f" ({status.files_done}/{status.total_files} files done)",
                    status=status,
                )
            delay = min(delay, left)  # one last poll at the deadline
        return delay

    def close(self) -> None:
        close_progress(self.progress)


def wait(
    client: "Client", batch_id: str, *, poll_interval: float, timeout: Optional[float], progress: ProgressArg
) -> BatchStatus:
    plan = _PollPlan(batch_id, poll_interval, timeout, progress)
    try:
        while True:
            status = client.status(batch_id)
            delay = plan.after(status)
            if delay is None:
                return status
            time.sleep(delay)  # a signal handler that raises (Ctrl-C: KeyboardInterrupt) ends the sleep at once
    finally:
        plan.close()


async def wait_async(
    client: "Client", batch_id: str, *, poll_interval: float, timeout: Optional[float], progress: ProgressArg
) -> BatchStatus:
    plan = _PollPlan(batch_id, poll_interval, timeout, progress)
    try:
        while True:
            status = await client.status_async(batch_id)
            delay = plan.after(status)
            if delay is None:
                return status
            await asyncio.sleep(delay)
    finally:
        plan.close()
