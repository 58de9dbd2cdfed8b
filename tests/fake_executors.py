"""Stand-in executors for the worker tests: fast, deterministic, and with no torch.

The tests register them through ``FUSIONLAB_EXECUTORS`` and put ``tests/`` on ``PYTHONPATH``, so a real worker
subprocess imports them exactly as it would import the training jobs.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fusionlab.run_context import RunCancelled, RunContext
from fusionlab.runstore import Run
from fusionlab.workspace import CHECKPOINT_MARKER, atomic_directory

Result = tuple[dict[str, Any], dict[str, Any]]


def count_steps(run: Run, ctx: RunContext) -> Result:
    """A fake training loop. Config: ``steps``, ``delay`` (seconds per step), ``snapshot_every``."""
    steps = run.config.get("steps", 5)
    delay = run.config.get("delay", 0.0)
    snapshot_every = run.config.get("snapshot_every", 0)
    for step in range(1, steps + 1):
        if ctx.cancelled():
            raise RunCancelled(f"stopped at step {step}")
        ctx.log_metrics(step, {"loss": 1.0 / step, "learning_rate": 1e-4})
        if snapshot_every and step % snapshot_every == 0:
            ctx.add_snapshot(step, {"layers": [[0.25, 0.75]], "adapter_names": ["a", "b"]})
        ctx.set_progress(step / steps, f"step {step}/{steps}")
        time.sleep(delay)
    return {"loss": 1.0 / steps, "steps": steps}, {"device": ctx.device}


def slow_checkpoint(run: Run, ctx: RunContext) -> Result:
    """Write an adapter checkpoint through ``atomic_directory`` and dawdle halfway, so a test can kill it.

    Config: ``hold_seconds``, how long to wait between the first file and the marker file.
    """
    final = ctx.workspace.adapter_dir(run.name)
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"\0" * 1024)
        ctx.set_progress(0.5, "writing checkpoint")
        deadline = time.monotonic() + run.config.get("hold_seconds", 30.0)
        while time.monotonic() < deadline:
            ctx.raise_if_cancelled()
            time.sleep(0.05)
        (tmp / CHECKPOINT_MARKER).write_text("{}", encoding="utf-8")
    return {}, {"checkpoint": final}


def explode(run: Run, ctx: RunContext) -> Result:
    """Fail the way a bad config does."""
    raise ValueError(f"boom: learning rate {run.config.get('learning_rate')} is negative")


def bad_result(run: Run, ctx: RunContext) -> Result:
    """Break the executor contract by returning something other than ``(final_metrics, artifacts)``."""
    return "done"  # type: ignore[return-value]


def report_placement(run: Run, ctx: RunContext) -> Result:
    """What the worker's process sees of the GPUs (its placement), as the run's artifacts."""
    return {}, {"device": ctx.device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")}


def clock_steps(run: Run, ctx: RunContext) -> Result:
    """Like :func:`count_steps`, but each step's metrics carry the wall clock they were sent at (``sent_at``),
    so a test can measure how long a report takes to reach the run store."""
    steps = run.config.get("steps", 5)
    for step in range(1, steps + 1):
        ctx.raise_if_cancelled()
        ctx.log_metrics(step, {"loss": 1.0 / step, "sent_at": time.time()})
        ctx.set_progress(step / steps, f"step {step}/{steps}")
        time.sleep(run.config.get("delay", 0.0))
    return {"steps": steps}, {}


def stubborn(run: Run, ctx: RunContext) -> Result:
    """Never looks at a cancel: sleeps ``seconds`` in small pieces (a run stuck in native code, say)."""
    deadline = time.monotonic() + run.config.get("seconds", 60.0)
    ctx.set_progress(0.5, "busy")
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {}, {}


def sleep_run(run: Run, ctx: RunContext) -> Result:
    """Sleeps a fixed ``seconds`` and reports one metric: the work of the dispatch bench, whose time is known."""
    ctx.log_metrics(1, {"loss": 1.0})
    time.sleep(run.config.get("seconds", 1.0))
    return {"slept": run.config.get("seconds", 1.0)}, {}
