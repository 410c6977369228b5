"""Benchmarks of soket-transcribe against the clients a user would pick instead.

    pip install -e ".[bench]" jiter py-spy   # the peers; jiter and py-spy for the breakdown
    python bench/run.py                  # every scenario, writes bench/RESULTS.md (~15 min)
    python bench/run.py --quick          # smaller batches, fewer runs (~2 min), prints only
    python bench/run.py --scenarios throughput,latency
    python bench/run.py --url URL --token T --batch B   # against any server instead of the mock

The mock server runs in a process of its own (so its CPU is not charged to the client's
process), and every timed run is a fresh `python bench/peers.py PEER` process. Rounds are
interleaved (each round runs every peer once, in a rotated order) so that a burst of load on
the machine hits every peer alike. See `method()` below, written into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers.py"
RESULTS = BENCH / "RESULTS.md"
KEEP_HEADING = "## Where the time goes"
CRASHES: List[str] = []  # processes that died after reporting (e.g. at interpreter exit)

STREAMING = ["ours_sync", "ours_async", "requests_json", "httpx_orjson", "aiohttp_orjson"]
BREAKDOWN = ["orjson_memory", "jiter_memory", "iterate_memory", "ours_pages"]
PROJECTION = ["ours_fields", "ours_dataclass", "ours_sync", "orjson_memory"]
TABLES = ["ours_pandas", "requests_dataframe", "requests_json_normalize", "aiohttp_orjson_dataframe"]
TABLES_BREAKDOWN = ["ours_pandas_pyarrow_dtypes", "ours_arrow"]
ARROW = ["ours_arrow_nested", "ours_arrow_async", "duckdb_stream"]  # against ours_sync (a `for` loop)
CACHE = ["ours_cached", "orjson_memory", "ours_sync"]
CACHE_TABLES = ["ours_pandas_cached", "ours_pandas"]
DOWNLOAD = ["ours_download", "ours_sync"]
DOWNLOAD_TABLES = ["ours_pandas_download", "ours_pandas"]
PACKAGES = ["soket-transcribe", "requests", "httpx", "aiohttp", "orjson", "jiter", "pandas", "pyarrow", "psutil"]

SERVER = """
import json, sys
from soket_transcribe.testing import MockServer
files, latency_ms, gzip = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
final = "final" in sys.argv[4:]  # every file completed or failed: a batch the cache keeps
statuses = {"completed": 0.85, "failed": 0.15} if final else None
# "rate=R,B[,A]": the service's rate limit, R requests/s with bursts of B, answering 429 above it
# with Retry-After: A seconds (1 when not given; "none": without the header).
rate = [a[5:].split(",") for a in sys.argv[4:] if a.startswith("rate=")]
limits = {"rate_limit": float(rate[0][0]), "burst": int(rate[0][1])} if rate else {}
if rate and len(rate[0]) > 2:
    limits["retry_after"] = None if rate[0][2] == "none" else float(rate[0][2])
with MockServer(files=files, latency_ms=latency_ms, gzip=gzip, statuses=statuses, **limits) as srv:
    print(json.dumps({"url": srv.url, "token": srv.token, "batch": srv.batch_id}), flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


# -- processes -----------------------------------------------------------------------------


@contextmanager
def mock_server(
    files: int, latency_ms: int = 0, gzip: bool = False, final: bool = False, rate: Optional[str] = None
) -> Iterator[Dict[str, str]]:
    """The embedded mock in a process of its own; yields url, token, batch. `rate`: "R,B" or
    "R,B,A", the service's rate limit (R requests/s, bursts of B, `Retry-After: A`, "none": no header)."""
    extra = (["final"] if final else []) + ([f"rate={rate}"] if rate else [])
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(files), str(latency_ms), "1" if gzip else "0"] + extra,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError("the mock server did not start (see its stderr above)")
        yield json.loads(line)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_peer(peer: str, server: Dict[str, str], args: argparse.Namespace, **opts: Any) -> Dict[str, Any]:
    cmd = [sys.executable, str(PEERS), peer, "--url", server["url"], "--token", server["token"]]
    cmd += ["--batch", server["batch"], "--limit", str(args.limit), "--concurrency", str(args.concurrency)]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not False:
            cmd += [flag, str(value)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"{peer} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1])
    if proc.returncode != 0:
        # The run finished and reported; the process died on its way out. Keep the figures, say so.
        CRASHES.append(f"{peer} (exit status {proc.returncode})")
        print(f"  ! {peer} died with exit status {proc.returncode} after reporting its run", flush=True)
    return out


def rounds(
    peers: Sequence[str], server: Dict[str, str], args: argparse.Namespace, n: int, warmup: int
) -> Dict[str, List[Dict[str, Any]]]:
    """`n` rounds, each running every peer once in a fresh process, the order rotated per round."""
    results: Dict[str, List[Dict[str, Any]]] = {p: [] for p in peers}
    for r in range(n):
        order = list(peers[r % len(peers) :]) + list(peers[: r % len(peers)])
        for peer in order:
            out = run_peer(peer, server, args, warmup=warmup)
            if "skipped" in out:
                results[peer] = [out]
                continue
            results[peer].append(out)
            print(f"  round {r + 1}/{n} {peer:26s} {out['times'][0]:8.3f} s  {out['count']} records", flush=True)
        peers = [p for p in peers if "skipped" not in results[p][0]]
    for peer, outs in results.items():
        if outs and "skipped" in outs[0]:
            print(f"  {peer}: skipped: {outs[0]['skipped']}", flush=True)
    return results


def check_same(results: Dict[str, List[Dict[str, Any]]], key: str = "checksum") -> None:
    """Every peer consumed the same records: same count, same checksum, in every run."""
    seen = {(o["count"], o[key]) for outs in results.values() for o in outs if "skipped" not in o and key in o}
    if len(seen) != 1:
        detail = {p: sorted({(o["count"], o.get(key)) for o in outs if "skipped" not in o}) for p, outs in results.items()}
        raise RuntimeError(f"peers disagree on what they consumed: {detail}")


# -- the machine and its noise -------------------------------------------------------------


def compilers_running() -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            n += comm in ("rustc", "cargo", "cc", "ld", "cc1", "clippy-driver")
    return n


def noise() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average {load}; compiler processes running: {compilers_running()}"


def machine() -> List[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":/src", ":/python"], capture_output=True, text=True, cwd=BENCH).stdout.strip()
        commit += " (with uncommitted changes in src/ or python/)" if dirty else ""
    except OSError:
        commit = "unknown"
    import hashlib

    import soket_transcribe
    from soket_transcribe import _core

    so = Path(_core.__file__)
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(so.stat().st_mtime))
    digest = hashlib.sha256(so.read_bytes()).hexdigest()[:12]
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {mem_kb / 2**20:.0f} GiB RAM",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()} ({platform.python_implementation()})",
        f"- soket-transcribe at commit {commit}, release build; benchmarked from "
        f"`{Path(soket_transcribe.__file__).parent}`, `_core` built {built} (sha256 {digest})",
        "- " + ", ".join(versions),
    ]


# -- figures -------------------------------------------------------------------------------


def median(outs: List[Dict[str, Any]]) -> float:
    return statistics.median(t for o in outs for t in o["times"])


def spread(outs: List[Dict[str, Any]]) -> str:
    times = [t for o in outs for t in o["times"]]
    return f"{min(times):.3f}–{max(times):.3f}"


def mb_above(o: Dict[str, Any]) -> float:
    return (o["peak_kb"] - o["baseline_kb"]) / 1024


class Report:
    def __init__(self) -> None:
        self.sections: List[str] = []
        self.targets: List[List[str]] = []
        self.noise: List[str] = []

    def table(self, title: str, header: Sequence[str], rows: List[Sequence[str]], note: str = "") -> None:
        lines = [f"### {title}", ""]
        if note:
            lines += [note, ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        self.sections.append("\n".join(lines))
        print("\n" + "\n".join(lines), flush=True)

    def target(self, what: str, goal: str, measured: str, met: Optional[bool]) -> None:
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        self.targets.append([what, goal, measured, verdict])


def ok(results: Dict[str, List[Dict[str, Any]]], peer: str) -> bool:
    return bool(results.get(peer)) and "skipped" not in results[peer][0]


def scenario_throughput(args: argparse.Namespace, report: Report) -> None:
    files, n = (20_000, 3) if args.quick else (100_000, args.runs)
    with server_for(args, files) as srv:
        report.noise.append(f"throughput, before: {noise()}")
        print(f"\n== throughput: {srv['batch']} ({files} files unless --url), verifying records first", flush=True)
        verify = {p: [run_peer(p, srv, args, verify=True)] for p in STREAMING + ["orjson_memory"]}
        check_same(verify)
        res = rounds(STREAMING + BREAKDOWN, srv, args, n, warmup=1)
        check_same({p: o for p, o in res.items() if p != "ours_pages" and ok(res, p)})
        if ok(res, "ours_pages"):
            check_same({"ours_pages": res["ours_pages"], "ours_sync": [dict(o, checksum=0) for o in res["ours_sync"]]})
        report.noise.append(f"throughput, after: {noise()}")
    records = res["ours_sync"][0]["count"]
    ours = median(res["ours_sync"])
    rows = []
    for p in [p for p in STREAMING + BREAKDOWN if ok(res, p)]:
        m = median(res[p])
        rows.append([p, f"{m:.3f}", spread(res[p]), f"{records / m / 1e3:,.0f}k", f"{m / ours:.2f}x"])
    report.table(
        f"1. Throughput: {records:,} records, limit {args.limit}, concurrency {args.concurrency}, no latency, gzip off",
        ["client", "median s", "min–max s", "records/s", "time / ours_sync"],
        rows,
        note=f"Median of {n} runs each; every peer yielded the same {records:,} records "
        "(deep digest of every record compared across peers before timing). "
        "The last four rows are the breakdown, not peers: see the method.",
    )
    best_async = min(median(res["httpx_orjson"]), median(res["aiohttp_orjson"]))
    limit = median(res["orjson_memory"])
    for face in ("ours_sync", "ours_async"):
        m = median(res[face])
        r = median(res["requests_json"]) / m
        report.target(f"throughput, {face} vs requests+json", ">= 3x faster", f"{r:.2f}x", r >= 3)
        r = best_async / m
        report.target(f"throughput, {face} vs best asyncio+orjson", ">= 2x faster", f"{r:.2f}x", r >= 2)
        r = m / limit
        report.target(f"throughput, {face} vs orjson.loads in memory", "<= 1.5x its time", f"{r:.2f}x", r <= 1.5)


def scenario_projection(args: argparse.Namespace, report: Report) -> None:
    """Build less: `fields=` (gzip on the wire, as a real service sends it) and typed records."""
    files, n = (20_000, 3) if args.quick else (100_000, args.runs)
    with server_for(args, files, gzip=True) as srv:
        print(f"\n== projection and dataclasses: {files} files, gzip on", flush=True)
        res = rounds(PROJECTION, srv, args, n, warmup=1)
        check_same({p: o for p, o in res.items() if ok(res, p)})  # the same file ids, in the same order
    records = res["ours_sync"][0]["count"]
    limit = median(res["orjson_memory"])
    rows = []
    for p in [p for p in PROJECTION if ok(res, p)]:
        m = median(res[p])
        rows.append([p, f"{m:.3f}", spread(res[p]), f"{m / limit:.2f}x", f"{m / median(res['ours_sync']):.2f}x"])
    report.table(
        f"Projection and typed records: {records:,} files with speech information, gzip on the wire",
        ["client", "median s", "min–max s", "time / orjson_memory", "time / ours_sync"],
        rows,
        note=f"Median of {n} runs each. ours_fields: fields={['file_id', 'status', 'result.text']}; "
        "orjson_memory: orjson.loads over the same (inflated) bytes already in memory, whole records.",
    )
    r = median(res["ours_fields"]) / limit
    report.target("fields=[file_id, status, result.text] vs orjson.loads in memory", "<= 0.6x its time", f"{r:.2f}x", r <= 0.6)
    r = median(res["ours_dataclass"]) / median(res["ours_sync"])
    report.target("as_dataclass=True vs dicts", "<= 1.15x their time", f"{r:.2f}x", r <= 1.15)


def scenario_latency(args: argparse.Namespace, report: Report) -> None:
    pages = 50 if args.quick else 200
    n = 3 if args.quick else args.runs
    latency = args.latency_ms
    with server_for(args, pages * args.limit, latency_ms=latency) as srv:
        report.noise.append(f"latency, before: {noise()}")
        print(f"\n== latency-bound: {pages} pages, {latency} ms each", flush=True)
        res = rounds(STREAMING, srv, args, n, warmup=0)
        check_same(res)
        report.noise.append(f"latency, after: {noise()}")
    ideal = pages * latency / 1000 / args.concurrency
    rows = []
    for p in STREAMING:
        m = median(res[p])
        rows.append([p, f"{m:.3f}", spread(res[p]), f"{m / ideal:.2f}x"])
    report.table(
        f"2. Latency-bound: {pages} pages x {latency} ms, concurrency {args.concurrency}",
        ["client", "median s", "min–max s", "time / ideal"],
        rows,
        note=f"Ideal = pages x latency / concurrency = {ideal:.2f} s (the first page alone costs one "
        f"more latency, so {(latency / 1000 + (pages - 1) * latency / 1000 / args.concurrency):.2f} s is the "
        f"true floor). Median of {n} runs, no warm-up run.",
    )
    for face in ("ours_sync", "ours_async"):
        r = median(res[face]) / ideal
        report.target(f"latency-bound, {face} vs ideal", "<= 1.2x", f"{r:.2f}x", r <= 1.2)


def scenario_tables(args: argparse.Namespace, report: Report) -> None:
    files, n = (20_000, 3) if args.quick else (100_000, args.runs)
    with server_for(args, files) as srv:
        report.noise.append(f"tables, before: {noise()}")
        print("\n== tables: to a pandas DataFrame", flush=True)
        res = rounds(TABLES + TABLES_BREAKDOWN + ARROW + ["ours_sync"], srv, args, n, warmup=1)
        check_same({p: o for p, o in res.items() if ok(res, p)})
        report.noise.append(f"tables, after: {noise()}")
    base = median(res["requests_dataframe"])
    rows = []
    for p in TABLES + TABLES_BREAKDOWN:
        if not ok(res, p):
            rows.append([p, "skipped", "", "", res[p][0]["skipped"] if res[p] else ""])
            continue
        m = median(res[p])
        rows.append([p, f"{m:.3f}", spread(res[p]), "x".join(map(str, res[p][0]["shape"])), f"{base / m:.2f}x"])
    report.table(
        f"3. Tables: {res['requests_dataframe'][0]['shape'][0]:,} files to a pandas DataFrame",
        ["client", "median s", "min–max s", "rows x columns", "speed vs requests + pd.DataFrame"],
        rows,
        note=f"Median of {n} runs, after one warm-up run in the same process. `.to_pandas()` flattens "
        "nested objects into dotted columns by default (as `pd.json_normalize` does); `pd.DataFrame(list)` "
        "keeps them as dicts. The last two rows are the breakdown: `.to_pandas(dtype_backend=\"pyarrow\")` "
        "and the Arrow table alone (`.to_arrow(flatten=True)`).",
    )
    if ok(res, "ours_pandas"):
        r = base / median(res["ours_pandas"])
        report.target("tables, to_pandas() vs requests + pd.DataFrame", ">= 3x faster", f"{r:.2f}x", r >= 3)
    else:
        report.target("tables, to_pandas() vs requests + pd.DataFrame", ">= 3x faster", "not built yet", None)
    arrow_table(res, n, report)


def arrow_table(res: Dict[str, List[Dict[str, Any]]], n: int, report: Report) -> None:
    """Arrow tables against iterating the same batch, with the peak memory against the table's size."""
    loop = median(res["ours_sync"])
    rows = []
    for p in ["ours_sync"] + ARROW:
        if not ok(res, p):
            rows.append([p, "skipped", "", "", "", "", res[p][0]["skipped"] if res[p] else ""])
            continue
        m = median(res[p])
        peak = statistics.median(mb_above(o) if p == "ours_sync" else o["run_peak_kb"] / 1024 for o in res[p])
        table = res[p][0].get("table_mb") if p != "duckdb_stream" else None
        ratio = f"{peak / table:.2f}x" if table else ""
        rows.append([p, f"{m:.3f}", spread(res[p]), f"{m / loop:.2f}x", f"{peak:.0f}", f"{table or ''}", ratio])
    report.table(
        f"3b. Arrow: {res['ours_sync'][0]['count']:,} files to an Arrow table, against `for f in iter_files()`",
        ["client", "median s", "min–max s", "time / ours_sync", "peak MB", "table MB", "peak / table"],
        rows,
        note=f"Median of {n} runs, after one warm-up run in the same process. `ours_arrow_nested` is "
        "`.to_arrow()` (nested columns), `ours_arrow_async` `await .to_arrow_async()`, `duckdb_stream` "
        "`duckdb.sql(\"select file_id, status, result.duration_seconds from res\")` over the Arrow stream. "
        "Peak MB: how much a run raised the process's RSS at most (VmHWM, reset before each run, above "
        "the RSS then; for ours_sync over its RSS before the first run); table MB: the table's Arrow "
        "buffers (`Table.nbytes`).",
    )
    for p in ("ours_arrow_nested", "ours_arrow_async"):
        if not ok(res, p):
            continue
        r = median(res[p]) / loop
        report.target(f"tables, {p} vs for f in iter_files()", "<= 0.6x its time", f"{r:.2f}x", r <= 0.6)
        table = res[p][0]["table_mb"]
        r = statistics.median(o["run_peak_kb"] / 1024 for o in res[p]) / table
        report.target(f"tables, {p} peak memory", "<= 1.5x the table", f"{r:.2f}x", r <= 1.5)


def scenario_memory(args: argparse.Namespace, report: Report) -> None:
    sizes = [20_000, 200_000] if args.quick else [100_000, 1_000_000]
    n = 1 if args.quick else args.memory_runs
    table: Dict[int, Dict[str, List[Dict[str, Any]]]] = {}
    for files in sizes:
        with server_for(args, files) as srv:
            report.noise.append(f"memory {files}, before: {noise()}")
            print(f"\n== memory: streaming {files:,} files", flush=True)
            table[files] = rounds(STREAMING, srv, args, n, warmup=0)
            check_same(table[files])
            report.noise.append(f"memory {files}, after: {noise()}")
    rows = []
    for p in STREAMING:
        row = [p]
        for files in sizes:
            row.append(f"{statistics.median(mb_above(o) for o in table[files][p]):.1f}")
        big = table[sizes[-1]][p]
        row += [f"{big[0]['baseline_kb'] / 1024:.0f}", f"{median(big):.2f}"]
        rows.append(row)
    report.table(
        "4. Memory: peak RSS above the baseline while streaming",
        ["client"] + [f"MB above baseline, {f:,} files" for f in sizes] + ["baseline MB", f"time s, {sizes[-1]:,} files"],
        rows,
        note=f"Each figure is the median over {n} fresh process(es): the peak RSS of the run (VmHWM, reset "
        "right after the peer's imports) minus the RSS at that moment (before its client exists).",
    )
    for face in ("ours_sync", "ours_async"):
        small, big = (statistics.median(mb_above(o) for o in table[f][face]) for f in sizes)
        report.target(f"memory, {face} streaming {sizes[-1]:,} files", "< 100 MB above baseline", f"{big:.1f} MB", big < 100)
        report.target(
            f"memory, {face} flat ({sizes[0]:,} -> {sizes[-1]:,} files)",
            "flat",
            f"{small:.1f} -> {big:.1f} MB",
            big - small < 10,
        )


FLAT_READER = """
import json, sys, time
from argparse import Namespace
sys.path.insert(0, sys.argv[1])
from peers import Config, _client, _requests_pages, _reset_peak_rss, _status_kb
reader, cfg, marks = sys.argv[2], Config(Namespace(**json.loads(sys.argv[3]))), iter(map(int, sys.argv[4].split(",")))
if reader == "requests_json":
    import requests  # noqa: F401  (imported before the baseline, as ours is)
else:
    import soket_transcribe  # noqa: F401

def records():
    if reader == "requests_json":
        return (f for _, data in _requests_pages(cfg) for f in data["files"])
    return _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True, transport=reader)

_reset_peak_rss()
baseline = _status_kb("VmRSS")
peaks, n, h, mark, t0 = [], 0, 0, next(marks), time.perf_counter()
for f in records():
    n += 1
    h ^= hash(f["file_id"])
    if n == mark:
        peaks.append(_status_kb("VmHWM") - baseline)  # the peak so far, not the RSS now
        mark = next(marks, 0)
seconds = time.perf_counter() - t0
print(json.dumps({"count": n, "checksum": h, "peaks_kb": peaks, "baseline_kb": baseline, "times": [seconds]}))
"""
FLAT_READERS = ["download", "pages", "requests_json"]


def read_with_marks(reader: str, srv: Dict[str, str], args: argparse.Namespace, marks: List[int]) -> Dict[str, Any]:
    """One fresh process reading the whole batch with `reader`, noting its peak RSS above the
    baseline after each of `marks` records."""
    cfg = {"url": srv["url"], "token": srv["token"], "batch": srv["batch"], "limit": args.limit, "concurrency": args.concurrency}
    cmd = [sys.executable, "-c", FLAT_READER, str(BENCH), reader, json.dumps(cfg), ",".join(map(str, marks))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{reader} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1])
    if len(out["peaks_kb"]) != len(marks):
        raise RuntimeError(f"{reader} read {out['count']:,} records, fewer than {marks[-1]:,}")
    return out


def scenario_memory_download(args: argparse.Namespace, report: Report) -> None:
    """Memory flat over one long read (issue 22): the peak RSS above the baseline after a tenth,
    a quarter, half, three quarters and all of 1M files of the same read, `transport="download"`
    beside the pages and a `requests` + `json` loop, a fresh process per run, interleaved."""
    files = 200_000 if args.quick else 1_000_000
    marks = [files // 10, files // 4, files // 2, files * 3 // 4, files]
    n = 1 if args.quick else args.memory_runs
    res: Dict[str, List[Dict[str, Any]]] = {r: [] for r in FLAT_READERS}
    with server_for(args, files, final=True) as srv:
        load = [noise()]
        print(f"\n== memory over one read of {files:,} files: download, pages, requests + json", flush=True)
        for r in range(n):
            for reader in FLAT_READERS[r % 3 :] + FLAT_READERS[: r % 3]:
                out = read_with_marks(reader, srv, args, marks)
                res[reader].append(out)
                print(f"  round {r + 1}/{n} {reader:14s} {out['times'][0]:7.2f} s  peaks MB {[round(k / 1024, 1) for k in out['peaks_kb']]}", flush=True)
        load.append(noise())
    check_same(res)
    rows = []
    for reader in FLAT_READERS:
        peaks = [statistics.median(o["peaks_kb"][i] for o in res[reader]) / 1024 for i in range(len(marks))]
        top = [o["peaks_kb"][-1] / 1024 for o in res[reader]]
        rows.append([reader] + [f"{p:.1f}" for p in peaks] + [f"{min(top):.1f}–{max(top):.1f}", f"{res[reader][0]['baseline_kb'] / 1024:.0f}", f"{median(res[reader]):.2f}"])
    report.table(
        f"Memory over one read of {files:,} files: `transport=\"download\"` against the pages",
        ["reader"] + [f"peak MB after {m:,}" for m in marks] + [f"min–max at {files:,}", "baseline MB", "median s"],
        rows,
        note=f"Median of {n} fresh processes per reader, interleaved. Each figure is the peak RSS so far "
        "(VmHWM, reset right after the imports) minus the RSS then, read at that record of the same read. "
        "download: `for f in client.iter_files(batch, transport=\"download\")`; pages: the same without "
        f"`transport`; requests_json: one `Session`, page after page, `r.json()`. Limit {args.limit}, "
        f"concurrency {args.concurrency}; every run read every file with the same checksum. Load before: {load[0]}; after: {load[1]}.",
    )
    for reader in ("download", "pages"):
        first, last = (statistics.median(o["peaks_kb"][i] for o in res[reader]) / 1024 for i in (0, -1))
        report.target(f"memory, {reader} flat ({marks[0]:,} -> {files:,} files of one read)", "flat", f"{first:.1f} -> {last:.1f} MB", last - first < 10)


def scenario_gzip(args: argparse.Namespace, report: Report) -> None:
    """Does compression change the picture on loopback? A few runs with gzip on."""
    files, n = (20_000, 1) if args.quick else (100_000, 3)
    res = {}
    for gz in (False, True):
        with server_for(args, files, gzip=gz) as srv:
            print(f"\n== gzip {'on' if gz else 'off'}", flush=True)
            res[gz] = rounds(["ours_sync", "aiohttp_orjson", "requests_json"], srv, args, n, warmup=1)
    rows = [[p, f"{median(res[False][p]):.3f}", f"{median(res[True][p]):.3f}"] for p in res[False]]
    report.table(
        f"Gzip on loopback: {files:,} files",
        ["client", "median s, gzip off", "median s, gzip on"],
        rows,
        note=f"Median of {n} runs. The other scenarios run with gzip off: on loopback compression only adds CPU.",
    )


def scenario_cache(args: argparse.Namespace, report: Report) -> None:
    """A re-run: the same finished batch read again from the cache (`cache_dir=`), no request."""
    files, n = (20_000, 3) if args.quick else (100_000, args.runs)
    with server_for(args, files, final=True) as srv:
        print(f"\n== cache: {files} files, every one final, read again from the cache", flush=True)
        res = rounds(CACHE, srv, args, n, warmup=1)
        check_same({p: o for p, o in res.items() if ok(res, p)})
        tables = rounds(CACHE_TABLES, srv, args, n, warmup=1)
    with server_for(args, files, gzip=True, final=True) as srv:
        entry, gzipped = entry_and_gzip_bytes(srv, args)
    records = res["ours_cached"][0]["count"]
    limit = median(res["orjson_memory"])
    rows = [[p, f"{median(res[p]):.3f}", spread(res[p]), f"{median(res[p]) / limit:.2f}x"] for p in CACHE if ok(res, p)]
    rows += [[p, f"{median(tables[p]):.3f}", spread(tables[p]), ""] for p in CACHE_TABLES if ok(tables, p)]
    report.table(
        f"Cache: {records:,} files read again from `cache_dir` (no request), against a first read",
        ["client", "median s", "min–max s", "time / orjson_memory"],
        rows,
        note=f"Median of {n} runs each, each a new client on a cache filled once before the clock. "
        "ours_cached: `for f in iter_files(...)` served from the entry (each run checks `stats['requests'] == 0`); "
        "ours_sync and ours_pandas: a first read from the mock; orjson_memory: `orjson.loads` over the "
        f"page bodies in memory. Entry on disk: {entry / 1e6:.1f} MB; the gzip answers of the service "
        f"(the mock, gzip on): {gzipped / 1e6:.1f} MB.",
    )
    r = median(res["ours_cached"]) / limit
    report.target("cache re-read as dicts vs orjson.loads in memory", "<= 1.1x its time", f"{r:.2f}x", r <= 1.1)
    r = median(tables["ours_pandas_cached"]) / median(tables["ours_pandas"])
    report.target("cache .to_pandas() vs a first read", "< 1x its time", f"{r:.2f}x", r < 1)
    report.target("cache entry vs the gzip answers", "<= 1x their size", f"{entry / gzipped:.2f}x", entry <= gzipped)


def scenario_download(args: argparse.Namespace, report: Report) -> None:
    """One `/download` stream against the pages: on loopback, and at 50 ms a request under a
    rate limit of 40 requests/s (burst 8), where the pages pay both and the stream once."""
    files, n = (20_000, 3) if args.quick else (100_000, args.runs)
    with server_for(args, files, final=True) as srv:
        print(f"\n== download: {files} files on loopback, one stream against {files // args.limit} pages", flush=True)
        res = rounds(DOWNLOAD, srv, args, n, warmup=1)
        check_same(res)
        tables = rounds(DOWNLOAD_TABLES, srv, args, n, warmup=1)
    rows = [[p, f"{median(res[p]):.3f}", spread(res[p])] for p in DOWNLOAD]
    rows += [[p, f"{median(tables[p]):.3f}", spread(tables[p])] for p in DOWNLOAD_TABLES]
    report.table(
        f"Download: {files:,} files on loopback, one `/download` stream against the pages",
        ["client", "median s", "min–max s"],
        rows,
        note=f"Median of {n} runs each after a warm-up; limit {args.limit}, concurrency {args.concurrency}. "
        "ours_download / ours_pandas_download: `transport=\"download\"`; ours_sync / ours_pandas: the pages.",
    )
    for face, paged, what in [("ours_download", "ours_sync", "dicts"), ("ours_pandas_download", "ours_pandas", "to_pandas")]:
        outs = res if face in res else tables
        r = median(outs[face]) / median(outs[paged])
        report.target(f"download vs pages on loopback, {what}", "<= 1.1x their time", f"{r:.2f}x", r <= 1.1)
    latency, slow_n = 50, (1 if args.quick else 3)
    with mock_server(files, latency_ms=latency, final=True, rate="40,8") as srv:
        print(f"\n== download: {files} files at {latency} ms a request, 40 requests/s (burst 8)", flush=True)
        slow = rounds(DOWNLOAD, srv, args, slow_n, warmup=0)
        check_same(slow)
    pages = files // args.limit
    report.table(
        f"Download under latency and a rate limit: {files:,} files, {latency} ms a request, 40 requests/s burst 8",
        ["client", "requests", "median s", "min–max s"],
        [
            ["ours_download", "1 stream (+1 status)", f"{median(slow['ours_download']):.3f}", spread(slow["ours_download"])],
            ["ours_sync", f"{pages} pages", f"{median(slow['ours_sync']):.3f}", spread(slow["ours_sync"])],
        ],
        note=f"Median of {slow_n} runs, no warm-up (the mock's token bucket refills between runs). "
        f"The pages cannot go faster than the limit: {pages} requests at 40/s is {max(pages - 8, 0) / 40:.1f} s at least.",
    )
    r = median(slow["ours_download"]) / median(slow["ours_sync"])
    report.target("download vs pages at 50 ms and 40 req/s", "<= 0.2x their time", f"{r:.2f}x", r <= 0.2)


def entry_and_gzip_bytes(srv: Dict[str, str], args: argparse.Namespace) -> tuple:
    """The size of the batch's cache entry, and of the gzip answers the service sent for it."""
    import tempfile
    import urllib.request

    import soket_transcribe as st

    with tempfile.TemporaryDirectory() as cache_dir:
        client = st.Client(srv["token"], srv["url"], cache_dir=cache_dir, concurrency=args.concurrency)
        res = client.iter_files(srv["batch"], limit=args.limit, speech_information=True)
        for _ in res:
            pass
        entry = client.cache_info()["bytes"]
    gzipped = 0
    for page in range(1, (res.total_pages or 0) + 1):
        url = f"{srv['url'].rstrip('/')}/results/batch/{srv['batch']}?page={page}&limit={args.limit}&speech_information=true"
        headers = {"Authorization": f"Bearer {srv['token']}", "Accept-Encoding": "gzip"}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:
            gzipped += len(answer.read())
    return entry, gzipped


RATE, BURST, RATE_PAGES, RATE_LIMIT = 40, 8, 400, 25
RATE_CONCURRENCY = [4, 8, 16, 32]


@contextmanager
def rate_limited_server(retry_after: Optional[float]) -> Iterator[Dict[str, str]]:
    """The mock behind a token bucket (RATE/s, BURST), in a process of its own."""
    answer = "none" if retry_after is None else str(retry_after)
    with mock_server(RATE_PAGES * RATE_LIMIT, rate=f"{RATE},{BURST},{answer}") as srv:
        yield srv


def scenario_ratelimit(args: argparse.Namespace, report: Report) -> None:
    """A rate-limited service: 400 pages of 25 behind a bucket of 40/s, burst 8, with and without
    Retry-After; time against the ideal (the burst used once, then the rate) and 429s per page.
    Every row runs `--runs` times (the peer's Retry-After rows take ~50 s a run), interleaved."""
    ideal = (RATE_PAGES - BURST) / RATE
    n = 1 if args.quick else args.runs
    rows, worst, most, load = [], 0.0, 0.0, []
    for retry_after in (1.0, None):
        header = "Retry-After: 1" if retry_after else "no Retry-After"
        with rate_limited_server(retry_after) as srv:
            runs = [(f"ours, concurrency {c}", "ours_ratelimit", c) for c in RATE_CONCURRENCY]
            runs.append(("ours, 2 threads on one client (concurrency 8)", "ours_ratelimit_threads", 8))
            runs += [(f"aiohttp + Retry-After, concurrency {c}", "aiohttp_retry_after", c) for c in RATE_CONCURRENCY]
            outs = ratelimit_rounds(runs, srv, args, n, header, load)
        for label, peer, _ in runs:
            t, r = median(outs[label]), [o["times"][0] / ideal for o in outs[label]]
            per_page = statistics.median(o["throttled"] for o in outs[label]) / RATE_PAGES
            rows.append([header, label, f"{t:.2f}", spread(outs[label]), f"{t / ideal:.2f}x", f"{min(r):.2f}–{max(r):.2f}x", f"{per_page:.3f}"])
            if peer.startswith("ours"):
                worst, most = max(worst, t / ideal), max(most, per_page)
    report.table(
        f"Rate limits: {RATE_PAGES * RATE_LIMIT:,} files in {RATE_PAGES} pages of {RATE_LIMIT}, a bucket of {RATE}/s, burst {BURST}",
        ["service", "client", "median s", "min–max s", "time / ideal", "min–max / ideal", "429s per page (median)"],
        rows,
        note=f"Ideal: (pages - burst) / rate = {ideal:.1f} s. Median of {n} runs per row, each a fresh process and "
        "client (default settings but `concurrency`); the rows interleaved (each round runs every row of a "
        "service once, the order rotated per round). Every run read every file. The 1-minute load average before "
        "each round (the benchmark itself adds about 2): " + "; ".join(load) + ".",
    )
    report.target("rate limit: time / ideal, every row of ours (median)", "<= 1.25x", f"{worst:.2f}x", worst <= 1.25)
    report.target("rate limit: 429s per page served, every row of ours (median)", "<= 0.1", f"{most:.3f}", most <= 0.1)


def ratelimit_rounds(
    runs: List[tuple], srv: Dict[str, str], args: argparse.Namespace, n: int, header: str, load: List[str]
) -> Dict[str, List[Dict[str, Any]]]:
    """`n` rounds, each running every row once in a fresh process, the order rotated per round;
    notes the load before each round."""
    outs: Dict[str, List[Dict[str, Any]]] = {label: [] for label, _, _ in runs}
    for r in range(n):
        load.append(f"{header} {r + 1}: {os.getloadavg()[0]:.2f} ({compilers_running()} compiler processes)")
        for label, peer, concurrency in runs[r % len(runs) :] + runs[: r % len(runs)]:
            opts = argparse.Namespace(**{**vars(args), "limit": RATE_LIMIT, "concurrency": concurrency})
            out = run_peer(peer, srv, opts)
            if out["count"] != RATE_PAGES * RATE_LIMIT:
                raise RuntimeError(f"{label}: read {out['count']} files")
            outs[label].append(out)
            t = out["times"][0]
            print(f"  round {r + 1}/{n} {header:15s} {label:48s} {t:7.2f} s  {t / ((RATE_PAGES - BURST) / RATE):5.2f}x  {out['throttled']} 429s", flush=True)
    return outs


@contextmanager
def server_for(
    args: argparse.Namespace, files: int, latency_ms: int = 0, gzip: bool = False, final: bool = False
) -> Iterator[Dict[str, str]]:
    if args.url:
        yield {"url": args.url, "token": args.token, "batch": args.batch}
    else:
        with mock_server(files, latency_ms, gzip, final) as srv:
            yield srv


SCENARIOS = {
    "throughput": scenario_throughput,
    "projection": scenario_projection,
    "latency": scenario_latency,
    "tables": scenario_tables,
    "memory": scenario_memory,
    "memory_download": scenario_memory_download,
    "gzip": scenario_gzip,
    "cache": scenario_cache,
    "download": scenario_download,
    "ratelimit": scenario_ratelimit,
}


def method(args: argparse.Namespace) -> str:
    return f"""## Method

- Server: the embedded mock (`soket_transcribe.testing.MockServer`, written in Rust) in a
  process of its own on 127.0.0.1, so its CPU is not charged to the client's process (it
  still shares the machine's {os.cpu_count()} cores). Gzip is off except in the gzip table: on
  loopback, compression only adds CPU to both ends.
- Every client fetches the same batch with `limit={args.limit}`, `speech_information=true`,
  `concurrency={args.concurrency}` where it has one, and hands every record to the same loop that
  counts records and folds their `file_id`s into a checksum. Before the throughput rounds,
  each peer runs once folding a SHA-256 of every whole record (keys sorted): all must agree.
- Correctness, not only speed: the mock sends integers beyond 64 bits (`metadata.trace_id`);
  `orjson.loads` reads them as floats (precision lost), our client and `json` keep them exact.
  The digest compares them as orjson reads them, so that difference is tolerated, not hidden.
- Each timed run is a fresh process (`python bench/peers.py PEER ...`). The clock runs from
  creating the client/session to the last record consumed. Rounds are interleaved: each
  round runs every peer once, the order rotated per round. Throughput and tables runs are
  preceded by one untimed warm-up run in the same process; latency and memory runs are not.
- Peers: `requests_json` is a notebook's loop (one `Session`, page after page, `r.json()`).
  `httpx_orjson` and `aiohttp_orjson` fetch the first page, then keep `concurrency` requests
  in flight in a sliding window consumed in page order (a `gather` of every page would hold
  the whole batch in memory), parsing each body with `orjson.loads`. `ours_sync` is
  `for f in client.iter_files(...)`, `ours_async` is `async for f in client.iter_files(...)`.
- Breakdown rows (not peers): `orjson_memory` (the limit) and `jiter_memory` parse the same
  page bodies already in memory (fetched before the clock starts) and run the same loop;
  `iterate_memory` runs only the loop over records already parsed (`jiter_memory` uses
  `cache_mode="keys"`, as the core does); `ours_pages` is our
  pipeline (fetch + parse into Python objects) without the per-record loop
  (`for p in res.pages(): len(p.items)`).
- Memory: in a fresh process per run, after the peer's imports the peak-RSS counter is reset
  (`/proc/self/clear_refs`) and the RSS noted as the baseline; the figure is the peak RSS
  (`VmHWM`) at the end minus that baseline. (`ru_maxrss` is not used: Linux carries it over
  fork+exec, so a child starts with its parent's peak.)
- Ratios are of medians from this one run of `bench/run.py`."""


def write_results(args: argparse.Namespace, report: Report, started: str, elapsed: float, host: List[str]) -> None:
    kept = ""
    if RESULTS.exists():
        text = RESULTS.read_text()
        if KEEP_HEADING in text:
            kept = text[text.index(KEEP_HEADING) :].rstrip() + "\n"
    summary = ["| target | goal | measured | met |", "|---|---|---|---|"]
    summary += ["| " + " | ".join(row) + " |" for row in report.targets]
    parts = [
        "# Benchmark results",
        "",
        f"Written by `python bench/run.py` on {started} (took {elapsed / 60:.1f} min). "
        "Re-run it to refresh this file; the section \"Where the time goes\" is written by hand and kept.",
        "",
        "## Machine",
        "",
        *host,
        "",
        "How busy it was (the machine is shared with engineers compiling Rust; the benchmark itself, "
        "client and server, adds about 2 to the load average):",
        "",
        *[f"- {line}" for line in report.noise],
        "",
        *(
            ["Processes that finished and reported their run, then died on the way out (figures kept):", ""]
            + [f"- {c}: {n} time(s)" for c, n in sorted(Counter(CRASHES).items())]
            + [""]
            if CRASHES
            else []
        ),
        "## Targets (issue 5)",
        "",
        *summary,
        "",
        "## Figures",
        "",
        "\n\n".join(report.sections),
        "",
        method(args),
        "",
    ]
    RESULTS.write_text("\n".join(parts) + ("\n" + kept if kept else ""))
    print(f"\nwrote {RESULTS}")


def main() -> None:
    p = argparse.ArgumentParser(description="Benchmarks of soket-transcribe against its peers.")
    p.add_argument("--quick", action="store_true", help="small batches, few runs; does not write RESULTS.md")
    p.add_argument("--scenarios", help="comma-separated, from: " + ", ".join(SCENARIOS) + " (default: all; with --url: throughput,tables)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per peer (default 5)")
    p.add_argument("--memory-runs", type=int, default=3, help="runs per peer and batch size for memory (default 3)")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--url", help="benchmark this server instead of the mock (then batch sizes are the server's)")
    p.add_argument("--token")
    p.add_argument("--batch")
    p.add_argument("--write", action="store_true", help="write RESULTS.md even with --quick or --scenarios")
    args = p.parse_args()
    if args.url and not (args.token and args.batch):
        p.error("--url needs --token and --batch")
    default = "throughput,tables" if args.url else ",".join(SCENARIOS)
    names = [s.strip() for s in (args.scenarios or default).split(",") if s.strip()]
    for name in names:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}")
        if args.url and name not in ("throughput", "tables"):
            p.error(f"the {name} scenario sets the mock's latency or size: it cannot run against --url")

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.monotonic()
    report = Report()
    host = machine()
    print("\n".join(host), flush=True)
    for name in names:
        SCENARIOS[name](args, report)
    print("\n" + "\n".join(f"{r[0]}: {r[2]} (goal {r[1]}) met: {r[3]}" for r in report.targets))
    full = not args.quick and not args.url and set(names) == set(SCENARIOS)
    if full or args.write:
        write_results(args, report, started, time.monotonic() - t0, host)


if __name__ == "__main__":
    main()
