"""What a training run is and what it produced: the one vocabulary of the CLI, the Train page, the demo,
the pack, the worker and the Runs page.

A run crosses processes (queued by the dashboard or the CLI, executed by the worker) and files (the run store,
the Runs page's download), so it is a typed, validating dataclass with a JSON round trip instead of a dict
that each reader re-interprets:

* :class:`Budget` — how long and on how much data a stage trains; the single place that turns those numbers
  into a :class:`~fusionlab.config.TrainingConfig` (how often to log, for instance).
* :class:`AdapterRun` / :class:`FusionRun` — one stage-1 / stage-2 run. ``name`` is always resolved, and it is
  the name the checkpoint is saved under: a fusion run called ``rte-attention`` saves ``fusions/rte-attention``.
* :class:`RunResult` — what a finished run reports: metrics *with* the name of its main metric, the majority
  baseline, fusion statistics and the confusion matrix.

The stored JSON keeps the field names the run store has always held (``adapter_config``, ``training_config``,
...), so runs recorded before these types existed still read back.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol

from fusionlab.config import AdapterConfig, FusionConfig, JsonConfig, ModelConfig, TrainingConfig, _fail, check_name
from fusionlab.metrics import metric_label
from fusionlab.runstore import Run
from fusionlab.schema import SCHEMA_KEY, stamp, upgrade
from fusionlab.uncertainty import Difference, Score


class RunKind(str, Enum):
    """The one vocabulary of run kinds: what the run store records, the worker dispatches on and views filter by.

    A ``str`` enum, so a kind compares equal to (and is stored as) its value. What a kind *is* — its typed spec,
    the artifact it saves, the executor that runs it — lives on its spec class (:data:`RUN_KINDS`).
    """

    TRAIN_ADAPTER = "train_adapter"
    TRAIN_FUSION = "train_fusion"
    COMPARE = "compare"

    def __str__(self) -> str:
        return self.value


TRAIN_ADAPTER = RunKind.TRAIN_ADAPTER
TRAIN_FUSION = RunKind.TRAIN_FUSION
TRAINING_EXECUTOR = "fusionlab.training.jobs:run_training_job"


class RunSpec(Protocol):
    """What every run kind's typed spec offers the run layer (queueing, the worker, the views)."""

    kind: ClassVar[RunKind]
    artifact: ClassVar[str]
    executor: ClassVar[str]
    reports_run_result: ClassVar[bool]
    name: str

    @property
    def task_name(self) -> str: ...

    @classmethod
    def stored_task(cls, config: dict[str, Any]) -> str | None: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec: ...

    def to_dict(self) -> dict[str, Any]: ...


def logging_interval(steps: int) -> int:
    """Log the loss about twenty times a run, at most every 50 steps and at least every step: even a short
    run then has a loss curve, and a long one does not flood the run store."""
    return max(1, min(50, steps // 20)) if steps > 0 else 10


@dataclass
class Budget(JsonConfig):
    """How long and on how much data one stage trains: the numbers a user (or a recipe) chooses.

    ``steps=-1`` trains ``epochs`` epochs instead; ``eval_steps``/``snapshot_steps`` of ``None`` mean "only at
    the end" / "never"; ``max_eval_samples`` is the same dev subset for every seed (see ``DEV_SUBSET_SEED``).
    """

    steps: int = 100
    learning_rate: float = 1e-3
    batch_size: int = 16
    max_length: int = 128
    warmup_ratio: float = 0.0
    epochs: float = 1.0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_steps: int | None = None
    snapshot_steps: int | None = None
    early_stopping_patience: int | None = None
    seed: int = 42
    model: str | None = None
    gradient_checkpointing: bool = False
    """Base model (hub name or local path); ``None``: the bundled default encoder."""

    def validate(self) -> None:
        # the configs built from these numbers are the judges, so a rule is written once (in config.py)
        self.training_config()
        self.model_config()

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(
            learning_rate=self.learning_rate,
            num_train_epochs=self.epochs,
            max_steps=self.steps,
            per_device_train_batch_size=self.batch_size,
            warmup_ratio=self.warmup_ratio,
            logging_steps=logging_interval(self.steps),
            eval_steps=self.eval_steps,
            max_train_samples=self.max_train_samples,
            max_eval_samples=self.max_eval_samples,
            early_stopping_patience=self.early_stopping_patience,
            snapshot_steps=self.snapshot_steps,
            seed=self.seed,
            gradient_checkpointing=self.gradient_checkpointing,
        )

    def model_config(self) -> ModelConfig:
        if self.model is None:
            return ModelConfig(max_length=self.max_length)
        return ModelConfig(model_name_or_path=self.model, max_length=self.max_length)


@dataclass
class CustomData(JsonConfig):
    """A user's own CSV/JSONL file to train on; the worker re-reads it in its own process."""

    path: str
    text_columns: list[str]
    label_column: str = "label"
    name: str | None = None

    def validate(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            _fail("CustomData", "path", f"must name a file, got {self.path!r}")
        self._names("text_columns", allow_empty=False)
        if not 1 <= len(self.text_columns) <= 2:
            _fail("CustomData", "text_columns", f"must name one or two columns, got {self.text_columns!r}")
        if self.name is not None:
            check_name(self.name, "CustomData.name")

    def load(self):
        """Read, check and register the task (``ValueError`` naming the file and line if it is bad)."""
        from fusionlab.data import task_from_file

        return task_from_file(self.path, self.text_columns, self.label_column, self.name)


class _RunSpec(JsonConfig):
    """What adapter and fusion runs share: the configs the trainer is built from, and nested JSON."""

    kind: ClassVar[RunKind]
    artifact: ClassVar[str]
    """What it saves: ``adapter`` or ``fusion`` (the checkpoint's kind, and a :class:`RunResult`'s)."""
    executor: ClassVar[str] = TRAINING_EXECUTOR
    """The worker's executor for this kind, as ``module:function`` (imported when such a run starts)."""
    reports_run_result: ClassVar[bool] = True
    """Its finished row holds a :class:`RunResult` (one trained artifact, scored)."""
    _nested: ClassVar[dict[str, type[JsonConfig]]] = {
        "training_config": TrainingConfig,
        "model_config": ModelConfig,
        "custom_task": CustomData,
    }

    training_config: TrainingConfig
    model_config: ModelConfig
    data_dir: str | None
    custom_task: CustomData | None

    @property
    def task_name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def stored_task(cls, config: dict[str, Any]) -> str | None:  # pragma: no cover - overridden
        """The task a stored config trains for, read without validating the rest."""
        raise NotImplementedError

    def _check_common(self) -> None:
        for name, cls in self._nested.items():
            value = getattr(self, name)
            if not isinstance(value, cls) and not (value is None and name == "custom_task"):
                _fail(type(self).__name__, name, f"must be a {cls.__name__}, got {type(value).__name__}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            _fail(type(self).__name__, "data_dir", f"must be a path string or null, got {self.data_dir!r}")
        check_name(self.name, f"{type(self).__name__}.name")  # type: ignore[attr-defined]
        check_name(self.task_name, f"{type(self).__name__}.{'task' if self.kind == TRAIN_ADAPTER else 'target_task'}")

    @classmethod
    def _prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Fill what a nested config takes from the run itself before it is built (see :class:`FusionRun`)."""
        return values

    def to_dict(self) -> dict[str, Any]:
        return stamp(super().to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: a run config must be a JSON object, got {type(data).__name__}")
        data = upgrade(data, f"a stored {cls.__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        values = cls._prepare(dict(data))
        for name, nested in cls._nested.items():
            if isinstance(values.get(name), dict):
                values[name] = nested.from_dict(values[name])
            elif values.get(name) is None and name != "custom_task":
                values.pop(name, None)  # an old run stored null: the defaults
        required = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
        ]
        if required:
            raise ValueError(f"{cls.__name__}: missing field(s) {', '.join(required)}")
        return cls(**values)


@dataclass
class AdapterRun(_RunSpec):
    """Stage 1: train one adapter (and its head) on ``task``; saved as ``adapters/<name>``."""

    kind: ClassVar[RunKind] = RunKind.TRAIN_ADAPTER
    artifact: ClassVar[str] = "adapter"
    _nested: ClassVar[dict[str, type[JsonConfig]]] = {**_RunSpec._nested, "adapter_config": AdapterConfig}

    task: str
    name: str = ""
    """Default: the task's name."""
    adapter_config: AdapterConfig = field(default_factory=AdapterConfig)
    training_config: TrainingConfig = field(default_factory=TrainingConfig)
    model_config: ModelConfig = field(default_factory=ModelConfig)
    data_dir: str | None = None
    custom_task: CustomData | None = None

    def validate(self) -> None:
        if not isinstance(self.task, str) or not self.task.strip():
            _fail("AdapterRun", "task", f"must name a task, got {self.task!r}")
        self.name = (self.name or "").strip() or self.task
        self._check_common()

    @property
    def task_name(self) -> str:
        return self.task

    @classmethod
    def stored_task(cls, config: dict[str, Any]) -> str | None:
        return config.get("task")


@dataclass
class FusionRun(_RunSpec):
    """Stage 2: train fusion layers over frozen ``adapters`` for ``target_task``; saved as ``fusions/<name>``."""

    kind: ClassVar[RunKind] = RunKind.TRAIN_FUSION
    artifact: ClassVar[str] = "fusion"
    _nested: ClassVar[dict[str, type[JsonConfig]]] = {**_RunSpec._nested, "fusion_config": FusionConfig}

    target_task: str
    adapters: list[str]
    name: str = ""
    """Default: ``<target>-<method>``, e.g. ``rte-attention``."""
    fusion_config: FusionConfig | None = None
    """Default: attention fusion; its ``adapter_names``/``target_task`` always follow this run's."""
    training_config: TrainingConfig = field(default_factory=TrainingConfig)
    model_config: ModelConfig = field(default_factory=ModelConfig)
    data_dir: str | None = None
    custom_task: CustomData | None = None

    def validate(self) -> None:
        if not isinstance(self.target_task, str) or not self.target_task.strip():
            _fail("FusionRun", "target_task", f"must name a task, got {self.target_task!r}")
        self._artifact_names("adapters")
        self.adapters = list(self.adapters)
        if len(self.adapters) < 2:  # one name alone takes that adapter's own path: the fusion would learn nothing
            _fail("FusionRun", "adapters", f"a fusion needs two adapters or more to mix, got {self.adapters!r}")
        if self.fusion_config is not None and not isinstance(self.fusion_config, FusionConfig):
            _fail("FusionRun", "fusion_config", f"must be a FusionConfig, got {type(self.fusion_config).__name__}")
        base = self.fusion_config or FusionConfig(adapter_names=list(self.adapters))
        self.fusion_config = dataclasses.replace(base, adapter_names=list(self.adapters), target_task=self.target_task)
        self.name = fusion_name(self.target_task, self.fusion_config.fusion_method, self.name)
        self._check_common()

    @classmethod
    def _prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        fusion = values.get("fusion_config")
        if isinstance(fusion, dict):  # the run's adapters and target are the fusion's, whatever was stored
            values["fusion_config"] = {
                **fusion,
                "adapter_names": list(values.get("adapters") or []),
                "target_task": values.get("target_task"),
            }
        return values

    @property
    def task_name(self) -> str:
        return self.target_task

    @classmethod
    def stored_task(cls, config: dict[str, Any]) -> str | None:
        return config.get("target_task")

    @property
    def method(self) -> str:
        assert self.fusion_config is not None  # set by validate
        return self.fusion_config.fusion_method


RUN_KINDS: dict[RunKind, str] = {
    RunKind.TRAIN_ADAPTER: "fusionlab.runspec:AdapterRun",
    RunKind.TRAIN_FUSION: "fusionlab.runspec:FusionRun",
    RunKind.COMPARE: "fusionlab.composition.run:CompareRun",
}
"""Run kind → its typed spec class, as ``module:Class`` (and through the class, its artifact and executor): the
one registry of kinds. Imported when first asked for, like the executors, so that a kind defined in a package
that itself builds on runs (the composition lab) adds no import circle."""


def spec_class(kind: str) -> type[RunSpec]:
    """The typed spec class of a run kind; ``ValueError`` naming the known kinds for any other."""
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; known: {', '.join(RUN_KINDS)}")
    module_name, class_name = RUN_KINDS[RunKind(kind)].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def kind_saving(artifact: str) -> RunKind:
    """The run kind that saves an ``adapter``, a ``fusion`` or a ``comparison``."""
    for kind in RUN_KINDS:
        if spec_class(kind).artifact == artifact:
            return kind
    known = ", ".join(spec_class(k).artifact for k in RUN_KINDS)
    raise ValueError(f"no run kind saves a {artifact!r}; known: {known}")


def fusion_name(target_task: str, method: str, name: str | None = None) -> str:
    """A fusion's name: the one typed (stripped), else ``<target>-<method>``, whoever queues it (CLI, Train
    page, demo)."""
    return (name or "").strip() or f"{target_task}-{method}"


def parse_run(kind: str, config: dict[str, Any]) -> RunSpec:
    """The typed run behind a stored ``(kind, config)``; ``ValueError`` naming the field if it is invalid."""
    return spec_class(kind).from_dict(config)


def run_task(kind: str, config: dict[str, Any]) -> str | None:
    """The task a stored run is for, without validating the rest (a run of an unknown kind: ``None``)."""
    if kind not in RUN_KINDS or not isinstance(config, dict):
        return None
    value = spec_class(kind).stored_task(config)
    return value if isinstance(value, str) else None


# -- results ------------------------------------------------------------------------------------------------
def layers_frame(layers: list[list[float]], adapter_names: list[str]):
    """Weights ``[layer][adapter]`` as a pandas frame: rows ``layer 1..L``, one column per adapter (what the
    charts take; empty in, empty out)."""
    import pandas as pd  # only the views need it

    index = [f"layer {i}" for i in range(1, len(layers) + 1)]
    return pd.DataFrame(layers, index=index, columns=list(adapter_names), dtype="float64")


@dataclass
class FusionStats(JsonConfig):
    """Mean fusion weight per layer and adapter (heads averaged) over dev tokens, overall and per gold class."""

    adapter_names: list[str]
    mean: list[list[float]]  # [layer][adapter]
    per_class: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """The gold classes the statistics are broken down by (only those present in the dev sample)."""
        return list(self.per_class)

    def layers(self, label: str | None = None) -> list[list[float]]:
        """Weights ``[layer][adapter]`` over all dev examples, or over those of one gold class."""
        if label is not None and label not in self.per_class:
            raise ValueError(f"no fusion statistics for class {label!r}; classes: {', '.join(self.classes)}")
        return self.mean if label is None else self.per_class[label]

    def frame(self, label: str | None = None):
        """:meth:`layers` as a pandas frame (see :func:`layers_frame`)."""
        return layers_frame(self.layers(label), self.adapter_names)

    def validate(self) -> None:
        self._names("adapter_names", allow_empty=False)
        for row in self.mean:
            if len(row) != len(self.adapter_names):
                _fail(
                    "FusionStats", "mean", f"has a layer of {len(row)} weights for {len(self.adapter_names)} adapters"
                )


@dataclass
class SplitUse(JsonConfig):
    """Which examples chose the checkpoint and which scored it: never the same ones.

    ``selected_on`` is the split every choice during training was made on (the best step, early stopping): the
    ``selection`` part carved out of the training data, grouped so that no text is on both sides. ``scored_on``
    is the split the reported number comes from, which training never looked at.
    """

    selected_on: str
    selection_examples: int
    scored_on: str
    scored_examples: int
    carved: str = "a fixed tenth of the training rows (50 to 1,000), grouped so that no text is on both sides"

    def validate(self) -> None:
        self._positive_int("selection_examples")
        self._positive_int("scored_examples")
        if self.selected_on == self.scored_on:
            _fail("SplitUse", "selected_on", f"selection and scoring both used {self.scored_on!r}")

    def text(self) -> str:
        return (
            f"selected on {self.selection_examples:,} {self.selected_on} examples carved from train; "
            f"scored on {self.scored_examples:,} {self.scored_on} examples"
        )


@dataclass
class RunResult(JsonConfig):
    """What a finished training run reports, as the worker records it and every view reads it.

    ``metrics`` are the saved weights' on the dev split (held out: ``selection`` says what chose the checkpoint);
    ``score_interval`` is the main metric's bootstrap interval there. A fusion also reports its target's own
    adapter on the same examples (``own_adapter``) and the paired difference (``own_adapter_difference``).
    """

    kind: str  # "adapter" or "fusion"
    name: str
    task: str
    checkpoint: str
    main_metric: str
    metrics: dict[str, float]
    majority_baseline: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    best_step: int | None = None
    stopped_early: bool = False
    fusion_stats: FusionStats | None = None
    confusion_matrix: list[list[int]] | None = None
    label_names: list[str] = field(default_factory=list)
    score_interval: Score | None = None
    selection: SplitUse | None = None
    selection_metrics: dict[str, float] = field(default_factory=dict)
    own_adapter: Score | None = None
    own_adapter_difference: Difference | None = None

    _nested: ClassVar[dict[str, type[JsonConfig]]] = {
        "fusion_stats": FusionStats,
        "score_interval": Score,
        "selection": SplitUse,
        "own_adapter": Score,
        "own_adapter_difference": Difference,
    }

    def validate(self) -> None:
        if self.main_metric not in self.metrics:
            _fail("RunResult", "main_metric", f"{self.main_metric!r} is not among the metrics {sorted(self.metrics)}")
        for name, cls in self._nested.items():
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls.from_dict(getattr(self, name)))

    @property
    def score(self) -> float:
        """The run's value of its main metric."""
        return self.metrics[self.main_metric]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in self._nested:
            value = getattr(self, name)
            data[name] = value.to_dict() if value is not None else None
        return stamp(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return super().from_dict(upgrade(data, "a stored RunResult"))

    def score_text(self) -> str:
        """The main metric as every view prints it: with its interval and example count where recorded."""
        return self.score_interval.text() if self.score_interval else f"{self.score:.3f}"

    def summary_text(self) -> str:
        """One line for lists (``fusionlab runs``, the Train page's last run): the main metric with its interval
        and, for a fusion, its paired difference from its own adapter with the verdict."""
        text = f"{metric_label(self.main_metric)} {self.score_text()}"
        if self.own_adapter_difference is not None:
            text += f"; vs its own adapter {self.own_adapter_difference.text()}"
        return text

    def artifacts(self) -> dict[str, str]:
        """What the run store keeps as the run's artifacts (the download and the checkpoint checks read it)."""
        return {"checkpoint": self.checkpoint, "kind": self.kind, "name": self.name}

    @classmethod
    def from_record(
        cls, final_metrics: dict[str, Any] | None, artifacts: dict[str, Any] | None, task: str | None
    ) -> RunResult | None:
        """The result a run store row holds (``None`` if it holds none, i.e. the run has not finished).

        Rows written before this type recorded no ``main_metric``: theirs is their task's, or the first one."""
        final = dict(final_metrics or {})
        if not final.get("metrics"):
            return None
        artifacts = artifacts or {}
        if "main_metric" not in final:
            final["main_metric"] = _legacy_main_metric(task, final["metrics"])
        defaults = {"kind": artifacts.get("kind", "?"), "name": artifacts.get("name", "?")}
        final = {**defaults, "task": task or "?", "checkpoint": artifacts.get("checkpoint", ""), **final}
        known = {f.name for f in dataclasses.fields(cls)} | {SCHEMA_KEY}  # from_dict upgrades (or refuses) it
        return cls.from_dict({k: v for k, v in final.items() if k in known})


def _legacy_main_metric(task: str | None, metrics: dict[str, float]) -> str:
    from fusionlab.data.tasks import TASKS  # only for rows recorded before main_metric was

    if task in TASKS and TASKS[task].main_metric in metrics:
        return TASKS[task].main_metric
    return next(iter(metrics))


def run_result(run: Run) -> RunResult | None:
    """The training result a stored run holds (``None`` until it has finished, and for kinds that train no
    single artifact, such as a comparison: their summary is their ``final_metrics``)."""
    if run.kind in RUN_KINDS and not spec_class(run.kind).reports_run_result:
        return None
    return RunResult.from_record(run.final_metrics, run.artifacts, run_task(run.kind, run.config))


def run_record(run: Run) -> dict[str, Any]:
    """One run as ``fusionlab runs --json`` prints it: what it is, where it stands, what it scored, why it failed.

    ``result`` is the typed :class:`RunResult` (with its interval and selection) once the run has finished;
    a result this fusionlab cannot read (written by a newer one) is reported in ``result_error`` instead.
    """
    try:
        result = run_result(run)
        result_error = None
    except ValueError as err:
        result, result_error = None, str(err)
    record = {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "task": run_task(run.kind, run.config),
        "status": run.status,
        "progress": run.progress,
        "message": run.message,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "device": run.device,
        "node": run.node,
        "attempts": run.attempts,
        "owner": run.owner,
        "owner_name": run.owner_name,
        "metrics": dict(result.metrics) if result else _summary_scores(run),
        "score": result.score_text() if result else None,
        "result": result.to_dict() if result else (run.final_metrics or None),
        "result_error": result_error,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
    }
    return stamp(record)


def _summary_scores(run: Run) -> dict[str, float]:
    """A run without a training result (a comparison): the scores its summary lists, if it has finished."""
    scores = (run.final_metrics or {}).get("scores")
    return {str(k): float(v) for k, v in scores.items()} if isinstance(scores, dict) else {}
