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

import asyncio
import importlib
import sys
from typing import Any, Dict, Optional

__all__ = ["require", "require_async", "check_dtype_backend", "arrow_to_pandas"]

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


async def require_async(module: str, extra: Optional[str] = None) -> Any:
    """`require` for asyncio: a first import (pyarrow, polars: 0.1-0.3 s) runs in a worker
    thread, so the event loop goes on meanwhile."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    return await asyncio.to_thread(require, module, extra)


_BACKENDS = (None, "numpy_nullable", "pyarrow")


def check_dtype_backend(dtype_backend: Optional[str]) -> None:
    if dtype_backend not in _BACKENDS:
        raise ValueError(f"dtype_backend must be one of {_BACKENDS}; got {dtype_backend!r}")


def arrow_to_pandas(table: Any, pd: Any, dtype_backend: Optional[str]) -> Any:
    """`table.to_pandas`, freeing the Arrow memory as it goes (the table is ours alone).

    List and struct columns always stay in Arrow memory (`pd.ArrowDtype`): a cell reads as a
    Python list or dict when touched, instead of a million of them built up front (that
    conversion alone costs more than fetching and decoding the whole batch).
    """
    check_dtype_backend(dtype_backend)
    pa = require("pyarrow")
    # int64 as pandas' nullable Int64: numpy would turn a column with nulls into float64
    # (9007199254740993 -> 9007199254740992.0).
    scalars: Dict[Any, Any] = {pa.int64(): pd.Int64Dtype()}
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
