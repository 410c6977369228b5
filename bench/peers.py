"""The clients under test, each run in a fresh process: `python bench/peers.py PEER --url ...`.

Every peer fetches the same batch (`speech_information=true`, same `limit`) and hands each
record to the same `Tally`, which counts records and folds their `file_id`s into a checksum
(`--verify` folds the whole record instead), so no peer wins by doing less. One JSON line
goes to stdout: the wall times of the timed runs, the count, the checksum and the peak RSS
above the baseline taken after the peer's imports.

The peers are written the way their users would write them:
- `requests_json`: a notebook's loop: one Session, page after page until `total_pages`.
- `httpx_orjson`, `aiohttp_orjson`: what a strong engineer writes: the first page, then a
  sliding window of `concurrency` requests in flight, consumed in page order (a window, not
  one `gather` of every page, which would hold the whole batch in memory).
- `orjson_memory`: the limit: the same page bodies fetched beforehand (untimed), then only
  `orjson.loads` and the same per-record loop.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections import deque
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple

PATH = "/results/batch/"


class Tally:
    """Counts records and folds their ids (needs PYTHONHASHSEED=0 to compare across processes)."""

    def __init__(self) -> None:
        self.count = 0
        self.checksum = 0

    def stream(self, items: Iterable[Dict[str, Any]]) -> None:
        n = 0
        h = self.checksum
        for f in items:
            n += 1
            h ^= hash(f["file_id"])
        self.count += n
        self.checksum = h

    async def astream(self, items: Any) -> None:
        n = 0
        h = self.checksum
        async for f in items:
            n += 1
            h ^= hash(f["file_id"])
        self.count += n
        self.checksum = h

    def result(self) -> Any:
        return self.checksum


class DeepTally(Tally):
    """`--verify`: a digest of every record, in order, so peers are shown to yield the same data."""

    def __init__(self) -> None:
        super().__init__()
        import orjson

        self._dumps = orjson.dumps
        self._opt = orjson.OPT_SORT_KEYS
        self._digest = hashlib.sha256()

    def stream(self, items: Iterable[Dict[str, Any]]) -> None:
        for f in items:
            self.count += 1
            self._digest.update(self._dumps(_as_orjson_reads(f), option=self._opt))

    async def astream(self, items: Any) -> None:
        async for f in items:
            self.count += 1
            self._digest.update(self._dumps(_as_orjson_reads(f), option=self._opt))

    def result(self) -> Any:
        return self._digest.hexdigest()


def _as_orjson_reads(o: Any) -> Any:
    """`orjson.loads` reads integers beyond 64 bits as floats (the mock sends some, in
    `metadata.trace_id`); the others keep them exact. Compare them as orjson reads them."""
    if isinstance(o, dict):
        return {k: _as_orjson_reads(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_as_orjson_reads(v) for v in o]
    if type(o) is int and not -(2**63) <= o < 2**64:
        return float(o)
    return o


class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/")
        self.token = args.token
        self.batch = args.batch
        self.limit = args.limit
        self.concurrency = args.concurrency
        self.endpoint = f"{self.url}{PATH}{self.batch}"
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def params(self, page: int) -> Dict[str, Any]:
        return {"page": page, "limit": self.limit, "speech_information": "true"}


# -- streaming peers: setup(cfg) imports and returns run(tally) --------------------------


def _requests_pages(cfg: Config) -> Iterator[Tuple[bytes, Dict[str, Any]]]:
    """A notebook's loop: one Session, page after page until `total_pages`; yields (body, r.json())."""
    import requests

    with requests.Session() as s:
        s.headers.update(cfg.headers)
        page = 1
        while True:
            r = s.get(cfg.endpoint, params=cfg.params(page), timeout=60)
            r.raise_for_status()
            data = r.json()
            yield r.content, data
            if page >= data["total_pages"]:
                return
            page += 1


def requests_json(cfg: Config) -> Callable[[Tally], None]:
    import requests  # noqa: F401  (imported before the baseline)

    def run(tally: Tally) -> None:
        for _, data in _requests_pages(cfg):
            tally.stream(data["files"])

    return run


async def _windowed(fetch: Callable[[int], Any], tally: Tally, concurrency: int) -> None:
    """First page, then `concurrency` pages in flight, consumed in order."""
    import orjson

    first = orjson.loads(await fetch(1))
    tally.stream(first["files"])
    total_pages = first["total_pages"]
    pending: deque = deque()
    next_page = 2
    while next_page <= total_pages and len(pending) < concurrency:
        pending.append(asyncio.ensure_future(fetch(next_page)))
        next_page += 1
    while pending:
        body = await pending.popleft()
        if next_page <= total_pages:
            pending.append(asyncio.ensure_future(fetch(next_page)))
            next_page += 1
        tally.stream(orjson.loads(body)["files"])


def httpx_orjson(cfg: Config) -> Callable[[Tally], None]:
    import httpx
    import orjson  # noqa: F401  (imported before the baseline, like the other peers' libraries)

    async def main(tally: Tally) -> None:
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        async with httpx.AsyncClient(headers=cfg.headers, limits=limits, timeout=60) as client:

            async def fetch(page: int) -> bytes:
                r = await client.get(cfg.endpoint, params=cfg.params(page))
                r.raise_for_status()
                return r.content

            await _windowed(fetch, tally, cfg.concurrency)

    return lambda tally: asyncio.run(main(tally))


def aiohttp_orjson(cfg: Config) -> Callable[[Tally], None]:
    import aiohttp
    import orjson  # noqa: F401

    async def main(tally: Tally) -> None:
        connector = aiohttp.TCPConnector(limit=cfg.concurrency)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(headers=cfg.headers, connector=connector, timeout=timeout) as session:

            async def fetch(page: int) -> bytes:
                async with session.get(cfg.endpoint, params=cfg.params(page)) as r:
                    r.raise_for_status()
                    return await r.read()

            await _windowed(fetch, tally, cfg.concurrency)

    return lambda tally: asyncio.run(main(tally))


def _page_bodies(cfg: Config) -> List[bytes]:
    """Every page body, fetched once (untimed) for the in-memory limits."""
    return [body for body, _ in _requests_pages(cfg)]


def orjson_memory(cfg: Config) -> Callable[[Tally], None]:
    import orjson

    bodies = _page_bodies(cfg)

    def run(tally: Tally) -> None:
        for body in bodies:
            tally.stream(orjson.loads(body)["files"])

    return run


def jiter_memory(cfg: Config) -> Callable[[Tally], None]:
    """Breakdown: the parser our core uses (jiter, all strings cached) over the same bytes."""
    try:
        import jiter
    except ImportError:
        raise NotImplementedError("jiter is not installed (pip install jiter)") from None

    bodies = _page_bodies(cfg)

    def run(tally: Tally) -> None:
        for body in bodies:
            tally.stream(jiter.from_json(body, cache_mode="keys")["files"])

    return run


def iterate_memory(cfg: Config) -> Callable[[Tally], None]:
    """Breakdown: only the per-record Python loop, over records already parsed."""
    import orjson

    pages = [orjson.loads(body)["files"] for body in _page_bodies(cfg)]

    def run(tally: Tally) -> None:
        for items in pages:
            tally.stream(items)

    return run


def _client(cfg: Config) -> Any:
    import soket_transcribe as st

    return st.Client(cfg.token, cfg.url, concurrency=cfg.concurrency)


def ours_sync(cfg: Config) -> Callable[[Tally], None]:
    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        tally.stream(client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True))

    return run


def ours_async(cfg: Config) -> Callable[[Tally], None]:
    import soket_transcribe  # noqa: F401

    async def main(tally: Tally) -> None:
        client = _client(cfg)
        await tally.astream(client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True))

    return lambda tally: asyncio.run(main(tally))


def ours_pages(cfg: Config) -> Callable[[Tally], None]:
    """Breakdown: fetch and parse into Python objects, no per-record Python loop."""
    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        for page in client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True).pages():
            tally.count += len(page.items)

    return run


FIELDS = ["file_id", "status", "result.text"]


def ours_fields(cfg: Config) -> Callable[[Tally], None]:
    """Projection: only `FIELDS` of each record become Python objects (narrowed in Rust)."""
    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        tally.stream(client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True, fields=FIELDS))

    return run


def ours_dataclass(cfg: Config) -> Callable[[Tally], None]:
    """Typed records: `FileResult` dataclasses instead of dicts."""
    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        n, h = 0, tally.checksum
        for f in client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True, as_dataclass=True):
            n += 1
            h ^= hash(f.file_id)
        tally.count += n
        tally.checksum = h

    return run


def ours_download(cfg: Config) -> Callable[[Tally], None]:
    """The same dicts from one `/download` NDJSON stream (`transport="download"`)."""
    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        tally.stream(client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True, transport="download"))

    return run


def _cached_client(cfg: Config) -> Any:
    """A client whose cache already holds the batch (read once, untimed, into a fresh directory)."""
    import atexit
    import shutil
    import tempfile

    import soket_transcribe as st

    cache_dir = tempfile.mkdtemp(prefix="soket-bench-cache-")
    atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    filler = st.Client(cfg.token, cfg.url, concurrency=cfg.concurrency, cache_dir=cache_dir)
    for _ in filler.iter_files(cfg.batch, limit=cfg.limit, speech_information=True):
        pass
    if filler.cache_info()["entries"] != 1:
        raise RuntimeError("the batch was not kept (is every file final?)")
    return lambda: st.Client(cfg.token, cfg.url, concurrency=cfg.concurrency, cache_dir=cache_dir)


def _no_request(client: Any) -> None:
    if client.stats["requests"]:
        raise RuntimeError(f"a read from the cache made {client.stats['requests']} request(s)")


def ours_cached(cfg: Config) -> Callable[[Tally], None]:
    """A re-read of a finished batch from the cache (`cache_dir=`), as dicts: no request."""
    new_client = _cached_client(cfg)

    def run(tally: Tally) -> None:
        client = new_client()
        tally.stream(client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True))
        _no_request(client)

    return run


# -- table peers: setup(cfg) returns run() -> DataFrame ----------------------------------


def ours_pandas(cfg: Config) -> Callable[[], Any]:
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    import soket_transcribe as st

    if not hasattr(st.BatchResults, "to_pandas"):
        raise NotImplementedError("BatchResults.to_pandas() does not exist yet (issue 6)")

    def run() -> Any:
        return _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True).to_pandas()

    return run


def ours_pandas_download(cfg: Config) -> Callable[[], Any]:
    """`to_pandas()` of a read from one `/download` stream."""
    import soket_transcribe as st  # noqa: F401

    def run() -> Any:
        res = _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True, transport="download")
        return res.to_pandas()

    return run


def ours_pandas_pyarrow_dtypes(cfg: Config) -> Callable[[], Any]:
    """Breakdown: `.to_pandas(dtype_backend="pyarrow")`, the columns left in Arrow."""
    ours_pandas(cfg)
    return lambda: _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True).to_pandas(
        dtype_backend="pyarrow"
    )


def ours_arrow(cfg: Config) -> Callable[[], Any]:
    """Breakdown: `.to_arrow(flatten=True)`, the table `.to_pandas()` starts from."""
    ours_pandas(cfg)
    return lambda: _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True).to_arrow(flatten=True)


def ours_arrow_nested(cfg: Config) -> Callable[[], Any]:
    """`.to_arrow()`: the nested table, each page read into Arrow on the client's threads."""
    ours_pandas(cfg)
    return lambda: _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True).to_arrow()


def ours_arrow_async(cfg: Config) -> Callable[[], Any]:
    """`await .to_arrow_async()` in a fresh event loop."""
    import asyncio

    ours_pandas(cfg)
    return lambda: asyncio.run(
        _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True).to_arrow_async()
    )


def duckdb_stream(cfg: Config) -> Callable[[], Any]:
    """DuckDB reading the result through the Arrow PyCapsule stream (`select ... from res`)."""
    ours_pandas(cfg)
    try:
        import duckdb
    except ImportError:
        raise NotImplementedError("duckdb is not installed") from None

    def run() -> Any:
        res = _client(cfg).iter_files(cfg.batch, limit=cfg.limit, speech_information=True)  # noqa: F841 (DuckDB reads it)
        return duckdb.sql("select file_id, status, result.duration_seconds from res").to_arrow_table()

    return run


def ours_pandas_cached(cfg: Config) -> Callable[[], Any]:
    """`.to_pandas()` of a finished batch from the cache: no request."""
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    new_client = _cached_client(cfg)

    def run() -> Any:
        client = new_client()
        df = client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True).to_pandas()
        _no_request(client)
        return df

    return run


def _requests_records(cfg: Config) -> List[Dict[str, Any]]:
    records: List[Dict[str, Any]] = []
    for _, data in _requests_pages(cfg):
        records.extend(data["files"])
    return records


def requests_dataframe(cfg: Config) -> Callable[[], Any]:
    import pandas as pd
    import requests  # noqa: F401

    return lambda: pd.DataFrame(_requests_records(cfg))


def requests_json_normalize(cfg: Config) -> Callable[[], Any]:
    import pandas as pd
    import requests  # noqa: F401

    return lambda: pd.json_normalize(_requests_records(cfg))


def aiohttp_orjson_dataframe(cfg: Config) -> Callable[[], Any]:
    import pandas as pd

    stream = aiohttp_orjson(cfg)

    class Collect(Tally):
        def __init__(self) -> None:
            super().__init__()
            self.records: List[Dict[str, Any]] = []

        def stream(self, items: Iterable[Dict[str, Any]]) -> None:
            self.records.extend(items)

    def run() -> Any:
        sink = Collect()
        stream(sink)
        return pd.DataFrame(sink.records)

    return run


# -- a rate-limited service (the ratelimit scenario): each run adds the 429s it met --------

THROTTLED = [0]


def ours_ratelimit(cfg: Config) -> Callable[[Tally], None]:
    """`for f in iter_files(...)`: the client's rate controller finds the service's rate."""
    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        tally.stream(client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True))
        THROTTLED[0] += client.stats["throttled"]

    return run


def ours_ratelimit_threads(cfg: Config) -> Callable[[Tally], None]:
    """Two threads, each reading half the pages, through one client (one controller)."""
    import threading

    import soket_transcribe  # noqa: F401

    def run(tally: Tally) -> None:
        client = _client(cfg)
        pages = client.get_page(cfg.batch, limit=cfg.limit).total_pages
        half = pages // 2
        tallies = [Tally(), Tally()]

        def read(tally: Tally, start: int, pages: int) -> None:
            res = client.iter_files(cfg.batch, limit=cfg.limit, speech_information=True, start_page=start, max_items=pages * cfg.limit)
            tally.stream(res)

        threads = [
            threading.Thread(target=read, args=(tallies[0], 1, half)),
            threading.Thread(target=read, args=(tallies[1], half + 1, pages - half)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for part in tallies:
            tally.count += part.count
            tally.checksum ^= part.checksum
        THROTTLED[0] += client.stats["throttled"]

    return run


def aiohttp_retry_after(cfg: Config) -> Callable[[Tally], None]:
    """What users write against a rate limit: `aiohttp_orjson`'s window, each request retried on
    429 after its `Retry-After`, or after a backoff (0.5 s doubling, full jitter) without one."""
    import random

    import aiohttp
    import orjson  # noqa: F401

    async def main(tally: Tally) -> None:
        connector = aiohttp.TCPConnector(limit=cfg.concurrency)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(headers=cfg.headers, connector=connector, timeout=timeout) as session:

            async def fetch(page: int) -> bytes:
                for attempt in range(100):
                    async with session.get(cfg.endpoint, params=cfg.params(page)) as r:
                        if r.status != 429:
                            r.raise_for_status()
                            return await r.read()
                        THROTTLED[0] += 1
                        wait = r.headers.get("Retry-After")
                    await asyncio.sleep(float(wait) if wait else random.uniform(0, min(8.0, 0.5 * 2**attempt)))
                raise RuntimeError(f"page {page}: throttled 100 times")

            await _windowed(fetch, tally, cfg.concurrency)

    return lambda tally: asyncio.run(main(tally))


STREAMING = {
    f.__name__: f
    for f in (
        requests_json,
        httpx_orjson,
        aiohttp_orjson,
        ours_sync,
        ours_async,
        orjson_memory,
        jiter_memory,
        iterate_memory,
        ours_pages,
        ours_fields,
        ours_dataclass,
        ours_cached,
        ours_download,
        ours_ratelimit,
        ours_ratelimit_threads,
        aiohttp_retry_after,
    )
}
TABLES = {
    f.__name__: f
    for f in (
        ours_pandas,
        requests_dataframe,
        requests_json_normalize,
        aiohttp_orjson_dataframe,
        ours_pandas_pyarrow_dtypes,
        ours_arrow,
        ours_arrow_nested,
        ours_arrow_async,
        duckdb_stream,
        ours_pandas_cached,
        ours_pandas_download,
    )
}


def _status_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) from /proc. Not ru_maxrss: Linux carries that across
    fork+exec, so a child starts with its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Starts VmHWM again from the current RSS (Linux >= 4.0), so the peak is the run's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _thread_cpu() -> Dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, summed by thread name."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    cpu: Dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = open(f"/proc/self/task/{tid}/stat").read()
        except OSError:
            continue
        name = "main" if tid == str(os.getpid()) else stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("peer", choices=sorted({**STREAMING, **TABLES}))
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--verify", action="store_true", help="digest whole records instead of ids")
    args = p.parse_args()
    cfg = Config(args)

    out: Dict[str, Any] = {"peer": args.peer}
    try:
        setup = STREAMING.get(args.peer) or TABLES[args.peer]
        run = setup(cfg)
    except NotImplementedError as e:
        out["skipped"] = str(e)
        print(json.dumps(out), flush=True)
        return
    _reset_peak_rss()
    baseline = _status_kb("VmRSS")
    cpu_before = _thread_cpu()
    times = []
    run_peak_kb = 0
    for i in range(args.warmup + args.runs):
        if args.peer in TABLES:
            _reset_peak_rss()  # the run's own peak, not the previous run's checks below
            before_kb = _status_kb("VmRSS")
            t0 = time.perf_counter()
            df = run()
            elapsed = time.perf_counter() - t0
            run_peak_kb = max(run_peak_kb, _status_kb("VmHWM") - before_kb)
            ids = df["file_id"]  # a pandas Series or a pyarrow ChunkedArray
            tally = Tally()
            tally.stream({"file_id": i} for i in (ids.to_pylist() if hasattr(ids, "to_pylist") else ids.tolist()))
            out["shape"] = list(df.shape)
            if hasattr(df, "nbytes"):  # a pyarrow Table: its buffers' size
                out["table_mb"] = round(df.nbytes / 2**20, 1)
            del df
        else:
            tally = DeepTally() if args.verify else Tally()
            t0 = time.perf_counter()
            run(tally)
            elapsed = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(elapsed)
    out.update(
        times=times,
        count=tally.count,
        checksum=tally.result(),
        baseline_kb=baseline,
        peak_kb=_status_kb("VmHWM"),
        throttled=THROTTLED[0],  # 429s met, by the peers that count them (the ratelimit scenario)
        run_peak_kb=run_peak_kb,  # tables: the most a run grew the RSS, its result included
        # CPU seconds per run and thread (threads that ended before now are not counted)
        cpu={k: round((v - cpu_before.get(k, 0.0)) / (args.warmup + args.runs), 3) for k, v in _thread_cpu().items()},
    )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
