"""A classroom on one dashboard: thirty students on the Playground, measured as the students see it.

Starts ``streamlit run app.py -- --classroom`` on localhost over a fresh workspace holding the pretrained pack.
``--visitors`` students arrive spread over ``--arrival`` seconds (a class does not press Enter in the same
second; 0 = all at once), each opens the Playground and then, every ~``--pace`` seconds (jittered), either
types a new sentence or clicks an example. At mid-time ``--queuers`` more students press "Queue adapter runs"
on the Train page at the same moment (a barrier), once, in browsers of their own. The whole profile runs twice:
idle, then with a training run going in the worker.

Who renders. ``--browsers`` of the students use real Chromium tabs (measured: navigation → both predictions
shown; an action → the new answer rendered). The others speak the browser's websocket protocol to the server
without rendering (:mod:`bench.streamlit_client`): the server does the same work for them (script run, model
calls, charts serialised and sent), but their pages are not drawn, because thirty Chromium renderers on the
server's own two cores would measure Chromium, not the server (``--browsers 30`` does exactly that;
``docs/classroom.md`` gives both). Measured for them: request → "script finished". The browsers run at a lower
CPU priority (``--browser-nice``) for the same reason; the server's CPU time per phase is reported too.

Errors: a timeout of 60 s, an exception box, a page without both predictions. Runs recorded per click.
Prints a table and writes JSON.

Usage: ``python bench/classroom_load.py [--visitors 30] [--browsers 3] [--seconds 120] [--pace 10]
[--queuers 10] [--arrival 60] [--browser-nice 10] [--out bench/results/classroom_load.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from report import write_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from dashboard_server import pack_dashboard, training_run_going  # noqa: E402  (one definition for the benches)
from playground_latency import CHROMIUM_FLAGS  # noqa: E402
from streamlit_client import StreamlitSession, click, text_value  # noqa: E402

TIMEOUT_MS = 60_000


@dataclass
class Phase:
    name: str
    page_loads: list[float] = field(default_factory=list)  # real browsers
    interactions: list[float] = field(default_factory=list)
    session_loads: list[float] = field(default_factory=list)  # protocol sessions (nothing rendered)
    session_interactions: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    clicks: int = 0
    answers: list[str] = field(default_factory=list)  # what each queue click was told, in the page's words
    runs_recorded: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    server_peak_rss_mb: float = 0.0

    @property
    def actions(self) -> int:
        return len(self.page_loads) + len(self.interactions) + len(self.session_loads) + len(self.session_interactions)

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
            "session_load_p50_s": pct(self.session_loads, 50),
            "session_load_p95_s": pct(self.session_loads, 95),
            "session_interaction_p50_s": pct(self.session_interactions, 50),
            "session_interaction_p95_s": pct(self.session_interactions, 95),
            "session_interactions": len(self.session_interactions),
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "queue_clicks": self.clicks,
            "queue_answers": self.answers,
            "runs_recorded": self.runs_recorded,
            "server_cpu_s": self.server_cpu_s,
            "server_peak_rss_mb": self.server_peak_rss_mb,
            "server_cores_busy": self.server_cpu_s / self.seconds if self.seconds else None,
            "server_cpu_ms_per_action": 1000 * self.server_cpu_s / max(1, self.actions),
        }


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


async def at_barrier(barrier: asyncio.Barrier, phase: Phase) -> None:
    """Wait for the other queuers, but not forever: one whose setup failed must not hold the others back."""
    try:
        await asyncio.wait_for(barrier.wait(), TIMEOUT_MS / 1000)
    except (TimeoutError, asyncio.BrokenBarrierError):
        phase.errors.append("queue barrier: not every queuer got its Train page ready in time")


async def choose_rte(page, attempts: int = 3) -> None:
    """Pick RTE in the Train page's task box and wait until the box shows its chip: on a loaded server a pick
    made while the page reruns can be lost, and a click on Queue would then be answered "choose at least one
    task"."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    tasks = page.get_by_test_id("stMultiSelect").first
    chip = tasks.get_by_text(re.compile(r"^rte\b")).first
    for _ in range(attempts):
        if await chip.is_visible():  # a pick that took effect after the last wait
            return
        await tasks.locator("input").click()
        await page.get_by_role("option", name="rte — ").first.click()
        await page.keyboard.press("Escape")
        await settled(page)
        try:
            await chip.wait_for(state="visible", timeout=5000)
            return
        except PlaywrightTimeout:
            continue  # the pick was lost: make it again
    raise RuntimeError("the task box did not keep the choice of rte")


async def queue_a_run(browser, url: str, queue_at: float, barrier: asyncio.Barrier, phase: Phase) -> None:
    """One student's click on "Queue adapter runs", at the same moment as the others' (their own browser)."""
    await asyncio.sleep(max(0.0, queue_at - time.monotonic()))
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    try:
        await page.goto(f"{url}/train", timeout=TIMEOUT_MS)
        await settled(page)
        await choose_rte(page)
        await page.get_by_text(re.compile(r"^Budget: \d+ steps")).first.click()  # the fields fold under it
        steps = page.get_by_label("Max steps", exact=True).first
        await steps.fill("2")
        await steps.press("Enter")
        await settled(page)
    except Exception as err:
        phase.errors.append(f"queue setup: {type(err).__name__}: {str(err)[:120]}")
        await at_barrier(barrier, phase)
        await context.close()
        return
    await at_barrier(barrier, phase)
    phase.clicks += 1
    try:
        await page.get_by_role("button", name="Queue adapter runs").click()
        # the click's own answer (success, or the quota's error), never the page as it was before the click
        answer = page.get_by_test_id("stAlertContentSuccess").or_(page.get_by_test_id("stAlertContentError"))
        await answer.first.wait_for(state="visible", timeout=TIMEOUT_MS)
        phase.answers.append((await answer.first.inner_text())[:200])  # a refusal says why (a quota, a name)
    except Exception as err:
        phase.errors.append(f"queue click: {type(err).__name__}: {str(err)[:120]}")
    finally:
        await context.close()


async def student(browser, url: str, index: int, arrive_at: float, deadline: float, pace: float,
                  phase: Phase) -> None:  # fmt: skip
    """Open the Playground (reloading, as a student would, if it does not come), then act every ~pace s."""
    await asyncio.sleep(max(0.0, arrive_at - time.monotonic()))
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        for _attempt in range(2):
            if await open_playground(page, url, phase):
                break
        else:
            return
        step = 0
        rng = random.Random(index)
        while time.monotonic() < deadline:
            await asyncio.sleep(pace * rng.uniform(0.5, 1.5))
            if time.monotonic() >= deadline:
                break
            await interact(page, index, step, phase)
            step += 1
    finally:
        await context.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def session_student(url: str, index: int, arrive_at: float, deadline: float, pace: float,
                          phase: Phase) -> None:  # fmt: skip
    """A student whose tab is not drawn: the same requests over the websocket, timed to "script finished"."""
    await asyncio.sleep(max(0.0, arrive_at - time.monotonic()))
    session = StreamlitSession(url, "playground")
    try:
        first = await asyncio.wait_for(session.open(), TIMEOUT_MS / 1000)
        if not _answered(first, phase, "page load"):
            return
        phase.session_loads.append(first.seconds)
        text_id = next(t.id for t in first.of_kind("text_area") if t.label == "Text")
        examples = [b.id for b in first.of_kind("button") if "example_" in b.id]
        rng, step = random.Random(index), 0
        while time.monotonic() < deadline:
            await asyncio.sleep(pace * rng.uniform(0.5, 1.5))
            if time.monotonic() >= deadline:
                break
            if step % 2 == 0:
                widget = text_value(text_id, f"Student {index} thinks take {step} of this film was wonderful.")
            else:
                widget = click(examples[(index + step) % len(examples)])
            rerun = session.rerun([widget], first.fragment_of(widget.id))  # as a browser: only that fragment
            answer = await asyncio.wait_for(rerun, TIMEOUT_MS / 1000)
            if _answered(answer, phase, "type" if step % 2 == 0 else "example"):
                phase.session_interactions.append(answer.seconds)
            step += 1
    except Exception as err:  # a timeout or a dropped connection: the student got nothing
        phase.errors.append(f"session: {type(err).__name__}: {str(err)[:120]}")
    finally:
        await session.close()


def _answered(run, phase: Phase, action: str) -> bool:
    """Whether a script run showed both predictions and no exception (else an error is recorded)."""
    problem = run.exception() or (None if len(run.of_kind("metric")) == 2 else "not both predictions")
    if problem:
        phase.errors.append(f"{action}: {problem[:120]}")
    return problem is None


async def first_session(url: str) -> float:
    session = StreamlitSession(url, "playground")
    try:
        return (await session.open()).seconds
    finally:
        await session.close()


def peak_rss_mb(pid: int) -> float:
    """The most memory the process has held so far (``VmHWM``): does skipping Streamlit's GC let it grow?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def niced_chromium(folder: Path, niceness: int) -> str:
    """Chromium's path, or a wrapper that starts it at a lower CPU priority (children inherit it)."""
    chromium = shutil.which("chromium")
    if niceness <= 0:
        return chromium
    wrapper = folder / "chromium-niced"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {niceness} {chromium} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def run_phase(url: str, args, phase: Phase, store_path: Path, chromium: str, server_pid: int) -> None:
    from playwright.async_api import async_playwright

    from fusionlab.runstore import RunStore

    before = len(RunStore(store_path).list_runs(kind="train_adapter"))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        start = time.monotonic()
        cpu_before = cpu_seconds(server_pid)
        deadline = start + args.arrival + args.seconds
        queue_at = start + args.arrival + args.seconds / 2
        queuers = args.queuers if phase.name == "idle" else 0
        barrier = asyncio.Barrier(queuers) if queuers else None
        arrivals = [start + i * args.arrival / args.visitors for i in range(args.visitors)]
        in_browser = set(range(0, args.visitors, max(1, args.visitors // max(1, args.browsers)))[: args.browsers])
        tasks = [
            (student(browser, url, i, at, deadline, args.pace, phase) if i in in_browser
             else session_student(url, i, at, deadline, args.pace, phase))
            for i, at in enumerate(arrivals)
        ]  # fmt: skip
        tasks += [queue_a_run(browser, url, queue_at, barrier, phase) for _ in range(queuers)]
        await asyncio.gather(*tasks)
        phase.server_cpu_s = cpu_seconds(server_pid) - cpu_before
        phase.server_peak_rss_mb = peak_rss_mb(server_pid)
        phase.seconds = time.monotonic() - start
        await browser.close()
    phase.runs_recorded = len(RunStore(store_path).list_runs(kind="train_adapter")) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--browsers", type=int, default=3, help="how many of the students use real Chromium tabs")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--pace", type=float, default=10)
    parser.add_argument("--queuers", type=int, default=10)
    parser.add_argument("--arrival", type=float, default=60, help="students arrive spread over this many seconds")
    parser.add_argument("--browser-nice", type=int, default=10, help="the browsers' niceness (0: the server's)")
    parser.add_argument("--out", default="bench/results/classroom_load.json")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("Debian's chromium is needed (scripts/setup.sh installs it)")
    from fusionlab.runstore import RunStore

    phases = [Phase("idle"), Phase("training run going")]
    with pack_dashboard() as (workspace, server, url), tempfile.TemporaryDirectory() as tmp:
        chromium = niced_chromium(Path(tmp), args.browser_nice)
        warm = asyncio.run(first_session(url))  # the server loads the fusion once, for everyone
        print(f"first page after the server started (loads the fusion): {warm:.1f} s")
        asyncio.run(run_phase(url, args, phases[0], workspace.runs_db, chromium, server.pid))
        store = RunStore(workspace.runs_db)
        for run in store.list_runs(status=("queued", "running")):  # the rush's runs: out of the way
            store.request_cancel(run.id)
        with training_run_going(workspace):
            asyncio.run(run_phase(url, args, phases[1], workspace.runs_db, chromium, server.pid))
    rows = [phase.summary() for phase in phases]
    print(
        f"{args.visitors} visitors arriving over {args.arrival:g} s, then {args.seconds:.0f} s per phase, an action "
        f"every ~{args.pace:g} s each; browsers at niceness {args.browser_nice}"
    )
    print(
        f"| phase | browsers ({args.browsers}): page load p50 / p95 (s) | browsers: interaction p50 / p95 (s) "
        f"| sessions ({args.visitors - args.browsers}): first run p50 / p95 (s) | sessions: interaction p50 / p95 (s) "
        "| interactions | errors | queue clicks → runs | server: cores busy, CPU per action, peak memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        print(
            f"| {r['phase']} | {fmt(r['page_load_p50_s'])} / {fmt(r['page_load_p95_s'])} | "
            f"{fmt(r['interaction_p50_s'])} / {fmt(r['interaction_p95_s'])} | "
            f"{fmt(r['session_load_p50_s'])} / {fmt(r['session_load_p95_s'])} | "
            f"{fmt(r['session_interaction_p50_s'])} / {fmt(r['session_interaction_p95_s'])} | "
            f"{r['interactions'] + r['session_interactions']} | {r['errors']} | "
            f"{r['queue_clicks']} → {r['runs_recorded']} | {fmt(r['server_cores_busy'])}, "
            f"{r['server_cpu_ms_per_action']:.0f} ms, {r['server_peak_rss_mb']:.0f} MB |"
        )
    write_report(args.out, {"args": vars(args), "first_page_s": warm, "phases": rows})


if __name__ == "__main__":
    main()
