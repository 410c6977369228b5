"""A batch as a Ray Dataset: a `ray.data.Datasource` with one read task per `BatchPartition`.

Imported by `BatchResults.to_ray()` only (never by `import soket_transcribe`): it imports Ray.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterator, List, Optional

from .partitions import BatchPartition
from .tables import require

if TYPE_CHECKING:
    import pyarrow as pa

ray_data = require("ray.data", "ray")
_block = require("ray.data.block", "ray")

__all__ = ["BatchDatasource", "to_ray"]


def _read_pages(partition: BatchPartition) -> Iterator["pa.Table"]:
    # Module level: a read task carries the partition, never the datasource or a closure.
    yield from partition.iter_arrow()


class BatchDatasource(ray_data.Datasource):  # type: ignore[misc]
    """The pages of one batch read: one read task per partition, one block per page."""

    def __init__(self, partitions: List[BatchPartition]) -> None:
        super().__init__()
        self._partitions = partitions

    def get_name(self) -> str:
        return "SoketBatch"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: Optional[int] = None, data_context: Any = None
    ) -> List[Any]:
        # The plan fixed the partitions (page ranges): `parallelism` cannot split a page.
        return [
            ray_data.ReadTask(
                functools.partial(_read_pages, partition),
                _block.BlockMetadata(num_rows=partition.num_rows, size_bytes=None, exec_stats=None, input_files=None),
                schema=partition.schema,
                per_task_row_limit=per_task_row_limit,
            )
            for partition in self._partitions
        ]


def to_ray(partitions: List[BatchPartition]) -> "ray_data.Dataset":
    """The partitions as one Ray Dataset, in page order."""
    return ray_data.read_datasource(BatchDatasource(partitions))
