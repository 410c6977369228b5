"""Tables from a batch's results: Arrow built in Rust from the page bytes, then pyarrow,
pandas or polars. Those libraries are optional and imported only when a table is asked for.

Column types: JSON objects become struct columns (dotted columns once flattened:
`result.text`), arrays list columns, numbers int64 or float64. A field whose type varies
between records (an object here, a string there; an integer beyond int64, or beyond 2**53
beside floats) becomes a string column of each value's JSON text, its field metadata marked
`{"soket_transcribe.json": "true"}`: `json.loads(cell)` gives the value back. Absent and null both
read as null.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Callable, Dict, Optional, Union

__all__ = ["Progress", "ProgressArg", "require", "progress_callback", "close_progress", "arrow_to_pandas"]

#: `progress=` of the table methods: True for a bar, or a callable `(done, total)`.
ProgressArg = Union[bool, Callable[[int, Optional[int]], Any]]

_EXTRAS = {"pyarrow": "arrow", "pandas": "pandas", "polars": "polars"}


def require(module: str, extra: Optional[str] = None) -> Any:
    """Imports an optional dependency, or raises an ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = extra or _EXTRAS.get(module.split(".")[0], module)
        raise ImportError(
            f"this needs {module.split('.')[0]}: pip install 'soket-transcribe[{extra}]'"
        ) from e


class Progress:
    """A progress bar over records: tqdm (`tqdm.auto`, a widget in notebooks) when installed,
    else one redrawn line on stderr. Its total is set once the first page tells it."""

    def __init__(self, unit: str = "files") -> None:
        self._tqdm: Any = None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._start = time.perf_counter()
            self._drawn = 0.0
            self._width = 0
            self._unit = unit
        else:
            self._tqdm = tqdm(total=None, unit=f" {unit}", unit_scale=True, desc="soket-transcribe")

    def __call__(self, done: int, total: Optional[int]) -> None:
        bar = self._tqdm
        if bar is not None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            return
        now = time.perf_counter()
        if now - self._drawn < 0.1 and done != total:
            return
        self._drawn = now
        rate = done / max(now - self._start, 1e-9)
        line = f"{done:,}" + (f"/{total:,} {self._unit} {100 * done // max(total, 1)}%" if total else f" {self._unit}")
        line += f"  {rate:,.0f} {self._unit}/s"
        sys.stderr.write("\r" + line.ljust(self._width))
        sys.stderr.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()


def progress_callback(progress: ProgressArg) -> Optional[Callable[[int, Optional[int]], Any]]:
    """What the core calls after each page: None, a new `Progress` bar, or the caller's own."""
    if progress is True:
        return Progress()
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be a bool or a callable (done, total); got {type(progress).__name__}")


def close_progress(callback: Any) -> None:
    if isinstance(callback, Progress):
        callback.close()


_BACKENDS = (None, "numpy_nullable", "pyarrow")


def arrow_to_pandas(table: Any, pd: Any, dtype_backend: Optional[str]) -> Any:
    """`table.to_pandas`, freeing the Arrow memory as it goes (the table is ours alone).

    List and struct columns always stay in Arrow memory (`pd.ArrowDtype`): a cell reads as a
    Python list or dict when touched, instead of a million of them built up front (that
    conversion alone costs more than fetching and decoding the whole batch).
    """
    if dtype_backend not in _BACKENDS:
        raise ValueError(f"dtype_backend must be one of {_BACKENDS}; got {dtype_backend!r}")
    pa = require("pyarrow")
    scalars: Dict[Any, Any] = {}
    if dtype_backend == "numpy_nullable":
        scalars = {
            pa.int64(): pd.Int64Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
            pa.string(): pd.StringDtype(),
        }

    def mapper(arrow_type: Any) -> Any:
        if dtype_backend == "pyarrow" or pa.types.is_nested(arrow_type):
            return pd.ArrowDtype(arrow_type)
        return scalars.get(arrow_type)

    return table.to_pandas(types_mapper=mapper, split_blocks=True, self_destruct=True)
