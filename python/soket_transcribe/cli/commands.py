"""What each `soket-transcribe` command does, given its parsed arguments; each returns the exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from ..client import Client
from ..errors import SoketError, WaitTimeoutError
from ..models import BatchStatus
from ..progress import NoBar, progress_bar
from ..results import BatchResults
from ..subtitles import write_subtitles
from .sinks import Sink, open_sink
from .terminal import json_for_terminal, printable

__all__ = ["error", "results", "follow", "status", "wait", "subtitles", "mock_server", "demo"]


def error(e: object) -> None:
    """An error as one `error: ...` line on stderr."""
    print(f"error: {printable(' '.join(str(e).split()))}", file=sys.stderr)


def _client(args: argparse.Namespace, **options: Any) -> Client:
    if not (args.token or os.environ.get("SOKET_API_TOKEN")):
        raise ValueError("no API token: set SOKET_API_TOKEN or pass --token")
    return Client(args.token, args.base_url, **options)


# -- results -------------------------------------------------------------------------------


def results(args: argparse.Namespace) -> int:
    client = _client(args, concurrency=args.concurrency)
    if args.format == "parquet":
        _require_arrow()
    fetch = client.iter_jobs if args.raw else client.iter_files
    records = fetch(
        args.batch_id,
        status=args.status,
        limit=args.limit,
        chunks=True if args.chunks else None,
        speech_information=True if args.speech_information else None,
        start_page=args.start_page,
        max_items=args.max_items,
        transport=args.transport,
    )
    sink = open_sink(args.format, args.output, resume=args.start_page > 1)
    # Records on the terminal itself: a bar would be torn up by them.
    quiet = args.no_progress or sink.out.terminal
    bar = progress_bar("jobs" if args.raw else "files", enabled=not quiet, terminal_only=True)
    expected = _expected(records, args)
    resume_page = args.start_page  # the first page not yet written out
    logger = logging.getLogger("soket_transcribe")
    handler = _WarningsTo(bar)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            # What BatchResults warns about is also logged: the log handler shows it once.
            warnings.simplefilter("ignore", RuntimeWarning)
            done = 0
            for chunk in _chunks(records, args.format):
                sink.write(chunk)  # a page whole, or a write error at once
                resume_page = records.next_page
                done += len(chunk)
                bar(done, expected())
            sink.close()
        bar.close()
        if not records.complete:  # written, but not vouched for: a script must not take it as whole
            error(
                f"records may be missing from what was written (the batch moved while it was read: "
                f"see the warning above); read batch {args.batch_id} again once it is done"
            )
            return 1
        return 0
    except BrokenPipeError:
        sink.abandon()
        _silence_stdout()
        return 0
    except (SoketError, OSError, KeyboardInterrupt) as e:
        bar.close()
        kept = _abandon(sink)
        if isinstance(e, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            error(e)
        _tell_what_was_left(sink, kept, args, resume_page, started=records.total_pages is not None)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        logger.removeHandler(handler)


def _abandon(sink: Sink) -> Optional[str]:
    """Where the whole pages written are kept (well-formed), if anywhere."""
    try:
        return sink.abandon()
    except OSError as e:
        error(f"cannot keep what was written: {e}")
        return None


def _tell_what_was_left(sink: Sink, kept: Optional[str], args: argparse.Namespace, resume_page: int, started: bool) -> None:
    """The output after a stop, and a resume hint that is true for it."""
    if kept is not None:
        print(f"pages before {resume_page} are kept in {kept}; {sink.out.left_as_it_was()}", file=sys.stderr)
        print(f"resume with --start-page {resume_page} (it continues {kept})", file=sys.stderr)
        return
    left = sink.out.left_as_it_was()
    if left:  # a file: nothing of this run was kept
        print(left, file=sys.stderr)
        resume_page = args.start_page
    if started:  # some page arrived: every page before this one is written
        print(f"resume with --start-page {resume_page}", file=sys.stderr)


class _WarningsTo(logging.Handler):
    """The client's log warnings (a batch that changed while read), as `warning: ...` lines."""

    def __init__(self, bar: NoBar) -> None:
        super().__init__(logging.WARNING)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        self.bar.message(f"warning: {printable(record.getMessage())}")


def _expected(records: BatchResults, args: argparse.Namespace) -> Callable[[], Optional[int]]:
    """How many records this run should write, once the first page told the total."""

    def expected() -> Optional[int]:
        if records.total is None:
            return None
        left: int = max(records.total - (args.start_page - 1) * args.limit, 0)
        return left if args.max_items is None else min(left, int(args.max_items))

    return expected


def _chunks(records: BatchResults, format: str) -> Iterable[Any]:
    """The batch a page at a time: lists of records, or Arrow record batches for parquet."""
    if format == "parquet":
        return records.iter_arrow_batches()
    return (page.items for page in records.pages())


def _require_arrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'soket-transcribe[arrow]'") from None


def _silence_stdout() -> None:
    """The reader went away (`| head`): point stdout at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- status and wait -----------------------------------------------------------------------


def follow(args: argparse.Namespace) -> int:
    """Each file as one JSON line as soon as it is final, flushed per line (so `| jq` sees it at once)."""
    client = _client(args)
    progress = not args.no_progress and sys.stderr.isatty()
    followed = client.follow(
        args.batch_id,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        chunks=args.chunks or None,
        speech_information=args.speech_information or None,
        progress=progress,
    )
    out = sys.stdout
    try:
        for record in followed:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    except WaitTimeoutError as e:
        error(e)
        return 3
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        _silence_stdout()
        return 0
    final = client.status(args.batch_id)  # as `wait`: 1 when the batch as a whole failed
    if str(final.status).lower() == "failed":
        error(f"batch {args.batch_id} failed")
        return 1
    return 0


def status(args: argparse.Namespace) -> int:
    answer = _client(args).status(args.batch_id)
    _print_status(answer, args)
    return 0


def wait(args: argparse.Namespace) -> int:
    client = _client(args)
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        answer = client.wait(args.batch_id, poll_interval=args.poll_interval, timeout=args.timeout, progress=progress)
    except WaitTimeoutError as e:
        error(e)
        _print_status(e.status, args)
        return 3
    _print_status(answer, args)
    if str(answer.status).lower() == "failed":
        error(f"batch {args.batch_id} failed")
        return 1
    return 0


def _print_status(answer: BatchStatus, args: argparse.Namespace) -> None:
    """What the service said, as it said it: never a count it did not send, never its control characters."""
    if args.json:
        print(json_for_terminal(json.dumps(answer.to_dict(), ensure_ascii=False)))
        return
    print(f"batch     {printable(answer.batch_id or args.batch_id)}")
    print(f"status    {printable(answer.status) if answer.status else 'unknown'}")
    files = _files(answer)
    if files:
        print(f"files     {files}")
    if answer.estimated_audio_seconds is not None:
        print(f"audio     {_estimate(answer.estimated_audio_seconds)}")
    if answer.in_progress and answer.estimated_completion_seconds is not None:
        print(f"left      {_estimate(answer.estimated_completion_seconds)}")


def _files(answer: BatchStatus) -> str:
    """Files done of the total; the counts as sent when they do not add up (or a total is missing)."""
    completed, failed, total = answer.files_completed, answer.files_failed, answer.total_files
    counts = f"{_count(completed)} completed, {_count(failed)} failed"
    if total is None:
        return counts if completed is not None or failed is not None else ""
    if completed is not None and failed is not None and answer.files_done <= total:
        return f"{_count(answer.files_done)} of {_count(total)} done ({counts})"
    return f"{_count(total)} in the batch; the service counts {counts}"


def _count(n: Optional[float]) -> str:
    if n is None:
        return "unknown"
    return f"{int(n):,}" if n == int(n) else str(n)


def _estimate(seconds: float) -> str:
    if not 0 <= seconds < float("inf"):  # negative, infinite or NaN: the service does not know
        return "unknown"
    return f"{_duration(seconds)} (estimated)"


# -- subtitles -----------------------------------------------------------------------------


def subtitles(args: argparse.Namespace) -> int:
    client = _client(args)
    records = client.iter_files(args.batch_id, status="completed", speech_information=True)
    bar = progress_bar("files", enabled=not args.no_progress, terminal_only=True)

    def counted() -> Iterator[Any]:
        for done, record in enumerate(records, start=1):
            yield record
            bar(done, records.total)

    try:
        with warnings.catch_warnings():  # what was skipped is said below, once
            warnings.simplefilter("ignore", RuntimeWarning)
            paths = write_subtitles(counted(), args.output, args.format)
    finally:
        bar.close()
    print(f"{len(paths):,} {args.format} files written to {args.output}", file=sys.stderr)
    skipped = getattr(paths, "skipped", [])
    if skipped:
        file_id, why = skipped[0]
        more = f" (and {len(skipped) - 1:,} more)" if len(skipped) > 1 else ""
        print(
            f"{len(skipped):,} completed files skipped: {printable(str(file_id))}: {printable(why)}{more}",
            file=sys.stderr,
        )
    return 0


# -- mock-server ---------------------------------------------------------------------------


class _Stop(Exception):
    pass


def mock_server(args: argparse.Namespace) -> int:
    from ..testing import MockServer

    try:
        server = MockServer(
            args.files,
            seed=args.seed,
            token=args.token,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            port=args.port,
            rate_limit=args.rate_limit,
            burst=args.burst,
            retry_after=args.retry_after,
        )
    except OSError as e:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 1
    with server:
        print(f"soket-transcribe mock server: {args.files:,} files, fault rate {args.fault_rate}, latency {args.latency_ms} ms")
        if args.rate_limit is not None:
            retry = "no Retry-After" if args.retry_after is None else f"Retry-After {args.retry_after:g} s"
            print(f"  rate limit {args.rate_limit:g} requests/s, above it 429 with {retry}")
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


def demo(args: argparse.Namespace) -> int:
    from ..testing import MockServer

    with MockServer(args.files, latency_ms=args.latency_ms) as server:
        print(f"Fetching batch {server.batch_id} ({args.files:,} files) from a local mock of the Soket API at {server.url}")
        client = Client(server.token, server.url)
        records = client.iter_files(server.batch_id)
        bar = progress_bar("files", terminal_only=True)
        by_status: Counter[str] = Counter()
        audio_seconds = 0.0
        samples: List[Dict[str, Any]] = []
        start = time.perf_counter()
        for page in records.pages():
            for record in page.items:
                by_status[record.get("status") or "?"] += 1
                result = record.get("result") or {}
                audio_seconds += result.get("duration_seconds") or 0.0
                if len(samples) < 3 and result.get("text"):
                    samples.append(record)
            bar(sum(by_status.values()), records.total)
        elapsed = time.perf_counter() - start
        bar.close()

    files = sum(by_status.values())
    print()
    print(
        f"{files:,} files in {elapsed:.2f} s ({files / max(elapsed, 1e-9):,.0f} files/s;"
        f" {records.total_pages} pages of up to 200, {client.concurrency} at a time)"
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
