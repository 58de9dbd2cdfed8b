"""Which source adapters each target task leans on: the AdapterFusion paper's Figure 5, from a workspace.

Every fusion checkpoint records, in ``extra["fusion_stats"]``, the mean softmax weight its fusion layers gave
each adapter in each layer over the real (non-padding) dev tokens, heads averaged (see
:class:`fusionlab.evaluation.FusionStats`). Averaging those over layers gives one number per target and
adapter; a matrix of them (rows: fusions, columns: source adapters) shows at a glance which adapters a target
draws on. The per-layer values are kept beside the averages, because the average hides a fusion that uses an
adapter heavily in one layer only.

Reading is tolerant: a fusion whose metadata cannot be read, or that recorded no statistics, is listed in
:attr:`UsageMatrix.skipped` with the reason instead of failing the whole matrix, so one broken checkpoint never
hides the others. Nothing here imports Streamlit; the CLI and the dashboard both build on it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.text_table import align_columns
from fusionlab.workspace import Workspace

UNKNOWN_TARGET = "unknown target"
"""The target shown for a fusion whose metadata names no task (a hand-edited or very old checkpoint)."""

EXPLANATION = (
    "Mean fusion weight each fusion gives a source adapter over the real dev tokens (heads and layers averaged). "
    "A row sums to 1 over its N adapters, so 1/N is that row's even share: above it the target leans on the "
    "adapter, below it the target uses it less. An empty cell: the fusion was not trained over that adapter."
)
"""What the numbers mean, shared by the CLI table's footer and the dashboard's caption so both say the same."""


@dataclass(frozen=True)
class UsageRow:
    """One fusion's row of the matrix: its mean fusion weight per adapter, per layer and averaged over layers.

    ``adapters`` is the order of the fusion's own statistics; ``layers[l][j]`` and ``mean[j]`` belong to
    ``adapters[j]``.
    """

    name: str
    target: str
    method: str
    adapters: tuple[str, ...]
    layers: tuple[tuple[float, ...], ...]  # [layer][adapter], as recorded
    mean: tuple[float, ...]  # [adapter], the layer average of ``layers``

    @property
    def label(self) -> str:
        """How the row is named in tables and charts: several fusions may share a target."""
        return f"{self.target} ({self.name}, {self.method})"

    @property
    def num_adapters(self) -> int:
        """N, the number of adapters this fusion was trained over."""
        return len(self.adapters)

    @property
    def even_share(self) -> float:
        """1/N: the weight every adapter would get if the fusion used them all equally."""
        return 1.0 / self.num_adapters

    def value(self, adapter: str) -> float | None:
        """The layer-averaged weight of ``adapter``; ``None`` when this fusion has no such adapter (never 0,
        which would claim the fusion learned to ignore an adapter it never saw)."""
        if adapter not in self.adapters:
            return None
        return self.mean[self.adapters.index(adapter)]

    def per_layer(self, adapter: str) -> tuple[float, ...] | None:
        """The weight of ``adapter`` in every layer (layer 1 first); ``None`` when the fusion lacks it."""
        if adapter not in self.adapters:
            return None
        j = self.adapters.index(adapter)
        return tuple(layer[j] for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``num_adapters`` and ``even_share`` are included for readers of the JSON, and ignored
        by :meth:`from_dict` (they follow from ``adapters``)."""
        return {
            "name": self.name,
            "target": self.target,
            "method": self.method,
            "adapters": list(self.adapters),
            "layers": [list(layer) for layer in self.layers],
            "mean": list(self.mean),
            "num_adapters": self.num_adapters,
            "even_share": self.even_share,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRow:
        return cls(
            name=str(data["name"]),
            target=str(data["target"]),
            method=str(data["method"]),
            adapters=tuple(data["adapters"]),
            layers=tuple(tuple(float(w) for w in layer) for layer in data["layers"]),
            mean=tuple(float(w) for w in data["mean"]),
        )


@dataclass(frozen=True)
class UsageMatrix:
    """Fusions (rows, sorted by target then name) × source adapters (columns, first-seen order).

    ``adapters`` is the union of the rows' adapters in the order they first appear when the rows are read top
    to bottom, each row's adapters in the order the fusion lists them: deterministic for a given workspace,
    and it keeps the user's own ordering (usually the target's adapter first) instead of alphabetising it.
    ``skipped`` lists ``(fusion name, reason)`` for every fusion that could not be shown.
    """

    rows: tuple[UsageRow, ...]
    adapters: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def values(self) -> list[list[float | None]]:
        """``[row][adapter column]`` layer-averaged weights, ``None`` where a fusion lacks the adapter."""
        return [[row.value(adapter) for adapter in self.adapters] for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``fusionlab usage --json``); :meth:`from_dict` rebuilds an equal matrix."""
        return {
            "adapters": list(self.adapters),
            "rows": [row.to_dict() for row in self.rows],
            "skipped": [{"name": name, "reason": reason} for name, reason in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageMatrix:
        return cls(
            rows=tuple(UsageRow.from_dict(row) for row in data["rows"]),
            adapters=tuple(data["adapters"]),
            skipped=tuple((str(s["name"]), str(s["reason"])) for s in data.get("skipped", ())),
        )

    def format_table(self) -> str:
        """A plain-text table (3 decimals, aligned columns, empty cells for missing adapters) with a footer
        saying what the numbers are, so the CLI output can be read without the paper at hand."""
        if not self.rows:
            lines = ["No fusion in this workspace has recorded fusion statistics."]
        else:
            lines = _table_lines(self)
            lines += ["", *textwrap.wrap(EXPLANATION, FOOTER_WIDTH)]
        lines += [f"skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


# -- building ---------------------------------------------------------------------------------------------
def adapter_usage(workspace: Workspace) -> UsageMatrix:
    """The usage matrix of every fusion checkpoint in ``workspace``, skipping (with a reason) those that are
    unreadable or carry no statistics."""
    rows: list[UsageRow] = []
    skipped: list[tuple[str, str]] = []
    for name in workspace.list_fusions():
        try:
            rows.append(usage_row(name, read_meta(workspace.fusion_dir(name))))
        except CheckpointError as err:
            skipped.append((name, str(err)))
        except (OSError, AttributeError, TypeError, ValueError) as err:
            # read_meta checks the schema; anything it still lets through (bad statistics) must not end the matrix
            skipped.append((name, f"its metadata cannot be read: {type(err).__name__}: {err}"))
    rows.sort(key=lambda row: (row.target, row.name))
    return UsageMatrix(rows=tuple(rows), adapters=_first_seen(row.adapters for row in rows), skipped=tuple(skipped))


def usage_row(name: str, meta: Mapping[str, Any]) -> UsageRow:
    """One fusion's row from its checkpoint metadata; :class:`CheckpointError` says why it has none.

    The adapters come from the statistics themselves (not ``fusion_config``), because those are the names the
    recorded weights were computed for.
    """
    if meta.get("kind") != "fusion":
        raise CheckpointError(f"it holds a {meta.get('kind')!r} checkpoint, not a fusion")
    extra = meta.get("extra") or {}
    config = meta.get("fusion_config") or {}
    stats = extra.get("fusion_stats")
    if not stats:
        raise CheckpointError("no fusion statistics recorded (it was saved without a dev evaluation)")
    if not isinstance(stats, Mapping):
        raise CheckpointError("its fusion statistics are not a mapping of adapter names and weights")
    adapters = tuple(str(a) for a in stats.get("adapter_names") or ())
    layers = _checked_layers(stats.get("mean"), len(adapters))
    return UsageRow(
        name=name,
        target=str(extra.get("task") or config.get("target_task") or UNKNOWN_TARGET),
        method=str(config.get("fusion_method") or "unknown method"),
        adapters=adapters,
        layers=layers,
        mean=layer_mean(layers),
    )


def layer_mean(layers: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """The per-adapter average over layers (``math.fsum``, so the result does not depend on summation order)."""
    return tuple(math.fsum(column) / len(layers) for column in zip(*layers))


def _checked_layers(mean: Any, num_adapters: int) -> tuple[tuple[float, ...], ...]:
    """The recorded ``[layer][adapter]`` weights as floats, refusing a shape or value no softmax produces."""
    if num_adapters == 0:
        raise CheckpointError("its fusion statistics name no adapters")
    if not isinstance(mean, list) or not mean:
        raise CheckpointError("its fusion statistics hold no per-layer weights")
    layers = []
    for i, layer in enumerate(mean, 1):
        if not isinstance(layer, list) or len(layer) != num_adapters:
            raise CheckpointError(f"its fusion statistics for layer {i} do not have one weight per adapter")
        try:
            weights = tuple(float(w) for w in layer)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"its fusion statistics for layer {i} are not numbers: {err}") from err
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise CheckpointError(f"its fusion statistics for layer {i} hold a negative or non-finite weight")
        layers.append(weights)
    return tuple(layers)


def _first_seen(lists: Iterable[Sequence[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for names in lists for name in names))


# -- the text table -----------------------------------------------------------------------------------------
LABEL_HEADER = "target (fusion, method)"
FOOTER_WIDTH = 100
"""The table's explanation is wrapped to this many characters, to read in an ordinary terminal."""


def _table_lines(matrix: UsageMatrix) -> list[str]:
    """Header and one line per row: the label left-aligned, numbers right-aligned, then N and 1/N."""
    header = [LABEL_HEADER, *matrix.adapters, "N", "1/N"]
    body = [
        [
            row.label,
            *("" if value is None else f"{value:.3f}" for value in (row.value(a) for a in matrix.adapters)),
            str(row.num_adapters),
            f"{row.even_share:.3f}",
        ]
        for row in matrix.rows
    ]
    return align_columns(header, body)
