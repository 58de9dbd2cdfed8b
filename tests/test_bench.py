"""The fusion-overhead benchmark runs end to end and reports every configuration (never asserts on speed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusionlab.pack.store import read_manifest

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *arguments: str, data_dir: Path) -> subprocess.CompletedProcess:
    """``python bench/<script> <arguments>`` on the task data at ``data_dir``; asserts that it succeeded."""
    env = {**os.environ, "FUSIONLAB_DATA_DIR": str(data_dir)}
    command = [sys.executable, str(REPO / "bench" / script), *arguments]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_fusion_overhead_quick_run_reports_every_configuration(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from fusion_overhead import CONFIGS, SHAPES
    finally:
        sys.path.remove(str(REPO / "bench"))
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fusion_overhead.py"), "--quick", "--warmup", "0", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["torch"] and report["machine"]["torch_threads"] >= 1
    rows = {(r["config"], r["batch"], r["tokens"]): r for r in report["results"]}
    for config in CONFIGS:
        for batch, tokens in SHAPES:
            row = rows[(config.name, batch, tokens)]
            assert row["median_ms"] > 0 and row["ratio_to_base"] > 0 and row["cpu_ratio_to_base"] > 0
        assert rows[("base", 1, 32)]["ratio_to_base"] == 1.0
    assert "| attention N=8 | 32×64 |" in proc.stdout  # the Markdown table


@pytest.mark.slow
def test_grad_checkpointing_bench_reports_both_modes(tmp_path):
    out = tmp_path / "gc.json"
    command = [sys.executable, str(REPO / "bench" / "grad_checkpointing.py"), "--batch", "4", "--tokens", "32"]
    proc = subprocess.run(
        [*command, "--steps", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["checkpointing"] for row in report["results"]] == [False, True]
    assert all(row["median_step_s"] > 0 for row in report["results"])
    assert "| activation checkpointing | peak memory (MiB) | median step (s) |" in proc.stdout


@pytest.mark.slow
def test_classroom_load_bench_runs_a_small_class(tmp_path, shared_data_dir):
    """A small class through the real server: one Chromium tab and two protocol sessions, two simultaneous
    queue clicks. Every action is answered (no error) and each click records exactly one run. Its second phase
    trains a queued run on the task data, so it needs ../shared/data (skipped without it, like every test that
    trains)."""
    import shutil

    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed")
    out = tmp_path / "classroom.json"
    command = [sys.executable, str(REPO / "bench" / "classroom_load.py"), "--visitors", "3", "--browsers", "1"]
    command += ["--arrival", "1", "--seconds", "6", "--pace", "3", "--queuers", "2", "--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    idle, training = json.loads(out.read_text())["phases"]
    for phase in (idle, training):
        assert phase["errors"] == 0, phase["error_samples"]
        assert phase["page_load_p50_s"] is not None and phase["session_load_p50_s"] is not None
        assert phase["session_interactions"] >= 1 and phase["server_cpu_s"] > 0
    assert idle["queue_clicks"] == idle["runs_recorded"] == 2, idle["queue_answers"]
    assert "| idle |" in proc.stdout and "| training run going |" in proc.stdout


@pytest.mark.slow
def test_salience_bench_times_both_models_on_forty_tokens(tmp_path):
    out = tmp_path / "salience.json"
    command = [sys.executable, str(REPO / "bench" / "salience.py"), "--quick", "--repeats", "1", "--out", str(out)]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)
    report = json.loads(out.read_text())
    assert report["tokens"] == 40 and report["threads"] == 2
    (row,) = report["rows"]
    assert row["what"] == "both (adaptive)" and row["seconds"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "fusionlab" / "pack_data" / "pack.json").is_file(), reason="the pack is not built")
def test_quality_bench_resumes_by_seed_and_method_and_refuses_other_settings(
    tmp_path, shared_data_dir, monkeypatch, capsys
):
    """A quick CB comparison (its table flags an adapter at or below the majority class); a rerun that finds its
    seed already measured and trains nothing; a rerun with one more method that trains only that fusion, paired
    with the saved seed's adapter; a saved adapter score that no longer matches, refused; and other settings,
    refused rather than mixed into the same table. The first run is the command itself; the reruns call its
    ``main`` in this process (the same code, without starting torch again for each)."""
    arguments = ["--quick", "--tasks", "cb", "--data-dir", str(shared_data_dir), "--out", str(tmp_path)]
    pack = str(REPO / "fusionlab" / "pack_data")  # conftest turns the pack off
    command = [sys.executable, str(REPO / "bench" / "quality.py"), *arguments, "--seeds", "1", "--methods", "attention"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                           env={**os.environ, "FUSIONLAB_PACK": pack})  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    monkeypatch.setenv("FUSIONLAB_PACK", pack)
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import quality as bench

    def quality(*extra: str) -> str:
        """The bench's output of a rerun (a refusal raises SystemExit with its message)."""
        monkeypatch.setattr(sys, "argv", ["quality.py", *arguments, *extra])
        capsys.readouterr()
        bench.main()
        return capsys.readouterr().out

    result = tmp_path / "quality-cb.json"
    saved = json.loads(result.read_text())
    [row] = saved["rows"]["cb"]
    assert row["seed"] == 1 and row["single"]["n"] == 56 and "weighted" not in row
    assert row["attention - single"]["verdict"] in ("better", "worse", "within noise")
    manifest = read_manifest(REPO / "fusionlab" / "pack_data")
    assert saved["args"]["pack"] == manifest.weights_digest()  # which weights were fused
    assert saved["args"]["learning_rate_scales"]["weighted"] == {"fusion_weights": 100.0}
    legacy = json.loads(result.read_text())
    del legacy["args"]["pack"], legacy["args"]["learning_rate_scales"]  # as saved before they were recorded
    result.write_text(json.dumps(legacy))
    again = quality("--seeds", "1", "--methods", "attention")
    assert "cb seed 1: already in" in again
    assert "saved before it recorded pack: recording" in again  # the converged pack is in use: stamped
    assert json.loads(result.read_text())["rows"] == saved["rows"]  # nothing retrained
    table = (tmp_path / "quality-cb.md").read_text()
    beyond = int(row["single"]["low"] > 50.0)  # on its interval; CB's majority class scores 50.0 on its 56 dev examples
    assert "| cb | accuracy | 56 | 50.0 |" in table and f"| {beyond} of 1 |" in table
    assert ("did not learn" in table) == (not beyond)  # a 3-step adapter usually has not: the table says so

    more = quality("--seeds", "1", "--methods", "attention,weighted")
    assert "training it again" not in more
    grown_file = json.loads(result.read_text())
    [grown] = grown_file["rows"]["cb"]
    kept = [k for k in row if k not in ("seconds", "fusion_stats")]  # these two gain a weighted entry
    assert {k: grown[k] for k in kept} == {k: row[k] for k in kept}  # adapter and attention fusion as they were,
    assert {k: grown["seconds"][k] for k in row["seconds"]} == row["seconds"]  # not retrained (times unchanged)
    assert grown["seconds"].keys() == {"single", "attention", "weighted"} and grown_file["args"]["methods"] == (
        "attention,weighted"
    )  # only the weighted fusion was trained, and the file says which methods it holds
    assert grown_file["args"]["pack"] == saved["args"]["pack"]  # the legacy file, stamped with the converged pack
    assert grown["weighted"]["n"] == 56 and grown["weighted - single"]["verdict"] in ("better", "worse", "within noise")
    assert "Δ weighted (paired)" in (tmp_path / "quality-cb.md").read_text()

    tampered = json.loads(result.read_text())
    tampered["rows"]["cb"][0]["single_predictions"] = "0" * 64  # the same score, other predictions: another adapter
    result.write_text(json.dumps(tampered))
    with pytest.raises(SystemExit, match="predicts other dev examples"):
        quality("--seeds", "1", "--methods", "average")
    assert "average" not in json.loads(result.read_text())["rows"]["cb"][0]  # nothing added to the mismatched seed

    tampered["args"]["pack"] = "0" * 16  # measured on another pack's weights
    result.write_text(json.dumps(tampered))
    with pytest.raises(SystemExit, match="other pack:"):
        quality("--seeds", "2", "--methods", "attention")
    with pytest.raises(SystemExit, match="other pack_target"):
        quality("--seeds", "1", "--methods", "attention", "--pack-target")


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "fusionlab" / "pack_data" / "pack.json").is_file(), reason="the pack is not built")
def test_weighted_lr_sweep_shows_the_logits_move_only_at_a_scaled_rate(tmp_path, shared_data_dir):
    """Three-step CB fusions over the pack's adapters: at the run's own rate the weighted fusion's weights stay
    uniform to a few thousandths, at 100 times it they move ten times as far; the average fusion is the paired
    reference, and a rerun trains nothing."""
    out = tmp_path / "weighted.json"
    command = [sys.executable, str(REPO / "bench" / "weighted_lr.py"), "--quick", "--task", "cb", "--scales", "1,100",
               "--data-dir", str(shared_data_dir), "--workspace", str(tmp_path / "ws"), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "FUSIONLAB_PACK": str(REPO / "fusionlab" / "pack_data")}  # conftest turns it off
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads(out.read_text())
    average, plain, scaled = saved["runs"]
    assert [r["candidate"] for r in saved["runs"]] == ["average", "weighted x1", "weighted x100"]
    assert average["vs_average"] is None and plain["vs_average"]["examples"] == 56 == scaled["dev"]["examples"]
    assert plain["furthest_from_uniform"] < 0.01 < scaled["furthest_from_uniform"]
    assert scaled["furthest_from_uniform"] > 10 * plain["furthest_from_uniform"]
    assert "| weighted x100 |" in proc.stdout and "◀" in proc.stdout
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0 and ": weighted x" not in again.stdout and json.loads(out.read_text()) == saved


@pytest.mark.slow
def test_encoder_ratio_bench_reports_both_stages_and_their_ratio(tmp_path, shared_data_dir):
    out = tmp_path / "ratio.json"
    proc = run_bench("encoder_ratio.py", "--quick", "--device", "cpu", "--out", str(out), data_dir=shared_data_dir)
    report = json.loads(out.read_text())
    steps = {row["stage"]: row for row in report["results"]}
    assert set(steps) == {"encoder", "fusion"} and all(row["real_tokens_per_s"] > 0 for row in steps.values())
    assert report["ratio"] == pytest.approx(
        steps["fusion"]["real_tokens_per_s"] / steps["encoder"]["real_tokens_per_s"]
    )
    assert report["machine"]["precision"] == "fp32" and "÷ frozen encoder forward+backward" in proc.stdout


@pytest.mark.slow
def test_train_throughput_bench_measures_each_task_at_its_recipes_shape(tmp_path, shared_data_dir):
    """Two real tasks, one step each, no bf16: a row per task, stage and batching, each at the batch size and
    max_length the pack recipe trains that task with; grouped batches carry less padding than fixed ones."""
    from fusionlab.pack.recipe import ADAPTERS

    out = tmp_path / "throughput.json"
    arguments = ["--tasks", "rte,cola", "--steps", "1", "--bf16-steps", "0", "--out", str(out)]
    proc = run_bench("train_throughput.py", *arguments, data_dir=shared_data_dir)
    rows = json.loads(out.read_text())["results"]
    assert {(r["task"], r["stage"], r["batching"]) for r in rows} == {
        (t, s, b) for t in ("rte", "cola") for s in ("adapter", "fusion") for b in ("fixed", "random", "grouped")
    }
    for row in rows:
        recipe = next(r for r in ADAPTERS if r.task == row["task"])
        assert (row["batch"], row["max_length"]) == (recipe.batch_size, recipe.max_length)
        assert row["precision"] == "fp32" and row["median_step_s"] > 0 and row["real_tokens_per_s"] > 0
    shares = {(r["task"], r["stage"], r["batching"]): r["padding_share"] for r in rows}
    assert all(
        shares[(t, s, "grouped")] < shares[(t, s, "fixed")] for t in ("rte", "cola") for s in ("adapter", "fusion")
    )
    assert "rte fusion: grouped vs fixed padding" in proc.stdout


def test_lr_sweep_changes_only_the_rate_and_epochs_and_resumes_by_both():
    """A sweep row is the pack's recipe with one rate (and maybe other epochs); a rerun skips only that row."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from lr_sweep import _same_run, sweep_recipe
    finally:
        sys.path.remove(str(REPO / "bench"))
    from fusionlab.pack.recipe import ADAPTERS

    pack = next(r for r in ADAPTERS if r.task == "mnli")
    longer = sweep_recipe("mnli", 3e-4, None, 10)
    assert (longer.learning_rate, longer.epochs) == (3e-4, 10)
    assert {**longer.to_dict(), "learning_rate": pack.learning_rate, "epochs": pack.epochs} == pack.to_dict()
    assert (
        sweep_recipe("mnli", 1e-3, 2, None).epochs == 2 and sweep_recipe("mnli", 1e-3, 99, None).epochs == pack.epochs
    )
    row = {"task": "mnli", "learning_rate": 1e-3, "recipe": sweep_recipe("mnli", 1e-3, None, None).to_dict()}
    assert _same_run(row, sweep_recipe("mnli", 1e-3, None, None))
    assert not _same_run(row, sweep_recipe("mnli", 1e-3, None, 10))
    assert not _same_run(row, sweep_recipe("mnli", 3e-4, None, None))


def test_pack_rebuild_tells_a_reproduced_artifact_from_a_changed_one_and_a_copied_one(tmp_path):
    """On a copy of the bundled pack: an artifact whose card and config changed (a rebuild's own wall time, a key a
    newer fusionlab records) is rebuilt with the same weights; one whose weights and a prediction changed is
    rebuilt and not the same; the rest were copied, not rebuilt, and stay out of the total. The table says so."""
    import shutil

    sys.path.insert(0, str(REPO / "bench"))
    try:
        from pack_rebuild import compare, summary
    finally:
        sys.path.remove(str(REPO / "bench"))
    from fusionlab.pack.store import PACK_DIR

    rebuilt = tmp_path / "rebuild"
    shutil.copytree(PACK_DIR, rebuilt)

    def rewrite_card(name: str, seconds: float, flip_first_prediction: bool = False) -> None:
        path = rebuilt / "adapters" / name / "card.json"
        card = json.loads(path.read_text())
        card["wall_seconds"] = seconds
        if flip_first_prediction:
            first = card["dev"]["predictions"][0]
            card["dev"]["predictions"] = ("1" if first == "0" else "0") + card["dev"]["predictions"][1:]
        path.write_text(json.dumps(card, indent=2))

    rewrite_card("rte", 1234.5)
    config = rebuilt / "adapters" / "rte" / "fusionlab.json"  # written by a newer fusionlab: one more key
    meta = json.loads(config.read_text())
    meta["extra"]["recorded_later"] = {}
    config.write_text(json.dumps(meta))
    rewrite_card("cb", 200.0, flip_first_prediction=True)
    weights = rebuilt / "adapters" / "cb" / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))

    rows = {row["name"]: row for row in compare(PACK_DIR, rebuilt)}
    assert rows["rte"]["rebuilt"] and rows["rte"]["seconds"] == 1234.5
    assert rows["rte"]["same_weights"] and rows["rte"]["same_predictions"] and rows["rte"]["same_best_step"]
    assert rows["cb"]["rebuilt"] and rows["cb"]["changed_files"] == ["adapter.safetensors"]
    assert rows["cb"]["metadata_differences"] == {}
    assert rows["rte"]["metadata_differences"] == {"fusionlab.json": ["extra.recorded_later"]}
    assert not rows["cb"]["same_weights"] and not rows["cb"]["same_predictions"]
    totals = summary(list(rows.values()))
    assert totals["rebuilt"] == 2 and totals["rebuilt_seconds"] == 1434.5 and not totals["all_identical"]
    assert set(totals["not_rebuilt"]) == set(rows) - {"rte", "cb"}

    out = tmp_path / "rebuild.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "pack_rebuild.py"), str(rebuilt), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| cb | 3.3 |" in proc.stdout and "| no | no |" in proc.stdout  # weights and predictions
    assert json.loads(out.read_text())["summary"]["rebuilt_seconds"] == 1434.5


def test_quality_bench_judges_an_adapter_on_its_interval_as_results_md_marks_it():
    """``quality.py``'s "adapters beyond majority" column and its notes use the interval rule every view uses
    (a point above the majority whose interval reaches it has not learned): on the committed record they mark
    exactly the seeds docs/results.md marks "not beyond the majority class"."""
    import re

    sys.path.insert(0, str(REPO / "bench"))
    try:
        from quality import untrained
    finally:
        sys.path.remove(str(REPO / "bench"))
    record = json.loads((REPO / "bench" / "records" / "quality-cb-rte-mrpc.json").read_text())
    marked: dict[str, set[int]] = {}
    majorities: dict[str, float] = {}
    task = None
    for line in (REPO / "docs" / "results.md").read_text().splitlines():
        if head := re.match(r"\| (\w+)(?:, \w+)? \([\d,]+, ([\d.]+)\) \| (\d) \|", line):
            task, seed = head[1], int(head[3])
            majorities[task], marked[task] = float(head[2]), set()
        elif task and (row := re.match(r"\| \| (\d) \|", line)):
            seed = int(row[1])
        else:
            continue
        if "not beyond the majority class" in line.split("|")[3]:
            marked[task].add(seed)
    assert set(marked) == set(record["rows"]) == {"cb", "rte", "mrpc"}
    for name, runs in record["rows"].items():
        assert set(untrained(runs, majorities[name])) == marked[name], name
    assert any(marked.values())  # the rule has seeds to mark; a point-score rule would mark fewer
