"""Fault-injection soak: every file exactly once, in order, while a fifth of requests fail.

    python bench/soak.py [--files 4000] [--limit 2] [--fault-rate 0.2] [--concurrency 8]

Reads a batch from a mock server that answers `fault_rate` of its requests with 503,
429 (Retry-After), a body cut mid-way or malformed JSON, compares what came with the same
batch read from a clean server, and prints the figures the README's reliability section quotes.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import Counter

import soket_transcribe as st
from soket_transcribe.testing import MockServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=4000)
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-retries", type=int, default=8)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    with MockServer(files=args.files, seed=args.seed) as clean:
        expected = [f["file_id"] for f in st.Client(clean.token, clean.url).iter_files(clean.batch_id)]

    with MockServer(files=args.files, seed=args.seed, fault_rate=args.fault_rate) as srv:
        client = st.Client(srv.token, srv.url, max_retries=args.max_retries, concurrency=args.concurrency)
        started = time.perf_counter()
        res = client.iter_files(srv.batch_id, limit=args.limit)
        got = [f["file_id"] for f in res]
        elapsed = time.perf_counter() - started
        requests, retries = client.stats["requests"], client.stats["retries"]
        faults = Counter(r["fault"] for r in srv.requests if r["fault"])

    ok = got == expected
    digest = hashlib.sha256("\n".join(got).encode()).hexdigest()[:12]
    print(f"pages            {res.total_pages}")
    print(f"files            {len(got)} (expected {len(expected)}, unique {len(set(got))})")
    print(f"requests         {requests}")
    print(f"faults injected  {sum(faults.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    print(f"retries          {retries}")
    print(f"time             {elapsed:.1f} s")
    print(f"every file once, in order: {'yes' if ok else 'NO'} (sha256 {digest})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
