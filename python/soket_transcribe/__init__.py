"""soket_transcribe: Soket AI batch transcription results, fast, into Python.

    import soket_transcribe as st
    client = st.Client()                      # token from SOKET_API_TOKEN
    for f in client.iter_files(batch_id):
        print(f["filename"], f["status"])
"""

import atexit
import importlib
import logging
from types import ModuleType

# orjson (the records' fast parser) is imported with the package, not at the first page's parse:
# a Ctrl-C landing inside orjson's own import leaves it half made, and its next use crashes the
# process (seen with orjson 3.13). Here, an interrupted import of ours is an ordinary one.
try:
    import orjson as _orjson  # noqa: F401
except ImportError:  # the records are then read by jiter
    pass

from ._core import Page, __version__, _shutdown
from .client import Client
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BatchChangedError,
    BatchNotFoundError,
    FileResultNotFoundError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    SoketError,
    WaitTimeoutError,
)
from .follow import FollowResults
from .models import BatchStatus, FileResult, JobResult
from .partitions import BatchPartition
from .query import BatchQuery
from .results import BatchResults
from .subtitles import to_srt, to_vtt

# Stop the Rust runtime's threads before the interpreter finalizes (a thread calling into a
# finalizing interpreter aborts the process).
atexit.register(_shutdown)

# A library prints nothing on its own: what it logs goes where the application sends it.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> ModuleType:
    # `st.testing` loads on first use, as numpy's and pandas' submodules do.
    if name == "testing":
        return importlib.import_module(f"{__name__}.testing")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "Client",
    "BatchResults",
    "FollowResults",
    "BatchPartition",
    "BatchQuery",
    "Page",
    "FileResult",
    "JobResult",
    "BatchStatus",
    "SoketError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "BatchNotFoundError",
    "InvalidRequestError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "ResponseFormatError",
    "BatchChangedError",
    "FileResultNotFoundError",
    "WaitTimeoutError",
    "to_srt",
    "to_vtt",
]
