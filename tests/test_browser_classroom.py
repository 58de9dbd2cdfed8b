"""A classroom server in a real browser: no path can be typed, names render as text, visitors own their runs.

``streamlit run app.py`` in classroom mode on localhost over a copy of the tiny workspace, two browser contexts
as two students. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import shutil

import pytest

from fusionlab.dashboard.visitors import owner_id
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace
from tests.test_browser import CHROMIUM, assert_no_exception, serve, shoot, wait_for_app

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


def _student(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
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
