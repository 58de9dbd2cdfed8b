"""Bottleneck adapters and the bank that holds one per task and layer."""

from fusionlab.adapters.layer import BottleneckAdapter, StackedAdapters, run_stacked, stack_adapters
from fusionlab.adapters.manager import AdapterManager, TaskAdapter, tensors_hash

__all__ = [
    "AdapterManager",
    "BottleneckAdapter",
    "StackedAdapters",
    "TaskAdapter",
    "run_stacked",
    "stack_adapters",
    "tensors_hash",
]
