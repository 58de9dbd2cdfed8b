"""The optimisation loop: transformers' ``Trainer`` plus one callback for what fusionlab adds.

Using ``Trainer`` gives mixed precision, gradient accumulation, ``torchrun``/``accelerate launch`` multi-GPU
and the learning-rate schedule for free. The callback adds fusionlab's own needs: forwarding logs and progress
to a reporter (the CLI's progress bar, the run store), periodic dev evaluation with early stopping that keeps
the best trainable weights in memory (no multi-hundred-MB Trainer checkpoints of a frozen encoder),
snapshots of fusion weights, and cooperative cancellation.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from fusionlab.config import TrainingConfig
from fusionlab.fusion.base import FusionLayer
from fusionlab.model import FusionModel


class TrainingCancelled(Exception):
    """Raised out of training when the reporter asks to stop (a cancel request)."""


class Reporter:
    """Receives training events; the default ignores them. Subclass to show or store them."""

    def on_log(self, step: int, values: dict[str, float]) -> None:
        """Per-step values: loss, learning_rate, grad_norm, and dev metrics (``eval_<name>``)."""

    def on_progress(self, step: int, total: int) -> None:
        """Called after every optimisation step."""

    def on_snapshot(self, step: int, payload: dict) -> None:
        """Mean fusion weights per layer and adapter at ``step`` (fusion training only)."""

    def should_stop(self) -> bool:
        """Return True to cancel training (checked after every step)."""
        return False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); without it bf16 is emulated.

    Measured on this project's AVX2-only CPU (2 threads, one adapter step at 32 × 128 tokens): 2.4 s in full
    precision, 52 s under ``torch.autocast("cpu", dtype=torch.bfloat16)`` — emulated bf16 is ~20× slower.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


CPU_BF16_AUTO = False
"""Whether ``auto`` picks bf16 on a CPU with native bf16. Off until a same-seed A/B of full adapter trainings
(SST-2 and RTE) lands within 0.5 points of full precision on such a CPU: this project's machine has none, and an
A/B in emulated bf16 would take ~20× the training time (see ``bench/train_throughput.py``)."""


def resolve_precision(choice: str) -> str:
    """The precision a run trains in: ``no`` (full), ``bf16`` or ``fp16``; ``auto`` decides by the hardware.

    ``auto``: bf16 on a GPU that supports it, else fp16 on a GPU; on a CPU full precision (bf16 only with
    :data:`CPU_BF16_AUTO` and native support). Recorded on every checkpoint, so a card says what trained it.
    """
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if CPU_BF16_AUTO and cpu_has_native_bf16() else "no"


def mixed_precision_flags(choice: str) -> dict[str, bool]:
    """``Trainer``'s flags for :func:`resolve_precision`; bf16 on a CPU runs under CPU autocast."""
    precision = resolve_precision(choice)
    if precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("mixed_precision='fp16' needs a GPU; use 'no', 'bf16' or 'auto' on CPU")
    if precision == "bf16" and not torch.cuda.is_available() and not cpu_has_native_bf16():
        warnings.warn(
            "bf16 on this CPU is emulated (no AVX512-BF16 or AMX): each step takes about 20× as long as in "
            "full precision; mixed_precision='no' is faster here",
            stacklevel=2,
        )
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


@dataclass
class LoopHooks:
    """What the loop calls back into: a dev evaluation and, for fusion, a fusion-weight probe."""

    evaluate: Callable[[], dict[str, float]]  # dev metrics of the model as it is now
    main_metric: str
    snapshot: Callable[[], dict] | None = None


@dataclass
class LoopResult:
    steps: int
    best_metrics: dict[str, float]
    best_step: int
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    learning_rate_scales: dict[str, float] = field(default_factory=dict)
    """The scaled learning rates the run applied, as ``{"<method>.<parameter>": scale}`` (checkpoints record it)."""


class _FusionlabCallback(TrainerCallback):
    def __init__(self, model: FusionModel, config: TrainingConfig, hooks: LoopHooks, reporter: Reporter) -> None:
        self.model, self.config, self.hooks, self.reporter = model, config, hooks, reporter
        self.best_score = -math.inf
        self.best_metrics: dict[str, float] = {}
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        self.history: list[dict] = []
        self.stopped_early = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float)) and k != "epoch"}
        if values:
            self.history.append({"step": state.global_step, **values})
            self.reporter.on_log(state.global_step, values)

    def on_train_begin(self, args, state, control, **kwargs):
        # The weights before any step (near the even share): the live view has them from the first second,
        # and a replay starts where the fusion started.
        if self.hooks.snapshot and self.config.snapshot_steps and state.global_step == 0:
            self.reporter.on_snapshot(0, self.hooks.snapshot())

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        self.reporter.on_progress(step, state.max_steps)
        if self.reporter.should_stop():
            raise TrainingCancelled(f"cancelled at step {step}")
        if self.hooks.snapshot and self.config.snapshot_steps and step % self.config.snapshot_steps == 0:
            self.reporter.on_snapshot(step, self.hooks.snapshot())
        if self.config.eval_steps and step % self.config.eval_steps == 0:
            self.run_eval(step, control)

    def on_train_end(self, args, state, control, **kwargs):
        if self.last_eval_step != state.global_step:
            self.run_eval(state.global_step, control)
        if self.hooks.snapshot and self.config.snapshot_steps:
            self.reporter.on_snapshot(state.global_step, self.hooks.snapshot())

    def run_eval(self, step: int, control) -> None:
        self.last_eval_step = step
        metrics = self.hooks.evaluate()
        logged = {f"eval_{k}": v for k, v in metrics.items()}
        self.history.append({"step": step, **logged})
        self.reporter.on_log(step, logged)
        score = metrics[self.hooks.main_metric]
        if score > self.best_score:
            self.best_score, self.best_metrics, self.best_step, self.bad_evals = score, metrics, step, 0
            self.best_state = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        else:
            self.bad_evals += 1
            patience = self.config.early_stopping_patience
            if patience is not None and self.bad_evals >= patience:
                control.should_training_stop = True
                self.stopped_early = True

    def restore_best(self) -> None:
        """Put back the trainable weights of the best dev evaluation."""
        if self.best_state is None:
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self.best_state.items():
                params[name].copy_(value)


def training_arguments(config: TrainingConfig, output_dir: str, show_progress: bool) -> TrainingArguments:
    """Map fusionlab's TrainingConfig onto transformers' TrainingArguments (no Trainer-side eval or saving)."""
    return TrainingArguments(
        output_dir=output_dir,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio or 0,  # transformers 5: a float below 1 is a ratio of all steps
        lr_scheduler_type="linear",
        # optim: transformers' default, the fused AdamW on a recent torch. It updates weights without bumping
        # their version counters, which is why fusionlab keeps no cache of weights (see AdapterManager).
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        activation_checkpointing=config.gradient_checkpointing,  # FusionModel.activation_checkpointing_enable
        logging_steps=config.logging_steps,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=not show_progress,
        **mixed_precision_flags(config.mixed_precision),
    )


class _ScaledTrainer(Trainer):
    """transformers' ``Trainer`` (its optimizer, weight-decay groups and schedule) with the learning-rate scales
    fusion methods declare (:attr:`FusionLayer.learning_rate_scales`): those parameters get groups of their own
    at the scaled rate, which the schedule then decays like every other group. Weight decay, where set, is scaled
    with it (AdamW decays by rate times decay)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.applied_scales: dict[str, float] = {}

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh:
            declared = declared_scales(model if model is not None else self.model)
            moved = scale_learning_rates(optimizer, {p: scale for p, (_, scale) in declared.items()})
            if len(moved) < len(declared):
                warnings.warn(
                    "some parameters with a declared learning-rate scale are not in the optimizer as themselves "
                    "(a wrapper flattened them?): they train at the run's own rate",
                    stacklevel=2,
                )
            self.applied_scales = {label: scale for p, (label, scale) in declared.items() if p in moved}
        return optimizer


def declared_scales(model: torch.nn.Module) -> dict[torch.nn.Parameter, tuple[str, float]]:
    """Every trainable parameter whose fusion layer declares a learning-rate scale other than 1: its label
    (``<method>.<parameter>``) and scale."""
    scales = {}
    for module in model.modules():
        if isinstance(module, FusionLayer):
            for name, (label, scale) in module.scaled_parameters().items():
                parameter = getattr(module, name, None)
                if isinstance(parameter, torch.nn.Parameter) and parameter.requires_grad:
                    scales[parameter] = (label, scale)
    return scales


def scale_learning_rates(
    optimizer: torch.optim.Optimizer, scales: dict[torch.nn.Parameter, float]
) -> set[torch.nn.Parameter]:
    """Move each scaled parameter into a group like its own (weight decay and all) at its scaled learning rate,
    before the first step and before the schedule records each group's starting rate. Returns those moved."""
    moved_all: set[torch.nn.Parameter] = set()
    for group in list(optimizer.param_groups):
        for scale in sorted({scales[p] for p in group["params"] if p in scales}):
            moved = [p for p in group["params"] if scales.get(p) == scale]
            group["params"] = [p for p in group["params"] if scales.get(p) != scale]
            options = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
            optimizer.add_param_group({**options, "params": moved, "lr": group["lr"] * scale})
            moved_all.update(moved)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    return moved_all


def run_training(
    model: FusionModel,
    train_dataset,
    collator,
    config: TrainingConfig,
    hooks: LoopHooks,
    reporter: Reporter | None = None,
    show_progress: bool = False,
) -> LoopResult:
    """Train the model's trainable parameters; returns with the best dev checkpoint's weights in place."""
    callback = _FusionlabCallback(model, config, hooks, reporter or Reporter())
    with tempfile.TemporaryDirectory(prefix="fusionlab-trainer-") as tmp:
        trainer = _ScaledTrainer(
            model=model,
            args=training_arguments(config, tmp, show_progress),
            train_dataset=train_dataset,
            data_collator=collator,
            callbacks=[callback],
        )
        if not show_progress:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        output = trainer.train()
    callback.restore_best()
    return LoopResult(
        steps=output.global_step,
        best_metrics=callback.best_metrics,
        best_step=callback.best_step,
        history=callback.history,
        stopped_early=callback.stopped_early,
        learning_rate_scales=dict(trainer.applied_scales),
    )
