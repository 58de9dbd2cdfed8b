"""The composition lab: Adapter Fusion against what else combines task adapters, on the same adapters and dev set.

Parameter merging (:mod:`~fusionlab.composition.merging`), a gradient-free coefficient search
(:mod:`~fusionlab.composition.search`), AdapterDrop and pruning (:mod:`~fusionlab.composition.dropping`), the
methods' registry (:mod:`~fusionlab.composition.methods`) and the comparison that runs and scores them
(:mod:`~fusionlab.composition.compare`, results in :mod:`~fusionlab.composition.results`).
"""

from fusionlab.composition.merging import MERGE_METHODS, MergeOptions, add_merged_adapter, merge_adapters
from fusionlab.composition.results import CompareOptions, Comparison, MethodResult

__all__ = [
    "MERGE_METHODS",
    "CompareOptions",
    "Comparison",
    "MergeOptions",
    "MethodResult",
    "add_merged_adapter",
    "merge_adapters",
]
