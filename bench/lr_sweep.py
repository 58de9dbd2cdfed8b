"""A small learning-rate sweep per task for the converged pack, chosen on the selection split, never on dev.

For each task and learning rate, one adapter is trained with the candidate converged recipe
(``fusionlab.pack.recipe.ADAPTERS``: epochs with early stopping on the selection split carved from
train); its saved weights are then scored afresh on the full dev split, with a 95 % bootstrap interval. The
learning rate a task gets is the one with the best *selection* score; the dev column is shown only so a reader
can see what the choice cost or gained, and plays no part in it.

Resumable: every finished (task, learning rate) is written to the JSON at once and skipped on a rerun, so a
long sweep can run in the background (``nohup``), stop, and continue.

Usage: ``python bench/lr_sweep.py [--tasks rte,cb] [--lrs 1e-4,3e-4,1e-3] [--out bench/results/lr_sweep.json]
[--max-epochs N | --epochs N]`` (``--max-epochs`` caps a recipe's epochs for a quicker look; ``--epochs`` sets
them, to see whether a curve that was still rising at the recipe's cap goes on rising). A row is identified by its whole
recipe: the same task and rate at other epochs is another row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from report import write_report

from fusionlab import FusionTrainer
from fusionlab.data import get_task
from fusionlab.metrics import majority_baseline
from fusionlab.pack.recipe import ADAPTERS, AdapterRecipe
from fusionlab.training.loop import Reporter


class _Progress(Reporter):
    """Prints every selection evaluation and the loss, so a background sweep's log shows how far it is."""

    def on_log(self, step: int, values: dict[str, float]) -> None:
        shown = {k: round(v, 4) for k, v in values.items() if k.startswith("eval_") or k == "loss"}
        if shown:
            print(f"  step {step}: {shown}", flush=True)


def sweep_recipe(task: str, lr: float, max_epochs: float | None, epochs: float | None) -> AdapterRecipe:
    """The pack's recipe for ``task`` with only the learning rate (and, if asked, the epochs) changed."""
    recipe = dataclasses.replace(next(r for r in ADAPTERS if r.task == task), learning_rate=lr)
    if epochs is not None:
        return dataclasses.replace(recipe, epochs=epochs)
    if max_epochs is not None:
        return dataclasses.replace(recipe, epochs=min(recipe.epochs, max_epochs))
    return recipe


def run_one(recipe: AdapterRecipe) -> dict:
    task, lr = recipe.task, recipe.learning_rate
    metric = get_task(task).main_metric
    with tempfile.TemporaryDirectory(prefix="fusionlab-sweep-") as tmp:
        trainer = FusionTrainer(model_config=recipe.model_config(), workspace=tmp, reporter=_Progress())
        start = time.perf_counter()
        result = trainer.train_adapter(task, recipe.adapter_config(), training_config=recipe.training_config())
        seconds = time.perf_counter() - start
        fresh = trainer.evaluate(result.path)  # the saved weights, loaded back, on the full dev split
    score = fresh.score(metric)
    curve = [
        {"step": row["step"], "selection": row[f"eval_{metric}"]} for row in result.history if f"eval_{metric}" in row
    ]
    losses = [{"step": row["step"], "loss": row["loss"]} for row in result.history if "loss" in row]
    return {
        "task": task,
        "learning_rate": lr,
        "recipe": recipe.to_dict(),
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "selection_best": result.selection_metrics.get(metric),
        "selection_examples": result.selection.selection_examples if result.selection else None,
        "dev": score.to_dict(),
        # on the examples the dev column scores: the training's own baseline is on its in-training subset
        "majority": majority_baseline(fresh.label_ids, get_task(task)).get(metric),
        "seconds": round(seconds, 1),
        "curve": curve,
        "loss": losses,
    }


def _same_run(row: dict, recipe: AdapterRecipe) -> bool:
    """A row is the run of exactly this recipe (rate, epochs and every other field alike)."""
    return row["recipe"] == recipe.to_dict()


def table(rows: list[dict]) -> str:
    lines = [
        "| task | lr | epochs | steps (best) | selection (n) | dev, saved weights [95 % CI] (n) | majority | chosen | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    chosen = {}
    for row in rows:
        best = chosen.get(row["task"])
        if best is None or (row["selection_best"] or -1) > (best["selection_best"] or -1):
            chosen[row["task"]] = row
    for row in rows:
        dev = row["dev"]
        mark = "◀" if chosen[row["task"]] is row else ""
        lines.append(
            f"| {row['task']} | {row['learning_rate']:g} | {row['recipe']['epochs']:g} | {row['steps']} ({row['best_step']}) | "
            f"{row['selection_best']:.3f} ({row['selection_examples']}) | {dev['value']:.3f} "
            f"[{dev['low']:.3f}, {dev['high']:.3f}] ({dev['examples']}) | {row['majority']:.3f} | {mark} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rte,cb,mrpc")
    parser.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    epochs = parser.add_mutually_exclusive_group()
    epochs.add_argument("--max-epochs", type=float)
    epochs.add_argument("--epochs", type=float)
    parser.add_argument("--out", default="bench/results/lr_sweep.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = json.loads(out.read_text(encoding="utf-8"))["runs"] if out.is_file() else []
    for task in args.tasks.split(","):
        for lr in (float(x) for x in args.lrs.split(",")):
            recipe = sweep_recipe(task, lr, args.max_epochs, args.epochs)
            if any(_same_run(r, recipe) for r in rows):
                continue
            print(f"{task} lr={lr:g}, {recipe.epochs:g} epochs: training", flush=True)
            rows.append(run_one(recipe))
            write_report(out, {"runs": rows}, announce=False)  # after every run: a rerun resumes here
            print(table([r for r in rows if r["task"] == task]), flush=True)
    print(table(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
