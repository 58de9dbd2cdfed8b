"""The task registry: what each task's rows look like, how it is scored and where its data comes from.

One :class:`TaskSpec` per task is the single place that knows a task's column names and label order, so the
loaders, the tokeniser, the metrics and the dashboard never hard-code them. The built-in specs follow the
Hugging Face ``datasets`` builders field for field (the offline files in ``shared/data`` use the same
conventions), so a split read from disk and one read from the hub are interchangeable.

Hub ids are the current canonical repositories: ``nyu-mll/glue``, ``aps/super_glue`` and ``stanfordnlp/imdb``
are what the legacy names ``glue``, ``super_glue`` and ``imdb`` redirect to. SICK's canonical copy,
``RobZamp/sick`` (formerly ``sick``), is still a loading script, which ``datasets`` >= 4 no longer runs; it is
kept so the error says where SICK would come from, but in practice SICK needs local files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fusionlab.config import TASK_TYPES
from fusionlab.metrics import METRICS

_DEFAULT_SPLITS = {"train": "train", "validation": "validation"}


@dataclass(frozen=True)
class TaskSpec:
    """Everything fusionlab needs to know about one sequence-classification task.

    ``splits`` maps fusionlab's split names (``train``, ``validation``, ``test``) to the file stem under
    ``<data_dir>/<name>/`` and to the hub split name, which agree for every built-in task. Only labelled
    splits are listed: GLUE/SuperGLUE test labels are hidden (-1), so those tasks have no ``test``.
    """

    name: str
    text_fields: tuple[str, ...]
    label_names: list[str] = field(hash=False)  # a list, as AdapterConfig.label_names; not hashed
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "accuracy"
    hub_id: tuple[str, str | None] | None = None
    splits: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_SPLITS), hash=False)
    task_type: str = "classification"
    description: str = ""
    label_field: str = "label"
    dev_from_train: int = 0
    """When > 0 the task has no validation split upstream: ``validation`` is this many rows held out of the
    train split (a fixed, seeded choice grouped by the first text field, so duplicate texts stay on one side),
    and ``train`` is the rest."""

    def __post_init__(self) -> None:
        # Normalise sequences so specs built from JSON (lists) compare equal to the built-in ones (tuples).
        object.__setattr__(self, "text_fields", tuple(self.text_fields))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "label_names", list(self.label_names))
        object.__setattr__(self, "splits", dict(self.splits))
        if self.hub_id is not None:
            object.__setattr__(self, "hub_id", tuple(self.hub_id))
        self._validate()

    def _validate(self) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"TaskSpec {self.name!r}: {message}")

        if not isinstance(self.name, str) or not self.name.strip():
            fail("name must be a non-empty string")
        if len(self.text_fields) not in (1, 2) or not all(isinstance(f, str) and f for f in self.text_fields):
            fail(f"text_fields must be one or two column names, got {self.text_fields!r}")
        if len(self.label_names) < 2 or len(set(self.label_names)) != len(self.label_names):
            fail(f"label_names must be at least two distinct names, got {self.label_names!r}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if not self.metrics or unknown:
            fail(f"metrics must be a non-empty subset of {sorted(METRICS)}; unknown: {unknown}")
        if self.main_metric not in self.metrics:
            fail(f"main_metric {self.main_metric!r} is not one of its metrics {self.metrics}")
        if self.task_type not in TASK_TYPES:
            fail(f"task_type must be one of {', '.join(TASK_TYPES)}; got {self.task_type!r}")
        if not set(self.splits) <= {"train", "validation", "test"}:
            fail(f"splits may only name train, validation and test; got {sorted(self.splits)}")
        if isinstance(self.dev_from_train, bool) or not isinstance(self.dev_from_train, int) or self.dev_from_train < 0:
            fail(f"dev_from_train must be a non-negative integer, got {self.dev_from_train!r}")
        if self.dev_from_train and self.splits.get("validation") != self.splits.get("train"):
            fail("dev_from_train carves validation out of train: splits['validation'] must name the train file")
        if self.hub_id is not None and len(self.hub_id) != 2:
            fail(f"hub_id must be (path, config_name or None), got {self.hub_id!r}")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """Whether examples are text pairs (encoded as one sequence with a separator)."""
        return len(self.text_fields) == 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, so a run can record a custom task and rebuild it where it is unregistered."""
        data = dataclasses.asdict(self)
        data["text_fields"] = list(self.text_fields)
        data["metrics"] = list(self.metrics)
        data["hub_id"] = list(self.hub_id) if self.hub_id is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**data)


def _glue(name: str, **kwargs: Any) -> TaskSpec:
    return TaskSpec(name=name, hub_id=("nyu-mll/glue", name), **kwargs)


def _super_glue(name: str, **kwargs: Any) -> TaskSpec:
    return TaskSpec(name=name, hub_id=("aps/super_glue", name), **kwargs)


_BUILTIN_TASKS = (
    _glue(
        "sst2",
        text_fields=("sentence",),
        label_names=["negative", "positive"],
        description="sentiment of movie-review sentences",
    ),
    _glue(
        "cola",
        text_fields=("sentence",),
        label_names=["unacceptable", "acceptable"],
        metrics=("matthews_corrcoef", "accuracy"),
        main_metric="matthews_corrcoef",
        description="grammatical acceptability of English sentences",
    ),
    _glue(
        "mnli",
        text_fields=("premise", "hypothesis"),
        label_names=["entailment", "neutral", "contradiction"],
        splits={"train": "train", "validation": "validation_matched"},
        task_type="pair_classification",
        description="natural language inference across genres (matched validation)",
    ),
    _glue(
        "rte",
        text_fields=("sentence1", "sentence2"),
        label_names=["entailment", "not_entailment"],
        task_type="pair_classification",
        description="textual entailment from news and Wikipedia (GLUE version)",
    ),
    # GLUE reports both for MRPC; F1 is main because 68 % of the pairs are paraphrases, so accuracy
    # flatters a model that leans towards "equivalent".
    _glue(
        "mrpc",
        text_fields=("sentence1", "sentence2"),
        label_names=["not_equivalent", "equivalent"],
        metrics=("accuracy", "f1"),
        main_metric="f1",
        task_type="pair_classification",
        description="whether two news sentences are paraphrases",
    ),
    _glue(
        "qnli",
        text_fields=("question", "sentence"),
        label_names=["entailment", "not_entailment"],
        task_type="pair_classification",
        description="whether a Wikipedia sentence answers a question",
    ),
    # SuperGLUE scores CB by the mean of accuracy and macro-F1; accuracy stays main for comparability
    # with the other tasks, macro-F1 shows what happens to the rare "neutral" class.
    _super_glue(
        "cb",
        text_fields=("premise", "hypothesis"),
        label_names=["entailment", "contradiction", "neutral"],
        metrics=("accuracy", "macro_f1"),
        task_type="pair_classification",
        description="speaker commitment to an embedded clause (three-way inference)",
    ),
    _super_glue(
        "boolq",
        text_fields=("question", "passage"),
        label_names=["False", "True"],
        task_type="question_answering",
        description="yes/no questions about a Wikipedia passage",
    ),
    TaskSpec(
        name="sick",
        text_fields=("sentence_A", "sentence_B"),
        label_names=["entailment", "neutral", "contradiction"],
        hub_id=("RobZamp/sick", None),
        splits={"train": "train", "validation": "validation", "test": "test"},
        task_type="pair_classification",
        description="entailment between image and video caption sentences",
    ),
    # IMDb has no validation split upstream: 2,000 reviews of train are held out as a fixed dev split (model
    # selection must not look at test), and test stays whole for a final number.
    TaskSpec(
        name="imdb",
        text_fields=("text",),
        label_names=["neg", "pos"],
        hub_id=("stanfordnlp/imdb", None),
        splits={"train": "train", "validation": "train", "test": "test"},
        description="sentiment of full-length movie reviews (dev: 2,000 reviews held out of train)",
        dev_from_train=2000,
    ),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _BUILTIN_TASKS}
"""Every known task by name: the built-ins plus whatever :func:`register_task` added."""

BUILTIN_TASK_NAMES = frozenset(TASKS)


def get_task(name: str) -> TaskSpec:
    """The registered spec called ``name``; the error lists the known names, as the CLI shows it verbatim."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}.") from None


def register_task(spec: TaskSpec, overwrite: bool = False) -> TaskSpec:
    """Add a user task to :data:`TASKS` and return it.

    Re-registering an identical spec is a no-op; a different spec under a taken name needs
    ``overwrite=True``. Built-in tasks can never be replaced, because their names are what published
    numbers and saved adapters refer to.
    """
    existing = TASKS.get(spec.name)
    if existing is not None and existing != spec:
        if spec.name in BUILTIN_TASK_NAMES:
            raise ValueError(f"{spec.name!r} is a built-in task and cannot be replaced; choose another name.")
        if not overwrite:
            raise ValueError(f"A different task named {spec.name!r} is already registered; pass overwrite=True.")
    TASKS[spec.name] = spec
    return spec
