"""Record batches, one per page, into one Parquet file under the schema `to_arrow()` would give.

A Parquet file has one schema, and a later page may bring a field, or change one's type (an
object on page 1, a string on page 3). Such a field takes the type `to_arrow()` gives it over the
whole batch: a new field is null before it appeared, an integer column meeting floats becomes
float64, and types that disagree become a column of JSON text (`soket_transcribe.json` in its
metadata). What was written under the narrower schema is then copied under the wider one, a row
group at a time, so memory stays bounded by a row group, never by the file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

__all__ = ["ParquetPages"]

JSON_KEY = b"soket_transcribe.json"


class ParquetPages:
    """Record batches into the Parquet file at `path`, after the rows of `base` if given."""

    def __init__(self, path: str, base: Optional[str]) -> None:
        import pyarrow.parquet as pq

        self.path, self.pq = path, pq
        self.writer: Any = None
        self.schema: Any = None
        if base is not None:
            self._copy(base, schema=None)

    def write(self, batch: Any) -> None:
        if self.writer is None:
            self._open(batch.schema)
        elif _shape_of_schema(batch.schema) != _shape_of_schema(self.schema):
            wider = _unify_schemas(self.schema, batch.schema)
            if _shape_of_schema(wider) != _shape_of_schema(self.schema):
                self._rewrite(wider)
            batch = _conform(batch, self.schema)
        self.writer.write_batch(batch)

    def close(self) -> None:
        if self.writer is None:  # no records: still a readable, empty file
            import pyarrow as pa

            self._open(pa.schema([]))
        self.writer.close()

    def _open(self, schema: Any) -> None:
        self.schema = schema
        self.writer = self.pq.ParquetWriter(self.path, schema)

    def _copy(self, source: str, schema: Any) -> None:
        """The rows of the Parquet file `source` into this one (under `schema`, if given)."""
        try:
            written = self.pq.ParquetFile(source)
        except Exception as e:  # pyarrow's own errors: not a Parquet file
            raise ValueError(f"cannot continue {source}: {e}") from None
        with written:
            if schema is None and written.metadata.num_rows == 0:
                return
            self._open(schema if schema is not None else written.schema_arrow)
            for batch in written.iter_batches():
                self.writer.write_batch(_conform(batch, self.schema))

    def _rewrite(self, schema: Any) -> None:
        self.writer.close()
        narrow = self.path + ".narrow"
        os.replace(self.path, narrow)
        try:
            self._copy(narrow, schema)
        finally:
            os.remove(narrow)


# -- the unification `to_arrow()` applies, field by field ------------------------------------


def _is_json(field: Any) -> bool:
    return (field.metadata or {}).get(JSON_KEY) == b"true"


def _json_field(field: Any) -> Any:
    import pyarrow as pa

    return pa.field(field.name, pa.string(), metadata={JSON_KEY: b"true"})


def _shape(field: Any) -> Any:
    """What decides a column's values: its type, with the JSON text mark at every depth."""
    import pyarrow.types as types

    kind = field.type
    if _is_json(field):
        return "json"
    if types.is_struct(kind):
        return ("struct", tuple((child.name, _shape(child)) for child in kind))
    if types.is_list(kind) or types.is_large_list(kind):
        return ("list", _shape(kind.value_field))
    return str(kind)


def _shape_of_schema(schema: Any) -> Any:
    return tuple((field.name, _shape(field)) for field in schema)


def _unify_schemas(old: Any, new: Any) -> Any:
    import pyarrow as pa

    fields = {field.name: field for field in old}
    for field in new:
        fields[field.name] = _unify(fields[field.name], field) if field.name in fields else field
    return pa.schema(list(fields.values()))


def _unify(a: Any, b: Any) -> Any:
    """The field that holds the values of both `a` and `b`."""
    import pyarrow as pa
    import pyarrow.types as types

    if _shape(a) == _shape(b):
        return b
    if _is_json(a) or _is_json(b):
        return _json_field(b)
    if types.is_null(a.type):
        return b
    if types.is_null(b.type):
        return a
    if types.is_struct(a.type) and types.is_struct(b.type):
        children = {child.name: child for child in a.type}
        for child in b.type:
            children[child.name] = _unify(children[child.name], child) if child.name in children else child
        return pa.field(b.name, pa.struct(list(children.values())))
    if _is_list(a) and _is_list(b):
        return pa.field(b.name, pa.list_(_unify(a.type.value_field, b.type.value_field)))
    if {str(a.type), str(b.type)} == {"int64", "double"}:
        return pa.field(b.name, pa.float64())
    return _json_field(b)


def _is_struct(field: Any) -> bool:
    import pyarrow.types as types

    return bool(types.is_struct(field.type))


def _is_list(field: Any) -> bool:
    import pyarrow.types as types

    return bool(types.is_list(field.type) or types.is_large_list(field.type))


def _conform(batch: Any, schema: Any) -> Any:
    """`batch` under `schema`: columns matched by name, missing ones null, values converted."""
    import pyarrow as pa

    names = batch.schema.names
    columns = [
        _convert(batch.column(field.name), batch.schema.field(field.name), field)
        if field.name in names
        else pa.nulls(len(batch), field.type)
        for field in schema
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _convert(array: Any, source: Any, target: Any) -> Any:
    import pyarrow as pa

    if _shape(source) == _shape(target):
        return array
    if "json" not in str(_shape(target)):
        try:
            return array.cast(target.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    return pa.array([_value(value, source, target) for value in array.to_pylist()], type=target.type)


def _value(value: Any, source: Any, target: Any) -> Any:
    """One value read under `source`, as `target` holds it."""
    if value is None:
        return None
    if _is_json(target):
        return value if _is_json(source) else json.dumps(_plain(value, source), ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, dict):
        children = {child.name: child for child in source.type} if _is_struct(source) else {}
        return {child.name: _value(value.get(child.name), children.get(child.name, child), child) for child in target.type}
    if isinstance(value, list) and _is_list(target):
        element = source.type.value_field if _is_list(source) else target.type.value_field
        return [_value(item, element, target.type.value_field) for item in value]
    return value


def _plain(value: Any, field: Any) -> Any:
    """A value read under `field` as plain Python (JSON text read back), for `json.dumps`."""
    if value is None:
        return None
    if _is_json(field):
        return json.loads(value)
    if isinstance(value, dict):
        return {child.name: _plain(value.get(child.name), child) for child in field.type}
    if isinstance(value, list) and _is_list(field):
        return [_plain(item, field.type.value_field) for item in value]
    return value
