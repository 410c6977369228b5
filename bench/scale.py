"""A batch read by one process vs by a Dask cluster: `python bench/scale.py [--pages N] [--latency-ms L]`.

1. Latency-bound: a batch of `--pages` pages of 50 records, each answered after `--latency-ms`
   by the embedded mock. One process reads it into pandas (`len(res.to_pandas())`, `concurrency`
   requests at a time); then a `distributed.LocalCluster` of 2 worker processes (1 thread each)
   reads it with `len(res.to_dask(...))`, each worker's client with the same `concurrency`.
   Printed: both wall times (the plan's first page included; the workers warmed up by a small
   read first) and the speed-up.
2. Throughput: a batch of `--files` files (200 a page, no latency) into a Dask DataFrame on the
   same cluster: `len(ddf)` and `ddf.groupby("status").size()`, each a full read; records/s.

The mock serves from this process's threads (Rust, no GIL), so on a small machine it shares the
cores with the workers: the figures are a floor for a real service.
"""

from __future__ import annotations

import argparse
import time

import soket_transcribe as st
from soket_transcribe.testing import MockServer


def timed(label: str, read):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    value = read()
    elapsed = time.perf_counter() - t0
    print(f"  {label:<44} {elapsed:8.2f} s   -> {value}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=2000)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--pages-per-partition", type=int, default=100)
    p.add_argument("--files", type=int, default=1_000_000)
    args = p.parse_args()

    import distributed

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster):
        limit = 50
        print(f"1. {args.pages:,} pages x {limit} records, {args.latency_ms} ms a request, concurrency {args.concurrency}")
        with MockServer(files=args.pages * limit, seed=5, latency_ms=args.latency_ms) as srv:
            client = st.Client(srv.token, srv.url, concurrency=args.concurrency)
            # The workers import pandas, pyarrow and us on their first task: not what is measured.
            warm = srv.add_batch(limit * 4, seed=1)
            len(client.iter_files(warm, limit=limit).to_dask(1))
            one = timed("one process: len(res.to_pandas())", lambda: len(client.iter_files(srv.batch_id, limit=limit).to_pandas()))
            ppp = args.pages_per_partition
            two = timed(
                f"Dask, 2 workers: len(res.to_dask({ppp}))",
                lambda: len(client.iter_files(srv.batch_id, limit=limit).to_dask(ppp)),
            )
            print(f"  speed-up {one / two:.2f}x")

        print(f"2. {args.files:,} files, 200 a page, no latency, into a Dask DataFrame (2 workers)")
        with MockServer(files=args.files, seed=6) as srv:
            client = st.Client(srv.token, srv.url)
            ddf = client.iter_files(srv.batch_id, limit=200).to_dask()
            print(f"  {ddf.npartitions} partitions (default size)")
            elapsed = timed("len(ddf)", lambda: len(ddf))
            print(f"  {args.files / elapsed:,.0f} records/s")
            elapsed = timed('ddf.groupby("status").size()', lambda: dict(ddf.groupby("status").size().compute()))
            print(f"  {args.files / elapsed:,.0f} records/s")


if __name__ == "__main__":
    main()
