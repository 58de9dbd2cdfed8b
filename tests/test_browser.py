"""End to end in a real browser: `streamlit run app.py` on a free localhost port, driven by Playwright in
Debian's chromium, against a copy of the tiny trained workspace. Screenshots of every page go to
``test-artifacts/browser/``.

The app is awaited the way Streamlit's own end-to-end tests do it: the ``stApp`` element's connection state
must be CONNECTED and its script state notRunning, and no skeleton may be left; never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionlab.runstore import RunStore
from fusionlab.worker import pid_alive, worker_pid
from fusionlab.workspace import Workspace
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
PAGES = {
    "home": "",
    "train": "train",
    "playground": "playground",
    "efficiency": "efficiency",
    "compare": "compare",
    "runs": "runs",
    "mechanics": "mechanics",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(home: Path, env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """``streamlit run app.py`` on a free localhost port with ``env``; yields its URL, stops it (and any worker)."""
    port = free_port()
    log = open(log_dir / "streamlit.log", "w")  # noqa: SIM115 - closed below
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
            "--server.fileWatcherType",
            "none",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start; see its log") from None
            time.sleep(0.3)
    try:
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        pid = worker_pid(Workspace(home))
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def app(tiny_workspace, cb_comparison, shared_data_dir, tmp_path_factory):
    """The dashboard served on localhost over a private copy of the tiny workspace, with a real comparison."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    home = tmp_path_factory.mktemp("browser") / "ws"
    shutil.copytree(tiny_workspace.root, home)
    shutil.copytree(cb_comparison[0] / "comparisons", home / "comparisons")
    env = {**os.environ, "FUSIONLAB_HOME": str(home), "FUSIONLAB_DATA_DIR": str(shared_data_dir), "HF_HUB_OFFLINE": "1"}
    with serve(home, env, tmp_path_factory.mktemp("logs")) as url:
        yield url, Workspace(home)


@contextlib.contextmanager
def sized_page(browser, width: int, height: int) -> Iterator:
    """A fresh browser context with one page of this viewport (patient: a cold page load can take a while)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser):
    with sized_page(browser, 1400, 1000) as page:
        yield page


def wait_for_app(page) -> None:
    """Wait until the script run triggered by the last navigation or interaction has finished rendering."""
    from playwright.sync_api import expect

    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached")
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached")
    # Elements drawn after the script ended (a chart's, a table's) stand as skeletons until they are: on a loaded
    # machine the Runs page's took 6 s, past expect's default 5 s, so wait as long as for a page itself.
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=120_000)


TINY_BUDGET = (
    ("Max steps", "2"),
    ("Max train samples (0 = all)", "32"),
    ("Max dev samples (0 = all)", "16"),
    ("Max length (tokens)", "32"),
    ("Batch size", "4"),
)
"""A Train page budget that trains in seconds: what the browser tests queue, so a test never waits on a real run."""


def set_tiny_budget(page, tab: str) -> None:
    """Unfold the budget on the Train page's open ``tab`` and fill in :data:`TINY_BUDGET` (only the open tab's
    panel is in the page, so its fields are the only ones with these labels)."""
    panel = page.get_by_role("tabpanel", name=tab)
    panel.get_by_text(re.compile(r"^Budget: \d+ steps")).click()  # the budget fields are folded away
    for label, value in TINY_BUDGET:
        field = panel.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        wait_for_app(page)


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").first.inner_text()


def test_every_page_renders_without_exceptions(app, page):
    url, _ = app
    charts_expected = {"playground", "efficiency", "mechanics"}
    for name, path in PAGES.items():
        page.goto(f"{url}/{path}")
        wait_for_app(page)
        assert_no_exception(page)
        assert page.get_by_test_id("stTopNavLink").get_by_text("Playground").count() == 1  # framed by app.py
        if name in charts_expected:
            page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible")  # a chart was drawn
        shoot(page, name)
    page.goto(url)
    wait_for_app(page)
    assert page.locator("img").count() >= 1  # the adapter-fusion diagram
    page.goto(f"{url}/home")  # a natural link to type: the Home page, not a "Page not found" dialog
    wait_for_app(page)
    assert page.get_by_text("Page not found").count() == 0
    assert page.get_by_role("heading", name="fusionlab: adapter fusion, seen from inside").count() == 1


CUT_OFF = """(root) => [root, ...root.querySelectorAll('*')].filter((e) => e.scrollWidth > e.clientWidth + 1)
  .map((e) => e.textContent)"""


LINES = """(e) => { const range = document.createRange(); range.selectNodeContents(e);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size; }"""
"""How many lines an element's text occupies (one per distinct line top)."""


def test_the_projector_view_shows_both_answers_whole_above_the_fold(app, browser):
    """At 1280×720 (a projector) both answer cards, bars included, are on the first screen, and an answer is never
    cut off: the task's longest label, as the page writes it (breakable at its underscores), wraps in its card."""
    from playwright.sync_api import expect

    url, _ = app
    with sized_page(browser, 1280, 720) as page:
        page.goto(f"{url}/playground?fusion=rte-attention")
        wait_for_app(page)
        assert_no_exception(page)
        cards = page.locator(".st-key-verdicts")
        expect(page.get_by_test_id("stMetric")).to_have_count(2)
        box = cards.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 720, box
        shoot(page, "playground-1280x720")
        values = cards.get_by_test_id("stMetricValue")
        for i in range(2):
            assert values.nth(i).evaluate(CUT_OFF) == []
            label = values.nth(i).locator("p").first  # the answer as markdown renders it
            label.evaluate("(e) => { e.textContent = 'not_\\u200bentailment'; }")  # the longest RTE label
            assert values.nth(i).evaluate(CUT_OFF) == [], "a long answer is cut off instead of wrapping"
            label.evaluate("(e) => { e.textContent = 'contradiction'; }")  # MNLI's longest word: never split
            assert label.evaluate(LINES) == 1, "a one-word answer is broken inside the word"


def test_playground_shows_both_predictions_and_the_heatmap(app, page):
    from playwright.sync_api import expect

    url, _ = app
    page.goto(f"{url}/playground")
    wait_for_app(page)
    first = page.get_by_label("Sentence 1")
    first.fill("A tall woman is reading a newspaper on the train to work.")
    first.press("Control+Enter")
    wait_for_app(page)
    assert_no_exception(page)
    metrics = page.get_by_test_id("stMetric")
    expect(metrics).to_have_count(2)
    expect(metrics.nth(0)).to_contain_text("adapter alone")
    expect(metrics.nth(1)).to_contain_text("Fusion over")
    page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(state="visible")  # the layer x adapter heatmap
    bars = page.get_by_test_id("stProgress")  # a bar per class in each card, labelled with its probability
    expect(bars).to_have_count(4)
    expect(bars.nth(0)).to_contain_text("%")
    expect(page).to_have_url(re.compile("newspaper"))  # the text is kept in the URL
    shoot(page, "playground-typed")
    first.fill("   ")
    first.press("Control+Enter")
    wait_for_app(page)
    expect(page.get_by_test_id("stAlertContentError").first).to_be_visible()
    assert_no_exception(page)


def test_the_teaching_views_as_a_student_meets_them(app, page):
    """In Chromium: the colour zoom says so on the colour bar; the token view names the tokens furthest from 1/N;
    adapters switched off are kept in the link and a one-adapter fusion explains why it differs from the adapter
    alone; Mechanics' real-sentence mode keeps its source in the link and compares the adapters' changes; Home
    counts its threads in words."""
    from playwright.sync_api import expect

    url, _ = app
    page.goto(f"{url}/playground?fusion=rte-attention")
    wait_for_app(page)
    colour_bar = page.locator(".js-plotly-plot .cbtitle").first
    expect(colour_bar).not_to_contain_text("zoomed")
    page.get_by_test_id("stCheckbox").filter(has_text="Zoom the colours").locator("label").click()
    wait_for_app(page)
    expect(colour_bar).to_contain_text("zoomed")
    page.get_by_role("tab", name="Tokens × adapters").click()
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"^Furthest from the even share 1/4 = 0\.25"))).to_be_visible()
    for name in ("boolq", "mnli", "sst2"):
        page.get_by_test_id("stCheckbox").filter(has_text=re.compile(f"^{name}$")).locator("label").click()
        wait_for_app(page)
    expect(page.get_by_test_id("stMetric").nth(1)).to_contain_text("Fusion over 1 adapter")
    expect(page.get_by_text("every fusion weight is 1", exact=False)).to_be_visible()
    expect(page).to_have_url(re.compile("adapter_on_rte-attention_sst2="))
    assert_no_exception(page)
    shoot(page, "playground-one-adapter")

    page.goto(f"{url}/mechanics")
    wait_for_app(page)
    page.get_by_test_id("stRadio").get_by_text("a real sentence").click()
    wait_for_app(page)
    expect(page).to_have_url(re.compile(r"source=a(\+|%20)real(\+|%20)sentence"))
    expect(page.get_by_text(re.compile("^Fused change to the hidden state: mean"))).to_be_visible()
    assert_no_exception(page)
    shoot(page, "mechanics-real-sentence")

    page.goto(url)
    wait_for_app(page)
    assert re.search(r"\b1 threads\b", page.get_by_test_id("stMain").inner_text()) is None


def test_a_dev_example_clicked_in_the_browser_loads_into_the_text_boxes(app, page, shared_data_dir):
    """The dev-set browser's table is a canvas (glide-data-grid): click the first row's selection cell, as a user
    would, and the example must land in both text boxes and in the link."""
    import json
    from urllib.parse import parse_qs, urlparse

    from playwright.sync_api import expect

    url, _ = app
    page.goto(f"{url}/playground")
    wait_for_app(page)
    first, second = page.get_by_label("Sentence 1"), page.get_by_label("Sentence 2")
    before = first.input_value()
    page.get_by_text("Dev-set browser: where the fusion wins and loses").click()
    wait_for_app(page)
    grid = page.get_by_test_id("stDataFrame")
    grid.locator("canvas").first.wait_for(state="visible")
    grid.scroll_into_view_if_needed()
    for _attempt in range(3):  # a click the grid takes while it is still laying out selects nothing: click again
        box = grid.bounding_box()  # in the viewport now: a mouse click lands only on what is on screen
        page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the row-selection column of the first row (35 px rows)
        wait_for_app(page)
        try:
            expect(first).not_to_have_value(before, timeout=10_000)
            break
        except AssertionError:
            continue
    shoot(page, "playground-dev-example-clicked")
    expect(first).not_to_have_value(before)
    expect(page).to_have_url(re.compile(r"[?&]pair="))  # the link follows (it is written after the rerun)
    rows = [json.loads(line) for line in (shared_data_dir / "rte" / "validation.jsonl").open()]
    pairs = {(r["sentence1"], r["sentence2"]) for r in rows}
    assert (first.input_value(), second.input_value()) in pairs  # a real dev example, both halves
    query = parse_qs(urlparse(page.url).query)
    assert query["text"] == [first.input_value()] and query["pair"] == [second.input_value()]
    assert_no_exception(page)
    shoot(page, "playground-dev-example-loaded")


def test_queue_a_tiny_training_run_and_watch_it_finish(app, page):
    url, workspace = app
    page.goto(f"{url}/train")
    wait_for_app(page)
    tasks = page.get_by_test_id("stMultiSelect").first
    tasks.locator("input").click()
    page.get_by_role("option", name=re.compile(r"^cb ")).click()
    page.keyboard.press("Escape")
    wait_for_app(page)
    assert "cb —" in tasks.inner_text() and "cola" not in tasks.inner_text()
    set_tiny_budget(page, "Adapter runs")
    page.get_by_role("button", name="Queue adapter runs").click()
    # Wait for the click's own answer, not for any "queued": get_by_text matches substrings case-insensitively,
    # so "Nothing queued." (on the page before the click's rerun even starts) used to satisfy the wait, and
    # the store was read before the page had enqueued the run (1 failure in 3-4 runs under load).
    page.get_by_test_id("stAlertContentSuccess").filter(has_text=re.compile(r"^Queued 1 adapter run")).wait_for(
        state="visible"
    )
    wait_for_app(page)
    assert_no_exception(page)
    store = RunStore(workspace.runs_db)
    [run] = store.list_runs(kind="train_adapter")
    assert run.config["task"] == "cb" and run.config["training_config"]["max_steps"] == 2
    page.get_by_text("Last ended").wait_for(state="visible", timeout=300_000)  # the live fragment saw it end
    assert store.get(run.id).status == "finished", store.get(run.id).error
    score = re.compile(r"dev accuracy \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \(n=\d+\)")  # with its interval
    assert page.get_by_test_id("stAlertContentSuccess").filter(has_text=score).count() == 1
    shoot(page, "train-finished")


def test_the_open_train_tab_stays_open_through_every_change(app, page):
    """Changing a field or failing to queue on the Fusion run tab used to jump back to the first tab."""
    url, _ = app
    page.goto(f"{url}/train")
    wait_for_app(page)
    fusion_tab = page.get_by_role("tab", name="Fusion run")
    fusion_tab.click()
    wait_for_app(page)
    page.get_by_role("button", name="Queue fusion run").click()  # no adapters chosen: an error, in this tab
    wait_for_app(page)
    assert fusion_tab.get_attribute("aria-selected") == "true"
    error = page.get_by_test_id("stAlertContentError").filter(has_text="adapter")
    error.first.wait_for(state="visible")
    page.get_by_text(re.compile(r"^Budget: \d+ steps")).last.click()
    steps = page.get_by_label("Max steps", exact=True).last
    steps.fill("30")
    steps.press("Enter")
    wait_for_app(page)
    assert fusion_tab.get_attribute("aria-selected") == "true"
    assert "train_tab=Fusion" in page.url  # and a copied link opens it too
    assert_no_exception(page)
    shoot(page, "train-fusion-tab")


def test_the_chosen_theme_stays_on_every_page_after_a_reload(app, page):
    """Streamlit saves the theme for the page first loaded only; the app saves it for every page."""
    url, _ = app
    page.goto(f"{url}/playground")
    wait_for_app(page)
    page.evaluate("localStorage.clear()")
    light = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
    page.get_by_test_id("stMainMenu").click()
    dark_choice = page.get_by_role("radio", name="Dark").or_(page.get_by_role("menuitemradio", name="Dark"))
    dark_choice.or_(page.get_by_role("button", name="Dark")).first.click()  # the menu's theme choice
    page.wait_for_function("Object.keys(localStorage).some(k => k.startsWith('stActiveTheme-/runs'))")
    page.goto(f"{url}/runs")  # another page, loaded afresh
    wait_for_app(page)
    dark = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
    assert dark != light, (light, dark)
    page.evaluate("localStorage.clear()")


CHART_LAYOUT_PROBLEMS = """
() => {
  const box = (el) => el ? el.getBoundingClientRect() : null;
  const overlap = (a, b) => a && b && a.width > 0 && b.width > 0 &&
    a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const inside = (a, outer) => a.left >= outer.left - 1 && a.right <= outer.right + 1 &&
    a.top >= outer.top - 1 && a.bottom <= outer.bottom + 1;
  const problems = [];
  document.querySelectorAll('.js-plotly-plot').forEach((plot, i) => {
    const svg = box(plot.querySelector('.main-svg'));
    const title = plot.querySelector('.gtitle');
    const name = title ? title.textContent : `chart ${i}`;
    const legend = box(plot.querySelector('.legend'));
    if (title && !inside(box(title), svg)) problems.push(`${name}: title cut`);
    plot.querySelectorAll('.xtitle, .ytitle').forEach((axis) => {
      if (overlap(legend, box(axis))) problems.push(`${name}: legend covers an axis title`);
    });
    if (title && overlap(legend, box(title))) problems.push(`${name}: legend covers the title`);
    plot.querySelectorAll('.textpoint text, .bartext').forEach((label) => {
      if (!inside(box(label), svg)) problems.push(`${name}: label ${label.textContent} cut`);
    });
  });
  return {charts: document.querySelectorAll('.js-plotly-plot').length, problems};
}
"""


@pytest.mark.parametrize("width", [800, 1280])
def test_no_chart_title_legend_or_label_is_cut_or_covered_on_a_narrow_screen(app, browser, width):
    """At 800 px (a laptop's half screen) and 1280 px (a projector), every chart's title, legend and value
    labels fit in the chart and cover nothing: titles wrap, legends sit under the axis titles."""
    url, _ = app
    charts = 0
    with sized_page(browser, width, 3000) as page:  # tall: every chart rendered
        for path in ("playground", "efficiency", "compare", "mechanics", "runs"):
            page.goto(f"{url}/{path}")
            wait_for_app(page)
            if path == "efficiency":
                page.get_by_role("button", name="Measure latency").click()  # the chart with the value labels
                page.locator(".js-plotly-plot .textpoint").first.wait_for(state="visible")
                wait_for_app(page)
            page.wait_for_timeout(500)  # Plotly lays labels out after the element appears
            found = page.evaluate(CHART_LAYOUT_PROBLEMS)
            assert found["problems"] == [], (path, found["problems"])
            charts += found["charts"]
            shoot(page, f"{path}-{width}px")
        assert page.get_by_test_id("stSidebar").get_attribute("aria-expanded") != "true"  # collapsed
    assert charts >= 9, charts  # Compare methods draws three
