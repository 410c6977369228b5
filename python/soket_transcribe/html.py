"""How a batch shows itself in a notebook (`_repr_html_`): a bar of completed / failed / running
files, the totals, and any note. Plain HTML with inline styles: no script, nothing fetched."""

from __future__ import annotations

from html import escape
from typing import Iterable, Optional

__all__ = ["batch_bar", "progress_block"]

_COLOURS = {"completed": "#2e7d32", "failed": "#c62828", "running": "#9e9e9e"}


def batch_bar(
    title: str,
    *,
    total: Optional[int],
    completed: Optional[int] = None,
    failed: Optional[int] = None,
    final: Optional[int] = None,
    notes: Iterable[str] = (),
) -> str:
    """`completed` and `failed` when they are known apart, else `final` (both together)."""
    parts = []
    if completed is not None or failed is not None:
        parts = [("completed", completed or 0), ("failed", failed or 0)]
    elif final is not None:
        parts = [("completed", final)]
    done = sum(count for _, count in parts)
    if total:
        parts.append(("running", max(total - done, 0)))
    segments = "".join(
        f'<div title="{name}: {count:,}" style="width:{100 * count / total:.2f}%;background:{_COLOURS[name]}"></div>'
        for name, count in parts
        if total and count
    )
    counts = ", ".join(f"{count:,} {name}" for name, count in parts)
    return _block(title, f"{done:,} of {_of(total)} files final ({counts})", segments, notes)


def progress_block(title: str, *, done: int, total: Optional[int], unit: str, notes: Iterable[str] = ()) -> str:
    """A bar of `done` out of `total` (None: not known yet), with notes below."""
    width = 100 * min(done, total) / total if total else 0.0
    segment = f'<div style="width:{width:.2f}%;background:{_COLOURS["completed"]}"></div>'
    return _block(title, f"{done:,} of {_of(total)} {unit}", segment, notes)


def _of(total: Optional[int]) -> str:
    return "?" if total is None else f"{total:,}"


def _block(title: str, summary: str, segments: str, notes: Iterable[str]) -> str:
    """The one layout: a bold title and a summary, a bar of `segments`, a line per note."""
    lines = "".join(f"<div>{escape(note)}</div>" for note in notes)
    return (
        f'<div style="font-family:sans-serif;font-size:13px;max-width:40em">'
        f"<b>{escape(title)}</b>: {escape(summary)}"
        f'<div style="display:flex;height:10px;background:#eee;margin:4px 0">{segments}</div>'
        f"{lines}</div>"
    )
