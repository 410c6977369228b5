"""The one progress bar, shared by the table methods, `Client.wait` and the command line.

`tqdm.auto` (a widget in notebooks) when tqdm is installed, else one line on stderr redrawn at
most ten times a second. Both read the same: `1,234/5,000 files`, a bar, percent, rate and ETA.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Union

__all__ = ["ProgressArg", "ProgressBar", "NoBar", "progress_bar", "progress_callback", "close_progress"]

#: `progress=` of the table methods: True for a bar, or a callable `(done, total)`.
ProgressArg = Union[bool, Callable[[int, Optional[int]], Any]]


class NoBar:
    """A bar that shows nothing; messages still reach stderr."""

    def __call__(self, done: int, total: Optional[int]) -> None:
        pass

    def message(self, text: str) -> None:
        print(text, file=sys.stderr)

    def close(self) -> None:
        pass


class ProgressBar(NoBar):
    """Progress over a count of `unit`s; call it as `(done, total)`, total None until known."""

    def __init__(self, unit: str = "files") -> None:
        self.unit = unit
        self._tqdm: Any = None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._start = time.perf_counter()
            self._drawn_at = 0.0
            self._line = ""
        else:
            self._tqdm = tqdm(total=None, unit=f" {unit}", desc="soket-transcribe", bar_format=self._tqdm_format(None))

    def _tqdm_format(self, total: Optional[int]) -> str:
        # Exact counts with thousands separators, as the stderr line shows them (not `1.23k`).
        if total is None:
            return "{desc}: {n:,} " + self.unit + " [{elapsed}, {rate_fmt}]"
        return "{desc}: {n:,}/{total:,} " + self.unit + " |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}, {rate_fmt}]"

    def __call__(self, done: int, total: Optional[int]) -> None:
        bar = self._tqdm
        if bar is not None:
            if total is not None and bar.total != total:
                bar.total = total
                bar.bar_format = self._tqdm_format(total)
            bar.update(done - bar.n)
            return
        now = time.perf_counter()
        if now - self._drawn_at < 0.1 and done != total:
            return
        self._drawn_at = now
        self._draw(_line(done, total, self.unit, max(now - self._start, 1e-9)))

    def _draw(self, line: str) -> None:
        sys.stderr.write("\r" + line.ljust(len(self._line)))
        sys.stderr.flush()
        self._line = line

    def message(self, text: str) -> None:
        """A line printed above the bar, which is drawn again below it."""
        if self._tqdm is not None:
            self._tqdm.write(text, file=sys.stderr)
            return
        if self._line:
            sys.stderr.write("\r" + " " * len(self._line) + "\r")
        print(text, file=sys.stderr)
        if self._line:
            self._draw(self._line)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._line = ""


def _line(done: int, total: Optional[int], unit: str, elapsed: float) -> str:
    rate = done / elapsed
    if not total:
        return f"{done:,} {unit}  {rate:,.0f} {unit}/s  {_clock(elapsed)}"
    eta = "in " + _clock(elapsed) if done >= total else "ETA " + (_clock((total - done) / rate) if rate > 0 else "?")
    width = 24
    filled = min(width, width * done // total)
    return (
        f"{done:,}/{total:,} {unit} [{'#' * filled}{'.' * (width - filled)}] {100 * done // total}%"
        f"  {rate:,.0f} {unit}/s  {eta}"
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def progress_bar(unit: str, *, enabled: bool = True, terminal_only: bool = False) -> NoBar:
    """A `ProgressBar`, or a `NoBar` when disabled or (`terminal_only`) stderr is not a terminal."""
    if not enabled or (terminal_only and not sys.stderr.isatty()):
        return NoBar()
    return ProgressBar(unit)


def progress_callback(progress: ProgressArg, unit: str = "files") -> Optional[Callable[[int, Optional[int]], Any]]:
    """What to call after each step: None, a new `ProgressBar`, or the caller's own callable."""
    if progress is True:
        return ProgressBar(unit)
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be a bool or a callable (done, total); got {type(progress).__name__}")


def close_progress(callback: Any) -> None:
    """Closes the bar `progress_callback` made (a caller's own callable is left alone)."""
    if isinstance(callback, NoBar):
        callback.close()
