"""Typed records: `FileResult` (merged per-file results), `JobResult` (raw job records) and
`BatchStatus` (a batch's progress)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

from . import _core

__all__ = ["FileResult", "JobResult", "BatchStatus"]

_M = TypeVar("_M", bound="_Model")


class _Model:
    """A service answer as a frozen dataclass: the fields named in `_NAMED`, the rest in `extra`."""

    _NAMED: ClassVar[Tuple[str, ...]]
    extra: Dict[str, Any]

    @classmethod
    def from_dict(cls: Type[_M], record: Mapping[str, Any]) -> _M:
        """Build from a record as the service sends it."""
        fields = {name: record.get(name) for name in cls._NAMED}
        fields["extra"] = {k: v for k, v in record.items() if k not in cls._NAMED}
        return cls(**fields)

    def to_dict(self) -> Dict[str, Any]:
        """The record as a dict: named fields (None where absent), then `extra`."""
        out = {name: getattr(self, name) for name in self._NAMED}
        out.update(self.extra)
        return out


@dataclasses.dataclass(frozen=True)
class FileResult(_Model):
    """One file's merged result. Fields the service sends that are not named here are kept in `extra`.

    `result` is absent (None) for failed files, which carry `errors` instead.
    """

    file_id: Optional[str]
    filename: Optional[str]
    status: Optional[str]
    result: Optional[Dict[str, Any]]
    errors: Optional[List[Any]]
    chunk_results: Optional[List[Dict[str, Any]]]
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    _NAMED: ClassVar[Tuple[str, ...]] = ("file_id", "filename", "status", "result", "errors", "chunk_results")


@dataclasses.dataclass(frozen=True)
class JobResult(_Model):
    """One raw job record (`raw=True`). Unnamed fields are kept in `extra`."""

    job_id: Optional[str]
    file_id: Optional[str]
    batch_id: Optional[str]
    filename: Optional[str]
    status: Optional[str]
    result: Optional[Dict[str, Any]]
    errors: Optional[List[Any]]
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    _NAMED: ClassVar[Tuple[str, ...]] = ("job_id", "file_id", "batch_id", "filename", "status", "result", "errors")


@dataclasses.dataclass(frozen=True)
class BatchStatus(_Model):
    """A batch's progress (`GET /status/batch/{batch_id}`). Unnamed fields are kept in `extra`.

    `status` is `processing` or `retrying` while files are in flight, then `completed` or
    `failed`. `is_final` (what `wait` waits for) is the core's rule: a final word in any case,
    or, whatever other word the service sends, every file counted done. The estimates are in
    seconds, None when the service does not say.
    """

    batch_id: Optional[str]
    status: str
    total_files: Optional[int]
    files_completed: Optional[int]
    files_failed: Optional[int]
    estimated_audio_seconds: Optional[float]
    estimated_completion_seconds: Optional[float]
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    _NAMED: ClassVar[Tuple[str, ...]] = (
        "batch_id",
        "status",
        "total_files",
        "files_completed",
        "files_failed",
        "estimated_audio_seconds",
        "estimated_completion_seconds",
    )

    @property
    def stage(self) -> str:
        """`"final"`, `"running"` (`processing`, `retrying`) or `"unknown"`: a word the service
        does not document, with files not all counted done (not final: waiting may change it)."""
        return _core._batch_stage(self.status, self.total_files, self.files_completed, self.files_failed)

    @property
    def is_final(self) -> bool:
        """True once waiting can no longer change the answer: `completed` or `failed` (in any
        case), or any other word with `files_completed + files_failed == total_files` (> 0)."""
        return self.stage == "final"

    @property
    def in_progress(self) -> bool:
        """`not is_final`: files may still be in flight."""
        return not self.is_final

    @property
    def files_done(self) -> int:
        """Files finished either way: completed plus failed."""
        return (self.files_completed or 0) + (self.files_failed or 0)

    def _repr_html_(self) -> str:
        """In a notebook: a bar of completed / failed / running files, and the estimate."""
        from .html import batch_bar

        notes = [f"status: {self.status}"]
        estimate = self.estimated_completion_seconds
        if estimate is not None and estimate >= 0 and self.in_progress:
            notes.append(f"about {estimate / 60:,.0f} min to go, as the service estimates")
        return batch_bar(
            f"batch {self.batch_id or ''}".strip(),
            total=self.total_files,
            completed=self.files_completed,
            failed=self.files_failed,
            notes=notes,
        )
