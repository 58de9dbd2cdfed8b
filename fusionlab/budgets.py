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

The demo's runs are the ``classroom`` profile with their own steps and subsets as overrides; the pack builder's
per-artifact recipes are the ``recipe`` profile's source.

Anything the user chose is passed as an override and wins over the profile; an override of ``None`` means "not
chosen", and :data:`NO_LIMIT` means "chosen: none" (all examples, no evaluation before the end, no snapshots),
where the profile has a limit. The result is a validated :class:`~fusionlab.runspec.Budget`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fusionlab.pack.recipe import ADAPTERS, FUSIONS
from fusionlab.runspec import Budget

STAGES = ("adapter", "fusion")


class _NoLimit:
    def __repr__(self) -> str:
        return "NO_LIMIT"


NO_LIMIT: Any = _NoLimit()
"""An override that sets an optional budget field to ``None`` ("all examples", "only at the end", "never"),
where a plain ``None`` would mean "not chosen" and keep the profile's value."""
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
COMPARE_SEARCH_EVALUATIONS = 40
"""Candidates LoraHub's gradient-free search scores in a comparison."""
COMPARE_LATENCY_REPEATS = 7
"""Rounds of a comparison's round-robin latency timing: each round times every configuration once, so slow
moments of the machine fall on all of them alike; each configuration's latency is its median over the rounds."""
MAX_LATENCY_REPEATS = 100


def _recipe(task: str, stage: str) -> Budget:
    """The pack's recipe: the task's adapter recipe; for a fusion, the pack's fusion for that target, else the
    adapter's schedule (a fusion trains on the same data as its target's adapter) at the fusions' learning rate,
    with weight snapshots for the live view."""
    adapter = next((r for r in ADAPTERS if r.task == task), None)
    if adapter is None:
        return GENERIC
    if stage == "adapter":
        return adapter.budget()
    fusion = next((f for f in FUSIONS if f.target == task), None)
    if fusion is not None:
        return fusion.budget(snapshots=True)
    return dataclasses.replace(adapter.budget(snapshots=True), learning_rate=FUSIONS[0].learning_rate)


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
    chosen = {k: None if v is NO_LIMIT else v for k, v in overrides.items() if v is not None}
    base = _profile(task, stage, profile)
    if "epochs" in chosen and "steps" not in chosen:
        chosen["steps"] = -1
    if chosen.get("steps") is not None and "eval_steps" not in chosen:
        chosen["eval_steps"] = max(1, chosen["steps"] // 4) if chosen["steps"] > 0 else base.eval_steps
    return dataclasses.replace(base, **chosen)
