"""Composition methods side by side: fusion, merging, a gradient-free search, AdapterDrop and pruning.

For each target task and seed, ``fusionlab.composition.compare_methods`` over the pack's adapters (the target's
own and the sources the pack's fusions use): every method gets the same training budget and is scored,
from its saved checkpoint loaded afresh, on the task's fixed dev subset; latencies are timed round-robin in one
process, relative to the plain encoder. Each (task, seed) is saved as soon as it finishes
(``<workspace>/comparisons/<task>-s<seed>/comparison.json``), and a rerun skips those already there, so a long
run can be stopped and resumed. Prints a Markdown table (mean ± std over seeds) and writes JSON.

``--retime`` times the saved comparisons again from their checkpoints (scores untouched): latencies measured
while other work shared the machine are not worth reporting. ``--report-only`` prints what is saved so far.
``--remeasure fusion:weighted`` trains and scores again only the named methods of the saved comparisons (every
other row kept, everything timed again): for a method whose training changed after they ran. A seed whose fusion
row already has its method's learning-rate scales (what changed for weighted fusion) is skipped, so a stopped
run resumes; other methods are remeasured every time they are named. ``--rescore-curves`` scores the saved
AdapterDrop and pruning curves again from their attention fusion, so that each point has its interval and its
paired difference from the full fusion (points saved before they recorded them; latencies kept).

The training budget (steps, sequence length, batch size) is by default the pack's: its fusion recipe for the
target where it has one (RTE: 4 epochs at 192 tokens), else the target adapter's (CB: 30 epochs at 256), turned into
a fixed number of steps on the carved train split, so that every method gets what a pack fusion got; ``--steps``
etc. override it for every task. The adapters are the target's own and the pack fusion's sources
(:func:`fusionlab.pack.recipe.fusion_sources`).

Usage: ``python bench/compare_methods.py [--tasks rte,cb] [--seeds 1,2,3] [--steps N] [--workspace DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from report import paired_summary, write_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionlab.budgets import COMPARE, COMPARE_LATENCY_REPEATS, COMPARE_SEARCH_EVALUATIONS  # noqa: E402
from fusionlab.composition.compare import RESULT_FILE, compare_methods, remeasure, rescore_curves, retime  # noqa: E402
from fusionlab.composition.results import CompareOptions, Comparison  # noqa: E402
from fusionlab.composition.session import comparison_dir  # noqa: E402
from fusionlab.data import get_task, load_split, resolve_data_dir  # noqa: E402
from fusionlab.fusion.registry import fusion_class  # noqa: E402
from fusionlab.pack.recipe import StageRecipe, adapter_recipe, fusion_recipe, fusion_sources  # noqa: E402
from fusionlab.uncertainty import Difference  # noqa: E402
from fusionlab.workspace import Workspace  # noqa: E402

PAPER = {"rte": "71.0 → 76.8", "cb": "86.1 → 92.1"}
"""AdapterFusion paper, Table 1 (BERT-base, full training): single-task adapter → attention fusion (accuracy)."""


def budget_recipe(task: str) -> StageRecipe:
    """The pack recipe whose budget every method gets: the pack's fusion for ``task`` if it has one (what a fusion
    over these adapters was given), else the target adapter's (what the adapter it is compared with was given)."""
    return fusion_recipe(task) or adapter_recipe(task)


def options_for(task: str, seed: int, args: argparse.Namespace) -> CompareOptions:
    """One comparison's options over the adapters the pack fuses for ``task`` (its own first): the pack recipe's
    budget as a fixed number of steps (its epochs on the task's carved train split; a comparison selects nothing,
    it evaluates once at the end) unless the command line overrides it."""
    recipe = budget_recipe(task)
    steps = args.steps
    if steps is None:
        steps = recipe.steps_for(len(load_split(get_task(task), "train", resolve_data_dir(args.data_dir))))
    return CompareOptions(
        target=task,
        adapters=[task, *fusion_sources(task)],
        seed=seed,
        max_steps=steps,
        max_length=args.max_length or recipe.max_length,
        batch_size=args.batch_size or recipe.batch_size,
        max_train_samples=recipe.max_train_samples,  # IMDb: the pack's 100 reviews, as its steps assume
        learning_rate=args.learning_rate,
        max_eval_samples=args.max_eval_samples,
        search_evaluations=args.search_evaluations,
        latency_repeats=args.latency_repeats,
    )


def run_or_load(
    workspace: Workspace,
    options: CompareOptions,
    data_dir: str | None,
    report_only: bool = False,
    replace: bool = False,
) -> Comparison | None:
    """The saved comparison for ``options`` if one with exactly these options exists, else a new run (or None
    with ``report_only``: a report of what a still-running bench has finished). A comparison saved with other
    options is never overwritten silently (it lives in the same folder): refused, naming what differs, unless
    ``replace``."""
    saved = comparison_dir(workspace, options) / RESULT_FILE
    if saved.is_file():
        comparison = Comparison.load(saved)
        if comparison.options == options:
            print(f"{options.slug}: already measured ({saved})", flush=True)
            return comparison
        if not replace:
            old, new = comparison.options.to_dict(), options.to_dict()
            differ = ", ".join(f"{k} {old.get(k)!r} → {v!r}" for k, v in new.items() if old.get(k) != v)
            raise SystemExit(
                f"{saved} was measured with other options ({differ}): pass another --workspace, or --replace "
                "to measure it again in its place"
            )
    if report_only:
        return None
    start = time.perf_counter()
    comparison = compare_methods(options, workspace, data_dir, progress=lambda m: print(f"  {m}", flush=True))
    print(f"{options.slug}: {time.perf_counter() - start:.0f} s", flush=True)
    return comparison


def stale_methods(comparison: Comparison, names: list[str]) -> list[str]:
    """Which of ``names`` to train again in ``comparison``: every method it lacks or that is not a fusion, and each
    fusion whose row was trained with other learning-rate scales than its class declares now (the one fact about
    a method's training a comparison records; a rerun after a stop skips the seeds already done)."""

    def current(name: str) -> bool:
        saved = comparison.result(name)
        family, _, method = name.partition(":")
        if saved is None or family != "fusion":
            return False
        now = dict(fusion_class(method).scaled_parameters().values())  # label -> scale, as the run recorded it
        return saved.details.get("learning_rate_scales", {}) == now

    return [name for name in names if not current(name)]


def remeasured(workspace: Workspace, options: CompareOptions, names: list[str], data_dir: str | None) -> Comparison:
    """The saved comparison for ``options`` with ``names`` trained and scored again where they are stale."""
    comparison = run_or_load(workspace, options, data_dir, report_only=True)
    if comparison is None:
        raise SystemExit(f"{options.slug}: not measured yet; run it before remeasuring methods of it")
    stale = stale_methods(comparison, names)
    if not stale:
        print(f"{options.slug}: {', '.join(names)} already trained as they are now", flush=True)
        return comparison
    start = time.perf_counter()
    comparison = remeasure(options, workspace, stale, data_dir, progress=lambda m: print(f"  {m}", flush=True))
    print(f"{options.slug}: remeasured {', '.join(stale)} in {time.perf_counter() - start:.0f} s", flush=True)
    return comparison


def needs_intervals(comparison: Comparison) -> bool:
    """Whether a saved comparison's curve points lack their intervals (saved before points recorded them)."""
    return any(p.interval is None for p in [*comparison.adapter_drop, *comparison.pruning])


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def paired(differences: list[dict]) -> str:
    """The mean paired gain over the target's own adapter, in points, and how many seeds' intervals exclude 0."""
    verdicts = [Difference.from_dict(d).verdict() for d in differences]
    return paired_summary([100 * d["value"] for d in differences], verdicts)


def refuse_mixed_scales(task: str, method: str, results: list) -> None:
    """Seeds of one method trained with different learning-rate scales (weighted fusion before and after its
    logits got theirs) are two methods, not one: refused rather than averaged."""
    scales = {json.dumps(r.details.get("learning_rate_scales", {}), sort_keys=True): c.options.seed for c, r in results}
    if len(scales) > 1:
        seen = "; ".join(f"seed {seed}: {s}" for s, seed in scales.items())
        raise SystemExit(f"{task} {method}: seeds trained with different learning-rate scales ({seen}): "
                         "measure every seed in a fresh --workspace")  # fmt: skip


def summarise(comparisons: dict[str, list[Comparison]]) -> dict:
    """Per task and method: the dev metric per seed, its mean, latency ratios, parameters and what each method
    chose (the search's coefficients); the AdapterDrop and pruning curves, with the adapters left at each step."""
    summary: dict = {}
    for task, runs in comparisons.items():
        methods = [r.method for r in runs[0].results]
        rows = {}
        for method in methods:
            results = [(c, c.result(method)) for c in runs if c.result(method) is not None]
            refuse_mixed_scales(task, method, results)
            rows[method] = {
                "family": results[0][1].family,
                "values": [r.value for _, r in results],
                "latency_ratio": statistics.median(c.latency_ratio(r) for c, r in results),
                "inference_params": results[0][1].inference_params,
                "trained_params": results[0][1].trained_params,
                "train_seconds": statistics.mean(r.train_seconds for _, r in results),
                "fresh_equals_in_training": all(r.agrees_with_training for _, r in results),
                "intervals": [r.interval.to_dict() if r.interval else None for _, r in results],
                "vs_adapter": [r.vs_adapter.to_dict() for _, r in results if r.vs_adapter is not None],
                "details": [r.details for _, r in results],  # per seed: e.g. the LoraHub search's coefficients
            }
        drop = [[(p.dropped_layers, p.metric, c.latency_ratio(p)) for p in c.adapter_drop] for c in runs]
        prune = [[(len(p.adapters), p.metric, c.latency_ratio(p)) for p in c.pruning] for c in runs]
        summary[task] = {
            "seeds": [c.options.seed for c in runs],
            "budget": {k: getattr(runs[0].options, k) for k in ("max_steps", "max_length", "batch_size")},
            "dev_examples": runs[0].dev_examples,
            "main_metric": runs[0].results[0].main_metric,
            "majority_baseline": runs[0].majority_baseline,
            "methods": rows,
            "adapter_drop": drop,
            "pruning": prune,
            "pruning_adapters": [[p.adapters for p in c.pruning] for c in runs],  # per seed: which were left
            # per seed and point: minus the full fusion, paired (None: the full fusion, or saved without it)
            "adapter_drop_vs_full": [[_difference(p) for p in c.adapter_drop] for c in runs],
            "pruning_vs_full": [[_difference(p) for p in c.pruning] for c in runs],
        }
    return summary


def _difference(point) -> dict | None:
    return point.vs_full.to_dict() if point.vs_full is not None else None


def print_tables(summary: dict) -> None:
    for task, data in summary.items():
        seeds = ", ".join(str(s) for s in data["seeds"])
        print(
            f"\n{task}: dev {data['main_metric']} on {data['dev_examples']} examples, seeds {seeds}; "
            f"majority class {100 * data['majority_baseline']:.1f}; paper (BERT-base) {PAPER.get(task, '–')}; "
            f"budget {data['budget']['max_steps']} steps × {data['budget']['batch_size']} at "
            f"{data['budget']['max_length']} tokens"
        )
        print(
            "| method | dev (mean ± std) | vs the adapter, paired (per seed) | latency vs encoder | "
            "params at inference | trained params | training (s) |"
        )
        print("|---|---|---|---|---|---|---|")
        for method, row in data["methods"].items():
            seconds = f"{row['train_seconds']:.0f}" if row["trained_params"] else "–"  # trained nothing: no time
            print(
                f"| {method} | {mean_std(row['values'])} | {paired(row['vs_adapter'])} | {row['latency_ratio']:.2f}× | "
                f"{row['inference_params']:,} | {row['trained_params']:,} | {seconds} |"
            )
        for name, curve in (("AdapterDrop (k layers dropped)", "adapter_drop"), ("pruning (adapters left)", "pruning")):
            points = list(zip(*data[curve]))  # per point, one tuple per seed
            cells = [
                f"{p[0][0]}: {mean_std([s[1] for s in p])} @ {statistics.median(s[2] for s in p):.2f}×" for p in points
            ]
            print(f"{name}: " + "; ".join(cells))
            for i, point in enumerate(zip(*data.get(f"{curve}_vs_full", []))):  # one paired difference per seed
                if all(d is not None for d in point):
                    print(f"  {data[curve][0][i][0]}: − the full fusion, paired: {paired(list(point))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rte,cb")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--steps", type=int, default=None, help="default: the pack recipe's, per task")
    parser.add_argument("--max-length", type=int, default=None, help="default: the pack recipe's, per task")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the pack recipe's, per task")
    parser.add_argument("--learning-rate", type=float, default=COMPARE.learning_rate)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--search-evaluations", type=int, default=COMPARE_SEARCH_EVALUATIONS)
    parser.add_argument("--latency-repeats", type=int, default=COMPARE_LATENCY_REPEATS)
    parser.add_argument("--workspace", default=os.environ.get("FUSIONLAB_HOME", "bench/results/compare-workspace"))
    parser.add_argument("--data-dir", default=os.environ.get("FUSIONLAB_DATA_DIR"))
    parser.add_argument("--out", default="bench/results/compare_methods.json")
    parser.add_argument("--report-only", action="store_true", help="summarise what is saved; run nothing")
    parser.add_argument(
        "--replace", action="store_true", help="measure again a comparison saved with other options (it is lost)"
    )
    parser.add_argument(
        "--retime", action="store_true", help="time the saved comparisons again (on a quiet machine); scores kept"
    )
    parser.add_argument(
        "--rescore-curves",
        action="store_true",
        help="score the saved AdapterDrop and pruning curves again with their intervals (points saved without)",
    )
    parser.add_argument(
        "--remeasure",
        default="",
        help="methods to train and score again in the saved comparisons, e.g. fusion:weighted",
    )
    args = parser.parse_args()
    workspace = Workspace(args.workspace).ensure()
    tasks = args.tasks.split(",")
    comparisons: dict[str, list[Comparison]] = {task: [] for task in tasks}
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: a stopped run has every task's first seeds
        for task in tasks:
            options = options_for(task, seed, args)
            if args.remeasure:
                names = [m.strip() for m in args.remeasure.split(",") if m.strip()]
                comparisons[task].append(remeasured(workspace, options, names, args.data_dir))
                continue
            only_saved = args.report_only or args.retime or args.rescore_curves
            found = run_or_load(workspace, options, args.data_dir, only_saved, args.replace)
            if found is not None and args.rescore_curves and needs_intervals(found):
                print(f"{options.slug}: scoring its curves again, with intervals", flush=True)
                found = rescore_curves(workspace, options, args.data_dir)
            if found is not None and args.retime:
                print(f"{options.slug}: timing again", flush=True)
                found = retime(workspace, options, args.data_dir)
            if found is not None:
                comparisons[task].append(found)
    summary = summarise({task: runs for task, runs in comparisons.items() if runs})
    if not summary:
        raise SystemExit(f"nothing measured yet in {workspace.root}: {args.out} left as it was")
    print_tables(summary)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    write_report(args.out, {"machine": machine, "args": vars(args), "summary": summary})


if __name__ == "__main__":
    main()
