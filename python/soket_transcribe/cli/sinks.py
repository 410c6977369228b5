"""Where `soket-transcribe results` writes the records: JSON lines, a JSON array, CSV or Parquet.

Each sink takes the batch a page at a time (a list of records, or an Arrow record batch for
Parquet) and leaves a well-formed file behind when closed early.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any, Dict, List, Optional, TextIO

__all__ = ["FORMATS", "Sink", "SchemaMismatch", "open_sink"]

FORMATS = ("jsonl", "json", "csv", "parquet")


class Sink:
    """Takes the batch a page at a time."""

    def write(self, chunk: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def open_sink(format: str, output: Optional[str], *, append: bool) -> Sink:
    """A sink of `format` writing to `output` (None: stdout; csv and parquet need a path).
    `append` (a resumed export) adds to a jsonl or csv file instead of replacing it."""
    if format in ("parquet", "csv"):
        if output is None:
            raise ValueError(f"--format {format} writes a file: give it -o PATH")
        return _Parquet(output) if format == "parquet" else _Csv(output, append=append)
    if output is None:
        out = _utf8_stdout()
    else:
        out = open(output, "a" if append and format == "jsonl" else "w", encoding="utf-8", newline="")
    return _JsonArray(out, owned=output is not None) if format == "json" else _JsonLines(out, output is not None)


def _utf8_stdout() -> TextIO:
    out = sys.stdout
    if (getattr(out, "encoding", None) or "utf-8").lower().replace("-", "") != "utf8":
        reconfigure = getattr(out, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8")
    return out


def _dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class _JsonLines(Sink):
    """One record per line, as the service sent it."""

    def __init__(self, out: TextIO, owned: bool) -> None:
        self.out, self.owned = out, owned

    def write(self, chunk: List[Any]) -> None:
        if chunk:
            self.out.write("\n".join(map(_dumps, chunk)) + "\n")

    def close(self) -> None:
        self.out.close() if self.owned else self.out.flush()


class _JsonArray(_JsonLines):
    """One JSON array, a record per line, written as the pages arrive."""

    def __init__(self, out: TextIO, owned: bool) -> None:
        super().__init__(out, owned)
        self.out.write("[")
        self.separator = "\n"

    def write(self, chunk: List[Any]) -> None:
        for record in chunk:
            self.out.write(self.separator + _dumps(record))
            self.separator = ",\n"

    def close(self) -> None:
        self.out.write("\n]\n")
        super().close()


class _Csv(Sink):
    """Flat columns: nested objects as dotted columns (`result.text`), lists as JSON text.

    Columns come in the order first seen. A page that brings a new column (a field only some
    records carry) widens the header: the rows written so far are copied under the new one.
    """

    def __init__(self, path: str, *, append: bool) -> None:
        self.path = path
        self.columns: List[str] = _csv_header(path) if append else []
        self.out = open(path, "a" if self.columns else "w", encoding="utf-8", newline="")
        self.writer = self._writer()

    def _writer(self) -> "csv.DictWriter[str]":
        return csv.DictWriter(self.out, self.columns, lineterminator="\n")

    def write(self, chunk: List[Any]) -> None:
        rows = [_flat(record) for record in chunk]
        new = [key for key in dict.fromkeys(key for row in rows for key in row) if key not in self.columns]
        if new and self.columns:
            self._widen(new)
        elif new:
            self.columns = new
            self.writer = self._writer()
            self.writer.writeheader()
        self.writer.writerows(rows)

    def _widen(self, new: List[str]) -> None:
        self.out.close()
        narrow = self.path + ".narrow"
        os.replace(self.path, narrow)
        self.columns += new
        self.out = open(self.path, "w", encoding="utf-8", newline="")
        self.writer = self._writer()
        self.writer.writeheader()
        with open(narrow, encoding="utf-8", newline="") as written:
            self.writer.writerows(csv.DictReader(written))
        os.remove(narrow)

    def close(self) -> None:
        self.out.close()


def _csv_header(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        return []


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
    """Arrow record batches, written one by one to a Parquet file.

    A Parquet file has one schema. When a page brings a field or a wider type the file does
    not have yet (a field only some records carry), the schema is widened and what was
    written so far is copied under it, a row group at a time; each page is then cast to it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.writer: Any = None
        self.schema: Any = None

    def write(self, batch: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.schema = batch.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        elif batch.schema != self.schema:
            try:
                wider = pa.unify_schemas([self.schema, batch.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise SchemaMismatch(str(e)) from None
            if wider != self.schema:
                self._rewrite(pa, pq, wider)
            batch = _conform(pa, batch, self.schema)
        self.writer.write_batch(batch)

    def _rewrite(self, pa: Any, pq: Any, schema: Any) -> None:
        self.writer.close()
        narrow = self.path + ".narrow"
        os.replace(self.path, narrow)
        self.schema = schema
        self.writer = pq.ParquetWriter(self.path, schema)
        written = pq.ParquetFile(narrow)
        for batch in written.iter_batches():
            self.writer.write_batch(_conform(pa, batch, schema))
        written.close()
        os.remove(narrow)

    def close(self) -> None:
        if self.writer is None:  # no records: still a readable, empty file
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.path)
        else:
            self.writer.close()
            self.writer = None


class SchemaMismatch(Exception):
    """A field's type on a later page cannot be reconciled with the one the Parquet file has."""


def _conform(pa: Any, batch: Any, schema: Any) -> Any:
    """`batch` under `schema`: columns matched by name, missing ones null, types cast."""
    try:
        columns = [
            batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(len(batch), f.type)
            for f in schema
        ]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise SchemaMismatch(str(e)) from None
    return pa.RecordBatch.from_arrays(columns, schema=schema)
