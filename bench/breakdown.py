"""Where our client's time goes: `python bench/breakdown.py [--files N] [--peer P ...]`.

1. CPU seconds per thread of one run (main thread vs the tokio workers), from /proc.
2. py-spy (`pip install py-spy`) samples of the main thread's wall time, with native frames,
   sorted into: parsing JSON into Python objects (orjson, or jiter for records that may
   hold integers beyond 64 bits), waiting for a page with the GIL
   released, waking the runtime (syscalls when handing work to tokio), freeing the previous
   page, cyclic GC, the per-record loop, the rest.
3. The parsers alone over the same page bodies in memory: orjson.loads (the core's first
   choice) and jiter (its exact fallback, same version) in each string-cache mode, with the
   cyclic GC on/off.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PEERS, mock_server  # noqa: E402

# First matching rule wins, tested against the whole stack. py-spy's native stacks are often
# cut short, so the innermost frame alone must tell (e.g. from_utf8 and PyList::new are jiter's).
CATEGORIES = [
    ("cyclic GC", ("gc_collect",)),
    ("free the previous page (dealloc)", ("dealloc",)),
    ("Arrow: decode JSON into arrays (arrow_json)", ("arrow_json",)),
    ("Arrow: infer the schema over every record", ("soket_transcribe::table", "indexmap", "sip..Hasher", "hash_one")),
    ("parse JSON into Python objects (orjson)", ("orjson.cpython",)),
    ("parse JSON into Python objects (jiter)", ("jiter", "python_parse", "from_utf8", "PyList::new")),
    ("hand work to tokio: spawn/wake/timer syscalls", ("Waker::wake", "with_scheduler", "Sleep")),
    ("wait for a page, GIL released", ("park::Inner::park", "Condvar", "epoll_wait")),
    ("pipeline bookkeeping: dedup set of ids", ("retain", "accept", "hashbrown")),
    ("pandas/pyarrow conversion", ("pyarrow", "pandas")),
]


def classify(stack: str, tables: bool) -> str:
    for name, needles in CATEGORIES:
        if any(n in stack for n in needles):
            if tables and name.startswith("parse JSON"):
                return "Arrow: infer the schema over every record"  # the table path uses jiter only there
            return name
    innermost = stack.split(";")[-1]
    if innermost.startswith(("Tally.stream", "Tally.astream")):
        return "per-record loop"
    if "results.py" in innermost:
        return "BatchResults generator (Python)"
    return "other (innermost: " + innermost.split(" (")[0][:60] + ")"


def py_spy(server: Dict[str, str], peer: str, runs: int) -> None:
    exe = shutil.which("py-spy")
    if not exe:
        print("py-spy is not installed (pip install py-spy): skipping the sampling profile")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        cmd = [exe, "record", "--native", "--idle", "-r", "1000", "-f", "raw", "-o", str(out), "--"]
        cmd += [sys.executable, str(PEERS), peer, "--url", server["url"], "--token", server["token"]]
        cmd += ["--batch", server["batch"], "--warmup", "1", "--runs", str(runs)]
        subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, PYTHONHASHSEED="0"))
        counts: Counter = Counter()
        for line in out.read_text().splitlines():
            stack, n = line.rsplit(" ", 1)
            if f"{peer}.<locals>" in stack:  # the timed runs only, not imports or exit
                counts[classify(stack, tables="arrow" in peer or "pandas" in peer)] += int(n)
    total = sum(counts.values())
    print(f"\n## py-spy: wall time of the main thread in `{peer}` ({total} samples at 1 kHz, {runs + 1} runs)\n")
    print("| share | where |\n|---:|---|")
    for name, n in counts.most_common(12):
        print(f"| {100 * n / total:.1f}% | {name} |")


def thread_cpu(server: Dict[str, str], peers: List[str], runs: int) -> None:
    print("\n## CPU seconds per run, by thread, and wall time (median of runs in one process)\n")
    print("| client | wall s | main thread CPU s | other threads CPU s |\n|---|---:|---:|---:|")
    for peer in peers:
        cmd = [sys.executable, str(PEERS), peer, "--url", server["url"], "--token", server["token"]]
        cmd += ["--batch", server["batch"], "--warmup", "1", "--runs", str(runs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        others = sum(v for k, v in out["cpu"].items() if k != "main")
        print(f"| {peer} | {statistics.median(out['times']):.3f} | {out['cpu']['main']:.3f} | {others:.3f} |")


def parsers(server: Dict[str, str], runs: int) -> None:
    import jiter
    import orjson
    import requests

    bodies = []
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {server['token']}"
        page, total_pages = 1, 1
        while page <= total_pages:
            r = s.get(f"{server['url']}/results/batch/{server['batch']}", params={"page": page, "limit": 200, "speech_information": "true"})
            r.raise_for_status()
            bodies.append(r.content)
            total_pages = r.json()["total_pages"] if page == 1 else total_pages
            page += 1

    def timed(parse: Callable[[bytes], Any], gc_on: bool) -> float:
        times = []
        for _ in range(runs):
            if not gc_on:
                gc.disable()
            t0 = time.perf_counter()
            for body in bodies:
                parse(body)
            times.append(time.perf_counter() - t0)
            gc.enable()
        return statistics.median(times)

    size = sum(map(len, bodies)) / 1e6
    print(f"\n## Parsers alone: {len(bodies)} page bodies ({size:.1f} MB) in memory, median of {runs}\n")
    print("| parser | GC on, s | GC off, s | vs orjson (GC on) |\n|---|---:|---:|---:|")
    base = timed(orjson.loads, True)
    rows = [("orjson.loads", orjson.loads)]
    rows += [(f"jiter cache_mode={m}", lambda b, m=m: jiter.from_json(b, cache_mode=m)) for m in ("all", "keys", "none")]
    for name, parse in rows:
        on = base if parse is orjson.loads else timed(parse, True)
        print(f"| {name} | {on:.3f} | {timed(parse, False):.3f} | {on / base:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description="Where soket-transcribe's time goes.")
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--peer", action="append", help="profile this peer (repeatable; default ours_sync and ours_arrow)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    with mock_server(args.files) as server:
        thread_cpu(server, ["ours_sync", "ours_pages", "aiohttp_orjson", "orjson_memory", "ours_arrow"], args.runs)
        for peer in args.peer or ["ours_sync", "ours_arrow"]:
            py_spy(server, peer, args.runs)
        parsers(server, max(args.runs, 5))


if __name__ == "__main__":
    main()
