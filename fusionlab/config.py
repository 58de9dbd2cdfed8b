"""Configuration objects: dataclasses that check themselves when built and round-trip to JSON.

Every config is validated in ``__post_init__`` so a bad value fails where it is written, with a ``ValueError``
that names the field, instead of deep inside a forward pass. ``to_json``/``from_json`` are exact inverses, which
is what lets checkpoints and the run store record a config and rebuild it later.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="JsonConfig")

FUSION_METHODS = ("attention", "weighted", "average")
TASK_TYPES = ("classification", "pair_classification", "question_answering")
NON_LINEARITIES = ("relu", "gelu", "swish", "tanh")
PLACEMENTS = ("ffn_output", "pfeiffer")
"""Where an adapter reads the feed-forward block, with ``h`` its output (after dropout), ``x`` the block's input
and ``LN`` its LayerNorm; the block returns ``LN(h + A + x)`` either way:

- ``ffn_output`` (fusionlab's own): ``A = adapter(h)``; AdapterHub's ``seq_bn`` with ``original_ln_before=False``;
- ``pfeiffer``: ``A = adapter(LN(h + x))``, the block's LayerNorm applied twice; AdapterHub's ``seq_bn`` default
  (the Pfeiffer configuration), kept so adapters imported from it compute what they computed there."""
POOLING_MODES = ("mean", "cls")
WEIGHT_INITIALIZATIONS = ("uniform", "normal", "target")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


def _fail(cls_name: str, field_name: str, message: str) -> None:
    raise ValueError(f"{cls_name}.{field_name}: {message}")


# -- the bounds of every size a user can type (CLI, Train page and stored runs are all checked here) --------
MAX_NAME_LENGTH = 64
MAX_ADAPTER_SIZE = 4096
MAX_BATCH_SIZE = 4096
MAX_TOKENS = 8192
"""The longest ``max_length`` any config accepts; the model's own position limit is checked when it is known
(:func:`fusionlab.base_model.position_limit`)."""
MAX_STEPS = 1_000_000
MAX_EPOCHS = 1000
MAX_SAMPLES = 100_000_000
MAX_CLASSES = 100
MAX_FUSED_ADAPTERS = 32
MAX_HEADS = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_RESERVED_NAMES = {"con", "prn", "aux", "nul"}


def check_name(name: object, what: str = "name") -> str:
    """An adapter, fusion or task name that is safe as a directory name everywhere it is used: 1 to 64 of
    ``A-Z a-z 0-9 . _ + -``, starting with a letter or digit (so never ``.``, ``..`` or a hidden or
    temporary directory), not ending in ``.``. Returns it; a ``ValueError`` names the rule it breaks."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: must be a non-empty name, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{what}: must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if not _NAME.fullmatch(name) or name.endswith("."):
        raise ValueError(
            f"{what}: {name!r} may hold only letters, digits and . _ + -, starting with a letter or digit "
            "(and not ending in '.')"
        )
    if name.lower().split(".")[0] in _RESERVED_NAMES:
        raise ValueError(f"{what}: {name!r} is a reserved device name on some systems; choose another")
    return name


class JsonConfig:
    """Mixin: validation hook plus a lossless JSON round trip for a dataclass."""

    _name: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise ``ValueError`` naming the first bad field."""

    # -- checks shared by the subclasses -------------------------------------------------------------
    def _positive_int(self, name: str, allow_none: bool = False) -> None:
        value = getattr(self, name)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            _fail(type(self).__name__, name, f"must be a positive integer, got {value!r}")

    def _bounded_int(self, name: str, upper: int, allow_none: bool = False) -> None:
        """A positive integer no larger than ``upper``; the message gives the limit."""
        self._positive_int(name, allow_none)
        value = getattr(self, name)
        if value is not None and value > upper:
            _fail(type(self).__name__, name, f"must be at most {upper:,}, got {value:,}")

    def _bounded_number(self, name: str, low: float, high: float, low_open: bool = True) -> None:
        """A finite number in ``(low, high]`` (``[low, high]`` with ``low_open=False``)."""
        value = getattr(self, name)
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not ok or value > high or value < low or (low_open and value == low):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            _fail(type(self).__name__, name, f"must be a number in {interval}, got {value!r}")

    def _artifact_names(self, name: str, allow_empty: bool = False) -> None:
        """A list of adapter/fusion names, each one that :func:`check_name` accepts."""
        self._names(name, allow_empty)
        for value in getattr(self, name):
            check_name(value, f"{type(self).__name__}.{name}")

    def _probability(self, name: str) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            _fail(type(self).__name__, name, f"must be a number in [0, 1), got {value!r}")

    def _choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            _fail(type(self).__name__, name, f"must be one of {', '.join(choices)}; got {value!r}")

    def _names(self, name: str, allow_empty: bool) -> None:
        value = getattr(self, name)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            _fail(type(self).__name__, name, f"must be a list of non-empty strings, got {value!r}")
        if not allow_empty and not value:
            _fail(type(self).__name__, name, "must name at least one adapter")
        if len(set(value)) != len(value):
            _fail(type(self).__name__, name, f"has duplicates: {value!r}")

    # -- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: JSON must hold an object, got {type(data).__name__}")
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls: type[C], path: str | os.PathLike) -> C:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass
class ModelConfig(JsonConfig):
    """The frozen base encoder and how the task heads read it.

    ``model_name_or_path`` accepts any hub name or local directory; the default (and the aliases in
    :data:`fusionlab.base_model.DEFAULT_MODEL_ALIASES`) resolve to the bundled all-MiniLM-L6-v2.
    ``pooling="mean"`` suits sentence-transformers checkpoints, which were trained with mean pooling.

    ``multi_task`` and ``task_names`` are the original notebook's fields, accepted (and recorded in checkpoints)
    so its code runs unchanged; they steer nothing. Which path a forward pass takes — one adapter with its own
    head, or a fusion — is decided by the ``adapter_names`` it is given (see :class:`fusionlab.FusionModel`).
    """

    model_name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"
    num_labels: int = 2
    max_length: int = 128
    multi_task: bool = False  # the notebook's; see above
    task_names: list[str] = field(default_factory=list)  # the notebook's; see above
    pooling: str = "mean"
    head_dropout: float = 0.1

    def validate(self) -> None:
        if not isinstance(self.model_name_or_path, str) or not self.model_name_or_path.strip():
            _fail("ModelConfig", "model_name_or_path", "must be a non-empty string")
        self._bounded_int("num_labels", MAX_CLASSES)
        self._bounded_int("max_length", MAX_TOKENS)
        self._names("task_names", allow_empty=True)
        self._choice("pooling", POOLING_MODES)
        self._probability("head_dropout")


@dataclass
class AdapterConfig(JsonConfig):
    """One task adapter: its bottleneck size, non-linearity and the task its head predicts.

    ``num_labels=None`` takes the model config's ``num_labels``. ``task_type`` only documents what the head
    is for; every type is trained as sequence classification (yes/no QA such as BoolQ included).
    """

    adapter_size: int = 64
    task_name: str = "task"
    task_type: str = "classification"
    non_linearity: str = "relu"
    dropout: float = 0.0
    num_labels: int | None = None
    label_names: list[str] | None = None
    init_std: float = 0.02
    placement: str = "ffn_output"
    """Where the adapter reads the feed-forward block (:data:`PLACEMENTS`); adapters fused together share one."""

    def validate(self) -> None:
        self._bounded_int("adapter_size", MAX_ADAPTER_SIZE)
        self._choice("placement", PLACEMENTS)
        if not isinstance(self.task_name, str) or not self.task_name.strip():
            _fail("AdapterConfig", "task_name", f"must be a non-empty string, got {self.task_name!r}")
        self._choice("task_type", TASK_TYPES)
        self._choice("non_linearity", NON_LINEARITIES)
        self._probability("dropout")
        self._bounded_int("num_labels", MAX_CLASSES, allow_none=True)
        if self.label_names is not None:
            if not isinstance(self.label_names, list) or not all(isinstance(n, str) for n in self.label_names):
                _fail("AdapterConfig", "label_names", "must be a list of strings")
            if self.num_labels is not None and len(self.label_names) != self.num_labels:
                _fail(
                    "AdapterConfig",
                    "label_names",
                    f"has {len(self.label_names)} names but num_labels is {self.num_labels}",
                )
        if not isinstance(self.init_std, (int, float)) or self.init_std < 0:
            _fail("AdapterConfig", "init_std", f"must be >= 0, got {self.init_std!r}")


@dataclass
class FusionConfig(JsonConfig):
    """How the frozen task adapters are combined in every layer, and for which target task.

    ``target_task`` names the task whose head sits on the fused model; it defaults to the first adapter, as
    in the paper's setting where the target task's own adapter is one of those fused.
    ``value_regularization`` is the weight of the paper's ``||I - V||^2`` term (attention fusion only).
    ``num_labels``/``label_names`` describe the target head when the target task has no adapter of its own
    (by default they come from the target adapter's config, else from the model config).
    """

    fusion_method: str = "attention"
    adapter_names: list[str] = field(default_factory=list)
    num_attention_heads: int = 1
    fusion_dropout: float = 0.1
    temperature: float = 1.0
    freeze_adapters_during_fusion: bool = True
    target_task: str | None = None
    weight_initialization: str = "uniform"
    learnable_weights: bool = True
    value_regularization: float = 0.0
    num_labels: int | None = None
    label_names: list[str] | None = None

    def validate(self) -> None:
        self._choice("fusion_method", FUSION_METHODS)
        self._bounded_int("num_labels", MAX_CLASSES, allow_none=True)
        if self.label_names is not None and self.num_labels is not None and len(self.label_names) != self.num_labels:
            _fail(
                "FusionConfig", "label_names", f"has {len(self.label_names)} names but num_labels is {self.num_labels}"
            )
        self._artifact_names("adapter_names")
        if len(self.adapter_names) > MAX_FUSED_ADAPTERS:
            _fail(
                "FusionConfig",
                "adapter_names",
                f"fuses at most {MAX_FUSED_ADAPTERS} adapters, got {len(self.adapter_names)}",
            )
        self._bounded_int("num_attention_heads", MAX_HEADS)
        self._probability("fusion_dropout")
        self._bounded_number("temperature", 0.0, 100.0)
        if self.target_task is not None and (not isinstance(self.target_task, str) or not self.target_task):
            _fail("FusionConfig", "target_task", f"must be a non-empty string or None, got {self.target_task!r}")
        self._choice("weight_initialization", WEIGHT_INITIALIZATIONS)
        if not isinstance(self.value_regularization, (int, float)) or self.value_regularization < 0:
            _fail("FusionConfig", "value_regularization", f"must be >= 0, got {self.value_regularization!r}")

    @property
    def target(self) -> str:
        """The task the fused model predicts: ``target_task`` or, by default, the first adapter."""
        return self.target_task or self.adapter_names[0]


@dataclass
class TrainingConfig(JsonConfig):
    """Optimisation settings shared by adapter training and fusion training.

    Defaults follow the AdapterFusion paper where they fit a CPU: learning rate 1e-4 for adapters (use 5e-5
    for fusion, as the paper did), linear decay, evaluation on the dev split.
    """

    output_dir: str = "fusionlab-output"
    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    logging_steps: int = 10
    eval_steps: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    early_stopping_patience: int | None = None
    mixed_precision: str = "auto"
    seed: int = 42
    snapshot_steps: int | None = None
    gradient_checkpointing: bool = False
    """Recompute each encoder layer's activations in the backward pass instead of storing them: less memory for
    long inputs or big batches, at the cost of a second forward pass (see ``bench/grad_checkpointing.py``)."""
    group_by_length: bool = True
    """Batch examples of similar length together (transformers' length-grouped sampler, still shuffled): with
    per-batch padding, a short SST-2 sentence is then not padded to the longest review in a random batch."""

    def validate(self) -> None:
        for name in ("group_by_length", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                _fail("TrainingConfig", name, f"must be true or false, got {getattr(self, name)!r}")
        self._bounded_number("learning_rate", 0.0, 1.0)
        self._bounded_number("num_train_epochs", 0.0, MAX_EPOCHS)
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < -1:
            _fail(
                "TrainingConfig", "max_steps", f"must be -1 (use epochs) or a positive integer, got {self.max_steps!r}"
            )
        if self.max_steps == 0:
            _fail("TrainingConfig", "max_steps", "must be -1 (use epochs) or a positive integer, got 0")
        if self.max_steps > MAX_STEPS:
            _fail("TrainingConfig", "max_steps", f"must be at most {MAX_STEPS:,}, got {self.max_steps:,}")
        self._bounded_int("per_device_train_batch_size", MAX_BATCH_SIZE)
        self._bounded_int("per_device_eval_batch_size", MAX_BATCH_SIZE)
        for name in ("logging_steps", "eval_steps", "early_stopping_patience", "snapshot_steps"):
            self._bounded_int(name, MAX_STEPS, allow_none=name != "logging_steps")
        for name in ("max_train_samples", "max_eval_samples"):
            self._bounded_int(name, MAX_SAMPLES, allow_none=True)
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            _fail("TrainingConfig", "weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        self._probability("warmup_ratio")
        self._choice("mixed_precision", MIXED_PRECISION)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            _fail("TrainingConfig", "seed", f"must be an integer, got {self.seed!r}")
