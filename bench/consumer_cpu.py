"""Consumer-thread CPU of reading 100,000 files (speech information, limit 200) as dicts, from the
mock over HTTP and from the client's cache, against `orjson.loads` over the same page bytes in
memory: the part of the cost that sits on the caller's thread, steady on a loaded machine where
wall-clock ratios are not. Interleaved runs; medians of the pairwise ratios.

    python bench/consumer_cpu.py [--runs 7] [--files 100000]
"""

import argparse
import statistics
import tempfile
import time
import urllib.request

import orjson

import soket_transcribe as st
from soket_transcribe.testing import MockServer


def timed(read):
    cpu, wall = time.thread_time(), time.perf_counter()
    count = read()
    return count, time.thread_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    n = args.files
    # Every file final, so that the batch is kept by the cache.
    with MockServer(files=n, seed=1, statuses={"completed": 0.9, "failed": 0.1}) as srv, tempfile.TemporaryDirectory() as d:
        batch, pages = srv.batch_id, -(-n // 200)
        bodies = []
        for page in range(1, pages + 1):
            url = f"{srv.url}/results/batch/{batch}?page={page}&limit=200&speech_information=true"
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {srv.token}"})
            bodies.append(urllib.request.urlopen(request).read())
        assert sum(1 for _ in st.Client(srv.token, srv.url, cache_dir=d).iter_files(batch, speech_information=True)) == n

        def ours(cache_dir):
            client = st.Client(srv.token, srv.url, cache_dir=cache_dir)
            return lambda: sum(1 for _ in client.iter_files(batch, speech_information=True))

        reads = {"http": ours(None), "cache": ours(d), "orjson": lambda: sum(len(orjson.loads(b)["files"]) for b in bodies)}
        seen = {name: [] for name in reads}
        for _ in range(args.runs):
            for name, read in reads.items():  # interleaved: A B C A B C ...
                count, cpu, wall = timed(read)
                assert count == n, (name, count)
                seen[name].append((cpu, wall))
        base = seen["orjson"]
        for name in ("http", "cache"):
            cpu = statistics.median(a[0] / b[0] for a, b in zip(seen[name], base))
            wall = statistics.median(a[1] / b[1] for a, b in zip(seen[name], base))
            print(f"{name:6} / orjson.loads in memory: consumer-thread CPU {cpu:.2f}x, wall {wall:.2f}x")
        print("orjson.loads in memory: median %.3f s CPU, %.3f s wall" % tuple(statistics.median(x) for x in zip(*base)))


if __name__ == "__main__":
    main()
