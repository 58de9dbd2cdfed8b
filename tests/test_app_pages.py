"""The Home, Playground, Efficiency and Mechanics pages, driven headlessly with Streamlit's AppTest.

Each page file runs on its own (as ``st.navigation`` runs it), with the session pointing at the trained tiny
workspace; the read-only pages share the fixture itself, the Home page (which queues runs) gets a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fusionlab.dashboard import workspace_view
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.dev_browser import OUTCOMES
from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.inference import preferred_fusion
from fusionlab.dashboard.settings import HOME_KEY
from fusionlab.pack import PACK_DIR, read_card
from fusionlab.pack.recipe import ADAPTERS, FUSIONS, FusionRecipe
from fusionlab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "app_pages"

pytestmark = pytest.mark.slow  # the pages load the real encoder and the trained tiny workspace


def open_page(name: str, home: Path | str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=120)
    at.session_state[HOME_KEY] = str(home)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def chart_titles(at: AppTest) -> list[str]:
    return [title_of(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def metric_labels(at: AppTest) -> list[str]:
    return [m.label for m in at.metric]


# -- the app frame --------------------------------------------------------------------------------------------
def test_app_frames_the_pages_with_the_sidebar_settings(tiny_workspace):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state[HOME_KEY] = str(tiny_workspace.root)
    at.run()
    assert not at.exception and not at.error
    assert not at.sidebar.text_input  # nothing a visitor types becomes a path
    assert any(str(tiny_workspace.root) in caption.value for caption in at.sidebar.caption)
    assert at.title[0].value.startswith("fusionlab")  # Home is the default page
    at.switch_page("app_pages/playground.py").run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Playground" and len(at.metric) == 2


# -- Home -----------------------------------------------------------------------------------------------------
def test_home_summarises_the_workspace_and_queues_the_demo_once(tiny_workspace, tmp_path, monkeypatch):
    home = tmp_path / "ws"
    shutil.copytree(tiny_workspace.root, home)
    started: list[object] = []
    monkeypatch.setattr(workspace_view, "ensure_worker", lambda ws: started.append(ws) or True)

    at = open_page("home.py", home)
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert (values["Adapters"], values["Fusions"]) == ("4", "2")
    assert len(at.dataframe) == 2

    button(at, "Prepare demo workspace").click().run()  # the demo's fusions need the pack's qnli and imdb
    assert not at.exception and not at.success
    assert "nothing was queued" in at.warning[0].value and "imdb, qnli" in at.warning[0].value
    assert started == []


def test_preparing_the_demo_again_asks_first(tiny_workspace, tmp_path, monkeypatch):
    """A workspace that has the demo's fusions does not silently retrain them: the button waits for a yes."""
    home = tmp_path / "ws"
    shutil.copytree(tiny_workspace.root, home)
    shutil.copytree(home / "fusions" / "rte-attention", home / "fusions" / "rte-live")  # as if prepared before
    monkeypatch.setattr(workspace_view, "ensure_worker", lambda ws: True)
    at = open_page("home.py", home)
    assert not at.exception
    retrain = button(at, "Train the demo again")
    assert retrain.disabled and "rte-live" in at.checkbox(key="demo_retrain").label
    at.checkbox(key="demo_retrain").check().run()
    assert not button(at, "Train the demo again").disabled


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
def test_a_fresh_workspace_opens_on_the_pack_and_queues_the_live_demo_once(tmp_path, monkeypatch, shared_data_dir):
    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))
    monkeypatch.setenv("FUSIONLAB_DATA_DIR", str(shared_data_dir))
    started: list[object] = []
    monkeypatch.setattr(workspace_view, "ensure_worker", lambda ws: started.append(ws) or True)
    at = open_page("home.py", tmp_path / "fresh")
    assert not at.exception and not at.error
    values = {m.label: m.value for m in at.metric}
    assert (values["Adapters"], values["Fusions"]) == (str(len(ADAPTERS)), str(len(FUSIONS)))
    fusions = at.dataframe[1].value
    assert set(fusions["source"]) == {"pack (read-only)"}
    assert (fusions["score"] > 0).all()
    assert fusions["its adapter alone"].str.contains(r"\[0\.\d+, 0\.\d+\] \(n=").all()  # with its interval
    assert fusions["fusion − adapter (paired)"].str.contains("within noise|better|worse").all()

    button(at, "Prepare demo workspace").click().run()
    assert not at.exception
    assert "Queued 2 demo runs" in at.success[0].value and len(started) == 1
    button(at, "Prepare demo workspace").click().run()
    assert "already being prepared" in at.warning[0].value and len(started) == 1

    at = open_page("playground.py", tmp_path / "fresh")
    assert not at.exception and not at.error
    default = _pack_default(tmp_path / "fresh")  # a gain beyond noise first, sentiment first (tested in test_pack)
    assert at.selectbox(key="fusion").value == default.name
    assert at.text_area(key="text").value == examples_for(default.target)[0].text
    assert metric_labels(at) == [f"{default.target} adapter alone", f"Fusion over {len(default.adapters)} adapters"]
    card = read_card(Workspace(tmp_path / "fresh").fusion_dir(default.name))  # its dev record, beside one input
    [recorded] = [
        c.value.replace("\\", "") for c in at.caption if c.value.startswith("Measured when it was saved, on its dev")
    ]
    assert card.dev.interval.text() in recorded and card.own_adapter_difference.text() in recorded
    if default.target == "imdb":  # the notebook's sentence
        assert at.text_area(key="text").value == "This movie is absolutely fantastic!"
        assert [m.value for m in at.metric] == ["pos", "pos"]


def _pack_default(home: Path) -> FusionRecipe:
    """The pack fusion the Playground opens on, as its recipe."""
    workspace = Workspace(home)
    name = preferred_fusion(workspace, workspace.list_fusions())
    return next(recipe for recipe in FUSIONS if recipe.name == name)


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
def test_switching_to_another_tasks_fusion_loads_that_tasks_example(tmp_path, monkeypatch):
    """The movie sentence is no RTE premise: switching from the sentiment fusion to the RTE one starts from an
    RTE example (both sentences), with no error, instead of carrying the review over (and back again)."""
    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))
    at = open_page("playground.py", tmp_path / "fresh")
    if _pack_default(tmp_path / "fresh").name == "rte-attention":
        at.selectbox(key="fusion").set_value("imdb-attention").run()
    assert at.selectbox(key="fusion").value == "imdb-attention"
    assert at.text_area(key="text").value == "This movie is absolutely fantastic!"
    at.selectbox(key="fusion").set_value("rte-attention").run()
    assert not at.exception and not at.error
    first = examples_for("rte")[0]
    assert (at.text_area(key="text").value, at.text_area(key="pair").value) == (first.text, first.pair)


def test_home_explains_an_unusable_workspace(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    at = open_page("home.py", blocker / "ws")
    assert not at.exception
    assert "cannot be used" in at.error[0].value


# -- Playground -----------------------------------------------------------------------------------------------
def test_playground_compares_single_and_fused_predictions(tiny_workspace):
    at = open_page("playground.py", tiny_workspace.root)
    assert not at.exception and not at.error
    first = examples_for("rte")[0]
    assert at.text_area(key="text").value == first.text and at.text_area(key="pair").value == first.pair
    assert metric_labels(at) == ["rte adapter alone", "Fusion over 4 adapters"]

    at.text_area(key="text").input("The orchestra played until midnight in the old square.")
    at.text_area(key="pair").input("There was music in the square.").run()
    assert not at.exception and not at.error
    bars = at.get("progress")  # each card: a bar per class, on the full 0-1 scale
    assert [b.proto.text.split(":")[0].replace("\\_", "_") for b in bars] == ["entailment", "not_entailment"] * 2
    for card in (bars[:2], bars[2:]):
        assert sum(b.proto.value for b in card) == pytest.approx(100, abs=2)  # percent, rounded per bar
    titles = chart_titles(at)
    assert any("per layer and adapter" in t for t in titles)
    assert not any("for every token" in t for t in titles)  # only the open tab's chart is built and sent

    at.session_state["view"] = "Tokens × adapters"  # what clicking the tab does (it is kept in the link)
    at.run()
    assert any("for every token" in t for t in chart_titles(at))
    assert not any("per layer and adapter" in t for t in chart_titles(at))
    assert any(c.value.startswith("Furthest from the even share 1/4 = 0.25") for c in at.caption)
    at.session_state["view"] = "Drop each adapter"
    at.run()
    assert any(t.startswith("Drop each adapter: the fusion's confidence in") for t in chart_titles(at))
    at.session_state["dev_drops"] = True
    at.run()
    assert any(t.startswith("Over 200 dev examples: accuracy without each adapter") for t in chart_titles(at))
    assert not at.dataframe  # the dev-set browser scores nothing until it is opened
    at.session_state["dev"] = True
    at.run()
    assert not at.exception
    assert [m.label for m in at.metric][2:] == list(OUTCOMES) and sum(int(m.value) for m in at.metric[2:]) > 0
    assert {"gold", "adapter alone", "fusion", "outcome"} <= set(at.dataframe[0].value.columns)
    gallery = [b for b in at.button if b.key and b.key.startswith("disagree_")]
    assert gallery  # a few examples where the adapter alone and the fusion disagree, one click away
    gallery[0].click().run()
    assert not at.exception
    assert any(c.value.startswith("Gold label of this dev example") for c in at.caption)
    assert any(i.value.startswith("They disagree") for i in at.info)

    at.toggle(key="adapter_on_rte-attention_sst2").set_value(False).run()
    assert not at.exception
    assert metric_labels(at)[1] == "Fusion over 3 adapters"
    for name in ("boolq", "mnli"):
        at.toggle(key=f"adapter_on_rte-attention_{name}").set_value(False)
    at.run()
    assert metric_labels(at)[1] == "Fusion over 1 adapter"
    assert "every fusion weight is 1" in at.info[0].value  # why it still differs from rte alone


def test_playground_reports_mistakes_without_a_traceback(tiny_workspace):
    at = open_page("playground.py", tiny_workspace.root)
    at.text_area(key="text").input("").run()
    assert not at.exception
    assert "empty" in at.error[0].value
    assert not at.metric and not at.get("plotly_chart")

    at.text_area(key="text").input("A sentence again.").run()
    for name in ("rte", "boolq", "mnli", "sst2"):
        at.toggle(key=f"adapter_on_rte-attention_{name}").set_value(False)
    at.run()
    assert not at.exception
    assert "switched off" in at.error[0].value


def test_playground_takes_a_long_review_and_says_the_model_cut_it(tiny_workspace):
    """A 3,000-character paste is taken in (the box states its 5,000-character limit), and the answer says the
    model read only its first tokens."""
    at = open_page("playground.py", tiny_workspace.root)
    review = " ".join(f"The plot of part {i} was slow but the cast was warm and the music lovely." for i in range(40))
    assert 2_900 < len(review) < 5_000
    at.text_area(key="text").input(review).run()
    assert not at.exception and not at.error
    assert at.text_area(key="text").proto.max_chars == 5000  # the box counts against it as the user types
    assert "only the first" in at.warning[0].value and "tokens" in at.warning[0].value


def test_playground_example_buttons_fill_the_inputs(tiny_workspace):
    at = open_page("playground.py", tiny_workspace.root)
    example = examples_for("rte")[1]
    at.button(key="example_1").click().run()
    assert not at.exception
    assert at.text_area(key="text").value == example.text
    assert at.text_area(key="pair").value == example.pair


def test_playground_restores_the_view_from_the_url(tiny_workspace):
    query = {
        "fusion": "rte-weighted",
        "text": "The cafe opens at seven.",
        "pair": "The cafe opens early.",
        "view": "Learned weights",  # the open tab
        "adapter_on_rte-weighted_sst2": "false",  # an adapter switched off
    }
    at = open_page("playground.py", tiny_workspace.root, query)
    assert not at.exception and not at.error
    assert at.selectbox(key="fusion").value == "rte-weighted"
    assert at.text_area(key="text").value == query["text"]
    assert at.text_area(key="pair").value == query["pair"]
    assert next(t for t in chart_titles(at) if "weight" in t).startswith("Weighted fusion: learned weight")
    assert metric_labels(at)[1] == "Fusion over 3 adapters"


def test_a_link_to_a_fusion_that_is_not_there_says_so(tiny_workspace):
    at = open_page("playground.py", tiny_workspace.root, {"fusion": "gone-fusion"})
    assert not at.exception
    assert "asked for fusion `gone-fusion`, which this workspace does not have" in at.warning[0].value
    assert len(at.metric) == 2  # and it shows the fusion it names instead


# -- Efficiency -----------------------------------------------------------------------------------------------
def test_efficiency_shows_parameters_sizes_and_measured_latency(tiny_workspace):
    at = open_page("efficiency.py", tiny_workspace.root)
    assert not at.exception and not at.error
    assert "Trained, vs full fine-tuning" in metric_labels(at)
    assert len(at.get("plotly_chart")) == 2
    assert "that fusion training updates (fusion layers + target head)" in at.caption[0].value

    at.slider[0].set_value(1)
    at.select_slider[0].set_value(32)
    button(at, "Measure latency").click().run()
    assert not at.exception
    assert any(t.startswith("Latency vs number of fused adapters (32 tokens") for t in chart_titles(at))
    assert any("1 timed run per configuration" in caption.value for caption in at.caption)


# -- Mechanics ------------------------------------------------------------------------------------------------
def test_mechanics_temperature_and_real_outputs(tiny_workspace):
    at = open_page("mechanics.py", tiny_workspace.root)
    assert not at.exception and not at.error
    at.slider(key="temperature").set_value(0.2).run()
    assert not at.exception
    assert any("temperature 0.2" in t for t in chart_titles(at))

    at.radio(key="method").set_value("weighted").run()
    at.radio(key="source").set_value("a real sentence").run()
    assert not at.exception and not at.error
    assert "real adapters of fusion 'rte-attention'" in at.caption[0].value
    assert len(at.get("plotly_chart")) == 3 and len(at.dataframe) == 1


def test_compare_mode_puts_two_fusions_side_by_side(tiny_workspace):
    at = open_page("playground.py", tiny_workspace.root, {"fusion": "rte-attention", "compare": "rte-weighted"})
    assert not at.exception and not at.error
    # the same fusion over other adapters, or another fusion of the same task
    assert at.selectbox(key="compare").options == ["(nothing)", "this fusion, other adapters", "rte-weighted"]
    titles = chart_titles(at)
    assert "rte-attention: mean fusion weight per layer and adapter" in titles
    assert "rte-weighted: mean fusion weight per layer and adapter" in titles
    assert [h.value for h in at.subheader][:2] == ["rte-attention (attention)", "rte-weighted (weighted)"]
    assert len(at.metric) == 4  # the two verdicts above, and one per compared fusion


def test_compare_mode_puts_two_adapter_subsets_side_by_side(tiny_workspace):
    query = {
        "fusion": "rte-attention",
        "compare": "this fusion, other adapters",
        "subset_rte-attention": ["rte", "sst2"],
    }
    at = open_page("playground.py", tiny_workspace.root, query)
    assert not at.exception and not at.error
    assert [h.value for h in at.subheader][:2] == [
        "rte-attention over rte, boolq, mnli, sst2",
        "rte-attention over rte, sst2",
    ]
    assert [m.label for m in at.metric][2:] == ["Fusion over 4 adapters", "Fusion over 2 adapters"]


def test_the_what_if_panel_sets_a_weight_and_goes_back(tiny_workspace):
    """A slider sets sst2's fusion weight by hand (kept in the link); the answer is the model's own with that
    override, the card says so, and one click goes back to the learned weights."""
    from fusionlab.dashboard.inference import WeightOverride
    from fusionlab.dashboard.widgets import load_predictor

    at = open_page("playground.py", tiny_workspace.root)
    at.toggle(key="whatif_rte-attention").set_value(True).run()
    assert not at.exception
    at.select_slider(key="w_rte-attention_sst2").set_value("1.00").run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("The fusion's weights are set by hand in every layer: sst2 1.00") for c in at.caption)
    first = examples_for("rte")[0]
    expected = load_predictor(tiny_workspace, "rte-attention").compare(
        first.text, first.pair, None, WeightOverride({"sst2": 1.0})
    )
    assert at.metric[1].value.replace("\\_", "_").replace("\u200b", "") == expected.fused.label
    at.select_slider(key="w_rte-attention_mnli").set_value("0.50").run()  # 1.5 in all: refused, said why
    assert "at most 1 is shared" in at.error[0].value
    button(at, "Back to learned").click().run()
    assert not any("set by hand in" in c.value for c in at.caption) and not at.error
