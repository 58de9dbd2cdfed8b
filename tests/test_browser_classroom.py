"""A classroom server in a real browser: no path can be typed or seen, names render as text, visitors own their
runs and their fusions, and no developer tool is offered.

``streamlit run app.py`` in classroom mode on localhost over a copy of the tiny workspace, two browser contexts
as two students. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid

import pytest

from fusionlab.dashboard.visitors import owner_id
from fusionlab.dashboard.widgets import NAME_COOKIE
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace
from tests.test_browser import CHROMIUM, assert_no_exception, serve, set_tiny_budget, shoot, wait_for_app

pytestmark = [pytest.mark.slow, pytest.mark.browser]

INJECTIONS = ("![t](http:127.0.0.1:9988?md_img)", "[x](javascript:alert(1))")


@pytest.fixture(scope="module")
def classroom(tiny_workspace, shared_data_dir, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    home = tmp_path_factory.mktemp("classroom") / "ws"
    shutil.copytree(tiny_workspace.root, home)
    env = {
        **os.environ,
        "FUSIONLAB_HOME": str(home),
        "FUSIONLAB_DATA_DIR": str(shared_data_dir),
        "FUSIONLAB_CLASSROOM": "1",
        "FUSIONLAB_TEACHER_PASSPHRASE": "correct horse battery",
        "HF_HUB_OFFLINE": "1",
    }
    with serve(home, env, tmp_path_factory.mktemp("logs")) as url:
        yield url, Workspace(home)


def _student(browser, name: str | None = None, url: str | None = None):
    """A browser context as one student (``name``: the name they chose, kept in its cookie as the sidebar does)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    if name is not None:
        context.add_cookies([{"name": NAME_COOKIE, "value": name, "url": url}])
    page = context.new_page()
    page.set_default_timeout(120_000)
    return context, page


def _token(context) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == "fusionlab_visitor")


def test_no_path_can_be_typed_and_names_render_as_text(classroom, browser):
    url, workspace = classroom
    store = RunStore(workspace.runs_db)
    ids = [store.enqueue("train_adapter", name, {}, "someone", name) for name in INJECTIONS]
    context, page = _student(browser)
    try:
        page.goto(f"{url}/train")
        wait_for_app(page)
        assert_no_exception(page)
        shoot(page, "classroom-train-injections")
        sidebar = page.get_by_test_id("stSidebar")
        assert sidebar.get_by_text("Workspace:").count() == 1
        assert (
            page.get_by_label("Workspace directory").count() == 0 and page.get_by_label("Data directory").count() == 0
        )
        for name in INJECTIONS:
            assert page.get_by_text(name, exact=False).count() >= 1, name  # shown literally
        assert page.locator("img[src*='9988']").count() == 0
        assert page.locator("a[href^='javascript']").count() == 0
    finally:
        context.close()
        for run_id in ids:
            store.request_cancel(run_id)


def test_a_visitor_cancels_only_their_own_runs_and_stays_themselves_after_a_reload(classroom, browser):
    from playwright.sync_api import expect

    url, workspace = classroom
    store = RunStore(workspace.runs_db)
    alice, alice_page = _student(browser)
    bob, bob_page = _student(browser)
    try:
        alice_page.goto(f"{url}/train")
        wait_for_app(alice_page)
        run_id = store.enqueue("train_adapter", "alice-run", {}, owner_id(_token(alice)), "alice")
        bob_page.goto(f"{url}/train")
        wait_for_app(bob_page)
        assert bob_page.get_by_text("alice-run").count() >= 1
        assert bob_page.locator(f".st-key-cancel_{run_id} button").is_disabled()
        shoot(bob_page, "classroom-someone-elses-run")

        alice_page.reload()  # the cookie keeps her the same visitor
        wait_for_app(alice_page)
        button = alice_page.locator(f".st-key-cancel_{run_id} button")
        assert button.is_enabled()
        button.click()
        # the click's own effect: its Cancel button leaves the queue (a settled page may be the one before the click)
        expect(alice_page.locator(f".st-key-cancel_{run_id}")).to_have_count(0, timeout=60_000)
        assert store.get(run_id).status == "cancelled"
    finally:
        alice.close()
        bob.close()


def _choose_adapters(page, names: list[str]) -> None:
    """Pick ``names`` in the Fusion run tab's adapter box, one option at a time, as a student clicks them."""
    from playwright.sync_api import expect

    box = page.get_by_test_id("stMultiSelect").filter(has_text="Adapters to fuse")
    for name in names:
        box.locator("input").click()
        page.get_by_role("option", name=name, exact=True).click()
        expect(box.get_by_text(name, exact=True)).to_be_visible()  # the chip: the choice reached the page
    page.keyboard.press("Escape")
    wait_for_app(page)


def _cell(grid, text: str):
    """The cells reading ``text`` in a dataframe (its grid is a canvas; the accessible table beside it has the
    cells on screen, which for these few rows are all of them)."""
    return grid.locator("[role=gridcell]").filter(has_text=re.compile(f"^{re.escape(text)}$"))


def test_a_second_visitor_can_neither_replace_nor_shadow_the_first_ones_fusion(classroom, browser):
    """Alice and Bob choose the same adapters. Each is offered a default name carrying their own name; Alice's
    run queues under hers; Bob is refused Alice's name and the teacher's fusion's, with the reason, and nothing
    of his is queued. On Runs the "queued by" column says whose each run is and "Only my runs" leaves Bob his.
    (Their names end in a fresh tag, so the test holds on a server where an earlier Alice and Bob queued.)"""
    from playwright.sync_api import expect

    url, workspace = classroom
    store = RunStore(workspace.runs_db)
    tag = uuid.uuid4().hex[:4]
    alice, alice_page = _student(browser, f"Alice {tag}", url)
    bob, bob_page = _student(browser, f"Bob {tag}", url)
    hers, his = f"rte-attention-alice-{tag}", f"rte-attention-bob-{tag}"
    try:
        alice_page.goto(f"{url}/train?train_tab=Fusion+run")
        wait_for_app(alice_page)
        _choose_adapters(alice_page, ["rte", "mnli"])
        expect(alice_page.get_by_label("Fusion name", exact=True)).to_have_attribute("placeholder", hers)
        set_tiny_budget(alice_page, "Fusion run")
        alice_page.get_by_role("button", name="Queue fusion run").click()
        queued = alice_page.get_by_test_id("stAlertContentSuccess").filter(has_text=re.compile(r"^Queued fusion run #"))
        queued.wait_for(state="visible")
        [run] = [r for r in store.list_runs(kind="train_fusion") if r.name == hers]
        assert (run.owner, run.owner_name) == (owner_id(_token(alice)), f"Alice {tag}")

        bob_page.goto(f"{url}/train?train_tab=Fusion+run")
        wait_for_app(bob_page)
        _choose_adapters(bob_page, ["rte", "mnli"])
        name_box = bob_page.get_by_label("Fusion name", exact=True)
        expect(name_box).to_have_attribute("placeholder", his)  # his own, not hers
        errors = bob_page.get_by_role("tabpanel", name="Fusion run").get_by_test_id("stAlertContentError")
        for taken, holder in ((hers, f"Alice {tag}"), ("rte-attention", "the teacher's workspace")):
            name_box.fill(taken)
            name_box.press("Enter")
            reason = f"the fusion name {taken} belongs to {holder}: your run would replace their fusion"
            expect(errors.filter(has_text=reason)).to_have_count(1)  # said once, under the name, before queueing
            expect(errors.filter(has_text=f"yours by default: {his}")).to_have_count(1)  # the name that is his
            expect(bob_page.get_by_role("button", name="Queue fusion run")).to_be_disabled()  # until it changes
            assert_no_exception(bob_page)
        shoot(bob_page, "classroom-name-taken")
        assert not [r for r in store.list_runs() if r.owner == owner_id(_token(bob))]  # nothing of Bob's queued

        own = store.enqueue("train_adapter", f"bob-{tag}", {}, owner_id(_token(bob)), f"Bob {tag}")
        store.request_cancel(own)  # a run of his in the history; cancelled before a worker could take it
        runs = len(store.list_runs())
        bob_page.goto(f"{url}/runs?run={own}")  # his run in the details
        wait_for_app(bob_page)
        history = bob_page.get_by_test_id("stDataFrame").first
        expect(history.locator("[role=columnheader]").filter(has_text=re.compile("^queued by$"))).to_have_count(1)
        expect(_cell(history, f"Alice {tag}")).to_have_count(1)
        expect(_cell(history, "you")).to_have_count(1)  # his own run, as the queue says it
        expect(bob_page.get_by_text(f"{runs} of {runs} runs", exact=True)).to_be_visible()
        bob_page.get_by_test_id("stCheckbox").filter(has_text="Only my runs").locator("label").click()
        expect(bob_page.get_by_text("1 of 1 runs", exact=True)).to_be_visible()
        expect(_cell(history, f"bob-{tag}")).to_have_count(1)
        expect(_cell(history, hers)).to_have_count(0)
        expect(bob_page).to_have_url(re.compile("runs_mine=true"))  # a copied link keeps the filter
        expect(bob_page.get_by_text("This run was cancelled before it finished: it has no results.")).to_be_visible()
        assert_no_exception(bob_page)
        shoot(bob_page, "classroom-only-my-runs")
    finally:
        alice.close()
        bob.close()


def test_a_student_sees_no_server_path_and_no_developer_tool(classroom, browser, shared_data_dir):
    """No "Deploy" button and no developer menu (only the theme and About); and in classroom mode no server path,
    the workspace's or the data directory's, on Home, in the sidebar, on Train or in the Runs config diff (which
    compares two runs whose configs hold both): a student sees their last parts only."""
    from playwright.sync_api import expect

    url, workspace = classroom
    store = RunStore(workspace.runs_db)
    config = {"task": "rte", "data_dir": str(shared_data_dir), "file": str(workspace.root / "reviews.csv")}
    ids = [store.enqueue("train_adapter", f"paths-{i}", {**config, "seed": i}) for i in (1, 2)]
    for run_id in ids:
        store.request_cancel(run_id)  # queued: cancelled at once, so no worker takes them
    server_paths = (str(workspace.root.parent), str(shared_data_dir.parent))  # every path under them included
    context, page = _student(browser, "Carol", url)
    try:
        for path, shown in (("", "Workspace"), ("train", "Task data: on the server"), ("runs", "Config diff")):
            page.goto(f"{url}/{path}")
            wait_for_app(page)
            assert_no_exception(page)
            expect(page.get_by_text(shown).first).to_be_attached()
            if path == "runs":
                diff = page.get_by_test_id("stDataFrame").filter(
                    has=page.locator("[role=columnheader]", has_text="setting")
                )
                expect(_cell(diff, "data_dir")).to_have_count(1)  # the row is there, and the value is cut:
                expect(_cell(diff, f'"{shared_data_dir.name}"')).to_have_count(2)
                expect(_cell(diff, '"reviews.csv"')).to_have_count(2)
            text = page.locator("body").text_content()  # hidden parts too: the folded sidebar, the table's cells
            assert "Task data: on the server" in text and not [p for p in server_paths if p in text], path
            sidebar = page.get_by_test_id("stSidebar").text_content()
            assert f"Workspace: {workspace.root.name}" in sidebar  # the workspace by its name only
            expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
        shoot(page, "classroom-runs-student")

        page.get_by_test_id("stMainMenu").click()
        menu = page.get_by_role("menu", name="Main menu")
        themes = [re.compile(f"{theme}$") for theme in ("System", "Light", "Dark")]  # after each its icon's name
        expect(menu.get_by_role("menuitemradio")).to_have_text(themes)  # the theme choice stays
        expect(menu.get_by_role("menuitem")).to_have_text([re.compile("About$")])  # no rerun, cache, print, recording
        page.keyboard.press("Escape")
    finally:
        context.close()
