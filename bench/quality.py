"""Single-task adapter vs AdapterFusion on the pack's adapters, over several seeds, on full dev splits.

The AdapterFusion paper (BERT-base, full training) reports, from single-task adapter to fusion:
RTE 71.0 -> 76.8, MRPC 85.2 -> 90.3, CB 86.1 -> 92.1. This script runs that comparison on the bundled
all-MiniLM-L6-v2 with the pretrained pack as the source adapters (stage 1, trained once, as in the paper). The
single-task adapter is retrained per seed with the pack's recipe (``--pack-target``: the pack's own for every
seed); per seed, fusions over [that adapter, the sources] are trained with the target's recipe (the pack
fusion's sources by default, ``--all-sources`` for every other pack adapter). Every choice during training is
made on the selection split carved from train; every saved checkpoint is scored afresh on the target's full dev
split with its 95 % interval, and each fusion's gain over the adapter with a paired interval on the same
examples ("within noise" where it includes 0).

Targets: rte, cb, mrpc and a low-resource sentiment target, imdb with the pack's few training reviews (where
the SST-2 adapter has something to give). Writes a Markdown table (mean ± std over seeds; the majority class, and
how many seeds' adapters scored beyond it: one that did not is named under the table) and JSON with every run.

Usage: ``python bench/quality.py [--tasks rte,cb,mrpc,imdb] [--seeds 1,2,3] [--methods attention,weighted,average]
[--out bench/results]`` (``--quick``: a few steps, to check the script runs). Resumable: every finished seed is
written to ``quality-<tasks>.json`` at once, and a rerun with the same settings and pack (the digest of its
weights is recorded) skips what is already there: add
seeds by rerunning with more, add methods by rerunning with more. A method added to a saved seed is paired with
that seed's adapter as it was measured: the adapter is loaded from the bench's workspace (or retrained with its
seed where the workspace is gone) and evaluated afresh, and the run stops if it does not predict the saved seed's
dev predictions (its score, for seeds saved before predictions were recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from report import paired_summary, write_report

from fusionlab import AdapterConfig, FusionTrainer
from fusionlab.budgets import NO_LIMIT, resolve_budget
from fusionlab.checkpoint import read_meta
from fusionlab.data import get_task
from fusionlab.fusion.registry import fusion_class, fusion_methods
from fusionlab.pack.card import encode_predictions
from fusionlab.pack.recipe import ADAPTERS, fusion_sources
from fusionlab.pack.store import PackError, install_pack, pack_dir, read_manifest, verify_installed_weights
from fusionlab.reported import LEARNED, Reported
from fusionlab.runspec import Budget
from fusionlab.uncertainty import Score
from fusionlab.workspace import Workspace

PAPER = {"rte": (71.0, 76.8), "mrpc": (85.2, 90.3), "cb": (86.1, 92.1)}
METHODS = fusion_methods()
"""The fusion methods the bench can train, in the order its table shows them."""


def sources_for(task: str, everything: bool) -> list[str]:
    """The source adapters fused with the target's own: every other pack adapter (the paper's setting), or by
    default the pack fusion's for that target (else the four large-data tasks), which costs a third of the time."""
    if everything:
        return [r.task for r in ADAPTERS if r.task != task]
    return fusion_sources(task)


def budget(task: str, stage: str, seed: int, args: argparse.Namespace) -> Budget:
    """The pack's recipe for the stage (the ``recipe`` profile: epochs, early stopping on the selection split),
    with this seed; ``--quick``: three steps on a few short examples."""
    if args.quick:
        return resolve_budget(task, stage, seed=seed, steps=3, max_train_samples=32, max_length=64,
                              max_eval_samples=16, eval_steps=NO_LIMIT, snapshot_steps=NO_LIMIT)  # fmt: skip
    return resolve_budget(task, stage, seed=seed, snapshot_steps=NO_LIMIT)


def trainer_for(workspace: Workspace, plan: Budget, args: argparse.Namespace) -> FusionTrainer:
    return FusionTrainer(plan.model_config(), plan.training_config(), workspace, args.data_dir)


def target_adapter(workspace: Workspace, task: str, seed: int, args: argparse.Namespace) -> tuple[str, object, float]:
    """The single-task adapter, retrained with the pack's recipe and this seed (the paper's single-task baseline
    varies with its seed too), or the pack's own (``--pack-target``). Returns its name, its fresh evaluation on
    the full dev split, and the seconds it took."""
    trainer = trainer_for(workspace, budget(task, "adapter", seed, args), args)
    if args.pack_target:
        return task, trainer.evaluate(workspace.adapter_dir(task)), 0.0
    start = time.monotonic()
    single = trainer.train_adapter(task, AdapterConfig(task_name=task), name=f"{task}-s{seed}")
    return single.name, trainer.evaluate(single.path), time.monotonic() - start


def majority_of(workspace: Workspace, task: str) -> float:
    """The majority class's main-metric score (%) on the task's full dev split, as the pack's adapter recorded it
    (every seed is scored on that same split). An adapter at or below it did not learn, and a fusion's gain over
    it is then not transfer over a trained adapter: the table says so."""
    extra = read_meta(workspace.adapter_dir(task))["extra"]
    return 100 * extra["majority_baseline"][extra["main_metric"]]


def interval(score) -> dict:
    return {"value": 100 * score.value, "low": 100 * score.low, "high": 100 * score.high, "n": score.examples}


def saved_adapter(workspace: Workspace, task: str, row: dict, args: argparse.Namespace) -> object:
    """The fresh evaluation of the adapter a saved seed was measured with, so that a method added later is paired
    with the same adapter: loaded from the workspace, or retrained with the seed's recipe where it is gone (a seed
    reproduces exactly on CPU). Refused if its dev predictions are not the saved ones (two adapters can tie on a
    score, on 56 examples easily; a row saved before predictions were recorded is matched on its score): the
    pairing would be with another adapter."""
    name, seed = row["adapters"][0], row["seed"]
    if name in workspace.list_adapters():
        alone = trainer_for(workspace, budget(task, "adapter", seed, args), args).evaluate(workspace.adapter_dir(name))
    else:
        print(f"{task} seed {seed}: {name} is not in {workspace.root}, training it again", flush=True)
        name, alone, _ = target_adapter(workspace, task, seed, args)
    fresh, saved = interval(alone.score(get_task(task).main_metric)), row["single"]
    predictions = encode_predictions(alone.prediction_ids)
    if "single_predictions" in row:
        same = predictions == row["single_predictions"]
    else:
        same = abs(fresh["value"] - saved["value"]) < 1e-6 and fresh["n"] == saved["n"]
    if not same:
        raise SystemExit(
            f"{task} seed {seed}: the adapter {name} predicts other dev examples than the saved seed's (it scores "
            f"{fresh['value']:.2f} on {fresh['n']}, {saved['value']:.2f} on {saved['n']} was saved): a fusion added "
            "now would not be compared with the same adapter; pass another --out to measure this seed afresh"
        )
    row["single_predictions"] = predictions
    return alone


def run_seed(
    workspace: Workspace, task: str, seed: int, methods: list[str], args: argparse.Namespace, row: dict | None = None
) -> dict:
    """The target adapter and one fusion per method for one seed: fresh full-dev scores with their intervals,
    each fusion's paired difference from the adapter on the same examples, and the seconds. Given a saved
    ``row``, only its missing methods are trained, against the adapter it was measured with."""
    metric = get_task(task).main_metric
    if row is None:
        own, alone, seconds = target_adapter(workspace, task, seed, args)
        row = {
            "single": interval(alone.score(metric)),
            "single_predictions": encode_predictions(alone.prediction_ids),
            "seconds": {"single": seconds},
            "adapters": [own, *sources_for(task, args.all_sources)],
        }
    else:
        alone = saved_adapter(workspace, task, row, args)
    for method in methods:
        trainer = trainer_for(workspace, budget(task, "fusion", seed, args), args)
        start = time.monotonic()
        fused = trainer.train_fusion(task, row["adapters"], method=method, name=f"{task}-s{seed}-{method}")
        evaluation = trainer.evaluate(fused.path)
        row[method] = interval(evaluation.score(metric))
        difference = evaluation.difference(alone, metric)
        row[f"{method} - single"] = {**interval(difference), "verdict": difference.verdict()}
        row["seconds"][method] = time.monotonic() - start
        row.setdefault("fusion_stats", {})[method] = fused.evaluation.fusion_stats.to_dict()
    return row


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def paired(runs: list[dict], method: str) -> str:
    """Mean paired gain over seeds, and how many seeds' paired 95 % intervals exclude 0 (better / worse)."""
    gains = [r[f"{method} - single"] for r in runs if f"{method} - single" in r]
    return paired_summary([g["value"] for g in gains], [g["verdict"] for g in gains]) + coverage(gains, runs)


def untrained(runs: list[dict], majority: float) -> list[int]:
    """The seeds whose single-task adapter is not beyond the majority class, judged on its interval as every
    view judges it (:meth:`Reported.learned`): a point score above the majority whose interval reaches it has not
    shown that it learned."""
    return [r["seed"] for r in runs if _learned(r["single"], majority) != LEARNED]


def _learned(score: dict, majority: float) -> str | None:
    interval = Score(metric="main", value=score["value"], low=score["low"], high=score["high"], examples=score["n"])
    return Reported(baseline=majority, interval=interval).learned()


def coverage(measured: list, runs: list[dict]) -> str:
    """How many seeds a cell covers, where that is not every seed (a method added to a saved result later may
    cover fewer)."""
    return f" ({len(measured)} of {len(runs)} seeds)" if 0 < len(measured) < len(runs) else ""


def per_seed(runs: list[dict], method: str) -> str:
    """A method's mean ± std over the seeds that measured it."""
    values = [r[method]["value"] for r in runs if method in r]
    return fmt(values) + coverage(values, runs)


def table(rows: dict[str, list[dict]], methods: list[str], seeds: str, majorities: dict[str, float]) -> str:
    head = " | ".join(f"{m} fusion" for m in methods)
    gains = " | ".join(f"Δ {m} (paired)" for m in methods)
    lines = [
        f"Single-task adapter vs fusion over the target's adapter and the pack's source adapters, all-MiniLM-L6-v2, "
        f"seeds {seeds} (adapter and fusion both retrained per seed unless --pack-target), main metric (%) of the "
        f"saved weights on the full dev split, selected on the selection split carved from train (mean ± std over "
        f"seeds); Δ: the fusion's paired gain over the adapter on the same examples, with how many seeds' paired "
        f"95 % intervals exclude 0:",
        "",
        f"| task | metric | n dev | majority class | single adapter | adapters beyond majority | {head} | {gains} | "
        f"paper (BERT-base) single → fusion |",
        "|---|---|---|---|---|---|" + "---|" * (2 * len(methods)) + "---|",
    ]
    notes = []
    for task, runs in rows.items():
        single = [r["single"]["value"] for r in runs]
        cells = [per_seed(runs, m) for m in methods] + [paired(runs, m) for m in methods]
        paper = PAPER.get(task)
        majority = majorities[task]
        failed = untrained(runs, majority)
        lines.append(
            f"| {task} | {get_task(task).main_metric} | {runs[0]['single']['n']} | {majority:.1f} | {fmt(single)} | "
            f"{len(runs) - len(failed)} of {len(runs)} | {' | '.join(cells)} | "
            f"{f'{paper[0]} → {paper[1]}' if paper else '–'} |"
        )
        if failed:
            notes.append(
                f"{task}: the adapter of seed {', '.join(map(str, failed))} is not beyond the majority class "
                f"({majority:.1f}) on its interval: it did not learn, so a fusion's gain over it there is not "
                f"transfer over a trained adapter."
            )
    return "\n".join(lines + (["", *notes] if notes else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rte,cb,mrpc,imdb")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--methods", default="attention,weighted,average")
    parser.add_argument("--data-dir", default=os.environ.get("FUSIONLAB_DATA_DIR"))
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--pack-target", action="store_true", help="use the pack's target adapter for every seed")
    parser.add_argument("--all-sources", action="store_true", help="fuse every pack adapter (the paper's setting)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the script runs")
    args = parser.parse_args()
    args.pack = pack_weights()
    args.learning_rate_scales = {m: dict(fusion_class(m).learning_rate_scales) for m in METHODS}
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise SystemExit(f"--methods: {', '.join(unknown) or 'none'} given; choose among {', '.join(METHODS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out / "quality-workspace").ensure()
    if pack_dir() is not None:
        install_pack(workspace)
    needed = {a for task in args.tasks.split(",") for a in [task, *sources_for(task, args.all_sources)]}
    missing = sorted(needed - set(workspace.list_adapters()))
    if missing:
        raise SystemExit(f"{workspace.root} lacks the adapters {missing}: build or install the pretrained pack")
    try:
        verify_installed_weights(workspace, sorted(needed))
    except PackError as err:
        raise SystemExit(f"{workspace.root}: {err}; move the workspace aside to install the pack afresh") from err
    tasks = args.tasks.split(",")
    path = out / f"quality-{'-'.join(tasks)}.json"
    rows, seconds = resume(path, args)
    for task in tasks:
        sources = sources_for(task, args.all_sources)
        if any(r["adapters"][1:] != sources for r in rows.get(task, [])):
            raise SystemExit(f"{path} fused {task} with other sources than {sources}: move it or pass another --out")
        for seed in (int(s) for s in args.seeds.split(",")):
            saved = next((r for r in rows.get(task, []) if r["seed"] == seed), None)
            to_train = [m for m in methods if saved is None or m not in saved]
            if not to_train:
                print(f"{task} seed {seed}: already in {path}, skipped", flush=True)
                continue
            started = time.monotonic()
            row = run_seed(workspace, task, seed, to_train, args, saved)
            if saved is None:
                rows.setdefault(task, []).append({"seed": seed, **row})
            seconds += time.monotonic() - started
            save(path, args, rows, seconds)  # after every seed: an interrupted run resumes here
            scores = ", ".join(f"{k} {v['value']:.1f}" for k, v in row.items() if isinstance(v, dict) and "value" in v)
            print(f"{task} seed {seed}: {scores}", flush=True)
    seeds = sorted({r["seed"] for runs in rows.values() for r in runs})
    majorities = {task: majority_of(workspace, task) for task in rows}
    text = table(rows, measured_methods(rows), ",".join(map(str, seeds)), majorities)
    print("\n" + text)
    path.with_suffix(".md").write_text(text + "\n", encoding="utf-8")


SETTINGS = ("pack_target", "all_sources", "quick", "pack", "learning_rate_scales")
"""What must match for a rerun to add seeds or methods to a saved result rather than mix two different
measurements."""


def pack_weights() -> str | None:
    """The digest of the pack's weights the sources come from (None without a pack), recorded with the result so
    that a rerun on another pack is refused rather than mixed in, and a reader can tell which weights were fused."""
    root = pack_dir()
    return read_manifest(root).weights_digest() if root is not None else None


def resume(path: Path, args: argparse.Namespace) -> tuple[dict[str, list[dict]], float]:
    """The seeds already measured in ``path`` (none if absent), refusing a file written with other settings."""
    if not path.is_file():
        return {}, 0.0
    saved = json.loads(path.read_text(encoding="utf-8"))
    for key, value in legacy_settings(path, args, saved["args"]).items():
        print(f"{path} was saved before it recorded {key}: recording {value}", flush=True)
        saved["args"][key] = value
    mismatched = [k for k in SETTINGS if saved["args"].get(k) != getattr(args, k)]
    if mismatched:
        raise SystemExit(f"{path} was measured with other {', '.join(mismatched)}: move it or pass another --out")
    return saved["rows"], saved.get("seconds", 0.0)


CONVERGED_PACK = "636335a5c391a49b"
"""The weights digest of the converged pack (7df73e8), which every result saved before the bench recorded its
settings was measured on."""


def legacy_settings(path: Path, args: argparse.Namespace, saved: dict) -> dict:
    """The settings a result saved before ``pack`` and ``learning_rate_scales`` were recorded was measured with:
    the converged pack, and today's scales (its weighted rows were all measured after weighted fusion's scale came
    in; those measured before were taken out). Nothing is assumed with another pack in use: refused."""
    if "pack" not in saved and args.pack != CONVERGED_PACK:
        raise SystemExit(
            f"{path} does not say which pack it was measured on (it predates the record; the converged pack "
            f"{CONVERGED_PACK}, then), and the pack in use is {args.pack}: move it or pass another --out"
        )
    known = {"pack": CONVERGED_PACK}
    if saved.get("pack", CONVERGED_PACK) == CONVERGED_PACK:
        known["learning_rate_scales"] = args.learning_rate_scales
    return {k: v for k, v in known.items() if k not in saved}


def measured_methods(rows: dict[str, list[dict]]) -> list[str]:
    """The fusion methods some saved seed has, in the table's order (runs may have added them one at a time)."""
    return [m for m in METHODS if any(m in r for runs in rows.values() for r in runs)]


def save(path: Path, args: argparse.Namespace, rows: dict[str, list[dict]], seconds: float) -> None:
    """The rows, with ``methods`` saying what they hold rather than what the last run was asked for."""
    settings = {**vars(args), "methods": ",".join(measured_methods(rows))}
    write_report(path, {"args": settings, "rows": rows, "seconds": seconds}, announce=False)


if __name__ == "__main__":
    main()
