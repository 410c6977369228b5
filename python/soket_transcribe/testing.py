"""Test against a real server without the real service: the embedded mock of the results API.

    from soket_transcribe.testing import MockServer

    with MockServer(files=5000, fault_rate=0.05) as srv:
        client = soket_transcribe.Client(token=srv.token, base_url=srv.url)
        files = list(client.iter_files(srv.batch_id))

The server is written in Rust and runs on its own thread: it serves
``GET {url}/results/batch/{batch_id}`` (and ``/status/batch/{batch_id}``) with
deterministic, realistic records, and can add latency and faults on purpose.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Type, Union

from . import _core

__all__ = ["MockServer"]


class MockServer:
    """The embedded mock server, as a context manager; it starts listening when created.

    Args:
        files: number of files in the default batch.
        seed: seeds the records, the default batch id and the random faults: the same seed
            gives the same records and, for the same order of requests, the same faults.
        token: the Bearer token requests must carry (others get 401).
        latency_ms: added to every request before it is answered.
        fault_rate: fraction (0..1) of results requests that answer 503, 429 (with
            ``Retry-After: 0``), a body cut mid-way, or malformed JSON.
        statuses: weights of the file statuses, e.g. ``{"completed": 0.9, "failed": 0.1}``;
            names left out weigh 0. ``None``: 0.85 completed, 0.10 failed, 0.03 retrying,
            0.02 processing.
        batch_id: id of the default batch (``None``: a uuid derived from ``seed``).
        host, port: where to listen (port 0: an ephemeral one).
        gzip: compress bodies when the request's Accept-Encoding allows it.
        not_found_status: HTTP status sent with ``{"error": "batch not found"}``.
        redirect_to: a base URL (another server's ``url``): every results request then
            answers 307 to the same path and query under it.
    """

    def __init__(
        self,
        files: int = 1000,
        *,
        seed: int = 0,
        token: str = "test-token",
        latency_ms: int = 0,
        fault_rate: float = 0.0,
        statuses: Optional[Mapping[str, float]] = None,
        batch_id: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        gzip: bool = True,
        not_found_status: int = 404,
        redirect_to: Optional[str] = None,
    ) -> None:
        self._server = _core.MockServer(
            files,
            seed=seed,
            token=token,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            statuses=dict(statuses) if statuses is not None else None,
            batch_id=batch_id,
            host=host,
            port=port,
            gzip=gzip,
            not_found_status=not_found_status,
            redirect_to=redirect_to,
        )

    @property
    def url(self) -> str:
        """Base URL for a client, e.g. ``http://127.0.0.1:PORT/transcribe``."""
        return self._server.url

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._server.port

    @property
    def token(self) -> str:
        """The Bearer token the server expects."""
        return self._server.token

    @property
    def batch_id(self) -> str:
        """Id of the default batch."""
        return self._server.batch_id

    @property
    def faults_injected(self) -> int:
        """How many faults were injected so far, scripted and random."""
        return self._server.faults_injected

    @property
    def requests(self) -> List[Dict[str, Any]]:
        """The request log, oldest first: dicts with ``method``, ``path`` (as sent,
        percent-encoded), ``query``, ``auth_present``, ``authorized``,
        ``accept_encoding`` and ``fault`` (what was injected, or None)."""
        return self._server.requests()

    def clear_requests(self) -> None:
        """Empties the request log."""
        self._server.clear_requests()

    def add_batch(
        self,
        files: int,
        *,
        seed: int = 0,
        batch_id: Optional[str] = None,
        grow_per_request: int = 0,
        grow_at: str = "end",
        complete_per_request: int = 0,
        processing_seconds: Optional[float] = None,
        statuses: Optional[Mapping[str, float]] = None,
    ) -> str:
        """Adds a batch to this server and returns its id.

        ``grow_per_request > 0`` makes a batch that is still processing: after answering
        each request to it, it gains that many files at the end, or at the front with
        ``grow_at="front"`` (the files there move back; each keeps its ``file_id`` and content).
        ``complete_per_request=N``: after answering each request, the first N files (in batch
        order) that are ``processing`` become ``completed`` (before files are gained).
        ``processing_seconds`` and ``statuses`` are as for the server (None: the server's).
        """
        return self._server.add_batch(
            files,
            seed=seed,
            batch_id=batch_id,
            grow_per_request=grow_per_request,
            grow_at=grow_at,
            complete_per_request=complete_per_request,
            processing_seconds=processing_seconds,
            statuses=dict(statuses) if statuses is not None else None,
        )

    def fail_next(
        self,
        kind: str,
        times: int = 1,
        *,
        status: Optional[int] = None,
        retry_after: Union[str, int, float, None] = None,
        stall_s: Optional[float] = None,
        shift_by: Optional[int] = None,
    ) -> None:
        """Makes the next ``times`` results requests misbehave, before any random fault.

        ``kind`` is ``"status"`` (answer ``status``, default 503, with a JSON body),
        ``"429"`` (with ``Retry-After: retry_after``, default ``"0"``), ``"cut"`` (the
        connection drops mid-body), ``"malformed"`` (200 with broken JSON), ``"stall"``
        (wait ``stall_s`` seconds, default 1.0, then answer) or ``"shift"`` (answer the page
        as if ``shift_by`` records, default 1, had been inserted before it, so it repeats
        records of the page before). Other kinds raise ValueError.
        """
        self._server.fail_next(
            kind, times, status=status, retry_after=retry_after, stall_s=stall_s, shift_by=shift_by
        )

    def stop(self) -> None:
        """Stops the server; requests in flight get a second to finish. The log stays readable."""
        self._server.stop()

    def __enter__(self) -> "MockServer":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MockServer(url={self.url!r}, batch_id={self.batch_id!r})"
