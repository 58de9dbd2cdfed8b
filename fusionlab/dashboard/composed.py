"""The models a comparison trained (fusions, merged adapters, the searched combination), offered to the Playground.

A comparison keeps its checkpoints in a workspace of its own (``<workspace>/comparisons/<target>-s<seed>/``), so
its fusions open with the ordinary :class:`~fusionlab.dashboard.inference.Predictor` over that workspace, and
its merged adapters, standalone adapters with their own head, with :class:`AdapterPredictor`. Each model has a
key, ``<comparison>/<method>`` (``cb-s42/merge:ties``), which is what a link carries: the Playground only accepts
keys :func:`composed_models` lists, so nothing in a URL becomes a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusionlab.base_model import load_tokenizer
from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.config import check_name
from fusionlab.dashboard.answers import AnswerCache
from fusionlab.dashboard.compare_view import saved_comparisons
from fusionlab.dashboard.errors import DashboardError
from fusionlab.metrics import metric_label
from fusionlab.model import FusionModel
from fusionlab.prediction import Prediction, encode_input, predict
from fusionlab.workspace import Workspace


@dataclass(frozen=True)
class ComposedModel:
    """One model a comparison trained: where it is, what it is, and how it scored there."""

    comparison: str
    method: str
    kind: str  # "fusion" or "adapter"
    root: Path  # the comparison's own workspace
    name: str  # the checkpoint's name in that workspace
    target: str
    adapters: tuple[str, ...]
    main_metric: str
    value: float
    dev_examples: int
    score_text: str = ""  # ``0.732 [0.625, 0.839] (n=56)``; empty for a comparison saved without intervals
    vs_adapter_text: str = ""  # paired with the target's own adapter: ``+0.054 [-0.054, +0.161] (n=56, within noise)``

    @property
    def key(self) -> str:
        return f"{self.comparison}/{self.method}"

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.root)

    def label(self) -> str:
        return f"{self.method} (comparison {self.comparison})"

    def describe(self) -> str:
        """Its score with the interval and the paired difference the comparison recorded: a merged adapter beside
        the fusion is judged by the same rule as everything else on the page."""
        score = self.score_text or f"{self.value:.3f} on {self.dev_examples:,} examples (no interval recorded)"
        paired = (
            f"; against its {self.target} adapter alone (paired): {self.vs_adapter_text}"
            if self.vs_adapter_text
            else ""
        )
        return (
            f"{self.method} over {', '.join(self.adapters)}, trained by comparison {self.comparison}: dev "
            f"{metric_label(self.main_metric)} {score} there{paired}."
        )


def composed_models(workspace: Workspace, task: str | None = None) -> list[ComposedModel]:
    """Every model the workspace's readable comparisons trained (all but the plain adapter, which the workspace
    has already), for ``task`` only when given; newest comparison first."""
    found = []
    for saved in saved_comparisons(workspace):
        comparison = saved.comparison
        if comparison is None or (task is not None and comparison.options.target != task):
            continue
        for result in comparison.results:
            kind, _, name = result.checkpoint.partition("/")
            if result.family == "single" or kind not in ("fusions", "adapters") or not _valid_name(name):
                continue  # the plain adapter, or a record that names no checkpoint of this comparison
            found.append(
                ComposedModel(
                    comparison=saved.slug,
                    method=result.method,
                    kind="fusion" if kind == "fusions" else "adapter",
                    root=saved.path.parent,
                    name=name,
                    target=comparison.options.target,
                    adapters=tuple(comparison.options.adapters),
                    main_metric=result.main_metric,
                    value=result.value,
                    dev_examples=comparison.dev_examples,
                    score_text=result.interval.text() if result.interval else "",
                    vs_adapter_text=result.vs_adapter.text() if result.vs_adapter else "",
                )
            )
    return found


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


class AdapterPredictor:
    """A merged (or searched) adapter with its own head, loaded once and shared by every session, like
    :class:`~fusionlab.dashboard.inference.Predictor` (its answers remembered, its calls under one lock)."""

    def __init__(self, model: ComposedModel) -> None:
        self.composed = model
        path = model.workspace.adapter_dir(model.name)
        try:
            meta = read_meta(path)
            self.model = FusionModel.from_pretrained(path).eval()
        except (CheckpointError, ValueError) as err:
            raise DashboardError(f"{model.label()} cannot be loaded: {err}") from err
        self.max_length = int(meta["model_config"].get("max_length", 128))
        self.tokenizer = load_tokenizer(meta["model_config"]["model_name_or_path"])
        self._answers: AnswerCache[Prediction] = AnswerCache()

    def predict(self, text: str, text_pair: str | None) -> Prediction:
        """The adapter's answer for an input the page has already checked."""
        return self._answers.get((text, text_pair), lambda: self._predict(text, text_pair))

    def _predict(self, text: str, text_pair: str | None) -> Prediction:
        encoded = encode_input(self.tokenizer, text, text_pair, self.max_length)
        return predict(self.model, encoded, [self.composed.name])[0]
