"""What the Ray backend costs on one machine, and what it buys on several.

1. **One short run, two backends.** The same short run (``--steps`` steps of ``--step-seconds`` each, a stand-in
   executor that logs a metric per step) is queued and served by ``fusionlab worker`` (the local worker) and by
   ``fusionlab worker --backend ray --ray-address local`` (a dispatcher that starts Ray on this machine), each a
   fresh process as ``ensure_worker`` starts it: wall time from queueing to the finished row, and time to the
   first metric in the run store. The difference is Ray's start and the round trip through the object store.
2. **Makespan.** A simulated cluster (``ray.cluster_utils.Cluster``: a head without CPUs and one-CPU nodes) runs
   ``--runs`` runs of a fixed sleep (``--sleep`` s) through one dispatcher, first with one node, then with
   ``--nodes``: the speed-up should approach the number of nodes (the sleep does not use the CPU, so the
   two-core machine is not what limits it).

No training is started (the executors only sleep): the numbers are the dispatcher's, not the model's.

Usage: ``python bench/ray_dispatch.py [--steps 10] [--step-seconds 0.2] [--runs 8] [--sleep 3] [--nodes 4]
[--out bench/results/ray_dispatch.json]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXECUTORS = "bench_short=ray_dispatch:short_run,bench_sleep=ray_dispatch:sleep_run"


# -- the executors (imported by the worker, the dispatcher and the cluster's nodes as ``ray_dispatch``) ----------
def short_run(run: Any, ctx: Any) -> tuple[dict, dict]:
    """A short run: ``steps`` steps of ``seconds`` each, one metric per step."""
    steps, seconds = run.config["steps"], run.config["seconds"]
    for step in range(1, steps + 1):
        ctx.raise_if_cancelled()
        time.sleep(seconds)
        ctx.log_metrics(step, {"loss": 1.0 / step})
        ctx.set_progress(step / steps, f"step {step}/{steps}")
    return {"steps": steps}, {}


def sleep_run(run: Any, ctx: Any) -> tuple[dict, dict]:
    """Sleeps a fixed time: a run whose length is known, so the makespan shows the dispatcher alone."""
    time.sleep(run.config["seconds"])
    ctx.log_metrics(1, {"slept": run.config["seconds"]})
    return {}, {}


# -- helpers -------------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    path = os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return os.environ | {"FUSIONLAB_EXECUTORS": EXECUTORS, "PYTHONPATH": path}


def _wait_finished(store: Any, run_ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(store.get(i).status != "finished" for i in run_ids):
        ended = [store.get(i) for i in run_ids if store.get(i).status in ("failed", "cancelled")]
        if ended:
            raise RuntimeError(f"run {ended[0].id} {ended[0].status}: {ended[0].error}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs {run_ids} not finished after {timeout:.0f} s")
        time.sleep(0.05)


def one_short_run(backend: list[str], steps: int, seconds: float) -> dict[str, Any]:
    """Queue the short run in a fresh workspace, start a worker process with ``backend`` flags, time it."""
    from fusionlab.runstore import RunStore

    with tempfile.TemporaryDirectory(prefix="fusionlab-bench-") as home:
        store = RunStore(Path(home) / "runs.sqlite")
        queued = time.time()
        run_id = store.enqueue("bench_short", "short", {"steps": steps, "seconds": seconds})
        command = [sys.executable, "-m", "fusionlab.cli", "worker", "--home", home, "--once", "--nice", "0", *backend]
        process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_finished(store, [run_id], timeout=300)
        finally:
            output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output[-2000:]}")
        run = store.get(run_id)
        first_metric = float(store.metrics(run_id)["created_at"].min())
        return {
            "backend": "ray (local)" if backend else "local worker",
            "wall_s": round(run.ended_at - queued, 2),
            "first_metric_s": round(first_metric - queued, 2),
            "node": run.node,
            "attempts": run.attempts,
        }


def makespan(cluster: Any, runs: int, seconds: float) -> float:
    """Queue ``runs`` sleeps in a fresh workspace and serve them with an in-process dispatcher; seconds until
    the last one finished."""
    from fusionlab.backends import BackendSettings
    from fusionlab.ray_backend.dispatcher import Dispatcher
    from fusionlab.runstore import RunStore
    from fusionlab.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="fusionlab-bench-") as home:
        workspace = Workspace(home).ensure()
        store = RunStore(workspace.runs_db)
        run_ids = [store.enqueue("bench_sleep", f"sleep{i}", {"seconds": seconds}) for i in range(runs)]
        dispatcher = Dispatcher(workspace, BackendSettings(backend="ray", gpus_per_run=0)).start()
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                dispatcher.step()
                time.sleep(0.05)

        started = time.monotonic()
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            _wait_finished(store, run_ids, timeout=runs * seconds + 300)
        finally:
            stop.set()
            thread.join()
            dispatcher.close("the bench ended")
        return time.monotonic() - started


def cluster_makespans(runs: int, seconds: float, nodes: int) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    os.environ.update(_env())  # the nodes' processes inherit it
    sys.path.insert(0, str(HERE))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="fusionlab-bench", log_to_driver=False)
        one = makespan(cluster, runs, seconds)
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        many = makespan(cluster, runs, seconds)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "runs": runs,
        "sleep_s": seconds,
        "nodes": nodes,
        "makespan_1_node_s": round(one, 2),
        f"makespan_{nodes}_nodes_s": round(many, 2),
        "speedup": round(one / many, 2),
        "ideal_speedup": min(nodes, runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-seconds", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=3.0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--out", default=str(HERE / "results" / "ray_dispatch.json"))
    args = parser.parse_args(argv)

    short = [one_short_run([], args.steps, args.step_seconds)]
    short.append(one_short_run(["--backend", "ray", "--ray-address", "local"], args.steps, args.step_seconds))
    spread = cluster_makespans(args.runs, args.sleep, args.nodes)

    work = args.steps * args.step_seconds
    print(f"one short run ({args.steps} steps x {args.step_seconds:g} s = {work:g} s of work), a fresh process each:")
    print(f"{'backend':<16}{'wall s':>9}{'first metric s':>16}")
    for row in short:
        print(f"{row['backend']:<16}{row['wall_s']:>9.2f}{row['first_metric_s']:>16.2f}")
    print(f"\n{args.runs} runs of a {args.sleep:g} s sleep on a simulated cluster (one-CPU nodes):")
    print(f"{'nodes':<8}{'makespan s':>12}")
    print(f"{1:<8}{spread['makespan_1_node_s']:>12.2f}")
    print(f"{args.nodes:<8}{spread[f'makespan_{args.nodes}_nodes_s']:>12.2f}")
    print(f"speed-up {spread['speedup']:.2f}x (ideal {spread['ideal_speedup']}x)")

    result = {
        "bench": "ray_dispatch",
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "short_run": {"steps": args.steps, "step_seconds": args.step_seconds, "results": short},
        "makespan": spread,
    }
    write_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
