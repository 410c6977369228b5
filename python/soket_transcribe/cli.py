"""`soket-transcribe`: export a batch's results, run the mock server, or watch the demo.

    soket-transcribe results BATCH_ID > results.jsonl      # token from SOKET_API_TOKEN
    soket-transcribe mock-server --files 5000               # the embedded mock, in the foreground
    soket-transcribe demo                                   # the main job, end to end, locally

Exit codes: 0 done, 1 the service or the connection failed, 2 bad arguments, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO

from .client import Client
from .errors import SoketError
from .results import BatchResults

__all__ = ["main"]

STATUSES = ("completed", "failed", "retrying", "processing")
FORMATS = ("jsonl", "json", "csv", "parquet")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "results" and args.format in ("csv", "parquet") and args.output is None:
            parser.error(f"--format {args.format} writes a file: give it -o PATH")
    except SystemExit as exit:  # argparse: 2 for bad arguments, 0 after --help
        return exit.code if isinstance(exit.code, int) else 0
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except ValueError as e:
        _error(e)
        return 2
    except (SoketError, OSError) as e:  # OSError: the output file cannot be written
        _error(e)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


# -- arguments ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soket-transcribe",
        description="Fetch Soket AI batch transcription results, fast.",
        epilog="Exit codes: 0 done, 1 API or connection error, 2 bad arguments, 130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    results = commands.add_parser(
        "results",
        help="export every result of a batch (JSONL on stdout by default)",
        description="Export every result of a batch, in page order, each once. JSONL on stdout by default.",
    )
    results.add_argument("batch_id", metavar="BATCH_ID")
    results.add_argument("--status", choices=STATUSES, help="only files (or jobs) with this status")
    results.add_argument("--raw", action="store_true", help="raw per-job records instead of merged per-file results")
    results.add_argument("--chunks", action="store_true", help="include chunk-level results")
    results.add_argument(
        "--speech-information", action="store_true", help="include speech segments (speaker, tone, accent, timestamps)"
    )
    results.add_argument("--limit", type=int, default=200, metavar="N", help="records per page, 1..200 (default 200)")
    results.add_argument(
        "--start-page",
        type=int,
        default=1,
        metavar="P",
        help="first page to fetch, to resume after an error; jsonl and csv written with -o are then appended to",
    )
    results.add_argument("--max-items", type=int, metavar="N", help="stop after N records")
    results.add_argument("--format", choices=FORMATS, default="jsonl", help="jsonl (default), json, csv or parquet")
    results.add_argument("-o", "--output", metavar="PATH", help="write to PATH instead of stdout (needed for csv, parquet)")
    results.add_argument(
        "--token", help="API token (default: $SOKET_API_TOKEN, better: a command line is visible to other users)"
    )
    results.add_argument("--base-url", metavar="URL", help="service URL (default: $SOKET_BASE_URL, else the Soket API)")
    results.add_argument("--concurrency", type=int, default=4, metavar="C", help="pages fetched at once (default 4)")
    results.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    results.set_defaults(run=_results)

    mock = commands.add_parser(
        "mock-server",
        help="run the embedded mock of the API in the foreground",
        description="Run the embedded mock of the results API until Ctrl-C, for trying the client or testing your code.",
    )
    mock.add_argument("--port", type=int, default=0, metavar="P", help="TCP port on 127.0.0.1 (default: a free one)")
    mock.add_argument("--files", type=int, default=1000, metavar="N", help="files in the batch (default 1000)")
    mock.add_argument("--latency-ms", type=int, default=0, metavar="L", help="delay added to every answer")
    mock.add_argument("--fault-rate", type=float, default=0.0, metavar="R", help="fraction of requests that fail, 0..1")
    mock.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the records, batch id and faults")
    mock.add_argument("--token", default="test-token", metavar="T", help="token the server accepts (default test-token)")
    mock.set_defaults(run=_mock_server)

    demo = commands.add_parser(
        "demo",
        help="fetch a whole batch from a local mock and summarise it",
        description="The main job end to end: start a local mock batch, fetch every file, summarise what came back.",
    )
    demo.add_argument("--files", type=int, default=5000, metavar="N", help="files in the batch (default 5000)")
    demo.add_argument("--latency-ms", type=int, default=0, metavar="L", help="delay the mock adds to every answer")
    demo.set_defaults(run=_demo)
    return parser


def _error(e: object) -> None:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)


# -- results -------------------------------------------------------------------------------


def _results(args: argparse.Namespace) -> int:
    if not (args.token or os.environ.get("SOKET_API_TOKEN")):
        raise ValueError("no API token: set SOKET_API_TOKEN or pass --token")
    if args.format == "parquet":
        _require_arrow()
    client = Client(args.token, args.base_url, concurrency=args.concurrency)
    fetch = client.iter_jobs if args.raw else client.iter_files
    results = fetch(
        args.batch_id,
        status=args.status,
        limit=args.limit,
        chunks=True if args.chunks else None,
        speech_information=True if args.speech_information else None,
        start_page=args.start_page,
        max_items=args.max_items,
    )
    # Records on the terminal itself: a bar would be torn up by them.
    quiet = args.no_progress or (args.output is None and sys.stdout.isatty())
    bar = _progress_bar(quiet, "jobs" if args.raw else "files")
    expected = _expected(results, args)
    sink = _open_sink(args)
    resume_page = args.start_page  # the first page not yet written out
    logger = logging.getLogger("soket_transcribe")
    handler = _WarningsTo(bar)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            # What BatchResults warns about is also logged: the log handler shows it once.
            warnings.simplefilter("ignore", RuntimeWarning)
            done = 0
            for chunk in _chunks(results, args.format):
                sink.write(chunk)
                resume_page = results.next_page
                done += len(chunk)
                bar.update(done, expected())
        sink.close()
        bar.close()
        return 0
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except (SoketError, OSError, _SchemaMismatch, KeyboardInterrupt) as e:
        bar.close()
        try:
            sink.close()  # what was written stays well-formed: a closed array, a readable Parquet file
        except OSError:
            pass
        if isinstance(e, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        elif isinstance(e, _SchemaMismatch):
            _error(f"page {resume_page} does not fit the Parquet file's schema: {e}; --format jsonl keeps it as sent")
        else:
            _error(e)
        if results.total_pages is not None:  # some page arrived: every page before this one is written
            print(f"resume with --start-page {resume_page}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        logger.removeHandler(handler)


class _WarningsTo(logging.Handler):
    """The client's log warnings (a batch that changed while read), as `warning: ...` lines."""

    def __init__(self, bar: "_NoBar") -> None:
        super().__init__(logging.WARNING)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        self.bar.message(f"warning: {record.getMessage()}")


def _expected(results: BatchResults, args: argparse.Namespace) -> Callable[[], Optional[int]]:
    """How many records this run should write, once the first page told the total."""

    def expected() -> Optional[int]:
        if results.total is None:
            return None
        left: int = max(results.total - (args.start_page - 1) * args.limit, 0)
        return left if args.max_items is None else min(left, int(args.max_items))

    return expected


def _chunks(results: BatchResults, format: str) -> Iterable[Any]:
    """The batch a page at a time: lists of records, or Arrow record batches for parquet."""
    if format == "parquet":
        return results.iter_arrow_batches()
    return (page.items for page in results.pages())


def _require_arrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'soket-transcribe[arrow]'") from None
    if not hasattr(BatchResults, "iter_arrow_batches"):
        raise ValueError("--format parquet needs Arrow support (BatchResults.iter_arrow_batches), not in this version")


def _silence_stdout() -> None:
    """The reader went away (`| head`): point stdout at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- sinks: where the records go -----------------------------------------------------------


class _Sink:
    def write(self, chunk: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _open_sink(args: argparse.Namespace) -> _Sink:
    append = args.start_page > 1  # resuming: jsonl and csv files are added to
    if args.format == "parquet":
        return _Parquet(args.output)
    if args.format == "csv":
        return _Csv(args.output, append=append)
    if args.output is None:
        out = _utf8_stdout()
    else:
        out = open(args.output, "a" if append and args.format == "jsonl" else "w", encoding="utf-8", newline="")
    return _JsonArray(out, owned=args.output is not None) if args.format == "json" else _JsonLines(out, args.output is not None)


def _utf8_stdout() -> TextIO:
    out = sys.stdout
    if (getattr(out, "encoding", None) or "utf-8").lower().replace("-", "") != "utf8":
        reconfigure = getattr(out, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8")
    return out


def _dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class _JsonLines(_Sink):
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


class _Csv(_Sink):
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


class _Parquet(_Sink):
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
                raise _SchemaMismatch(str(e)) from None
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


class _SchemaMismatch(Exception):
    """A field's type on a later page cannot be reconciled with the one the Parquet file has."""


def _conform(pa: Any, batch: Any, schema: Any) -> Any:
    """`batch` under `schema`: columns matched by name, missing ones null, types cast."""
    try:
        columns = [
            batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(len(batch), f.type)
            for f in schema
        ]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise _SchemaMismatch(str(e)) from None
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# -- progress ------------------------------------------------------------------------------


class _NoBar:
    def update(self, done: int, total: Optional[int]) -> None:
        pass

    def message(self, text: str) -> None:
        print(text, file=sys.stderr)

    def close(self) -> None:
        pass


class _Bar(_NoBar):
    """One redrawn stderr line: done / total, percent, rate, ETA. At most ten redraws a second."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.start = time.perf_counter()
        self.drawn_at = 0.0
        self.line = ""

    def update(self, done: int, total: Optional[int]) -> None:
        now = time.perf_counter()
        if now - self.drawn_at < 0.1 and done != total:
            return
        self.drawn_at = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        if total:
            eta = "in " + _clock(elapsed) if done >= total else "ETA " + (_clock((total - done) / rate) if rate > 0 else "?")
            width = 24
            filled = min(width, width * done // total)
            line = (
                f"{done:,}/{total:,} {self.unit} [{'#' * filled}{'.' * (width - filled)}] {100 * done // total}%"
                f"  {rate:,.0f} {self.unit}/s  {eta}"
            )
        else:
            line = f"{done:,} {self.unit}  {rate:,.0f} {self.unit}/s  {_clock(elapsed)}"
        self._draw(line)

    def _draw(self, line: str) -> None:
        sys.stderr.write("\r" + line.ljust(len(self.line)))
        sys.stderr.flush()
        self.line = line

    def message(self, text: str) -> None:
        if self.line:
            sys.stderr.write("\r" + " " * len(self.line) + "\r")
        print(text, file=sys.stderr)
        if self.line:
            self._draw(self.line)

    def close(self) -> None:
        if self.line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.line = ""


def _progress_bar(disabled: bool, unit: str) -> _NoBar:
    return _NoBar() if disabled or not sys.stderr.isatty() else _Bar(unit)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


# -- mock-server ---------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _mock_server(args: argparse.Namespace) -> int:
    from .testing import MockServer

    try:
        server = MockServer(
            args.files,
            seed=args.seed,
            token=args.token,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            port=args.port,
        )
    except OSError as e:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 1
    with server:
        print(f"soket-transcribe mock server: {args.files:,} files, fault rate {args.fault_rate}, latency {args.latency_ms} ms")
        print(f"  url       {server.url}")
        print(f"  token     {server.token}")
        print(f"  batch id  {server.batch_id}")
        print()
        print("Use it from another shell:")
        print(f"  export SOKET_BASE_URL={server.url}")
        print(f"  export SOKET_API_TOKEN={server.token}")
        print(f"  soket-transcribe results {server.batch_id} > results.jsonl")
        print()
        print("Ctrl-C to stop.", flush=True)

        def stop(signum: int, frame: Any) -> None:
            raise _Stop

        signal.signal(signal.SIGTERM, stop)
        try:
            while True:
                time.sleep(3600)
        except (KeyboardInterrupt, _Stop):
            pass
    print("stopped", file=sys.stderr)
    return 0


# -- demo ----------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .testing import MockServer

    with MockServer(args.files, latency_ms=args.latency_ms) as server:
        print(f"Fetching batch {server.batch_id} ({args.files:,} files) from a local mock of the Soket API at {server.url}")
        client = Client(server.token, server.url)
        results = client.iter_files(server.batch_id)
        bar = _progress_bar(False, "files")
        by_status: Counter[str] = Counter()
        audio_seconds = 0.0
        samples: List[Dict[str, Any]] = []
        start = time.perf_counter()
        for page in results.pages():
            for record in page.items:
                by_status[record.get("status") or "?"] += 1
                result = record.get("result") or {}
                audio_seconds += result.get("duration_seconds") or 0.0
                if len(samples) < 3 and result.get("text"):
                    samples.append(record)
            bar.update(sum(by_status.values()), results.total)
        elapsed = time.perf_counter() - start
        bar.close()

    files = sum(by_status.values())
    print()
    print(
        f"{files:,} files in {elapsed:.2f} s ({files / max(elapsed, 1e-9):,.0f} files/s;"
        f" {results.total_pages} pages of up to 200, {client.concurrency} at a time)"
    )
    print()
    print("Files by status")
    for status, count in sorted(by_status.items(), key=lambda item: -item[1]):
        print(f"  {status:<12}{count:>8,}  {100 * count / max(files, 1):5.1f}%")
    print()
    print(f"Total audio: {_duration(audio_seconds)} ({audio_seconds:,.0f} s)")
    print()
    print("A few transcripts")
    for record in samples:
        result = record["result"]
        text = " ".join(result["text"].split())
        about = ", ".join(str(v) for v in (result.get("language"), _duration(result.get("duration_seconds") or 0)) if v)
        print(f"  {record.get('filename')} ({about})")
        print(f"    {text[:80]}{'…' if len(text) > 80 else ''}")
    print()
    print("Next: `soket-transcribe mock-server` serves a batch to try `soket-transcribe results` or your own code.")
    return 0


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02} min" if hours else f"{minutes} min {int(seconds % 60):02} s"
