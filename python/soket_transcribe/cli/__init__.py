"""`soket-transcribe`: follow a batch, export its results or subtitles, run the mock server, or watch the demo.

    soket-transcribe wait BATCH_ID && soket-transcribe results BATCH_ID > results.jsonl   # token from SOKET_API_TOKEN
    soket-transcribe follow BATCH_ID | jq .filename                 # each file as soon as it is final
    soket-transcribe subtitles BATCH_ID -o subs/ --format vtt
    soket-transcribe mock-server --files 5000               # the embedded mock, in the foreground
    soket-transcribe demo                                   # the main job, end to end, locally
    soket-transcribe cache info                             # the cache of finished batches ($SOKET_CACHE_DIR)

Exit codes: 0 done, 1 the service or the connection failed, 2 bad arguments, 3 `wait` timed out,
130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from ..errors import SoketError
from . import cache, commands
from ..subtitles import FORMATS as SUBTITLE_FORMATS
from .sinks import FORMATS

__all__ = ["main"]

STATUSES = ("completed", "failed", "retrying", "processing")


def _seconds_or_none(text: str) -> Optional[float]:
    """`--retry-after`: seconds, or `none` for 429s without the header."""
    return None if text.lower() == "none" else float(text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # argparse: 2 for bad arguments, 0 after --help
        return exit.code if isinstance(exit.code, int) else 0
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except ValueError as e:
        commands.error(e)
        return 2
    except (SoketError, OSError) as e:  # OSError: the output file cannot be written
        commands.error(e)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soket-transcribe",
        description="Fetch Soket AI batch transcription results, fast.",
        epilog="Exit codes: 0 done, 1 API or connection error, 2 bad arguments, 3 wait timed out, 130 interrupted.",
    )
    service = argparse.ArgumentParser(add_help=False)
    service.add_argument(
        "--token", help="API token (default: $SOKET_API_TOKEN, better: a command line is visible to other users)"
    )
    service.add_argument("--base-url", metavar="URL", help="service URL (default: $SOKET_BASE_URL, else the Soket API)")
    # What several commands take, each defined once.
    batch = argparse.ArgumentParser(add_help=False)
    batch.add_argument("batch_id", metavar="BATCH_ID")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    content = argparse.ArgumentParser(add_help=False)
    content.add_argument("--chunks", action="store_true", help="include chunk-level results")
    content.add_argument(
        "--speech-information", action="store_true", help="include speech segments (speaker, tone, accent, timestamps)"
    )
    polling = argparse.ArgumentParser(add_help=False)
    polling.add_argument("--poll-interval", type=float, default=5.0, metavar="S", help="seconds between polls (default 5)")
    polling.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (default: never)")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    results = subcommands.add_parser(
        "results",
        parents=[service, batch, content, progress],
        help="export every result of a batch (JSONL on stdout by default)",
        description="Export every result of a batch, in page order, each once. JSONL on stdout by default.",
    )
    results.add_argument("--status", choices=STATUSES, help="only files (or jobs) with this status")
    results.add_argument("--raw", action="store_true", help="raw per-job records instead of merged per-file results")
    results.add_argument("--limit", type=int, default=200, metavar="N", help="records per page, 1..200 (default 200)")
    results.add_argument(
        "--start-page",
        type=int,
        default=1,
        metavar="P",
        help="first page to fetch, to resume after a stop: with -o, continues PATH.partial (else PATH)",
    )
    results.add_argument("--max-items", type=int, metavar="N", help="stop after N records")
    results.add_argument("--format", choices=FORMATS, default="jsonl", help="jsonl (default), json, csv or parquet")
    results.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="write to PATH (replaced only once complete) instead of stdout, which is also '-'; needed for csv, parquet",
    )
    results.add_argument("--concurrency", type=int, default=4, metavar="C", help="pages fetched at once (default 4)")
    results.add_argument(
        "--transport",
        choices=("pages", "download"),
        default="pages",
        help="pages: one request per page (default); download: the whole view in one /download stream",
    )
    results.set_defaults(run=commands.results)

    follow = subcommands.add_parser(
        "follow",
        parents=[service, batch, polling, content, progress],
        help="write each file of a running batch as a JSON line as soon as it is final",
        description="Follow a batch: each file once, as a JSON line flushed as soon as a poll finds it final, "
        "until every file is. Exit codes: 0 done, 1 the batch failed (or an error), 3 timed out.",
    )
    follow.add_argument("--format", choices=("jsonl",), default="jsonl", help="jsonl (the only one: a line per file)")
    follow.set_defaults(run=commands.follow)

    status = subcommands.add_parser(
        "status",
        parents=[service, batch],
        help="show a batch's progress",
        description="Show a batch's progress: its status, files done, and the service's estimates.",
    )
    status.add_argument("--json", action="store_true", help="the whole status answer as one JSON object")
    status.set_defaults(run=commands.status)

    wait = subcommands.add_parser(
        "wait",
        parents=[service, batch, polling, progress],
        help="wait until a batch is done (exit 0 done, 1 failed, 3 timed out)",
        description="Poll a batch's status until its files are done (never more than a minute apart), then show it. "
        "Exit codes: 0 done, 1 the batch failed (or an error), 3 timed out.",
    )
    wait.add_argument("--json", action="store_true", help="the final status answer as one JSON object")
    wait.set_defaults(run=commands.wait)

    subtitles = subcommands.add_parser(
        "subtitles",
        parents=[service, batch, progress],
        help="write an SRT or WebVTT file per completed file of a batch",
        description="Write one subtitle file per completed file of a batch into DIR, named after the audio file.",
    )
    subtitles.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write into (created)")
    subtitles.add_argument("--format", choices=SUBTITLE_FORMATS, default="srt", help="srt (default) or vtt")
    subtitles.set_defaults(run=commands.subtitles)

    mock = subcommands.add_parser(
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
    mock.add_argument("--rate-limit", type=float, metavar="R", help="answer 429 above R requests per second (default: no limit)")
    mock.add_argument("--burst", type=int, metavar="B", help="requests allowed at once above the rate (default: R rounded up)")
    mock.add_argument(
        "--retry-after", type=_seconds_or_none, default=1.0, metavar="S", help="Retry-After of those 429s, or none (default 1)"
    )
    mock.set_defaults(run=commands.mock_server)

    demo = subcommands.add_parser(
        "demo",
        help="fetch a whole batch from a local mock and summarise it",
        description="The main job end to end: start a local mock batch, fetch every file, summarise what came back.",
    )
    demo.add_argument("--files", type=int, default=5000, metavar="N", help="files in the batch (default 5000)")
    demo.add_argument("--latency-ms", type=int, default=0, metavar="L", help="delay the mock adds to every answer")
    demo.set_defaults(run=commands.demo)

    cache.add_parser(subcommands)
    return parser
