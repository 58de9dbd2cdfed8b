"""Playground inference: one trained fusion, loaded once, compared with its target task's own adapter.

Streamlit-free (the cached loader and the picker are in :mod:`fusionlab.dashboard.widgets`). A
:class:`Predictor` is shared by every browser session of a Streamlit server, so
its forward passes and its tokenizer run under one lock: fast tokenizers refuse concurrent use, and CPU torch
already spreads one forward pass over every core, so serialising sessions costs nothing.

Everything the page shows comes back as plain numpy arrays in a :class:`Comparison`, so charts and tests never
touch torch. Mistakes a user can make (empty text, a missing second text, every adapter switched off, a fusion
whose adapters were deleted or retrained) raise :class:`DashboardError` with a message meant for the page.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusionlab import fusion_weights
from fusionlab.base_model import load_tokenizer
from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.dashboard.answers import AnswerCache
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.examples import TEXT_MAX_CHARS
from fusionlab.data import TaskSpec, get_task
from fusionlab.fusion.override import WeightOverride
from fusionlab.fusion.registry import fusion_class
from fusionlab.inference_snapshot import freeze_for_inference
from fusionlab.model import FusionModel
from fusionlab.pack.store import reported_of
from fusionlab.prediction import EncodedInput, Prediction, encode_input, predict, unfamiliar_input
from fusionlab.salience import Salience, salience
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace


@dataclass(frozen=True)
class FusionInfo:
    """What the page needs to know about a fusion before running it."""

    name: str
    method: str
    target: str
    adapters: tuple[str, ...]  # in the order the fusion was trained with (target first, by convention)
    task: TaskSpec
    label_names: tuple[str, ...]
    num_layers: int
    num_heads: int
    max_length: int
    model_name: str
    own_adapter: str | None = None
    """The target task's own adapter among the fused ones (trained on the target task, whatever its name: a
    user's ``mycb`` for CB), as training pairs the fusion with it; ``None`` where none is fused."""

    @property
    def field_labels(self) -> tuple[str, ...]:
        """The task's text columns as input labels: ``sentence1`` → ``Sentence 1``, ``sentence_A`` → ``Sentence A``."""
        spaced = (re.sub(r"(?<=[a-z])(?=\d)", " ", field.replace("_", " ")) for field in self.task.text_fields)
        return tuple(label[:1].upper() + label[1:] for label in spaced)

    @property
    def has_target_adapter(self) -> bool:
        """Whether the target task has its own adapter among the fused ones (the single-task baseline)."""
        return self.own_adapter is not None


@dataclass(frozen=True)
class Comparison:
    """Single-task adapter vs fusion on one input, with the fusion weights of every layer and token."""

    fusion: FusionInfo
    single: Prediction | None  # None when the target task has no adapter among the fused ones
    fused: Prediction
    active_adapters: tuple[str, ...]
    tokens: tuple[str, ...]  # real positions only (special tokens included, no padding)
    token_weights: np.ndarray  # [layers, tokens, active adapters], mean over heads
    layer_weights: np.ndarray  # [layers, active adapters], mean over the real tokens
    learned_weights: np.ndarray | None  # [layers, active adapters], weighted fusion only
    original_tokens: int
    kept_tokens: int
    unfamiliar: str | None = None
    """Why the answer means little (mostly unknown tokens, or not the encoder's language); None if nothing."""

    @property
    def truncated(self) -> bool:
        return self.original_tokens > self.kept_tokens

    def weights_at(self, layer: int | None) -> np.ndarray:
        """``[tokens, active adapters]`` weights of one layer (0-based), or the mean over layers for None."""
        return self.token_weights.mean(axis=0) if layer is None else self.token_weights[layer]

    def departures(self, layer: int | None, count: int = 5) -> list[Departure]:
        """The ``count`` (token, adapter) weights furthest from the even share 1/N, furthest first.

        Attention fusion's weights often move at a few tokens only ([CLS], a negation...); this names them,
        with how far they are from 1/N, rather than leaving the reader to find them in a heatmap.
        """
        weights = self.weights_at(layer)
        even = 1.0 / weights.shape[1]
        order = np.argsort(-np.abs(weights - even), axis=None, kind="stable")[:count]
        return [
            Departure(
                int(t), self.tokens[t], self.active_adapters[a], float(weights[t, a]), float(weights[t, a] - even)
            )
            for t, a in (np.unravel_index(i, weights.shape) for i in order)
        ]


@dataclass(frozen=True)
class AdapterDrop:
    """The fusion with one adapter switched off: its probability for the full fusion's answer, its own answer."""

    adapter: str
    probability: float
    label: str


@dataclass(frozen=True)
class LeaveOneOut:
    """The full fusion's answer and confidence, and what each adapter's absence does to it."""

    label: str
    confidence: float
    drops: tuple[AdapterDrop, ...]

    def change(self, drop: AdapterDrop) -> float:
        """How much the answer's probability moves when ``drop.adapter`` is off (negative: the adapter helped)."""
        return drop.probability - self.confidence


@dataclass(frozen=True)
class Departure:
    """One token's weight on one adapter, and its distance from the even share 1/N."""

    position: int
    token: str
    adapter: str
    weight: float
    from_even: float

    def describe(self) -> str:
        return f"{self.token} → {self.adapter} {self.weight:.2f} ({self.from_even:+.2f})"


def _task_spec(meta: dict, target: str) -> TaskSpec:
    """The task a fusion predicts: recorded in the checkpoint (custom tasks included), else the registry's."""
    recorded = meta.get("extra", {}).get("task_spec")
    if recorded:
        return TaskSpec.from_dict(recorded)
    try:
        return get_task(meta.get("extra", {}).get("task") or target)
    except ValueError as err:
        raise DashboardError(f"the fusion does not say which task it predicts: {err}") from err


def fusion_info(workspace: Workspace, fusion: str) -> FusionInfo:
    """Read a fusion's metadata (no weights), with a readable error when it is missing or broken."""
    try:
        meta = read_meta(workspace.fusion_dir(fusion))
    except (CheckpointError, ValueError) as err:
        raise DashboardError(f"Fusion {fusion!r} cannot be read: {err}") from err
    if meta["kind"] != "fusion":
        raise DashboardError(f"{fusion!r} is an adapter checkpoint, not a fusion")
    config = meta["fusion_config"]
    target = config.get("target_task") or config["adapter_names"][0]
    task = _task_spec(meta, target)
    return FusionInfo(
        name=fusion,
        method=config["fusion_method"],
        target=target,
        adapters=tuple(config["adapter_names"]),
        task=task,
        label_names=tuple(config.get("label_names") or task.label_names),
        num_layers=int(meta["num_layers"]),
        num_heads=int(config.get("num_attention_heads", 1)) if fusion_class(config["fusion_method"]).has_heads else 1,
        max_length=int(meta["model_config"].get("max_length", 128)),
        model_name=meta["model_config"]["model_name_or_path"],
        own_adapter=_own_adapter(meta, task.name, target),
    )


def _own_adapter(meta: dict, task: str, target: str) -> str | None:
    """The fused adapter trained on ``task`` (the trainer's rule: by the adapter's recorded task), else the one
    named as the target (a checkpoint that records no adapter configs)."""
    for adapter in meta.get("adapters", []):
        if (adapter.get("adapter_config") or {}).get("task_name") == task:
            return adapter["name"]
    names = meta["fusion_config"]["adapter_names"]
    return target if target in names else None


def own_adapter_label(info: FusionInfo) -> str:
    """The single-task side's name: the target's (``cb``), or the adapter's with the task it was trained on
    where they differ (``mycb (cb)``)."""
    own = info.own_adapter or info.target
    return own if own == info.target else f"{own} ({info.target})"


def recorded_dev_text(workspace: Workspace, fusion: str) -> str | None:
    """What the fusion scored on its dev split when it was saved (a pack fusion's card: the whole split; else
    its checkpoint's record: the dev examples its run scored, counted in the line), with its interval, its own
    adapter's on the same examples and the paired difference, as one line. The Playground shows it beside the one input it runs, so that one answer is not read as the fusion's
    quality. ``None`` where nothing was recorded."""
    directory = workspace.fusion_dir(fusion)
    try:
        meta = read_meta(directory)
        target = meta["fusion_config"].get("target_task")
    except (CheckpointError, ValueError, KeyError):
        return None
    lines = reported_of(directory, meta.get("extra", {})).lines(target)
    return "; ".join(lines[:-1]) or None  # the last line (what selected the step) is the Runs page's


class Predictor:
    """A loaded fusion (with its adapters) and its tokenizer, safe to share between sessions."""

    def __init__(self, workspace: Workspace, fusion: str) -> None:
        self.info = fusion_info(workspace, fusion)
        try:
            model = FusionModel.from_pretrained(workspace.fusion_dir(fusion), adapters_dir=workspace.adapters_dir)
        except CheckpointError as err:
            raise DashboardError(
                f"Fusion {fusion!r} cannot be loaded: {err}. Retrain it on the Train page, or restore its adapters."
            ) from err
        self.model = freeze_for_inference(model)  # answers only: stacked weights and folds are built once
        self.tokenizer = load_tokenizer(self.info.model_name)
        self._answers: AnswerCache[Comparison] = AnswerCache()
        self._saliences: AnswerCache[Salience] = AnswerCache()  # its own lock, then the model's (never the reverse)
        self.lock = self._answers.lock  # also taken by whoever else runs this model (Efficiency, the dev set)
        self.model_calls = 0
        """How many inputs were run through the model (answers served from the cache are not counted)."""

    def encode(self, text: str, text_pair: str | None) -> EncodedInput:
        """Model inputs for one checked input, at the fusion's own ``max_length``. Call under ``lock``."""
        return encode_input(self.tokenizer, text, text_pair, self.info.max_length)

    def check_input(self, text: str | None, text_pair: str | None) -> tuple[str, str | None]:
        """The stripped text (and pair, for pair tasks), or a :class:`DashboardError` saying what is missing."""
        labels = self.info.field_labels
        text = (text or "").strip()
        if not text:
            raise DashboardError(
                f"{labels[0]} is empty: type something (or pick an example) to classify. A paste longer than "
                f"{TEXT_MAX_CHARS:,} characters is not taken in: shorten it first."
            )
        if not self.info.task.is_pair:
            return text, None
        pair = (text_pair or "").strip()
        if not pair:
            raise DashboardError(f"{self.info.target} compares two texts: fill in {labels[1]} as well as {labels[0]}.")
        return text, pair

    def check_adapters(self, active_adapters: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
        """The active adapters in the fusion's own order, or a :class:`DashboardError` if none or unknown."""
        if active_adapters is None:
            return self.info.adapters
        unknown = sorted(set(active_adapters) - set(self.info.adapters))
        if unknown:
            raise DashboardError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not part of fusion "
                f"{self.info.name!r} (it fuses {', '.join(self.info.adapters)})"
            )
        active = tuple(name for name in self.info.adapters if name in active_adapters)
        if not active:
            raise DashboardError("Every adapter is switched off: switch at least one on to run the fusion.")
        return active

    def compare(
        self,
        text: str | None,
        text_pair: str | None = None,
        active_adapters: list[str] | None = None,
        override: WeightOverride | None = None,
    ) -> Comparison:
        """Predict with the target adapter alone and with the fusion over ``active_adapters`` (default: all).

        Switching adapters off keeps the fusion head and renormalises the fusion weights over the adapters
        left on (one adapter left on still goes through the fusion layers: ``force_fusion=True``). ``override``
        sets some of their weights by hand (the what-if panel); a bad one is a :class:`DashboardError`.
        """
        text, text_pair = self.check_input(text, text_pair)
        active = self.check_adapters(active_adapters)
        if override is not None and not override.weights:
            override = None
        if override is not None:
            try:
                override.check(active, self.info.num_layers)
            except ValueError as err:
                raise DashboardError(str(err)) from None
            if len(active) < 2:
                raise DashboardError("Setting a weight by hand needs two adapters or more switched on.")
        key = _answer_key(text, text_pair, active, override)
        return self._answers.get(key, lambda: self._compare(text, text_pair, active, override))

    def salience(
        self,
        text: str | None,
        text_pair: str | None = None,
        active_adapters: list[str] | None = None,
        override: WeightOverride | None = None,
    ) -> Salience:
        """Which tokens push the target adapter alone and the fusion (as :meth:`compare` runs it) towards the
        fusion's answer: integrated gradients for both, on the same class (:mod:`fusionlab.salience`)."""
        comparison = self.compare(text, text_pair, active_adapters, override)  # checks the input, gives the class
        if comparison.single is None:
            raise DashboardError(
                f"Fusion {self.info.name!r} does not fuse {self.info.target}'s own adapter, so there is no single "
                "adapter to set beside it."
            )
        text, text_pair = self.check_input(text, text_pair)
        override = None if override is None or not override.weights else override
        key = _answer_key(text, text_pair, comparison.active_adapters, override)
        label = comparison.fused.label

        def compute() -> Salience:
            with self.lock:
                encoded = self.encode(text, text_pair)
                return salience(
                    self.model, self.tokenizer, encoded, self.info.own_adapter, comparison.active_adapters,
                    comparison.fused.labels.index(label), label, override,
                )  # fmt: skip

        return self._saliences.get(key, compute)

    def leave_one_out(
        self, text: str | None, text_pair: str | None = None, active_adapters: list[str] | None = None
    ) -> LeaveOneOut:
        """What the fusion's answer loses (or gains) when each active adapter is switched off in turn.

        For every adapter, the probability the fusion gives its own answer (over all ``active_adapters``) once
        that adapter is off, and whether the answer flips. N extra answers, each from the answer cache when a
        student has already tried that subset.
        """
        full = self.compare(text, text_pair, active_adapters)
        if len(full.active_adapters) < 2:
            raise DashboardError("Switch on at least two adapters: dropping the only one leaves no fusion.")
        answer = full.fused.labels.index(full.fused.label)
        drops = []
        for name in full.active_adapters:
            without = self.compare(text, text_pair, [a for a in full.active_adapters if a != name]).fused
            drops.append(AdapterDrop(name, float(without.probabilities[answer]), without.label))
        return LeaveOneOut(full.fused.label, full.fused.confidence, tuple(drops))

    def _compare(
        self, text: str, text_pair: str | None, active: tuple[str, ...], override: WeightOverride | None = None
    ) -> Comparison:
        """One model call for a checked input (see :meth:`compare`); call under ``lock``."""
        info = self.info
        self.model_calls += 1
        encoded = self.encode(text, text_pair)
        single = predict(self.model, encoded, [info.own_adapter])[0] if info.own_adapter is not None else None
        fused, out = predict(
            self.model, encoded, list(active), force_fusion=True, output_fusion_weights=True,
            fusion_weight_override=override,
        )  # fmt: skip
        token_weights = fusion_weights.example_tokens(out.fusion_weights, 0, encoded.kept_tokens).numpy()
        token_weights.setflags(write=False)  # a cached answer is shared by every session: nobody may edit it
        learned = self._learned_weights(active)
        return Comparison(
            fusion=info,
            single=single,
            fused=fused,
            active_adapters=active,
            tokens=encoded.tokens,
            token_weights=token_weights,
            layer_weights=token_weights.mean(axis=1),
            learned_weights=learned,
            original_tokens=encoded.original_tokens,
            kept_tokens=encoded.kept_tokens,
            unfamiliar=unfamiliar_input((text, text_pair), encoded.tokens, self.tokenizer.unk_token),
        )

    def _learned_weights(self, active: tuple[str, ...]) -> np.ndarray | None:
        """Weighted fusion's softmax weights per layer, renormalised over the active adapters."""
        facts = fusion_class(self.info.method)
        if not (facts.token_independent_weights and facts.learns_weights) or self.model.fusion_layers is None:
            return None
        indices = [self.info.adapters.index(name) for name in active]
        with torch.no_grad():
            return torch.stack([layer.adapter_weights(indices) for layer in self.model.fusion_layers]).float().numpy()


def _answer_key(
    text: str, text_pair: str | None, active: tuple[str, ...], override: WeightOverride | None
) -> tuple[object, ...]:
    """What an answer depends on beyond the loaded fusion: the input, the adapters on, the weights set by hand."""
    return (
        text,
        text_pair,
        active,
        None if override is None else (tuple(sorted(override.weights.items())), override.layer),
    )


def checkpoint_signature(workspace: Workspace, fusion: str) -> tuple[tuple[str, int], ...]:
    """Modification times of a fusion's and its adapters' metadata: a retrained checkpoint gets a new cache key."""
    paths = [workspace.fusion_dir(fusion)]
    # An unreadable fusion still gets a key: the Predictor then raises the readable error (never cached).
    with contextlib.suppress(DashboardError):
        paths += [workspace.adapter_dir(name) for name in fusion_info(workspace, fusion).adapters]
    signature = []
    for path in paths:
        marker = Path(path) / CHECKPOINT_MARKER
        signature.append((str(marker), marker.stat().st_mtime_ns if marker.is_file() else -1))
    return tuple(signature)


SENTIMENT_TARGETS = ("imdb", "sst2")


def comparable_fusions(workspace: Workspace, fusion: str) -> list[str]:
    """The other fusions that answer the same task as ``fusion`` (so one input means the same to both): what
    the Playground's compare mode offers. Unreadable fusions are left out."""
    target = fusion_info(workspace, fusion).task.name
    found = []
    for name in workspace.list_fusions():
        if name == fusion:
            continue
        with contextlib.suppress(DashboardError):
            if fusion_info(workspace, name).task.name == target:
                found.append(name)
    return found


def preferred_fusion(workspace: Workspace, fusions: Sequence[str]) -> str:
    """The fusion a page opens on: one that shows transfer (beats its own adapter beyond noise, both beyond their
    majority class: :meth:`~fusionlab.reported.Reported.shows_transfer`), sentiment first; else a sentiment one;
    else the first that can be read.

    A class should first see fusion doing something measurable, and sentiment is where the story starts (the
    original notebook: "This movie is absolutely fantastic!", the sentiment adapter alone vs all adapters fused):
    a movie sentence needs no explanation in a classroom. A fusion whose metadata is broken is never the default
    (it stays in the picker, where choosing it says why).
    """
    ranked = []
    for order, name in enumerate(fusions):
        directory = workspace.fusion_dir(name)
        try:
            meta = read_meta(directory)
            target = meta["fusion_config"].get("target_task")
        except (CheckpointError, ValueError, KeyError):
            continue
        transfers = reported_of(directory, meta.get("extra", {})).shows_transfer()
        ranked.append((not transfers, target not in SENTIMENT_TARGETS, order, name))
    return min(ranked)[-1] if ranked else fusions[0]
