"""Playground latency: how long a user waits for the dashboard to answer, and for the app to come up.

Warm: the median time of one Playground answer (single-task prediction + fused prediction + fusion weights of
every layer, i.e. ``Predictor.compare``) for a 32-token input and a fusion over 3 adapters, after warm-up.
Target: under 150 ms on CPU. Measured with the real bundled encoder and a real (briefly trained) workspace.

Cold: the time from launching ``streamlit run app.py`` to the first page fully rendered in headless Chromium
(the ``stApp`` element connected and its script not running), over a few launches.

Usage: ``python bench/playground_latency.py [--workspace DIR] [--repeats 50] [--cold 3] [--out FILE]``.
Without ``--workspace`` a tiny workspace is trained first (about half a minute).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
from report import write_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from chromium import CHROMIUM_FLAGS  # noqa: E402  (one list of flags for the benches and the browser tests)

TEXT_32_TOKENS = (
    "A man in a blue coat is walking his two small dogs along the river on a cold morning, and he stops to talk"
)
PAIR = "Someone is outside with animals."


def tiny_workspace(root: Path, data_dir: str | None) -> Path:
    """Train the demo's tiny profile with 3 adapters fused (rte, sst2, mnli) into ``root``."""
    from fusionlab.training.jobs import execute
    from fusionlab.workspace import Workspace

    workspace = Workspace(root).ensure()
    common = {"model_config": {"max_length": 128}, "data_dir": data_dir}
    limits = {"max_steps": 3, "max_train_samples": 64, "max_eval_samples": 32, "per_device_train_batch_size": 8}
    for task in ("rte", "sst2", "mnli"):
        execute(
            "train_adapter",
            {"task": task, "adapter_config": {"adapter_size": 48}, "training_config": limits, **common},
            workspace,
        )
    execute(
        "train_fusion",
        {
            "target_task": "rte",
            "adapters": ["rte", "sst2", "mnli"],
            "name": "rte-attention",
            "training_config": limits,
            **common,
        },
        workspace,
    )
    return root


def warm_latency(workspace_root: Path, fusion: str, repeats: int) -> dict:
    from fusionlab.dashboard.inference import Predictor
    from fusionlab.workspace import Workspace

    predictor = Predictor(Workspace(workspace_root), fusion)
    tokens = len(predictor.tokenizer(TEXT_32_TOKENS, PAIR)["input_ids"])
    adapters = list(predictor.info.adapters)[:3]
    for _ in range(5):
        predictor.compare(TEXT_32_TOKENS, PAIR, adapters)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.compare(TEXT_32_TOKENS, PAIR, adapters)
        times.append(1000 * (time.perf_counter() - start))
    return {
        "tokens": tokens,
        "adapters": adapters,
        "median_ms": statistics.median(times),
        "p90_ms": sorted(times)[int(0.9 * len(times)) - 1],
        "repeats": repeats,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cold_start(workspace_root: Path, data_dir: str | None) -> float:
    """Seconds from `streamlit run` to the Home page rendered in headless Chromium."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "FUSIONLAB_HOME": str(workspace_root), "HF_HUB_OFFLINE": "1"}
    if data_dir:
        env["FUSIONLAB_DATA_DIR"] = data_dir
    started = time.perf_counter()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=CHROMIUM_FLAGS,
            )
            page = browser.new_page()
            page.goto(url)
            page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(
                state="attached", timeout=120_000
            )
            elapsed = time.perf_counter() - started
            browser.close()
        return elapsed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="a workspace with a fusion over >= 3 adapters (default: train one)")
    parser.add_argument("--fusion", default="rte-attention")
    parser.add_argument("--data-dir", default=os.environ.get("FUSIONLAB_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--cold", type=int, default=3, help="cold starts to time (0 to skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the dashboard uses 1, see app.py)")
    parser.add_argument("--out", default="bench/results/playground_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="fusionlab-latency-") as tmp:
        root = Path(args.workspace) if args.workspace else tiny_workspace(Path(tmp) / "ws", args.data_dir)
        warm = warm_latency(root, args.fusion, args.repeats)
        cold = [cold_start(root, args.data_dir) for _ in range(args.cold)] if shutil.which("chromium") else []
    result = {
        "warm": warm,
        "cold_start_s": {"runs": cold, "median": statistics.median(cold) if cold else None},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    print("| measurement | value |\n|---|---|")
    print(
        f"| warm Playground answer, {warm['tokens']} tokens, fusion over {len(warm['adapters'])} adapters "
        f"(median of {warm['repeats']}) | {warm['median_ms']:.1f} ms (p90 {warm['p90_ms']:.1f} ms) |"
    )
    if cold:
        print(
            f"| cold start: `streamlit run app.py` to first rendered page (median of {len(cold)}) | "
            f"{statistics.median(cold):.1f} s |"
        )
    write_report(args.out, result)


if __name__ == "__main__":
    main()
