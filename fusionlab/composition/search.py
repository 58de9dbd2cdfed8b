"""Gradient-free composition (LoraHub, Huang et al., 2024): one coefficient per adapter, found by a black-box search.

The composed adapter is ``sum_i w_i * adapter_i`` (the ``linear`` merge). LoraHub scores a candidate ``w`` by the
language model's loss on a few dozen target examples plus ``alpha * |w|_1``; a classifier over a new task has no
head yet, so here a candidate is scored by how well a *linear probe* separates the target's classes on the
sentence vectors it gives: a logistic regression fitted on one half of the few-shot examples and scored (cross-
entropy) on the other half, and the other way round. No gradient reaches the encoder or the adapters, only the
probe's, and each candidate costs one forward pass over the few-shot examples.

The search is a small evolution strategy, seeded (so a search is reproducible): a population sampled around the
current mean, the better half recombined into the next mean, the step size shrunk when a generation finds nothing
better. The best candidate ever seen is kept. A head for the target task is then trained on the composed adapter
the ordinary way (:meth:`fusionlab.training.trainer.FusionTrainer.train_composed`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from fusionlab.composition.merging import MergeOptions, merged_state
from fusionlab.heads import pool
from fusionlab.model import FusionModel

MAX_EVALUATIONS = 500
"""The most candidates one search may score (each costs a forward pass over the few-shot examples)."""

SCRATCH = "lorahub-candidate"
"""The adapter slot each candidate is loaded into while it is scored."""


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """The search's budget and knobs (LoraHub's defaults where they exist: bounds ±1.5, L1 weight 0.05)."""

    evaluations: int = 40
    population: int = 8
    step_size: float = 0.3
    l1: float = 0.05
    bound: float = 1.5
    seed: int = 0
    probe_steps: int = 60

    def __post_init__(self) -> None:
        if not 1 <= self.evaluations <= MAX_EVALUATIONS:
            raise ValueError(
                f"SearchOptions.evaluations must be between 1 and {MAX_EVALUATIONS}, got {self.evaluations}"
            )
        if not 2 <= self.population <= 200:
            raise ValueError(f"SearchOptions.population must be between 2 and 200, got {self.population}")
        for name in ("step_size", "bound"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 10):
                raise ValueError(f"SearchOptions.{name} must be in (0, 10], got {value}")


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The best coefficients found, their score, and every candidate's score in the order they were tried."""

    adapters: tuple[str, ...]
    coefficients: tuple[float, ...]
    score: float
    scores: tuple[float, ...]

    @property
    def start_score(self) -> float:
        """The score of the starting point (the plain average, every coefficient 1/N)."""
        return self.scores[0]


def probe_loss(features: torch.Tensor, labels: torch.Tensor, num_labels: int, steps: int = 60) -> float:
    """Two-fold cross-entropy of an L2-regularised logistic regression on ``features`` (lower: more separable).

    Fitted with L-BFGS on standardised features. The folds are stratified: within each class, examples alternate
    between them, so each class is on both sides whenever it has two examples (alternating over the whole set
    put every example of a class on one side when the labels themselves alternated).
    """
    x = (features - features.mean(0)) / features.std(0).clamp(min=1e-6)
    rank_in_class = torch.zeros(len(labels), dtype=torch.long)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        rank_in_class[members] = torch.arange(len(members))
    fold = rank_in_class % 2 == 0
    losses = [_held_out_loss(x, labels, num_labels, train, ~train, steps) for train in (fold, ~fold)]
    return sum(losses) / len(losses)


def _held_out_loss(
    x: torch.Tensor, labels: torch.Tensor, num_labels: int, train: torch.Tensor, held: torch.Tensor, steps: int
) -> float:
    """Fit the probe on the ``train`` rows; its cross-entropy on the ``held`` rows."""
    weight = torch.zeros(x.shape[1], num_labels, requires_grad=True)
    bias = torch.zeros(num_labels, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x[train] @ weight + bias, labels[train]) + 1e-2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return F.cross_entropy(x[held] @ weight + bias, labels[held]).item()


def sentence_vectors(model: FusionModel, batch: dict[str, torch.Tensor], adapter: str) -> torch.Tensor:
    """The pooled sentence vectors of ``batch`` with ``adapter`` alone in every layer (no head).

    In eval mode (every module's mode restored after): with dropout on, each candidate would be scored on noise.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = model(**inputs, adapter_names=[adapter])
    finally:
        for module, training in modes:
            module.training = training
    return pool(out.last_hidden_state, inputs.get("attention_mask"), model.model_config.pooling)


def evolve(score: Callable[[torch.Tensor], float], start: torch.Tensor, options: SearchOptions) -> list[tuple]:
    """A seeded (mu/mu, lambda) evolution strategy; returns every (candidate, score) tried, the start first."""
    generator = torch.Generator().manual_seed(options.seed)
    tried = [(start.clone(), score(start))]
    mean, step = start.clone(), options.step_size
    best = tried[0][1]
    while len(tried) < options.evaluations:
        size = min(options.population, options.evaluations - len(tried))
        noise = torch.randn(size, len(start), generator=generator)
        candidates = (mean + step * noise).clamp(-options.bound, options.bound)
        scored = sorted(((c, score(c)) for c in candidates), key=lambda pair: pair[1])
        tried += scored
        parents = [c for c, _ in scored[: max(1, size // 2)]]
        mean = torch.stack(parents).mean(0)
        if scored[0][1] < best:
            best = scored[0][1]
        else:
            step *= 0.7  # nothing better this generation: search closer to the mean
    return tried


def search_coefficients(
    model: FusionModel, names: Sequence[str], batch: dict[str, torch.Tensor], num_labels: int, options: SearchOptions
) -> SearchResult:
    """The coefficients of ``sum_i w_i * adapter_i`` that make ``batch``'s target classes most separable.

    ``batch`` is a few dozen collated target examples with ``labels``. The search starts at the average (1/N
    each); the score is :func:`probe_loss` plus ``l1 * |w|_1``.
    """
    names = list(names)
    manager = model.adapter_manager
    model.add_adapter(SCRATCH, dataclasses.replace(manager.configs[names[0]], task_name="merged"))
    labels = batch["labels"]
    try:

        def score(candidate: torch.Tensor) -> float:
            options_ = MergeOptions(coefficients=tuple(candidate.tolist()))
            _, state = merged_state(manager, names, "linear", options_)
            manager.adapters[SCRATCH].load_state_dict(state)
            features = sentence_vectors(model, batch, SCRATCH)
            return (
                probe_loss(features, labels, num_labels, options.probe_steps)
                + options.l1 * candidate.abs().sum().item()
            )

        tried = evolve(score, torch.full((len(names),), 1.0 / len(names)), options)
    finally:
        model.remove_adapter(SCRATCH)
    best, best_score = min(tried, key=lambda pair: pair[1])
    return SearchResult(tuple(names), tuple(round(float(c), 6) for c in best), best_score, tuple(s for _, s in tried))
