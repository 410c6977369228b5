"""The exceptions of soket_transcribe. Every one the client raises derives from `SoketError`.

An error raised while iterating a batch names the page it was on (`.page`), and the
`BatchResults` it came from tells where to resume (`.next_page`).
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
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
    "FileResultNotFoundError",
    "BatchChangedError",
    "WaitTimeoutError",
]


class SoketError(Exception):
    """Base class of every error raised by soket_transcribe (argument errors are `ValueError`)."""

    page: Optional[int]

    def __init__(self, message: str, *, page: Optional[int] = None) -> None:
        super().__init__(message)
        self.page = page
        """The page the request was for, when it was for one."""


class APIError(SoketError):
    """The service answered with an error. `body` is a short excerpt, never holding the token."""

    status_code: Optional[int]
    body: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        body: Optional[str] = None,
        page: Optional[int] = None,
    ) -> None:
        super().__init__(message, page=page)
        self.status_code = status_code
        self.body = body


class AuthenticationError(APIError):
    """401: the token is missing, wrong or expired."""


class PermissionDeniedError(APIError):
    """403: the token may not read this batch."""


class NotFoundError(APIError):
    """404."""


class BatchNotFoundError(NotFoundError):
    """The service said `{"error": "batch not found"}`, whatever HTTP status carried it."""


class InvalidRequestError(APIError):
    """400 or 422: the service rejected the query."""


class RateLimitError(APIError):
    """429, still after every retry (or the server asked to wait longer than we will)."""


class ServerError(APIError):
    """5xx, still after every retry."""


class APIConnectionError(SoketError):
    """No complete answer: connection refused or reset, body cut short (after retries)."""


class APITimeoutError(APIConnectionError):
    """The service did not answer in time (after retries)."""


class ResponseFormatError(SoketError):
    """A successful answer whose body is not JSON, or not the documented shape."""

    excerpt: Optional[str]

    def __init__(self, message: str, *, excerpt: Optional[str] = None, page: Optional[int] = None) -> None:
        super().__init__(message, page=page)
        self.excerpt = excerpt
        """The start of the body, shortened, without the token."""


class FileResultNotFoundError(NotFoundError):
    """The service said `{"error": "file not found"}` (`get_file`), whatever HTTP status carried it."""


class BatchChangedError(SoketError):
    """The batch changed while it was read, and the reader could not vouch for every record:
    `iter_files(..., on_change="raise")`, or a distributed read whose plan no longer holds."""


class WaitTimeoutError(SoketError):
    """`wait()` ran out of time before the batch was done. `.status` is the last `BatchStatus` seen."""

    status: Any

    def __init__(self, message: str, *, status: Any = None, page: Optional[int] = None) -> None:
        super().__init__(message, page=page)
        self.status = status
