"""Token lengths of every task's examples with the default tokenizer: what each task's ``max_length`` covers.

The pack's recipe truncates each task at a ``max_length`` that keeps about 95-99 % of its examples whole
(longer sequences cost quadratic attention and, on a CPU, most of the time). This prints, per task and split,
the mean and the 50/90/95/99th percentiles of the tokenised length (special tokens included, pairs encoded
as one sequence) over a fixed sample, and writes JSON.

Usage: ``python bench/task_lengths.py [--tasks sst2,mnli,...] [--sample 2000] [--out bench/results/task_lengths.json]``
"""

from __future__ import annotations

import argparse

import numpy as np
from report import write_report

from fusionlab.base_model import load_tokenizer
from fusionlab.data import DEV_SUBSET_SEED, get_task, load_split
from fusionlab.pack.recipe import ADAPTERS


def lengths(task: str, split: str, sample: int, tokenizer) -> dict:
    spec = get_task(task)
    rows = load_split(spec, split, max_samples=sample, seed=DEV_SUBSET_SEED)
    encoded = tokenizer(*[list(rows[f]) for f in spec.text_fields], truncation=False, verbose=False)
    counts = np.array([len(ids) for ids in encoded["input_ids"]])
    p50, p90, p95, p99 = np.percentile(counts, [50, 90, 95, 99])
    return {
        "task": task,
        "split": split,
        "examples": len(counts),
        "mean": float(counts.mean()),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "max": int(counts.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(r.task for r in ADAPTERS))
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--out", default="bench/results/task_lengths.json")
    args = parser.parse_args()
    tokenizer = load_tokenizer()
    recipe = {r.task: r.max_length for r in ADAPTERS}
    rows = [lengths(t, s, args.sample, tokenizer) for t in args.tasks.split(",") for s in ("train", "validation")]
    print("| task | split | n | mean | p50 | p90 | p95 | p99 | max | pack max_length | kept whole |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cap = recipe.get(row["task"])
        print(
            f"| {row['task']} | {row['split']} | {row['examples']} | {row['mean']:.0f} | {row['p50']:.0f} | "
            f"{row['p90']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} | {row['max']} | {cap or '–'} | "
            f"{'≥ p99' if cap and cap >= row['p99'] else '≥ p95' if cap and cap >= row['p95'] else 'less'} |"
        )
    write_report(args.out, rows)


if __name__ == "__main__":
    main()
