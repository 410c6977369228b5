"""How long our client holds off other Python threads: `python bench/gil.py [--files N]`.

A second thread ticks (sleeps 0.5 ms, notes the time) while the main thread reads a batch from
the embedded mock (in this process: its server threads never take the GIL) in three ways:
`to_arrow()`, `iter_arrow_batches()`, and `for f in results`. Printed per way: the wall time,
the ticks, and the longest gap between two ticks, which is the longest the main thread kept
the GIL. Building Python objects (`for`) needs the GIL; reading into Arrow does not.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Callable, Dict, List

import soket_transcribe as st
from soket_transcribe.testing import MockServer


def measure(read: Callable[[], object]) -> Dict[str, float]:
    gaps: List[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.0005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    thread = threading.Thread(target=tick)
    thread.start()
    t0 = time.perf_counter()
    read()
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return {"wall": elapsed, "ticks": len(gaps), "max_gap": max(gaps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    with MockServer(files=args.files, seed=3) as srv:
        client = st.Client(srv.token, srv.url)

        def results() -> st.BatchResults:
            return client.iter_files(srv.batch_id, limit=200, speech_information=True)

        ways = {
            "to_arrow()": lambda: results().to_arrow(),
            "iter_arrow_batches()": lambda: [b.num_rows for b in results().iter_arrow_batches()],
            "for f in results": lambda: sum(1 for _ in results()),
        }
        print(f"{args.files:,} files, medians of {args.runs} runs\n")
        print("| way | wall s | ticks | longest GIL hold s |\n|---|---:|---:|---:|")
        for name, read in ways.items():
            runs = [measure(read) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"| {name} | {med['wall']:.3f} | {med['ticks']:.0f} | {med['max_gap']:.3f} |")


if __name__ == "__main__":
    main()
