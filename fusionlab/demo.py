"""The demo workspace: the runs that make a classroom-ready set of adapters and fusions.

The plan follows the paper's setting at CPU scale: single-task adapters for sentiment (SST-2), NLI (MNLI) and
yes/no QA (BoolQ) plus the target task (RTE), then attention and weighted fusion over all four for the target.
It is a list of ordinary queued runs, so the worker executes it in order (adapters before the fusions that
need them) and every stage appears in the run history with its curves.

Profiles: ``classroom`` (the ``fusionlab demo`` default, under 10 minutes on 2 CPU cores) and ``tiny`` (a few
steps per stage, for tests and a first look).
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_TASKS = ("sst2", "mnli", "boolq")


@dataclass(frozen=True)
class DemoProfile:
    target: str
    adapter_steps: dict[str, int]
    fusion_steps: int
    adapter_size: int
    max_length: int
    batch_size: int
    max_train_samples: int
    max_eval_samples: int
    eval_steps: int | None
    snapshot_steps: int | None
    methods: tuple[str, ...] = ("attention", "weighted")


PROFILES: dict[str, DemoProfile] = {
    "classroom": DemoProfile(
        target="rte",
        adapter_steps={"sst2": 100, "mnli": 80, "boolq": 50, "rte": 70},
        fusion_steps=50,
        adapter_size=48,
        max_length=96,
        batch_size=16,
        max_train_samples=4000,
        max_eval_samples=200,
        eval_steps=25,
        snapshot_steps=10,
    ),
    "tiny": DemoProfile(
        target="rte",
        adapter_steps={"sst2": 6, "mnli": 4, "boolq": 3, "rte": 4},
        fusion_steps=4,
        adapter_size=16,
        max_length=48,
        batch_size=8,
        max_train_samples=200,
        max_eval_samples=48,
        eval_steps=None,
        snapshot_steps=2,
    ),
}


def demo_runs(profile: str = "classroom", data_dir: str | None = None) -> list[tuple[str, str, dict]]:
    """The ``(kind, name, config)`` of every run in the demo, in the order they must execute."""
    if profile not in PROFILES:
        raise ValueError(f"unknown demo profile {profile!r}; choose from {', '.join(PROFILES)}")
    p = PROFILES[profile]
    model = {"max_length": p.max_length}

    def training(steps: int, lr: float) -> dict:
        return {
            "max_steps": steps,
            "learning_rate": lr,
            "per_device_train_batch_size": p.batch_size,
            "max_train_samples": p.max_train_samples,
            "max_eval_samples": p.max_eval_samples,
            "eval_steps": p.eval_steps,
            "snapshot_steps": p.snapshot_steps,
            "logging_steps": max(1, min(10, steps // 4)),
        }

    runs: list[tuple[str, str, dict]] = []
    adapters = [*SOURCE_TASKS, p.target]
    for task in adapters:
        config = {
            "task": task,
            "adapter_config": {"adapter_size": p.adapter_size},
            "training_config": training(p.adapter_steps[task], 1e-3),
            "model_config": model,
            "data_dir": data_dir,
        }
        runs.append(("train_adapter", task, config))
    for method in p.methods:
        name = f"{p.target}-{method}"
        config = {
            "target_task": p.target,
            "adapters": adapters[::-1],  # target first: by convention the target's own adapter leads
            "name": name,
            "fusion_config": {"fusion_method": method},
            "training_config": training(p.fusion_steps, 5e-4),
            "model_config": model,
            "data_dir": data_dir,
        }
        runs.append(("train_fusion", name, config))
    return runs


def enqueue_demo(store, profile: str = "classroom", data_dir: str | None = None) -> list[int]:
    """Queue every demo run; returns their run ids in execution order."""
    return [store.enqueue(kind, name, config) for kind, name, config in demo_runs(profile, data_dir)]
