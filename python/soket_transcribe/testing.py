"""Test against a real server without the real service: the embedded mock of the results API.

    from soket_transcribe.testing import MockServer

    with MockServer(files=5000, fault_rate=0.05) as srv:
        client = soket_transcribe.Client(token=srv.token, base_url=srv.url)
        files = list(client.iter_files(srv.batch_id))

The server is written in Rust and runs on its own thread: it serves
``GET {url}/results/batch/{batch_id}``, ``/results/file/{file_id}`` and
``/status/batch/{batch_id}`` with deterministic, realistic records, and can add latency,
faults and batches that change while they are read, on purpose.
"""

from ._core import MockServer

__all__ = ["MockServer"]
