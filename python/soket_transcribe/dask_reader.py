"""A batch as a Dask DataFrame: one `BatchPartition` per Dask partition, read on the workers.

Imported by `BatchResults.to_dask()` only (never by `import soket_transcribe`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence

from .partitions import BatchPartition
from .tables import require

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

__all__ = ["read_partition", "to_dask"]


def read_partition(partition: BatchPartition, columns: Sequence[str]) -> "pd.DataFrame":
    """One Dask partition, of the frame's `columns`: a required argument, so Dask passes them
    always (an empty projection included) and the worker builds only those."""
    return partition.to_pandas(columns)


def to_dask(partitions: List[BatchPartition]) -> "dd.DataFrame":
    """The partitions as one Dask DataFrame, in page order; `meta` from the plan's schema
    (nothing is read to learn it), divisions from the planned row counts when they hold."""
    dd = require("dask.dataframe", "dask")
    meta = partitions[0].empty_pandas()
    divisions = None
    # Row numbers stay within the planned divisions only if a moved batch raises.
    if all(p.on_change == "raise" for p in partitions) and all(p.num_rows > 0 for p in partitions):
        divisions = tuple(p.first_row for p in partitions) + (partitions[-1].first_row + partitions[-1].num_rows - 1,)
    return dd.from_map(
        read_partition,
        partitions,
        meta=meta,
        divisions=divisions,
        label="soket-transcribe",
        enforce_metadata=False,
    )
