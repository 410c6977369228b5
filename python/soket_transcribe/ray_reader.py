"""A batch as a Ray Dataset: a `ray.data.Datasource` with one read task per `BatchPartition`.

Imported by `BatchResults.to_ray()` only, once Ray is known to be there (never by
`import soket_transcribe`).
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Iterator, List, Optional

import pyarrow as pa
import ray.data
from ray.data.block import BlockMetadata

from .partitions import BatchPartition

__all__ = ["BatchDatasource", "to_ray"]


def _read_pages(partition: BatchPartition, columns: Optional[List[str]]) -> Iterator["pa.Table"]:
    # Module level: a read task carries the partition, never the datasource or a closure.
    yield from partition.iter_arrow(columns)


class BatchDatasource(ray.data.Datasource):
    """The pages of one batch read: one read task per partition, one block per page."""

    def __init__(self, partitions: List[BatchPartition]) -> None:
        super().__init__()
        self._partitions = partitions
        self._projection_map: Optional[Dict[str, str]] = None

    def supports_projection_pushdown(self) -> bool:
        # `select_columns` reaches the read tasks: they build only those columns.
        return True

    def get_name(self) -> str:
        return "SoketBatch"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: Optional[int] = None, data_context: Any = None
    ) -> List[Any]:
        # The plan fixed the partitions (page ranges): `parallelism` cannot split a page.
        columns = self._get_data_columns()
        return [
            ray.data.ReadTask(
                functools.partial(_read_pages, partition, columns),
                BlockMetadata(num_rows=partition.num_rows, size_bytes=None, exec_stats=None, input_files=None),
                schema=partition.schema if columns is None else pa.schema([partition.schema.field(c) for c in columns]),
                per_task_row_limit=per_task_row_limit,
            )
            for partition in self._partitions
        ]


def to_ray(partitions: List[BatchPartition]) -> ray.data.Dataset:
    """The partitions as one Ray Dataset, in page order."""
    return ray.data.read_datasource(BatchDatasource(partitions))
