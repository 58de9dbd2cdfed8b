"""A fresh machine, offline, with no task data: `streamlit run app.py` opens on the pretrained pack.

The workspace directory does not exist and ``FUSIONLAB_DATA_DIR`` points at an empty folder, as on a laptop
that installed fusionlab and nothing else. The Playground must open on the sentiment fusion with the
notebook's movie sentence and both predictions, and the demo button must say plainly what is missing instead
of queueing runs that fail. Screenshots at 1400 wide and at 1280×720 (a projector) go to
``test-artifacts/browser/``.
"""

from __future__ import annotations

import os

import pytest

from fusionlab.pack import PACK_DIR
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace
from tests.test_browser import (
    CHROMIUM,
    assert_no_exception,
    serve,
    shoot,
    sized_page,
    wait_for_app,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built"),
]


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    root = tmp_path_factory.mktemp("fresh")
    home, empty = root / "never-created", root / "no-data"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FUSIONLAB_PACK"}  # the bundled pack, as installed
    env |= {"FUSIONLAB_HOME": str(home), "FUSIONLAB_DATA_DIR": str(empty), "HF_HUB_OFFLINE": "1"}
    env |= {"HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with serve(home, env, root) as url:
        yield url, Workspace(home)


@pytest.mark.parametrize("viewport", [(1400, 1600), (1280, 720)], ids=["wide", "projector"])
def test_a_fresh_machine_opens_on_the_sentiment_fusion_of_the_pack(fresh_app, browser, viewport):
    from playwright.sync_api import expect

    url, _ = fresh_app
    with sized_page(browser, *viewport) as page:
        page.goto(f"{url}/playground")
        wait_for_app(page)
        assert_no_exception(page)
        expect(page.get_by_label("Text")).to_have_value("This movie is absolutely fantastic!")
        metrics = page.get_by_test_id("stMetric")
        expect(metrics).to_have_count(2)
        expect(metrics.nth(0)).to_contain_text("imdb adapter alone")
        expect(metrics.nth(0)).to_contain_text("pos")
        expect(metrics.nth(1)).to_contain_text("Fusion over 4 adapters")
        page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(state="visible")
        expect(page.get_by_role("button", name="Deploy")).to_have_count(0)  # a product, not a dev server
        shoot(page, f"fresh-playground-{viewport[0]}x{viewport[1]}")
        page.goto(url)
        wait_for_app(page)
        assert_no_exception(page)
        expect(page.get_by_text("pack (read-only)").first).to_be_attached()
        shoot(page, f"fresh-home-{viewport[0]}x{viewport[1]}")


def test_the_demo_button_says_what_data_is_missing_and_queues_nothing(fresh_app, browser):
    url, workspace = fresh_app
    with sized_page(browser, 1400, 1600) as page:
        page.goto(url)
        wait_for_app(page)
        page.get_by_role("button", name="Prepare demo workspace").click()
        warning = page.get_by_test_id("stAlertContentWarning").filter(has_text="nothing was queued")
        warning.wait_for(state="visible")
        assert "imdb train: not in the data directory" in warning.inner_text()
        assert RunStore(workspace.runs_db).list_runs() == []
        shoot(page, "fresh-demo-refused")
