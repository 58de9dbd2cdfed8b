"""The learning curve on real code paths: a tiny plan on the tiny workspace's adapters and real RTE data, every
point trained, selected on the carved split and scored on the whole dev split; resumed without retraining; the
CLI's table and the Home page's chart read the same file."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from fusionlab.curve import CURVES_DIR, CurvePlan, LearningCurve, curve_path, format_summary, run_curve
from fusionlab.dashboard import curve_view
from fusionlab.dashboard.settings import HOME_KEY
from fusionlab.pack import PACK_DIR, read_card
from fusionlab.workspace import Workspace
from tests.test_app_pages import PAGES

TINY = dict(target="rte", sources=["mnli", "sst2"], sizes=[16, 48], seeds=[1], steps=4, batch_size=8,
            max_length=32, max_eval_samples=16, patience=2)  # fmt: skip


def test_a_plan_names_its_bad_field_and_bounds_its_size():
    with pytest.raises(ValueError, match=r"CurvePlan\.sizes"):
        CurvePlan(sizes=[0])
    with pytest.raises(ValueError, match="at most 60 points"):
        CurvePlan(sizes=list(range(1, 32)), seeds=[1, 2])
    budget = CurvePlan().budget(100, seed=3)
    assert (budget.max_train_samples, budget.seed, budget.steps) == (100, 3, -1)  # by epochs, seeded subset
    assert budget.epochs * 7 >= 300 and budget.early_stopping_patience == 6  # about 300 steps at 7 per epoch


@pytest.mark.slow
def test_a_tiny_curve_is_measured_resumed_printed_and_drawn(tiny_workspace, tmp_path, shared_data_dir, monkeypatch):
    workspace = Workspace(shutil.copytree(tiny_workspace.root, tmp_path / "ws"))
    plan = CurvePlan(**TINY)
    out = curve_path(workspace, plan)
    curve = run_curve(plan, workspace, str(shared_data_dir), out, log=lambda m: None)
    assert [(p.size, p.seed) for p in curve.points] == [(16, 1), (48, 1)]
    for point in curve.points:
        assert point.adapter.examples == point.fusion.examples == 277  # the whole RTE dev split, both
        assert point.difference.value == pytest.approx(point.fusion.value - point.adapter.value)
        assert point.difference.low <= point.difference.value <= point.difference.high
    assert set(workspace.list_fusions()) >= {"rte-k16-s1-attention", "rte-k48-s1-attention"}
    assert LearningCurve.load(out) == curve and json.loads(out.read_text())["schema_version"] >= 2

    trained = {n: (workspace.adapter_dir(n) / "fusionlab.json").stat().st_mtime_ns for n in ("rte-k16-s1",)}
    again = run_curve(plan, workspace, str(shared_data_dir), out, log=lambda m: None)  # resumed: nothing to do
    assert again == curve
    assert (workspace.adapter_dir("rte-k16-s1") / "fusionlab.json").stat().st_mtime_ns == trained["rte-k16-s1"]
    with pytest.raises(ValueError, match="another plan"):
        run_curve(CurvePlan(**{**TINY, "seeds": [2]}), workspace, str(shared_data_dir), out)

    table = format_summary(curve)
    assert table.splitlines()[0].split()[:2] == ["k", "seeds"] and len(table.splitlines()) == 4
    for line, point in zip(table.splitlines()[2:], curve.points):  # each seed's paired interval, signed
        assert point.difference.bounds_text() in line

    monkeypatch.setenv("FUSIONLAB_PACK", "off")
    [saved] = curve_view.saved_curves(workspace)
    chart = curve_view.curve_chart(saved.curve)
    assert len(chart.data) == 4 and list(chart.layout.yaxis.range)[1] == 1.0
    at = AppTest.from_file(str(PAGES / "home.py"), default_timeout=120)
    at.session_state[HOME_KEY] = str(workspace.root)
    at.run()
    assert not at.exception, at.exception
    assert any("little data" in h.value for h in at.subheader)
    assert any("its adapter trained on k examples" in c.value for c in at.caption)


@pytest.mark.slow
def test_the_cli_prints_the_curve(tiny_workspace, tmp_path, shared_data_dir):
    from fusionlab.cli import main

    home = shutil.copytree(tiny_workspace.root, tmp_path / "ws")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["curve", "--target", "cb", "--sources", "mnli,sst2", "--sizes", "16", "--seeds", "1",
                     "--steps", "2", "--selection-examples", "24", "--home", str(home), "--data-dir", str(shared_data_dir)])  # fmt: skip
    assert code == 0, out.getvalue()
    assert "saved: " in out.getvalue() and (home / "curves" / "cb-attention.json").is_file()
    assert LearningCurve.load(home / "curves" / "cb-attention.json").plan.max_eval_samples == 24


@pytest.mark.parametrize("flag, value", [("--selection-examples", "0"), ("--steps", "two"), ("--steps", "10000000")])
def test_the_cli_refuses_an_unbounded_curve_in_the_users_words(flag, value, capsys):
    from fusionlab.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["curve", flag, value])
    assert raised.value.code == 2 and flag in capsys.readouterr().err


SHIPPED = PACK_DIR / CURVES_DIR / "imdb-attention.json"


def test_the_shipped_curve_is_the_default_plan_and_home_lists_it_with_what_is_not_measured_yet(tmp_path, monkeypatch):
    """The pack's curve is what `fusionlab curve` measures with its defaults, in its order (smallest k first),
    every measured k with all its seeds, both models scored on the whole IMDb dev split; its k = 100 is the pack's
    imdb-attention design (same sources). A curve stopped part-way says on Home which sizes it has not measured."""
    curve = LearningCurve.load(SHIPPED)
    plan = CurvePlan()
    assert curve.plan == plan
    measured = sorted({p.size for p in curve.points})
    assert len(measured) >= 3 and measured == plan.sizes[: len(measured)]
    assert sorted((p.size, p.seed) for p in curve.points) == sorted(itertools.product(measured, plan.seeds))
    for point in curve.points:
        assert point.adapter.examples == point.fusion.examples == point.difference.examples == 2_000
        assert point.difference.value == pytest.approx(point.fusion.value - point.adapter.value)
        assert point.adapter_steps > 0 and point.fusion_steps > 0
    assert read_card(PACK_DIR / "fusions" / "imdb-attention").adapters == ["imdb", *plan.sources]

    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))
    [saved] = curve_view.saved_curves(Workspace(tmp_path / "ws"))
    assert (saved.source, saved.name, saved.error) == ("pack", "imdb-attention", None)
    assert curve_view.curve_chart(saved.curve) is not None
    text = curve_view.describe(saved.curve)
    assert all(f"k={size:,}:" in text for size in measured)
    for size in measured:  # each mean gain is read with every seed's paired interval that judges it
        at_size = text.split(f"k={size:,}:")[1].split("; k=")[0]
        assert all(p.difference.bounds_text() in at_size for p in curve.points_at(size))
    pending = [k for k in plan.sizes if k not in measured]
    assert ("Not measured yet: k=" + ", ".join(f"{k:,}" for k in pending) in text) == bool(pending)


def test_pack_md_shows_the_shipped_curve_point_by_point():
    """docs/pack.md's learning-curve table is the shipped curve: each size's adapter and fusion scores per seed and
    each seed's paired difference with its interval, so a curve measured again cannot leave old numbers there."""
    import re

    doc = (PACK_DIR.parents[1] / "docs" / "pack.md").read_text(encoding="utf-8").replace("\u2212", "-")
    rows = [line for line in doc.splitlines() if re.match(r"\| [\d,]+ \| 0\.\d{3}, ", line)]
    curve = LearningCurve.load(SHIPPED)
    assert [int(row.split("|")[1].replace(",", "")) for row in rows] == [r.size for r in curve.summary()]
    for row in rows:
        size, adapter, fusion, paired = (cell.strip() for cell in row.strip("|").split("|"))
        points = curve.points_at(int(size.replace(",", "")))
        assert adapter == ", ".join(f"{p.adapter.value:.3f}" for p in points), size
        assert fusion == ", ".join(f"{p.fusion.value:.3f}" for p in points), size
        differences = ", ".join(f"{p.difference.value:+.3f} {p.difference.bounds_text()}" for p in points)
        assert paired.startswith(differences + ":"), size
