"""An inference snapshot: a model that only answers, so what its forward pass derives from weights is built once.

Training must rebuild everything derived from weights in every call (the fused AdamW changes weights without
bumping their version counters, so no cache keyed on them can be trusted; see
:meth:`~fusionlab.adapters.manager.AdapterManager.layer_deltas`). A model that will never change again has no
such problem: its stacked adapter weights (per layer and adapter subset) and attention fusion's folded
``W_q^T W_k [U; B]^T`` products can be computed on first use and kept. For one short sentence those rebuilds are
most of fusion's overhead over the bare encoder (``bench/fusion_overhead.py --snapshot``).

The snapshot is made in place from a model nobody else holds — the dashboard's :class:`Predictor` loads its own
from disk — because a ``deepcopy`` of a :class:`~fusionlab.model.FusionModel` would copy the encoder's forward
hooks, which still point at the original. It is frozen (no gradients), kept in eval mode (``train()`` is
refused), and must not be given other weights: load a fresh model instead.
"""

from __future__ import annotations

from fusionlab.model import FusionModel


class SnapshotError(RuntimeError):
    """Something tried to train or change an inference snapshot."""


def freeze_for_inference(model: FusionModel) -> FusionModel:
    """Make ``model`` an inference snapshot (in place) and return it; see the module docstring."""
    model.eval()
    model.requires_grad_(False)
    model.adapter_manager.stacks = {}
    for layer in model.fusion_layers or ():
        if hasattr(layer, "folds"):
            layer.folds = {}
    model.is_inference_snapshot = True
    return model
