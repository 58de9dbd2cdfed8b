"""The demo: fusions trained live, on top of the pretrained pack, that a class can watch form.

The pack (:mod:`fusionlab.pack`) already holds trained source adapters (hours of the 2 cores, spent once when it
was built: ``docs/pack.md``). The classroom demo adds two fusions over them, each in a couple of minutes on 2 CPU
cores, so the fusion weights can be watched as they move on the Train page:

* **imdb-live**: sentiment of full movie reviews from only 100 training reviews (the pack's
  ``IMDB_LOW_RESOURCE``), fusing the low-resource IMDb
  adapter with SST-2 (sentence sentiment), MNLI and QNLI: the notebook's story, sentiment adapter alone vs
  all adapters fused;
* **rte-live**: textual entailment (RTE, 2,490 pairs) fusing the RTE adapter with the pack's other inference
  adapters, MNLI, QNLI and SICK (as the pack's ``rte-attention``; BoolQ's adapter, which did not learn beyond its
  majority class, is left out).

It is a list of ordinary queued runs, so the worker executes it in order and every stage appears in the run
history with its curves. :func:`missing_data` says, before anything is queued, which data a plan needs but
cannot reach. The ``tiny`` profile trains its own adapters for a few steps (tests, and machines without the
pack).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionlab.budgets import NO_LIMIT, resolve_budget
from fusionlab.config import AdapterConfig, FusionConfig
from fusionlab.data.loading import split_unreachable
from fusionlab.data.tasks import get_task
from fusionlab.pack.recipe import IMDB_LOW_RESOURCE
from fusionlab.runspec import AdapterRun, Budget, FusionRun


@dataclass(frozen=True)
class DemoFusion:
    name: str
    target: str
    adapters: tuple[str, ...]  # the target's own adapter first, by convention
    steps: int
    max_length: int
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    method: str = "attention"
    eval_steps: int | None = None
    """Evaluate on the selection split every this many steps (``None``: the profile's cadence)."""

    def describe(self) -> str:
        """One line for the Home page, from the plan itself (so the page never states other numbers)."""
        data = f" from {self.max_train_samples:,} training examples" if self.max_train_samples else ""
        return f"**{self.name}** ({self.target}{data}, fusing {', '.join(self.adapters)}; {self.steps} training steps)"


@dataclass(frozen=True)
class DemoProfile:
    fusions: tuple[DemoFusion, ...]
    adapter_steps: dict[str, int] = field(default_factory=dict)  # adapters trained first (none: from the pack)
    adapter_size: int = 64
    batch_size: int = 16
    eval_steps: int | None = None
    snapshot_steps: int | None = None
    adapter_max_length: int = 128
    adapter_max_train_samples: int | None = None
    adapter_max_eval_samples: int | None = None


PROFILES: dict[str, DemoProfile] = {
    "classroom": DemoProfile(
        fusions=(
            DemoFusion(
                "imdb-live",
                "imdb",
                ("imdb", "sst2", "mnli", "qnli"),
                steps=40,
                max_length=128,
                max_train_samples=IMDB_LOW_RESOURCE,
                max_eval_samples=400,
                eval_steps=10,  # on 100 reviews the fusion's best step comes early (the pack's curve: 10 to 30)
            ),
            DemoFusion("rte-live", "rte", ("rte", "mnli", "qnli", "sick"), steps=100, max_length=160),
        ),
        eval_steps=40,
        snapshot_steps=10,
    ),
    "tiny": DemoProfile(
        fusions=(
            DemoFusion("rte-attention", "rte", ("rte", "boolq", "mnli", "sst2"), 4, 48, 200, 48),
            DemoFusion("rte-weighted", "rte", ("rte", "boolq", "mnli", "sst2"), 4, 48, 200, 48, method="weighted"),
        ),
        adapter_steps={"sst2": 6, "mnli": 4, "boolq": 3, "rte": 4},
        adapter_size=16,
        batch_size=8,
        snapshot_steps=2,
        adapter_max_length=48,
        adapter_max_train_samples=200,
        adapter_max_eval_samples=48,
    ),
}


def _budget(
    p: DemoProfile,
    task: str,
    stage: str,
    steps: int,
    max_length: int,
    train: int | None,
    dev: int | None,
    eval_steps: int | None = None,
) -> Budget:
    """The classroom profile of :func:`~fusionlab.budgets.resolve_budget`, with the demo's own numbers on top
    (``None`` here means "no limit", as in the profile tables above)."""

    def limit(value: int | None) -> Any:
        return NO_LIMIT if value is None else value

    return resolve_budget(
        task,
        stage,
        "classroom",
        steps=steps,
        warmup_ratio=0.06,
        batch_size=p.batch_size,
        max_length=max_length,
        max_train_samples=limit(train),
        max_eval_samples=limit(dev),
        eval_steps=limit(eval_steps or p.eval_steps),
        snapshot_steps=limit(p.snapshot_steps),
    )


def demo_runs(profile: str = "classroom", data_dir: str | None = None) -> list[AdapterRun | FusionRun]:
    """Every run of the demo, in the order they must execute."""
    if profile not in PROFILES:
        raise ValueError(f"unknown demo profile {profile!r}; choose from {', '.join(PROFILES)}")
    p = PROFILES[profile]
    runs: list[AdapterRun | FusionRun] = []
    for task, steps in p.adapter_steps.items():
        budget = _budget(
            p, task, "adapter", steps, p.adapter_max_length, p.adapter_max_train_samples, p.adapter_max_eval_samples
        )
        runs.append(
            AdapterRun(
                task=task,
                adapter_config=AdapterConfig(adapter_size=p.adapter_size),
                training_config=budget.training_config(),
                model_config=budget.model_config(),
                data_dir=data_dir,
            )
        )
    for fusion in p.fusions:
        budget = _budget(
            p,
            fusion.target,
            "fusion",
            fusion.steps,
            fusion.max_length,
            fusion.max_train_samples,
            fusion.max_eval_samples,
            fusion.eval_steps,
        )
        runs.append(
            FusionRun(
                target_task=fusion.target,
                adapters=list(fusion.adapters),
                name=fusion.name,
                fusion_config=FusionConfig(fusion_method=fusion.method, adapter_names=list(fusion.adapters)),
                training_config=budget.training_config(),
                model_config=budget.model_config(),
                data_dir=data_dir,
            )
        )
    return runs


def missing_data(profile: str = "classroom", data_dir: str | Path | None = None) -> list[str]:
    """Why each split the demo trains or scores on cannot be read (empty: everything is reachable).

    Checked before anything is queued: otherwise an offline machine without the task data queues runs that
    each fail only after a hub time-out.
    """
    problems = []
    tasks = [*PROFILES[profile].adapter_steps, *(f.target for f in PROFILES[profile].fusions)]
    for task in dict.fromkeys(tasks):
        for split in ("train", "validation"):
            reason = split_unreachable(get_task(task), split, data_dir)
            if reason:
                problems.append(reason)
    return problems


def missing_adapters(profile: str, available: set[str]) -> list[str]:
    """Adapters the demo's fusions need that neither the workspace has nor the demo trains itself."""
    p = PROFILES[profile]
    needed = dict.fromkeys(a for f in p.fusions for a in f.adapters)
    return [a for a in needed if a not in available and a not in p.adapter_steps]


def workspace_plan(workspace, profile: str = "classroom", data_dir: str | None = None) -> list[AdapterRun | FusionRun]:
    """:func:`demo_runs` as they run in ``workspace``: an adapter the pack already holds (read-only) is the
    pack's, not retrained; a fusion whose name the pack holds is saved beside it (``rte-attention-2``)."""
    from fusionlab.pack.store import is_pack_artifact, own_name

    plan: list[AdapterRun | FusionRun] = []
    for run in demo_runs(profile, data_dir):
        if isinstance(run, AdapterRun):
            if not is_pack_artifact(workspace.adapter_dir(run.name)):
                plan.append(run)
        else:
            plan.append(dataclasses.replace(run, name=own_name(workspace, run.name, kind="fusion")))
    return plan


def enqueue_demo(store, profile: str = "classroom", data_dir: str | None = None, workspace=None) -> list[int]:
    """Queue every demo run (as they run in ``workspace``, if given); returns their ids in execution order."""
    plan = workspace_plan(workspace, profile, data_dir) if workspace is not None else demo_runs(profile, data_dir)
    return [store.enqueue(run.kind, run.name, run.to_dict()) for run in plan]
