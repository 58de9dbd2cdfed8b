"""A classroom on one dashboard: many browsers acting like students, measured in the browser.

Starts ``streamlit run app.py -- --classroom`` on localhost over a fresh workspace holding the pretrained pack,
opens ``--visitors`` browser contexts in Debian's chromium (each one student, with its own cookie), and has
each one open the Playground and then, every ~``--pace`` seconds (jittered), either type a new sentence or
click an example. At mid-time ``--queuers`` of them press "Queue adapter runs" on the Train page at the same
moment (a barrier), once. The whole profile runs twice: idle, then with a training run going in the worker.

Measured: page load (navigation → both predictions shown), interaction (the action → the new answer rendered:
the text is in the URL and the script run has finished), errors (a timeout of 60 s, an exception box, a page
that never gave a text box), runs recorded per click. Browsers run on the same machine as the server, so on
a small machine the numbers include the browsers' own CPU. Prints a table and writes JSON.

Usage: ``python bench/classroom_load.py [--visitors 30] [--seconds 120] [--pace 10] [--queuers 10]
[--out bench/results/classroom_load.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from playground_latency import CHROMIUM_FLAGS, free_port  # noqa: E402  (one definition for the benches)

TIMEOUT_MS = 60_000


@dataclass
class Phase:
    name: str
    page_loads: list[float] = field(default_factory=list)
    interactions: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    clicks: int = 0
    runs_recorded: int = 0

    def summary(self) -> dict:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]

        return {
            "phase": self.name,
            "page_load_p50_s": pct(self.page_loads, 50),
            "page_load_p95_s": pct(self.page_loads, 95),
            "interaction_p50_s": pct(self.interactions, 50),
            "interaction_p95_s": pct(self.interactions, 95),
            "interactions": len(self.interactions),
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "queue_clicks": self.clicks,
            "runs_recorded": self.runs_recorded,
        }


def start_server(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FUSIONLAB_HOME": str(home), "HF_HUB_OFFLINE": "1", "FUSIONLAB_MAX_QUEUED": "3"}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType",
               "none", "--", "--classroom"]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log}") from None
            time.sleep(0.3)


async def settled(page) -> None:
    await page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached")
    await page.get_by_test_id("stSkeleton").first.wait_for(state="detached")


async def open_playground(page, url: str, phase: Phase) -> bool:
    start = time.perf_counter()
    try:
        await page.goto(f"{url}/playground", timeout=TIMEOUT_MS)
        await page.get_by_test_id("stMetric").nth(1).wait_for(state="visible", timeout=TIMEOUT_MS)
        await settled(page)
    except Exception as err:
        phase.errors.append(f"page load: {type(err).__name__}: {str(err)[:120]}")
        return False
    phase.page_loads.append(time.perf_counter() - start)
    return True


async def interact(page, student: int, step: int, phase: Phase) -> None:
    """Type a new sentence (every other time) or click an example; wait until the answer is rendered."""
    if step % 2 == 0:
        text = f"Student {student} thinks take {step} of this film was wonderful and moving."
        action = "type"
    else:
        text = None
        action = "example"
    start = time.perf_counter()
    try:
        if text is not None:
            box = page.get_by_label("Text", exact=True)
            await box.fill(text)
            await box.press("Control+Enter")
            quoted = urllib.parse.quote_plus(text)[:40]
            await page.wait_for_url(lambda u: quoted in u or text.replace(" ", "+")[:40] in u, timeout=TIMEOUT_MS)
        else:
            index = (student + step) % 3
            await page.locator(f".st-key-example_{index} button").click(timeout=TIMEOUT_MS)
            await page.wait_for_timeout(50)
        await settled(page)
        await page.get_by_test_id("stMetric").nth(1).wait_for(state="visible", timeout=TIMEOUT_MS)
        if await page.get_by_test_id("stException").count():
            raise RuntimeError("an exception box")
    except Exception as err:
        phase.errors.append(f"{action}: {type(err).__name__}: {str(err)[:120]}")
        return
    phase.interactions.append(time.perf_counter() - start)


async def queue_a_run(context, url: str, barrier: asyncio.Barrier, phase: Phase) -> None:
    page = await context.new_page()
    try:
        await page.goto(f"{url}/train", timeout=TIMEOUT_MS)
        await settled(page)
        tasks = page.get_by_test_id("stMultiSelect").first
        await tasks.locator("input").click()
        await page.get_by_role("option", name="rte — ").first.click()
        await page.keyboard.press("Escape")
        await settled(page)
        steps = page.get_by_label("Max steps", exact=True).first
        await steps.fill("2")
        await steps.press("Enter")
        await settled(page)
    except Exception as err:
        phase.errors.append(f"queue setup: {type(err).__name__}: {str(err)[:120]}")
        await barrier.wait()
        return
    await barrier.wait()
    phase.clicks += 1
    try:
        await page.get_by_role("button", name="Queue adapter runs").click()
        # the click's own answer (success, or the quota's error), never the page as it was before the click
        answer = page.get_by_test_id("stAlertContentSuccess").or_(page.get_by_test_id("stAlertContentError"))
        await answer.first.wait_for(state="visible", timeout=TIMEOUT_MS)
    except Exception as err:
        phase.errors.append(f"queue click: {type(err).__name__}: {str(err)[:120]}")
    finally:
        await page.close()


async def student(browser, url: str, index: int, deadline: float, pace: float, queue_at: float | None,
                  barrier: asyncio.Barrier | None, phase: Phase) -> None:  # fmt: skip
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        if not await open_playground(page, url, phase):
            return
        step = 0
        rng = random.Random(index)
        while time.monotonic() < deadline:
            await asyncio.sleep(pace * rng.uniform(0.5, 1.5))
            if queue_at is not None and barrier is not None and time.monotonic() >= queue_at:
                await queue_a_run(context, url, barrier, phase)
                queue_at = None
            if time.monotonic() >= deadline:
                break
            await interact(page, index, step, phase)
            step += 1
    finally:
        await context.close()


async def run_phase(url: str, args, phase: Phase, store_path: Path) -> None:
    from playwright.async_api import async_playwright

    from fusionlab.runstore import RunStore

    before = len(RunStore(store_path).list_runs(kind="train_adapter"))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        start = time.monotonic()
        deadline = start + args.seconds
        queuers = args.queuers if phase.name == "idle" else 0
        barrier = asyncio.Barrier(queuers) if queuers else None
        tasks = [
            student(
                browser, url, i, deadline, args.pace, start + args.seconds / 2 if i < queuers else None, barrier, phase
            )
            for i in range(args.visitors)
        ]
        await asyncio.gather(*tasks)
        await browser.close()
    phase.runs_recorded = len(RunStore(store_path).list_runs(kind="train_adapter")) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--pace", type=float, default=10)
    parser.add_argument("--queuers", type=int, default=10)
    parser.add_argument("--out", default="bench/results/classroom_load.json")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("Debian's chromium is needed (scripts/setup.sh installs it)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fusionlab.pack import PACK_DIR
    from fusionlab.pack.store import install_pack
    from fusionlab.runstore import RunStore
    from fusionlab.worker import ensure_worker, worker_pid
    from fusionlab.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="fusionlab-classroom-") as name:
        tmp = Path(name)
        workspace = Workspace(tmp / "ws").ensure()
        install_pack(workspace, PACK_DIR)
        server, url = start_server(workspace.root, tmp / "streamlit.log")
        phases = [Phase("idle"), Phase("training run going")]
        try:
            asyncio.run(run_phase(url, args, phases[0], workspace.runs_db))
            store = RunStore(workspace.runs_db)
            for run in store.list_runs(status=("queued", "running")):  # the rush's runs: out of the way
                store.request_cancel(run.id)
            long_run = {"task": "sst2", "training_config": {"max_steps": 100000, "max_train_samples": 20000}}
            run_id = store.enqueue("train_adapter", "load-background", long_run)
            ensure_worker(workspace)
            deadline = time.monotonic() + 120
            while store.get(run_id).status != "running" and time.monotonic() < deadline:
                time.sleep(0.5)
            asyncio.run(run_phase(url, args, phases[1], workspace.runs_db))
            store.request_cancel(run_id)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            pid = worker_pid(workspace)
            if pid:
                os.kill(pid, signal.SIGTERM)
    rows = [phase.summary() for phase in phases]
    print(f"{args.visitors} visitors, {args.seconds:.0f} s per phase, an action every ~{args.pace:g} s each")
    print(
        "| phase | page load p50 / p95 (s) | interaction p50 / p95 (s) | interactions | errors | queue clicks → runs |"
    )
    print("|---|---|---|---|---|---|")
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        print(
            f"| {r['phase']} | {fmt(r['page_load_p50_s'])} / {fmt(r['page_load_p95_s'])} | "
            f"{fmt(r['interaction_p50_s'])} / {fmt(r['interaction_p95_s'])} | {r['interactions']} | {r['errors']} | "
            f"{r['queue_clicks']} → {r['runs_recorded']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "phases": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
