"""Where `soket-transcribe results` writes the records: JSON lines, a JSON array, CSV or Parquet.

Each sink takes the batch a page at a time (a list of records, or an Arrow record batch for
Parquet) and writes each page whole or not at all. `close()` completes the export (the file
replaces the target); `abandon()` after a failure keeps the whole pages written, well-formed,
as `PATH.partial` (see `outputs.py`). A resumed export (`resume=True`) continues that file, or
the target itself, after its last whole record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import Any, Dict, Iterator, List, Optional

from .outputs import Output, _Replacement, open_output
from .parquet import ParquetPages

__all__ = ["FORMATS", "Sink", "open_sink"]

FORMATS = ("jsonl", "json", "csv", "parquet")


class Sink:
    """Takes the batch a page at a time."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.pages = 0  # written whole by this run

    @property
    def name(self) -> str:
        return self.out.name

    def write(self, chunk: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """The export is complete: the output is finished (and replaces the target)."""
        self.out.commit()

    def abandon(self) -> Optional[str]:
        """The export stopped early: returns where what was written is kept, if anywhere."""
        return self.out.abandon(keep=self.pages > 0)


def open_sink(format: str, output: Optional[str], *, resume: bool) -> Sink:
    """A sink of `format` writing to `output` (None or `-`: stdout; csv and parquet need a file).
    `resume` continues the file a stopped export kept (`PATH.partial`), else `PATH` itself."""
    needs_file = format if format in ("csv", "parquet") else None
    out = open_output(output, resume=resume, needs_file=needs_file)
    try:
        return _SINKS[format](out)
    except BaseException:
        out.abandon(keep=False)
        raise


def _dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class _JsonLines(Sink):
    """One record per line, as the service sent it."""

    def __init__(self, out: Output) -> None:
        super().__init__(out)
        if out.base is not None:
            _copy(out.base, out, _whole_lines(out.base, quoted=False))

    def write(self, chunk: List[Any]) -> None:
        if chunk:
            self.out.write_page("".join(_dumps(record) + "\n" for record in chunk))
            self.pages += 1


class _JsonArray(Sink):
    """One JSON array, a record per line, written as the pages arrive; closed when abandoned."""

    def __init__(self, out: Output) -> None:
        super().__init__(out)
        self.separator = "[\n"  # the array opens with the first page, so nothing is written before
        if out.base is not None:
            end, empty = _array_body(out.base)
            _copy(out.base, out, end)
            self.separator = "\n" if empty else ",\n"

    def write(self, chunk: List[Any]) -> None:
        if chunk:
            self.out.write_page("".join(self._next() + _dumps(record) for record in chunk))
            self.pages += 1

    def _next(self) -> str:
        separator, self.separator = self.separator, ",\n"
        return separator

    def _end(self) -> str:
        return "[\n]\n" if self.separator == "[\n" else "\n]\n"

    def close(self) -> None:
        self.out.write_text(self._end())
        super().close()

    def abandon(self) -> Optional[str]:
        try:
            self.out.cut()
            self.out.write_text(self._end())
        except OSError:  # cannot close the array: keep nothing rather than a broken file
            self.pages = 0
        return super().abandon()


class _Csv(Sink):
    """Flat columns: nested objects as dotted columns (`result.text`), lists as JSON text.

    Columns come in the order first seen. A page that brings a new column (a field only some
    records carry) widens the header: the rows written so far are copied under the new one.
    """

    def __init__(self, out: Output) -> None:
        super().__init__(out)
        self.columns: List[str] = []
        if out.base is not None:
            self.columns = _csv_header(out.base)
            _copy(out.base, out, _whole_lines(out.base, quoted=True) if self.columns else 0)

    def write(self, chunk: List[Any]) -> None:
        rows = [_flat(record) for record in chunk]
        new = [key for key in dict.fromkeys(key for row in rows for key in row) if key not in self.columns]
        if new and self.columns:
            self._widen(new, rows)
        elif rows:
            self.columns += new
            self.out.write_page(_csv_text(self.columns, rows, header=bool(new)))
        self.pages += 1 if rows else 0

    def _widen(self, new: List[str], rows: List[Dict[str, Any]]) -> None:
        out = self.out
        assert isinstance(out, _Replacement)  # csv is only ever written to a regular file
        narrow, columns = out.swap(), self.columns
        self.columns = columns + new
        try:
            out.write_text(_csv_text(self.columns, [], header=True))
            with open(narrow, encoding="utf-8", newline="") as written:
                for page in _batched(csv.DictReader(written), 1000):
                    out.write_text(_csv_text(self.columns, page, header=False))
            out.write_page(_csv_text(self.columns, rows, header=False))
        except BaseException:
            out.restore(narrow)  # the file as it was before this page
            self.columns = columns
            raise
        os.remove(narrow)


def _csv_text(columns: List[str], rows: List[Dict[str, Any]], *, header: bool) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _batched(rows: Iterator[Dict[str, Any]], size: int) -> Iterator[List[Dict[str, Any]]]:
    page: List[Dict[str, Any]] = []
    for row in rows:
        page.append(row)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _csv_header(path: str) -> List[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader(f), [])


def _flat(record: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    row: Dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            row.update(_flat(value, f"{prefix}{key}."))
        elif value is not None:
            row[prefix + key] = _cell(value)
    return row


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return _dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class _Parquet(Sink):
    """Arrow record batches, one per page, into a Parquet file (see `parquet.py`)."""

    def __init__(self, out: Output) -> None:
        super().__init__(out)
        assert out.temporary is not None  # parquet is only ever written to a regular file
        self.parquet = ParquetPages(out.temporary, out.base)
        self.broken = False  # a write failed part way: the file cannot be cut back to a page

    def write(self, batch: Any) -> None:
        try:
            self.parquet.write(batch)
        except BaseException:
            self.broken = True
            raise
        self.pages += 1

    def close(self) -> None:
        try:
            self.parquet.close()
        except BaseException:
            self.broken = True  # its footer is missing
            raise
        super().close()

    def abandon(self) -> Optional[str]:
        try:
            if self.broken:
                self.pages = 0
            else:
                self.parquet.close()
        except OSError:
            self.pages = 0
        return super().abandon()


_SINKS = {"jsonl": _JsonLines, "json": _JsonArray, "csv": _Csv, "parquet": _Parquet}


# -- continuing a file ---------------------------------------------------------------------


def _copy(source: str, out: Output, length: int) -> None:
    """The first `length` bytes of `source` into `out`, as its first whole page."""
    with open(source, "rb") as f:
        left = length
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(out.fd, view) :]
            left -= len(chunk)
    out.page_done()


def _whole_lines(path: str, *, quoted: bool) -> int:
    """Bytes of `path` up to the end of its last complete line; `quoted` (CSV): a newline inside
    a quoted cell does not end a line."""
    end = offset = 0
    inside = False
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if not quoted:
                last = chunk.rfind(b"\n")
                end = offset + last + 1 if last >= 0 else end
            else:
                for mark in re.finditer(rb'["\n]', chunk):
                    if mark.group() == b'"':
                        inside = not inside
                    elif not inside:
                        end = offset + mark.end()
            offset += len(chunk)
    return end


def _array_body(path: str) -> "tuple[int, bool]":
    """Where the records of the JSON array in `path` end (before its closing bracket and the
    space around it), and whether it has none."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        f.seek(max(size - 4096, 0))
        tail = f.read()
    body = tail.rstrip()
    if not head.startswith(b"[") or not body.endswith(b"]"):
        raise ValueError(f"cannot continue {path}: it is not a JSON array")
    body = body[:-1].rstrip()
    end = size - len(tail) + len(body)
    with open(path, "rb") as f:
        empty = f.read(min(end, 4096)).strip() == b"["
    return end, empty
