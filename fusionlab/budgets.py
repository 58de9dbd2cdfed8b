"""Where every training default comes from: one function, :func:`resolve_budget`, and named profiles.

A budget (steps or epochs, learning rate, batch, truncation, data subsets, evaluation and snapshot cadence) used
to be filled in six places — the CLI from the pack recipe, the Train page's own limits, the demo, the pack
builder, the comparison session — each with its own numbers, so the same task trained differently depending on
where it was queued. Now each of those asks :func:`resolve_budget` for a *profile*:

* ``recipe``: the pretrained pack's measured recipe for the task (``fusionlab/pack/recipe.py``), or generic
  defaults for a task the pack does not know; the command line's default.
* ``classroom``: sized so that a run ends while a student watches (about two minutes on a laptop CPU); the
  Train page's default and the classroom demo's.
* ``compare``: the composition lab's (:data:`COMPARE`: ``fusionlab compare``'s defaults and ``CompareOptions``'),
  one evaluation at the end.

Not yet routed through here (next steps of the run-layer issue): the demo's per-run budgets (``demo.PROFILES``)
and the pack builder's per-artifact recipes, which are the ``recipe`` profile's source.

Anything the user chose is passed as an override and wins over the profile; an override of ``None`` means "not
chosen". The result is a validated :class:`~fusionlab.runspec.Budget`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fusionlab.pack.recipe import ADAPTERS, FUSIONS
from fusionlab.runspec import Budget

STAGES = ("adapter", "fusion")
PROFILES = {
    "recipe": "the pretrained pack's tuned budget for the task (generic defaults for other tasks)",
    "classroom": "a short run that ends while you watch (about two minutes on a laptop CPU)",
    "compare": "the composition lab's: a fixed step budget, one evaluation at the end",
}
GENERIC = Budget(steps=-1, epochs=1.0, learning_rate=1e-3, batch_size=16, max_length=128)
"""A task the pack has no recipe for: one epoch at the adapters' CPU learning rate."""

CLASSROOM = Budget(steps=100, learning_rate=1e-3, max_train_samples=4000, max_eval_samples=400, eval_steps=40)
"""The classroom profile's adapter run; its fusion run also snapshots the fusion weights every 10 steps."""

COMPARE = Budget(steps=200, learning_rate=1e-3, batch_size=16, warmup_ratio=0.06, max_length=128)
"""The composition lab's budget for every trained method (``fusionlab compare``'s defaults, ``CompareOptions``)."""


def _recipe(task: str, stage: str) -> Budget:
    adapter = next((r for r in ADAPTERS if r.task == task), None)
    if adapter is None:
        return GENERIC
    if stage == "adapter":
        return adapter.budget()
    # a fusion takes its target's truncation and data subsets, and the pack fusion's steps, lr and batch
    fusion = next((f for f in FUSIONS if f.target == task), FUSIONS[0])
    steps = fusion.steps
    return dataclasses.replace(
        adapter.budget(),
        steps=steps,
        learning_rate=fusion.learning_rate,
        batch_size=fusion.batch_size,
        warmup_ratio=fusion.warmup_ratio,
        eval_steps=max(1, steps // 4),
        snapshot_steps=max(1, steps // 10),
    )


def _profile(task: str, stage: str, profile: str) -> Budget:
    if profile == "recipe":
        return _recipe(task, stage)
    if profile == "classroom":
        return dataclasses.replace(CLASSROOM, snapshot_steps=10) if stage == "fusion" else CLASSROOM
    if profile == "compare":
        return dataclasses.replace(COMPARE, eval_steps=COMPARE.steps)
    raise ValueError(f"unknown budget profile {profile!r}; choose from {', '.join(PROFILES)}")


def resolve_budget(task: str, stage: str, profile: str = "recipe", **overrides: Any) -> Budget:
    """The budget of a ``stage`` (``adapter`` or ``fusion``) run for ``task`` under ``profile``, with the user's
    ``overrides`` (any :class:`~fusionlab.runspec.Budget` field; ``None`` = not chosen) applied on top.

    Choosing ``epochs`` without ``steps`` trains by epochs (the profile's step count is dropped); choosing
    ``steps`` without an evaluation cadence evaluates four times.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Budget)})
    if unknown:
        raise ValueError(f"unknown budget option(s) {', '.join(unknown)}")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    base = _profile(task, stage, profile)
    if "epochs" in chosen and "steps" not in chosen:
        chosen["steps"] = -1
    if "steps" in chosen and "eval_steps" not in chosen:
        chosen["eval_steps"] = max(1, chosen["steps"] // 4) if chosen["steps"] > 0 else base.eval_steps
    return dataclasses.replace(base, **chosen)
