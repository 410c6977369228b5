"""One table schema for every partition of a distributed read: the sampled pages' columns, plus `extra`.

Dask needs its `meta` before any partition is read, and Ray a schema per read task, so
every partition is cast to the schema planned from the first and last pages of the read
(flattened: dotted columns, as `to_pandas()` gives; a column only null on the first page
takes its type from the last). What the samples cannot fix is kept, never dropped:

- a column whose type no sample can tell (only nulls, or only empty lists) is JSON text
  (field metadata `{"soket_transcribe.json": "true"}`, `json.loads(cell)` gives the value);
- a field that first appears on an unsampled page, or a value that no longer fits its
  column's type (a string where the plan has numbers, a struct that gained a field), goes to
  the `extra` column: per row, the JSON text of an object `{"column": value}` of those values,
  else null. Its column is null for that partition (the whole column of a partition moves
  when its type moved: Arrow types are per column). A record field itself named `extra` is
  kept there too (as `{"extra": value}`), unless a sampled page has it: then it keeps its
  column and ours is `_extra`.

pyarrow is imported by the functions that need it, never at import time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["EXTRA_COLUMN", "JSON_FIELD", "plan_schema", "conform"]

#: Name of the column that keeps what the planned schema has no room for.
EXTRA_COLUMN = "extra"
#: Field metadata marking a column of JSON text (as the core's table readers mark them).
JSON_FIELD = {b"soket_transcribe.json": b"true"}


def _is_json(field: "pa.Field") -> bool:
    return bool(field.metadata) and field.metadata.get(b"soket_transcribe.json") == b"true"


def _holds_null_type(arrow_type: "pa.DataType") -> bool:
    import pyarrow as pa

    if pa.types.is_null(arrow_type):
        return True
    return any(_holds_null_type(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


def _merged(known: "pa.Field", later: "pa.Field") -> "pa.Field":
    """A column as two samples see it: the first's type, unless only the later one can tell it
    (or it widens integers to floats)."""
    import pyarrow as pa

    if _holds_null_type(known.type) and not _holds_null_type(later.type):
        return later
    if pa.types.is_integer(known.type) and pa.types.is_floating(later.type):
        return later
    return known


def plan_schema(*samples: "pa.Schema") -> "pa.Schema":
    """The schema every partition is cast to, from flattened samples (the first page's table,
    then the last page's): the first's columns, then those only a later one has."""
    import pyarrow as pa

    merged: Dict[str, "pa.Field"] = {}
    for sample in samples:
        for field in sample:
            known = merged.get(field.name)
            merged[field.name] = field if known is None else _merged(known, field)
    fields = []
    for field in merged.values():
        if _holds_null_type(field.type):
            field = pa.field(field.name, pa.string(), metadata=JSON_FIELD)
        fields.append(field)
    names = set(merged)
    extra = EXTRA_COLUMN
    while extra in names:  # a record field of that name keeps it; ours steps aside
        extra = "_" + extra
    fields.append(pa.field(extra, pa.string(), metadata=JSON_FIELD))
    return pa.schema(fields)


def extra_column(schema: "pa.Schema") -> str:
    """The name of the `extra` column in a planned schema (its last column)."""
    return schema.names[-1]


def _fits(source: "pa.DataType", target: "pa.DataType") -> bool:
    """Whether every value of `source` has a place in `target` (cast checks the values)."""
    import pyarrow as pa

    if source == target or pa.types.is_null(source):
        return True
    if pa.types.is_integer(source) and (pa.types.is_integer(target) or pa.types.is_floating(target)):
        return True
    if pa.types.is_floating(source) and pa.types.is_floating(target):
        return True
    if pa.types.is_list(source) and pa.types.is_list(target):
        return _fits(source.value_type, target.value_type)
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        # A struct cast drops fields the target lacks: only a subset of the target's fits.
        wanted = {target.field(i).name: target.field(i).type for i in range(target.num_fields)}
        return all(
            source.field(i).name in wanted and _fits(source.field(i).type, wanted[source.field(i).name])
            for i in range(source.num_fields)
        )
    return False


def _values(column: "pa.ChunkedArray", json_text: bool) -> List[Any]:
    values = column.to_pylist()
    if json_text:
        return [None if v is None else json.loads(v) for v in values]
    return values


def _from_json_text(column: "pa.ChunkedArray", target: "pa.DataType") -> Optional["pa.Array"]:
    """A JSON text column (a partition's own reading could not type it: say, only nulls) as
    `target`, if every value fits it."""
    import pyarrow as pa

    values = _values(column, True)
    try:
        typed = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return _cast(typed, target)


def _cast(column: Any, target: "pa.DataType") -> Optional[Any]:
    import pyarrow as pa

    if not _fits(column.type, target):
        return None
    try:
        return column.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _as_json_text(column: "pa.ChunkedArray", json_text: bool) -> "pa.Array":
    import pyarrow as pa

    if json_text:
        return column.cast(pa.string())
    return pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string())


def conform(table: "pa.Table", schema: "pa.Schema", columns: Optional[Sequence[str]] = None) -> "pa.Table":
    """`table` (a partition's flattened records) under `schema` (from `plan_schema`), or only
    its `columns`; what does not fit goes to the extra column (see the module docstring)."""
    import pyarrow as pa

    extra = extra_column(schema)
    wanted = schema.names if columns is None else list(columns)
    present = {f.name: f for f in table.schema}
    left_over: Dict[str, List[Any]] = {}
    out_fields, out_columns = [], []
    for name in wanted:
        if name == extra:
            continue
        target = schema.field(name)
        source = present.get(name)
        column: Any
        if source is None:
            column = pa.nulls(table.num_rows, target.type)
        elif _is_json(target):
            column = _as_json_text(table[name], _is_json(source))
        elif _is_json(source):
            column = _from_json_text(table[name], target.type)
        else:
            column = _cast(table[name], target.type)
        if column is None:
            if extra in wanted:
                left_over[name] = _values(table[name], _is_json(source))
            column = pa.nulls(table.num_rows, target.type)
        out_fields.append(target)
        out_columns.append(column)
    if extra in wanted:
        for field in table.schema:
            if field.name not in schema.names or field.name == extra:
                left_over[field.name] = _values(table[field.name], _is_json(field))
        out_fields.append(schema.field(extra))
        out_columns.append(_extra_values(left_over, table.num_rows))
    return pa.Table.from_arrays(out_columns, schema=pa.schema(out_fields))


def _extra_values(left_over: Dict[str, List[Any]], rows: int) -> "pa.Array":
    import pyarrow as pa

    if not left_over:
        return pa.nulls(rows, pa.string())
    texts: List[Optional[str]] = []
    for i in range(rows):
        kept = {name: values[i] for name, values in left_over.items() if values[i] is not None}
        texts.append(json.dumps(kept) if kept else None)
    return pa.array(texts, pa.string())
