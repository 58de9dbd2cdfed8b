"""A comparison of composition methods as a run kind: queued like a training run, executed by the worker, listed,
followed and cancellable (``fusionlab compare``, ``fusionlab runs``).

:class:`CompareRun` is the typed spec the run store holds for a ``compare`` run; its executor,
:func:`run_compare_job`, trains and scores the methods in the worker's process and reports progress per method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from fusionlab.composition.compare import RESULT_FILE, MethodsReporter, compare_methods
from fusionlab.composition.results import CompareOptions
from fusionlab.composition.session import comparison_dir
from fusionlab.config import JsonConfig, _fail, check_name
from fusionlab.devices import require_device
from fusionlab.run_context import RunCancelled, RunContext
from fusionlab.runspec import RunKind
from fusionlab.runstore import Run
from fusionlab.schema import stamp, upgrade
from fusionlab.training.loop import TrainingCancelled


@dataclass
class CompareRun(JsonConfig):
    """Every composition method over ``options.adapters`` for ``options.target``; saved as
    ``comparisons/<name>/comparison.json`` (with the checkpoints it trained)."""

    kind: ClassVar[RunKind] = RunKind.COMPARE
    artifact: ClassVar[str] = "comparison"
    executor: ClassVar[str] = "fusionlab.composition.run:run_compare_job"
    reports_run_result: ClassVar[bool] = False

    options: CompareOptions
    data_dir: str | None = None
    model: str | None = None
    """Base model (hub name or local path); ``None``: the bundled default encoder."""
    name: str = ""
    """Always the comparison's directory name, ``<target>-s<seed>`` (one comparison per target and seed)."""

    def validate(self) -> None:
        if isinstance(self.options, dict):
            self.options = CompareOptions.from_dict(self.options)
        if not isinstance(self.options, CompareOptions):
            _fail("CompareRun", "options", f"must be CompareOptions, got {type(self.options).__name__}")
        for field_name in ("data_dir", "model"):
            value = getattr(self, field_name)
            if value is not None and not isinstance(value, str):
                _fail("CompareRun", field_name, f"must be a string or null, got {value!r}")
        self.name = check_name(self.options.slug, "CompareRun.name")

    @property
    def task_name(self) -> str:
        return self.options.target

    @classmethod
    def stored_task(cls, config: dict[str, Any]) -> str | None:
        options = config.get("options")
        return options.get("target") if isinstance(options, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return stamp({**super().to_dict(), "options": self.options.to_dict()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareRun:
        if not isinstance(data, dict):
            raise ValueError(f"CompareRun: a run config must be a JSON object, got {type(data).__name__}")
        return super().from_dict(upgrade(data, "a stored CompareRun"))


class CompareReporter(MethodsReporter):
    """The worker's view of a comparison: overall progress across the methods, each method's training steps
    within its share, and a cancel checked inside every training loop and between methods."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.index, self.total, self.method = 0, 1, ""

    def method_started(self, index: int, total: int, method: str) -> None:
        if self.ctx.cancelled():
            raise RunCancelled(f"cancelled before {method}")
        self.index, self.total, self.method = index, max(total, 1), method
        self.ctx.set_progress(index / self.total, f"method {index + 1}/{self.total}: {method}")

    def say(self, message: str) -> None:
        self.ctx.set_progress(self.index / self.total, message[:200])

    def on_progress(self, step: int, total: int) -> None:
        within = step / max(total, 1)
        message = f"method {self.index + 1}/{self.total}: {self.method}, step {step}/{total}"
        self.ctx.set_progress((self.index + within) / self.total, message)

    def should_stop(self) -> bool:
        return self.ctx.cancelled()


def run_compare_job(run: Run, ctx: RunContext) -> tuple[dict, dict]:
    """Worker executor for ``compare`` runs: the summary (every method's score) and where the comparison is."""
    spec = CompareRun.from_dict(run.config)
    require_device(ctx.device)
    reporter = CompareReporter(ctx)
    try:
        comparison = compare_methods(spec.options, ctx.workspace, spec.data_dir, spec.model, reporter=reporter)
    except TrainingCancelled as err:
        raise RunCancelled(str(err)) from err
    path = comparison_dir(ctx.workspace, spec.options) / RESULT_FILE
    summary = {
        "main_metric": comparison.main_metric,
        "scores": {r.method: r.value for r in comparison.results},
        "dev_examples": comparison.dev_examples,
        "majority_baseline": comparison.majority_baseline,
    }
    return summary, {"comparison": str(path), "kind": CompareRun.artifact, "name": spec.name}
