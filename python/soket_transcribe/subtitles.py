"""Subtitles (SRT, WebVTT) from a file's speech segments, and safe file names to write them under.

Segments come with `speech_information=True`: `result.segments`, each with `start` and `end`
in seconds, `text`, and `speaker_id` when the service tells the speaker apart.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import unicodedata
import warnings
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Set, Tuple, TypeGuard, Union

from .models import FileResult, JobResult

__all__ = ["to_srt", "to_vtt", "write_subtitles", "safe_filename", "SubtitleFiles", "FORMATS"]

FORMATS = ("srt", "vtt")

# Two digits of hours, as every SRT and WebVTT reader takes them: far past any recording.
_MAX_SECONDS = 100 * 3600
# Control characters but tab (C0, DEL, C1), left in a line once it is split: nothing to show.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

Record = Union[Mapping[str, Any], FileResult, JobResult]


def to_srt(record: Record) -> str:
    """The record's speech segments as SubRip (`.srt`) text, a cue per segment (`S1: text`)."""
    cues = (
        f"{n}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{_srt_escape(text)}\n"
        for n, (start, end, text) in enumerate(_cues(record), start=1)
    )
    return "\n".join(cues)


def to_vtt(record: Record) -> str:
    """The record's speech segments as WebVTT (`.vtt`) text, a cue per segment (`S1: text`)."""
    cues = "".join(
        f"\n{_clock(start, '.')} --> {_clock(end, '.')}\n{_vtt_escape(text)}\n" for start, end, text in _cues(record)
    )
    return "WEBVTT\n" + cues


def _field(record: Record, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _cues(record: Record) -> List[Tuple[float, float, str]]:
    """(start, end, text) of each segment that has words."""
    if not isinstance(record, (Mapping, FileResult, JobResult)):
        raise TypeError(f"expected a record (dict or FileResult); got {type(record).__name__}")
    name = _field(record, "file_id") or _field(record, "filename") or "this file"
    result = _field(record, "result")
    if not isinstance(result, Mapping):
        status = _field(record, "status")
        raise ValueError(f"{name} has no result (status {status!r}): only completed files have subtitles")
    segments = result.get("segments")
    if segments is None:
        raise _NoSegments(f"{name} has no speech segments: fetch it with speech_information=True")
    if not isinstance(segments, list):
        raise ValueError(f"{name}: result.segments is not a list")
    cues = []
    for i, segment in enumerate(segments):
        if not isinstance(segment, Mapping):
            raise ValueError(f"{name}: segment {i} is not an object")
        start, end = segment.get("start"), segment.get("end")
        if not (_seconds(start) and _seconds(end)):
            raise ValueError(
                f"{name}: segment {i} needs numeric start and end in seconds, from 0 to {_MAX_SECONDS:,} (100 hours);"
                f" got {start!r}, {end!r}"
            )
        text = "\n".join(_lines(segment.get("text")))
        if not text:
            continue  # a cue with nothing to show; a blank line would also end the cue early
        speaker = " ".join(" ".join(_lines(segment.get("speaker_id"))).split())  # a label: one line
        if speaker:
            text = f"{speaker}: {text}"
        cues.append((float(start), max(float(start), float(end)), text))
    return cues


class _NoSegments(ValueError):
    """A record fetched without `speech_information=True`."""


def _lines(value: Any) -> List[str]:
    """The lines of a text bound for a cue: stripped, without control characters, none blank
    (a blank line ends a cue, and what follows it would be read as a cue of its own)."""
    lines = ("" if value is None else str(value)).splitlines()  # every line break, CR and NEL too
    return [clean for clean in (_CONTROL.sub("", line).strip() for line in lines) if clean]


def _seconds(value: Any) -> TypeGuard[float]:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < _MAX_SECONDS
    )


def _clock(seconds: float, comma: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02}:{minutes:02}:{secs:02}{comma}{millis:03}"


def _srt_escape(text: str) -> str:
    # SubRip has no escapes: a number over a line that starts with a time (`2` then
    # `00:00:00,000 --> ...`) starts a cue of its own, even with no blank line before it. Such a
    # line starts with an invisible WORD JOINER instead, which no reader takes for a time.
    return _TIME_AT_START.sub("\u2060", text)


_TIME_AT_START = re.compile(r"(?m)^(?=\d+[,.:，．。：]\d+[,.:，．。：]\d+)")


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: `<` opens a tag, `&` an entity, and `-->` may not appear at all.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- file names ----------------------------------------------------------------------------

# Windows refuses these as a name's stem, whatever the extension and the case.
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{device}{n}" for device in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]
}
# Not allowed in a Windows name (`/` nowhere), and control characters (C0, DEL, C1).
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f-\x9f]')
# Leaves room for " (NNNN)" and the extension within the 255 bytes most file systems allow.
_MAX_STEM_BYTES = 200


def safe_filename(name: Optional[str], suffix: str, fallback: str = "file") -> str:
    """`name` (an audio file's name, maybe a path) as a file name that every OS accepts, ending in `suffix`.

    The last path component, without its extension, NFC-normalised; characters Windows refuses
    and control characters become `_`; no leading dots or spaces (hidden files, `..`), no trailing
    ones (Windows drops them); Windows device names (`CON`, `com1`...) get a `_` prefix; at most
    200 UTF-8 bytes before `suffix`. Nothing left: `fallback`, made safe the same way.
    """
    return (_safe_stem(name) or _safe_stem(fallback) or "file") + suffix


def _safe_stem(name: Optional[str]) -> str:
    text = unicodedata.normalize("NFC", "" if name is None else str(name))
    text = re.split(r"[\\/]", text)[-1]
    stem, extension = os.path.splitext(text)
    if stem and extension[1:].isascii() and extension[1:].isalnum() and len(extension) <= 6:
        text = stem  # `call.wav` -> `call.srt`; an odd "extension" is part of the name
    text = _UNSAFE.sub("_", text).lstrip(". ")
    text = _truncate(text, _MAX_STEM_BYTES).rstrip(". ")
    if text.split(".")[0].rstrip(" ").upper() in _RESERVED:
        text = "_" + text
    return text


def _truncate(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _unique(name: str, suffix: str, taken: Set[str]) -> str:
    """`name`, or `stem (2)`, `stem (3)`...: the first not taken, compared as case-insensitive
    file systems (Windows, macOS) compare names."""
    stem = name[: -len(suffix)]
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}){suffix}"
    taken.add(candidate.casefold())
    return candidate


class SubtitleFiles(List[Path]):
    """What `write_subtitles` returns: the paths written, in record order, and in `skipped`
    the completed records it could not make subtitles of, as `(file_id, why)`."""

    skipped: List[Tuple[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.skipped = []


def write_subtitles(records: Iterable[Record], directory: Union[str, "os.PathLike[str]"], format: str = "srt") -> SubtitleFiles:
    """Writes one subtitle file per completed record into `directory` (created if missing).

    Files are named after `filename` (see `safe_filename`; `file_id` when it has none); names
    that collide get ` (2)`, ` (3)`... in the order the records come, so the same batch always
    gives the same names. Existing files of those names are replaced (a link among them is
    replaced itself: what it points to is left alone). A completed record without usable
    segments is skipped, listed in `.skipped` of the list returned, and one `RuntimeWarning` at
    the end says how many; when no record had segments at all, that is a `ValueError` (fetch
    with `speech_information=True`).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be 'srt' or 'vtt'; got {format!r}")
    check_unread = getattr(records, "_check_unread", None)  # a BatchResults a loop already read
    if callable(check_unread):
        check_unread()  # would write only what the loop left: refused, as `to_pandas` is
    render = to_srt if format == "srt" else to_vtt
    suffix = "." + format
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    taken: Set[str] = set()
    written = SubtitleFiles()
    unsegmented = 0
    for record in records:
        if _field(record, "status") != "completed":
            continue
        try:
            text = render(record)
        except ValueError as e:
            unsegmented += isinstance(e, _NoSegments)
            written.skipped.append((str(_field(record, "file_id") or _field(record, "filename")), str(e)))
            continue
        fallback = str(_field(record, "file_id") or f"file-{len(written) + 1}")
        path = folder / _unique(safe_filename(_field(record, "filename"), suffix, fallback), suffix, taken)
        _replace(path, text)
        written.append(path)
    _report(written, unsegmented)
    return written


def _replace(path: Path, text: str) -> None:
    """Writes `text` to a new file beside `path`, then renames it over `path`: a rename replaces
    a link at `path` itself, where writing to `path` would write through it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _report(written: SubtitleFiles, unsegmented: int) -> None:
    skipped = written.skipped
    if not skipped:
        return
    if not written and unsegmented == len(skipped):
        raise ValueError(
            f"none of the {len(skipped):,} completed files has speech segments: fetch with speech_information=True"
            f" ({skipped[0][1]})"
        )
    more = f" (and {len(skipped) - 1:,} more: see .skipped)" if len(skipped) > 1 else ""
    warnings.warn(
        f"{len(skipped):,} completed files had no subtitles to write and were skipped: {skipped[0][1]}{more}",
        RuntimeWarning,
        stacklevel=3,
    )
