"""The methods a comparison runs, one registration each: how it trains and which checkpoint it leaves.

Every method works over the same frozen source adapters and is scored on the same fixed dev subset of the
target (:mod:`fusionlab.composition.compare` does the scoring, from the saved checkpoint loaded afresh):

- ``adapter``: the target's own source adapter with its own head, as trained (nothing new is trained);
- ``fusion:<attention|weighted|average>``: fusion layers and a target head trained over the adapters;
- ``merge:<average|task_arithmetic|ties|dare>``: the adapters merged into one (no extra inference cost), then
  a target head trained on it (``+ft``: the merged adapter fine-tuned with the head);
- ``lorahub``: one coefficient per adapter found by a gradient-free search on a few target examples, the
  weighted sum as one adapter, then a target head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionlab.composition.merging import MergeOptions, add_merged_adapter
from fusionlab.composition.search import SearchOptions, search_coefficients
from fusionlab.config import FusionConfig
from fusionlab.fusion.registry import fusion_methods

if TYPE_CHECKING:
    from fusionlab.composition.session import Session


class MethodNotApplicable(Exception):
    """This method cannot run on these adapters (e.g. none of them was trained on the target); it is skipped."""


@dataclasses.dataclass(frozen=True)
class Trained:
    """What a method's training left: the checkpoint to score, its kind, and what to record beside it."""

    kind: str  # "adapter" or "fusion"
    path: Path
    adapters: list[str]  # the adapters a forward pass uses
    in_training_value: float | None
    seconds: float
    trained_parts: tuple[str, ...]  # what learned for the target: of "adapter", "fusion", "head"
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Method:
    """One registered method: its family (for grouping and colours), a one-line description, how to run it."""

    name: str
    family: str
    description: str
    run: Callable[[Session], Trained]


def _own_adapter(session: Session) -> Trained:
    own = session.own_adapter()
    if own is None:
        raise MethodNotApplicable(f"none of the adapters was trained on {session.spec.name}")
    return Trained("adapter", session.workspace.adapter_dir(own), [own], None, 0.0, (), {"adapter": own})


def _fusion(method: str) -> Callable[[Session], Trained]:
    def run(session: Session) -> Trained:
        config = FusionConfig(fusion_method=method, adapter_names=session.options.adapters)
        result, seconds = session.timed(
            lambda: session.trainer.train_fusion(
                session.spec, session.options.adapters, fusion_config=config, name=session.artifact(f"fusion-{method}")
            )
        )
        adapters = list(session.options.adapters)
        scales = result.loop.learning_rate_scales if result.loop else {}
        details = {"learning_rate_scales": scales} if scales else {}  # e.g. weighted fusion's logits
        return Trained("fusion", result.path, adapters, session.main(result), seconds, ("fusion", "head"), details)

    return run


def _merge(method: str, finetune: bool) -> Callable[[Session], Trained]:
    def run(session: Session) -> Trained:
        options = session.merge_options(method)

        def compose(model, name, task_config) -> None:
            add_merged_adapter(model, session.options.adapters, method, name, task_config, options)

        name = session.artifact(f"merge-{method}{'-ft' if finetune else ''}")
        result, seconds = session.timed(
            lambda: session.trainer.train_composed(session.spec, session.options.adapters, compose, name, finetune)
        )
        details = {k: v for k, v in dataclasses.asdict(options).items() if k != "coefficients"}
        parts = ("adapter", "head") if finetune else ("head",)
        return Trained("adapter", result.path, [name], session.main(result), seconds, parts, details)

    return run


def _lorahub(session: Session) -> Trained:
    found: dict[str, Any] = {}
    options = session.options

    def compose(model, name, task_config) -> None:
        batch = session.few_shot_batch()
        search = SearchOptions(evaluations=options.search_evaluations, seed=options.seed)
        result = search_coefficients(model, options.adapters, batch, session.spec.num_labels, search)
        found.update(
            coefficients=dict(zip(result.adapters, result.coefficients)),
            search_score=round(result.score, 4),
            start_score=round(result.start_score, 4),
            evaluations=len(result.scores),
            examples=len(batch["labels"]),
        )
        add_merged_adapter(
            model, options.adapters, "linear", name, task_config, MergeOptions(coefficients=result.coefficients)
        )

    name = session.artifact("lorahub")
    result, seconds = session.timed(
        lambda: session.trainer.train_composed(session.spec, options.adapters, compose, name)
    )
    return Trained("adapter", result.path, [name], session.main(result), seconds, ("head",), found)


MERGES = ("average", "task_arithmetic", "ties", "dare")


def _registry() -> dict[str, Method]:
    methods = [Method("adapter", "single", "the target's own adapter alone, as trained", _own_adapter)]
    for fusion in fusion_methods():  # every registered fusion method, read now: a new one joins the lab
        methods.append(Method(f"fusion:{fusion}", "fusion", f"{fusion} fusion over the adapters", _fusion(fusion)))
    for merge in MERGES:
        methods.append(Method(f"merge:{merge}", "merging", f"{merge} merge, head trained", _merge(merge, False)))
    methods.append(Method("lorahub", "search", "gradient-free coefficients (LoraHub), head trained", _lorahub))
    return {m.name: m for m in methods}


def methods() -> dict[str, Method]:
    """Every method a comparison can run, by name (the one registry), with the fusion methods registered now."""
    return _registry()


FINETUNED: dict[str, Method] = {
    f"merge:{merge}+ft": Method(
        f"merge:{merge}+ft", "merging", f"{merge} merge, head trained, adapter fine-tuned", _merge(merge, True)
    )
    for merge in MERGES
}
"""The fine-tuned variants of the merges (``CompareOptions.finetune``)."""
