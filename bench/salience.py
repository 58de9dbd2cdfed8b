"""How long does "Which words decide" take: integrated gradients for the target adapter alone and its fusion?

The Playground's salience tab (:mod:`fusionlab.salience`) runs Captum's integrated gradients twice per input —
the target's own adapter, then the fusion over every adapter — with all steps of one model in one batch. The
issue's budget: both models within 1 s for a 40-token sentence on 2 CPU threads.

Measured on the pack's ``imdb-attention`` fusion (4 adapters, attention fusion, all-MiniLM-L6-v2) and a review
cut to exactly 40 tokens ([CLS] and [SEP] included):

* ``both (adaptive)``: :func:`fusionlab.salience.salience` as the page calls it (16 steps, doubled while the
  completeness error is above the tolerance) — the number the budget is about;
* ``alone, N steps`` / ``fusion, N steps``: one model at a fixed step count, with its completeness error, to
  show what a step costs and what it buys.

Median wall time of ``--repeats`` calls after one warm-up (medians: timing noise on a shared CPU only ever adds).
Run it on a quiet machine: a training in the background doubles every number.

Usage::

    python bench/salience.py [--repeats N] [--threads T] [--quick] [--out bench/results/salience.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import write_report

from fusionlab.dashboard.inference import Predictor
from fusionlab.pack import PACK_DIR, install_pack
from fusionlab.salience import integrated_gradients, salience, word_free_baseline
from fusionlab.workspace import Workspace

FUSION = "imdb-attention"
TOKENS = 40
REVIEW = (
    "I expected very little from this film, but the two leads carry it with warmth and timing, and even the "
    "slow middle stretch never quite loses the thread before an ending that earns its tears honestly."
)


def forty_tokens(predictor: Predictor) -> str:
    """The review cut to exactly :data:`TOKENS` tokens, special tokens included."""
    words = REVIEW.split()
    for n in range(len(words), 0, -1):
        text = " ".join(words[:n])
        if predictor.encode(text, None).kept_tokens <= TOKENS:
            return text
    raise SystemExit("the review is too short")


def median_seconds(call, repeats: int) -> tuple[float, object]:
    result = call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the page's adaptive call only (no fixed-step rows)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/salience.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as root:
        workspace = Workspace(root).ensure()
        install_pack(workspace, PACK_DIR)
        predictor = Predictor(workspace, FUSION)
        text = forty_tokens(predictor)
        encoded = predictor.encode(text, None)
        label = predictor.compare(text).fused.label
        target = predictor.info.label_names.index(label)
        tok = predictor.tokenizer
        adapters = list(predictor.info.adapters)
        rows = []
        seconds, both = median_seconds(
            lambda: salience(predictor.model, tok, encoded, predictor.info.target, adapters, target, label),
            args.repeats,
        )
        rows.append(
            {"what": "both (adaptive)", "steps": f"{both.single.steps}+{both.fused.steps}", "seconds": seconds,
             "error": max(abs(both.single.error), abs(both.fused.error))}
        )  # fmt: skip
        baseline = word_free_baseline(encoded.inputs["input_ids"], tok.all_special_ids, tok.pad_token_id)
        for steps in () if args.quick else (16, 32, 64):
            for name, names, force in (("alone", [predictor.info.target], False), ("fusion", adapters, True)):
                seconds, result = median_seconds(
                    lambda names=names, force=force, steps=steps: integrated_gradients(
                        predictor.model, encoded, baseline, target, names, force, steps=steps
                    ),
                    args.repeats,
                )
                rows.append({"what": f"{name}, {steps} steps", "steps": str(steps), "seconds": seconds,
                             "error": abs(result.error)})  # fmt: skip

    print(f"salience on {FUSION}, {encoded.kept_tokens} tokens, {args.threads} threads, median of {args.repeats}")
    print(f"{'what':<20} {'steps':>7} {'seconds':>8} {'|error|':>8}")
    for row in rows:
        print(f"{row['what']:<20} {row['steps']:>7} {row['seconds']:>8.3f} {row['error']:>8.4f}")
    report = {
        "fusion": FUSION,
        "tokens": encoded.kept_tokens,
        "threads": args.threads,
        "repeats": args.repeats,
        "budget_seconds": 1.0,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "rows": rows,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
