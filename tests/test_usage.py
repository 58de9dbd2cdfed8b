"""The "which adapters each fusion uses" matrix (the paper's Figure 5): logic, CLI table, chart and Runs page.

The matrix is built from the real fusion checkpoints of the tiny workspace (attention and weighted fusion for
RTE over sst2, mnli, boolq and rte). Fusions it lacks (a broken one, one without statistics, one over fewer
adapters for another target) are made in a private copy by editing copies of those real checkpoints.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest
from test_app_train_runs import PAGES, TIMEOUT_S, use_workspace

from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.cli import main
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.usage_chart import TITLE, adapter_usage_heatmap
from fusionlab.usage import LABEL_HEADER, UsageMatrix, UsageRow, adapter_usage, layer_mean, usage_row
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

FUSIONS = ["rte-attention", "rte-weighted"]


@pytest.fixture
def copy(tmp_path: Path, tiny_workspace: Workspace) -> Workspace:
    """A private copy of the tiny workspace, to add fusions to."""
    return Workspace(shutil.copytree(tiny_workspace.root, tmp_path / "ws"))


def derived_fusion(workspace: Workspace, source: str, name: str, edit) -> None:
    """A copy of the real fusion ``source`` saved as ``name``, its metadata changed by ``edit(meta)``."""
    target = shutil.copytree(workspace.fusion_dir(source), workspace.fusion_dir(name))
    meta = json.loads((target / CHECKPOINT_MARKER).read_text())
    edit(meta)
    (target / CHECKPOINT_MARKER).write_text(json.dumps(meta))


def keep_adapters(meta: dict, names: list[str], task: str) -> None:
    """Restrict a fusion's metadata to ``names`` (renormalising each layer's weights, as a softmax over fewer
    adapters would) and give it another target task."""
    stats = meta["extra"]["fusion_stats"]
    columns = [stats["adapter_names"].index(n) for n in names]
    layers = [[layer[j] for j in columns] for layer in stats["mean"]]
    stats["mean"] = [[w / sum(layer) for w in layer] for layer in layers]
    stats["adapter_names"] = meta["fusion_config"]["adapter_names"] = names
    meta["adapters"] = [entry for name in names for entry in meta["adapters"] if entry["name"] == name]
    meta["extra"]["task"] = meta["fusion_config"]["target_task"] = task


def with_subset(workspace: Workspace) -> Workspace:
    """``workspace`` plus ``boolq-pair``: a fusion for BoolQ over sst2 and rte only (mnli, boolq missing)."""
    derived_fusion(workspace, "rte-attention", "boolq-pair", lambda meta: keep_adapters(meta, ["sst2", "rte"], "boolq"))
    return workspace


def column_cells(usage: UsageMatrix, row: UsageRow) -> dict[str, str]:
    """The cell of each adapter column in ``row``'s line of the table: after the label column (as wide as the
    longest label), cells are right-aligned, so a column ends where its header ends."""
    lines = usage.format_table().splitlines()
    header, line = lines[0], next(line for line in lines if line.startswith(row.label))
    label_width = max(len(LABEL_HEADER), *(len(r.label) for r in usage.rows))
    cells, start = {}, label_width
    for match in re.finditer(r"\S+", header[label_width:]):
        end = label_width + match.end()
        cells[match.group()] = line[start:end].strip()
        start = end
    return cells


# -- the matrix -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rows_are_the_layer_mean_of_the_recorded_fusion_stats(tiny_workspace: Workspace) -> None:
    usage = adapter_usage(tiny_workspace)

    assert [row.name for row in usage.rows] == FUSIONS and usage.skipped == ()
    assert [row.method for row in usage.rows] == ["attention", "weighted"]
    assert [row.label for row in usage.rows] == ["rte (rte-attention, attention)", "rte (rte-weighted, weighted)"]
    for row in usage.rows:
        meta = read_meta(tiny_workspace.fusion_dir(row.name))
        stats = meta["extra"]["fusion_stats"]
        assert row.target == meta["extra"]["task"] == "rte"
        assert row.adapters == tuple(stats["adapter_names"]) and set(row.adapters) == {"sst2", "mnli", "boolq", "rte"}
        assert row.layers == tuple(tuple(layer) for layer in stats["mean"])
        assert len(row.layers) == meta["num_layers"]
        for j, adapter in enumerate(row.adapters):
            recorded = [layer[j] for layer in stats["mean"]]
            assert row.value(adapter) == row.mean[j] == math.fsum(recorded) / len(recorded)
            assert row.mean[j] == pytest.approx(float(np.mean(recorded)), abs=1e-15)
            assert row.per_layer(adapter) == tuple(recorded)
        assert sum(row.mean) == pytest.approx(1.0, abs=1e-5)  # a softmax over the row's adapters
        assert row.num_adapters == 4 and row.even_share == 0.25
    assert usage.adapters == usage.rows[0].adapters  # first-seen order; both fuse the same four


@pytest.mark.slow
def test_an_adapter_a_fusion_lacks_is_empty_not_zero(copy: Workspace) -> None:
    usage = adapter_usage(with_subset(copy))

    # sorted by target (boolq before rte), columns in first-seen order down the rows
    assert [row.name for row in usage.rows] == ["boolq-pair", *FUSIONS]
    assert usage.adapters == ("sst2", "rte", *(a for a in usage.rows[1].adapters if a not in ("sst2", "rte")))
    pair = usage.rows[0]
    assert pair.value("mnli") is None and pair.value("boolq") is None and pair.per_layer("mnli") is None
    assert pair.num_adapters == 2 and pair.even_share == 0.5
    assert sum(pair.mean) == pytest.approx(1.0, abs=1e-9)
    first = dict(zip(usage.adapters, usage.values()[0]))
    assert first["mnli"] is None and first["boolq"] is None
    assert first["sst2"] == pair.value("sst2") and first["rte"] == pair.value("rte")

    cells = column_cells(usage, pair)
    assert cells["mnli"] == "" and cells["boolq"] == ""
    assert cells["sst2"] == f"{pair.value('sst2'):.3f}" and cells["rte"] == f"{pair.value('rte'):.3f}"
    assert (cells["N"], cells["1/N"]) == ("2", "0.500")
    full = column_cells(usage, usage.rows[1])
    assert all(re.fullmatch(r"0\.\d{3}", full[a]) for a in usage.adapters)
    assert "even share" in usage.format_table()


@pytest.mark.slow
def test_broken_and_statistics_free_fusions_are_skipped_with_a_reason(copy: Workspace) -> None:
    derived_fusion(copy, "rte-weighted", "rte-nostats", lambda meta: meta["extra"].update(fusion_stats=None))
    derived_fusion(copy, "rte-weighted", "rte-nokey", lambda meta: meta["extra"].pop("fusion_stats"))
    broken = shutil.copytree(copy.fusion_dir("rte-weighted"), copy.fusion_dir("rte-broken"))
    (broken / CHECKPOINT_MARKER).write_text("{not json", encoding="utf-8")
    listed = shutil.copytree(copy.fusion_dir("rte-weighted"), copy.fusion_dir("rte-list"))
    (listed / CHECKPOINT_MARKER).write_text("[]", encoding="utf-8")  # valid JSON, but no object

    usage = adapter_usage(copy)

    assert [row.name for row in usage.rows] == FUSIONS
    reasons = dict(usage.skipped)
    assert list(reasons) == ["rte-broken", "rte-list", "rte-nokey", "rte-nostats"]
    assert "is not valid JSON" in reasons["rte-broken"]
    assert reasons["rte-list"].endswith("must hold a JSON object, got list")  # read_meta says which file and why
    assert reasons["rte-nostats"].startswith("no fusion statistics") and reasons["rte-nokey"] == reasons["rte-nostats"]
    assert "skipped rte-broken: " in usage.format_table()


def test_malformed_statistics_are_refused() -> None:
    meta = {
        "kind": "fusion",
        "fusion_config": {"fusion_method": "attention", "adapter_names": ["a", "b"]},
        "extra": {"task": "t", "fusion_stats": {"adapter_names": ["a", "b"], "mean": [[0.5, 0.5], [0.7, 0.3]]}},
    }
    assert usage_row("f", meta).mean == layer_mean([[0.5, 0.5], [0.7, 0.3]]) == (0.6, 0.4)
    for stats, message in [
        ({"adapter_names": ["a", "b"], "mean": [[0.5, 0.5], [1.0]]}, "layer 2 do not have one weight per adapter"),
        ({"adapter_names": ["a", "b"], "mean": []}, "no per-layer weights"),
        ({"adapter_names": [], "mean": [[1.0]]}, "name no adapters"),
        ({"adapter_names": ["a", "b"], "mean": [[float("nan"), 1.0]]}, "non-finite"),
    ]:
        with pytest.raises(CheckpointError, match=re.escape(message)):
            usage_row("f", meta | {"extra": {"fusion_stats": stats}})
    with pytest.raises(CheckpointError, match="not a fusion"):
        usage_row("f", meta | {"kind": "adapter"})
    assert UsageMatrix((), ()).format_table() == "No fusion in this workspace has recorded fusion statistics."


@pytest.mark.slow
def test_json_round_trip_is_exact(copy: Workspace) -> None:
    (copy.fusion_dir("rte-weighted") / CHECKPOINT_MARKER).write_text("{not json", encoding="utf-8")
    usage = adapter_usage(with_subset(copy))
    assert usage.skipped and len(usage.rows) == 2

    data = json.loads(json.dumps(usage.to_dict()))
    assert UsageMatrix.from_dict(data) == usage
    assert data["rows"][0]["num_adapters"] == 2 and data["rows"][0]["even_share"] == 0.5
    assert UsageRow.from_dict(data["rows"][1]) == usage.rows[1]


# -- the CLI ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_usage_prints_the_table(copy: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--home", str(copy.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(LABEL_HEADER)
    for row in adapter_usage(copy).rows:
        assert row.name in out and row.label in out
    assert "Mean fusion weight" in out

    assert main(["usage", "--home", str(copy.root), "--json"]) == 0
    assert UsageMatrix.from_dict(json.loads(capsys.readouterr().out)) == adapter_usage(copy)


def test_cli_usage_without_fusions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--home", str(tmp_path / "none")]) == 0  # the pack is off in tests: nothing to show
    assert capsys.readouterr().out.startswith("no fusions in ")


# -- the chart and the Runs page --------------------------------------------------------------------------
@pytest.mark.slow
def test_heatmap_shows_the_matrix_on_a_fixed_scale(copy: Workspace) -> None:
    usage = adapter_usage(with_subset(copy))
    fig = adapter_usage_heatmap(usage)

    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap) and heat.zmin == 0.0 and heat.zmax == 1.0
    assert [list(line) for line in heat.z] == usage.values()
    assert list(heat.y) == [row.label for row in usage.rows]
    assert fig.layout.yaxis.autorange == "reversed"  # first row at the top, as in the table
    assert [t.split("</span> ")[1] for t in fig.layout.xaxis.ticktext] == list(usage.adapters)
    assert title_of(fig) == TITLE
    assert fig.layout.xaxis.title.text == "source adapter" and fig.layout.yaxis.title.text
    pair = usage.rows[0]
    sst2, mnli = usage.adapters.index("sst2"), usage.adapters.index("mnli")
    assert heat.text[0][mnli] == "" and heat.hovertext[0][mnli] == "" and heat.hoverongaps is False
    assert heat.text[0][sst2] == f"{pair.value('sst2'):.2f}"
    hover = heat.hovertext[0][sst2]
    assert f"sst2: {pair.value('sst2'):.3f}" in hover and "even share 1/2 = 0.500" in hover
    assert f"difference {pair.value('sst2') - 0.5:+.3f}" in hover and "per layer (1 to 6)" in hover
    assert adapter_usage_heatmap(UsageMatrix((), ())) is None


@pytest.mark.slow
@pytest.mark.parametrize("with_runs", [False, True], ids=["no-runs", "with-a-run"])
def test_runs_page_shows_the_usage_section(
    copy: Workspace, monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path, with_runs: bool
) -> None:
    """The section renders whether or not the store has runs (fusions trained inline have none)."""
    store = use_workspace(monkeypatch, copy.root, shared_data_dir)
    if with_runs:
        store.enqueue("train_adapter", "cb", {"task": "cb"})  # queued only: no worker is started
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT_S)
    at.run()

    assert not at.exception, at.exception
    assert "Which adapters each fusion uses" in [h.value for h in at.header]
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    (usage,) = [spec for spec in specs if title_of(spec) == TITLE]
    heat = usage["data"][0]
    assert heat["type"] == "heatmap" and heat["zmin"] == 0 and heat["zmax"] == 1
    assert heat["y"] == [row.label for row in adapter_usage(copy).rows]
    assert any("even share" in caption.value for caption in at.caption)


def test_runs_page_without_fusions_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path
) -> None:
    use_workspace(monkeypatch, tmp_path / "empty", shared_data_dir)
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception and not at.get("plotly_chart")
    assert [info.value for info in at.info][1].startswith("No fusion in this workspace has recorded fusion statistics")
