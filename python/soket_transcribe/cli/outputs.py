"""Where an export's bytes go, a page at a time, so that no failure destroys what was there.

A regular file is never written in place: the export goes to a temporary file beside it, renamed
over it only once complete. When the export stops early, the whole pages written so far are kept
as `PATH.partial` (a page cut short is cut off), which a resumed export (`--start-page`) continues.
Stdout, a device or a FIFO is written directly and never renamed over or deleted.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from typing import Optional

from .terminal import json_for_terminal

__all__ = ["Output", "open_output", "partial_path"]


def partial_path(path: str) -> str:
    """Where an export to `path` that stopped early keeps its whole pages."""
    return path + ".partial"


class Output:
    """A file descriptor written a page at a time; `boundary` is the end of the last whole page."""

    def __init__(self, fd: int, name: str, *, terminal: bool = False) -> None:
        self.fd, self.name, self.terminal = fd, name, terminal
        self.boundary = self._position()

    def write_text(self, text: str) -> None:
        if self.terminal:
            text = json_for_terminal(text)
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(self.fd, view) :]

    def write_page(self, text: str) -> None:
        """`text` written whole, or (on any failure) none of it, where the file allows cutting."""
        try:
            self.write_text(text)
        except BaseException:
            self.cut()
            raise
        self.page_done()

    def page_done(self) -> None:
        self.boundary = self._position()

    def cut(self) -> None:
        """Cuts off what follows the last whole page (a regular file only)."""
        if self.boundary is not None and stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.ftruncate(self.fd, self.boundary)
            os.lseek(self.fd, self.boundary, os.SEEK_SET)

    def _position(self) -> Optional[int]:
        try:
            return os.lseek(self.fd, 0, os.SEEK_CUR)
        except OSError:  # a pipe or a terminal
            return None

    # -- how it ends -------------------------------------------------------------------------
    base: Optional[str] = None  # the file a resumed export continues, if any
    temporary: Optional[str] = None  # the file written, when it is not the target itself

    def commit(self) -> None:
        """The export is complete."""

    def abandon(self, keep: bool) -> Optional[str]:
        """The export stopped early; returns where its whole pages are kept, if anywhere."""
        return None

    def left_as_it_was(self) -> str:
        """What became of the target when nothing was kept."""
        return ""


class _Direct(Output):
    """Stdout, a device or a FIFO: written as it goes, never renamed over or removed."""

    def __init__(self, fd: int, name: str, *, owned: bool, terminal: bool = False) -> None:
        super().__init__(fd, name, terminal=terminal)
        self.owned = owned

    def commit(self) -> None:
        self._close()

    def abandon(self, keep: bool) -> Optional[str]:
        self._close()
        return None

    def _close(self) -> None:
        if self.owned:
            os.close(self.fd)
            self.owned = False


class _Replacement(Output):
    """A temporary file beside the target `path`, renamed over it on success."""

    def __init__(self, name: str, path: str, *, resume: bool) -> None:
        self.path = path
        self.existed = os.path.exists(path)
        self.base = _base(path) if resume else None
        self.temporary, fd = _create_beside(path)
        super().__init__(fd, name)

    def _close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def swap(self) -> str:
        """A new, empty temporary file becomes the output; returns the old one's path (closed)."""
        old = self.temporary
        assert old is not None
        self._close()
        self.temporary, self.fd = _create_beside(self.path)
        self.boundary = 0
        return old

    def restore(self, old: str) -> None:
        """Undoes `swap`: the old temporary file is the output again, written up to its end."""
        self._close()
        os.remove(self.temporary)  # type: ignore[arg-type]
        self.temporary, self.fd = old, os.open(old, os.O_WRONLY)
        self.boundary = os.lseek(self.fd, 0, os.SEEK_END)

    def left_as_it_was(self) -> str:
        return f"{self.name} is left as it was" if self.existed else f"{self.name} was not written"

    def commit(self) -> None:
        self._close()
        assert self.temporary is not None
        if self.existed:
            os.chmod(self.temporary, stat.S_IMODE(os.stat(self.path).st_mode))
        os.replace(self.temporary, self.path)
        if self.base == partial_path(self.path):  # continued, now whole
            os.remove(self.base)

    def abandon(self, keep: bool) -> Optional[str]:
        self._close()
        if self.temporary is None or not os.path.exists(self.temporary):  # renamed already
            return None
        if not keep:
            os.remove(self.temporary)
            return None
        kept = partial_path(self.path)
        os.replace(self.temporary, kept)
        return kept


def _base(path: str) -> Optional[str]:
    """What a resumed export to `path` continues: the pages a stopped export kept, else `path`."""
    for candidate in (partial_path(path), path):
        if os.path.isfile(candidate):
            return candidate
    return None


def _create_beside(path: str) -> "tuple[str, int]":
    """A new file in `path`'s folder (so a rename is atomic), with the mode a new file gets."""
    folder, name = os.path.split(path)
    while True:
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def open_output(output: Optional[str], *, resume: bool, needs_file: Optional[str] = None) -> Output:
    """The output for `-o output` (None or `-`: stdout). `needs_file` (a format's name) refuses
    anything but a regular file, for formats that may rewrite what they wrote."""
    if output is None or output == "-":
        if needs_file:
            raise ValueError(f"--format {needs_file} writes a file: give it -o PATH (not stdout)")
        sys.stdout.flush()
        fd = sys.stdout.fileno()
        return _Direct(fd, "stdout", owned=False, terminal=os.isatty(fd))
    path = os.path.realpath(output)  # through a link: the file it names is replaced, the link stays
    if os.path.exists(path) and not os.path.isfile(path):
        if needs_file:
            raise ValueError(f"--format {needs_file} needs -o to name a regular file (it may be rewritten); {output} is not one")
        return _Direct(os.open(path, os.O_WRONLY), output, owned=True)
    return _Replacement(output, path, resume=resume)
