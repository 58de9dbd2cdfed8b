"""Playground interactions in a real browser: from the action to the updated answer rendered, warm.

Starts ``streamlit run app.py`` over a fresh workspace holding the pretrained pack, opens the Playground in
Debian's Chromium at 1280×720 and, after a warm-up, repeats three interactions a student makes: switch an
adapter off and on (toggle), click an example, type a sentence (Ctrl+Enter). Each is timed from the action to
its visible outcome (the fusion's label says how many adapters it uses; the text box holds the example; the URL
holds the typed text) and the page's script run finished. Twice: idle, then with a training run going in the worker. Targets (issue "Teaching views"): p95 ≤ 0.4 s
idle, ≤ 1 s with a training run, on 2 cores. Prints a table and writes JSON.

Usage: ``python bench/ui_latency.py [--repeats 12] [--out bench/results/ui_latency.json]``
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from report import write_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from dashboard_server import pack_dashboard, training_run_going  # noqa: E402  (one way for the benches)
from playground_latency import CHROMIUM_FLAGS  # noqa: E402

ACTIONS = ("toggle", "example", "type")


def settled(page) -> None:
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached")
    page.get_by_test_id("stSkeleton").first.wait_for(state="detached")


def act(page, action: str, step: int) -> float:
    """Do one interaction and wait for its own outcome; returns the seconds it took."""
    start = time.perf_counter()
    if action == "toggle":
        off = step % 2 == 0
        page.get_by_test_id("stCheckbox").filter(has_text=re.compile(r"^sst2$")).locator("label").click()
        page.get_by_test_id("stMetric").nth(1).get_by_text(
            "Fusion over 3 adapters" if off else "Fusion over 4 adapters"
        ).wait_for()
    elif action == "example":
        box = page.get_by_label("Text", exact=True)
        before = box.input_value()
        start = time.perf_counter()
        page.locator(f".st-key-example_{(step + 1) % 3} button").click()
        page.wait_for_function(
            "([before]) => { const box = document.querySelector('textarea');"
            " return box !== null && box.value !== before; }",
            arg=[before],
        )
    elif action == "type":
        text = f"Take {step} of this film was a wonderful surprise."
        box = page.get_by_label("Text", exact=True)
        box.fill(text)
        box.press("Control+Enter")
        page.wait_for_url(re.compile(f"Take\\+{step}\\+of"))
    settled(page)
    return time.perf_counter() - start


def measure(url: str, repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/playground")
        page.get_by_test_id("stMetric").nth(1).wait_for()
        settled(page)
        for step in range(2):  # warm-up: every code path once
            for action in ACTIONS:
                act(page, action, step)
        times: dict[str, list[float]] = {action: [] for action in ACTIONS}
        for step in range(repeats):
            for action in ACTIONS:
                times[action].append(act(page, action, step))
        browser.close()
    return times


def summary(times: dict[str, list[float]]) -> dict:
    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    every = [t for values in times.values() for t in values]
    rows = {a: {"p50_s": pct(v, 50), "p95_s": pct(v, 95), "n": len(v)} for a, v in times.items()}
    return rows | {"all": {"p50_s": pct(every, 50), "p95_s": pct(every, 95), "n": len(every)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--out", default="bench/results/ui_latency.json")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("Debian's chromium is needed (scripts/setup.sh installs it)")
    results = {}
    with pack_dashboard() as (workspace, _, url):
        results["idle"] = summary(measure(url, args.repeats))
        with training_run_going(workspace):
            results["training run going"] = summary(measure(url, args.repeats))
    print(f"Playground in Chromium at 1280×720, {args.repeats} of each action after a warm-up ({os.cpu_count()} cores)")
    print("| phase | " + " | ".join(f"{a} p50 / p95 (s)" for a in (*ACTIONS, "all")) + " |")
    print("|---|" + "---|" * (len(ACTIONS) + 1))
    for phase, rows in results.items():
        cells = " | ".join(f"{rows[a]['p50_s']:.2f} / {rows[a]['p95_s']:.2f}" for a in (*ACTIONS, "all"))
        print(f"| {phase} | {cells} |")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    write_report(args.out, {"machine": machine, "repeats": args.repeats, "phases": results})


if __name__ == "__main__":
    main()
