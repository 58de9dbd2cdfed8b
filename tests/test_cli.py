"""The `fusionlab` command line end to end in a temporary workspace, through the real queue and worker."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusionlab.pack.store import PACK_DIR
from fusionlab.runstore import RunStore
from fusionlab.worker import pid_alive, worker_pid
from fusionlab.workspace import Workspace
from tests.conftest import cli, cli_process

LIMITS = ["--max-steps", "2", "--max-train-samples", "32", "--max-eval-samples", "16", "--max-length", "32"]


def fusionlab(home, *args, timeout=300):
    return cli_process(*args, env={**os.environ, "FUSIONLAB_HOME": str(home), "HF_HUB_OFFLINE": "1"}, timeout=timeout)


@pytest.fixture
def home(tmp_path):
    yield tmp_path
    pid = worker_pid(Workspace(tmp_path))
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_cli_end_to_end(home, shared_data_dir):
    data = ["--data-dir", str(shared_data_dir)]
    for task in ("rte", "sst2"):
        done = fusionlab(home, "train-adapter", task, "--adapter-size", "8", *LIMITS, *data)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "run " in done.stdout and "dev accuracy: " in done.stdout and "(n=" in done.stdout  # its interval
    done = fusionlab(
        home, "train-fusion", "rte", "--adapters", "rte,sst2", "--method", "weighted", "--name", "fz", *LIMITS, *data
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(Workspace(home).list_adapters()) == ["rte", "sst2"] and Workspace(home).list_fusions() == ["fz"]

    done = cli(home, "evaluate", "fz", "--max-samples", "16", *data)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy:" in done.stdout and "layer 6:" in done.stdout and "confusion matrix" in done.stdout
    assert "gold \\ predicted  entailment not_entailment" in done.stdout  # the predicted columns are named
    assert "(n=16)" in done.stdout and "selected on 16 selection examples" in done.stdout  # interval, selection
    done = cli(home, "predict", "fz", "A man is sleeping.", "Nobody is asleep.", "--adapters", "rte")
    assert done.returncode == 0 and "prediction:" in done.stdout and "(adapters: rte)" in done.stdout

    done = cli(home, "evaluate", "fz", "--max-samples", "16", "--split", "selection", *data)
    assert done.returncode == 0 and "16 selection (carved from train) examples" in done.stdout

    done = cli(home, "runs")
    assert done.returncode == 0 and done.stdout.count("finished") == 3
    listed = [line for line in done.stdout.splitlines() if "finished" in line]
    assert all(re.search(r"accuracy \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \(n=16\)", line) for line in listed), listed
    [fused] = [line for line in listed if " fz " in line]  # a fusion also says how it compares with its adapter
    assert re.search(r"vs its own adapter [+-]\d\.\d{3} \[.*\] \(n=16, (better|worse|within noise)\)", fused), fused
    assert "train_fusion" in cli(home, "runs", "show", "3").stdout
    records = json.loads(cli(home, "runs", "--json").stdout)
    assert [r["status"] for r in records] == ["finished"] * 3 and {r["kind"] for r in records} >= {"train_fusion"}
    shown = json.loads(cli(home, "runs", "show", "3", "--json").stdout)
    assert shown["name"] == "fz" and shown["progress"] == 1 and shown["error"] is None
    assert 0 <= shown["metrics"]["accuracy"] <= 1 and "(n=16)" in shown["score"]
    assert shown["result"]["selection"]["selected_on"] == "selection"
    assert "finished" in cli(home, "runs", "cancel", "1").stdout  # an ended run stays as it was


def test_cli_reports_bad_input_clearly(home):
    done = cli(home, "train-adapter", "sst2", "--adapter-size", "0", "--inline")
    assert done.returncode == 2 and "AdapterConfig.adapter_size" in done.stderr and "Traceback" not in done.stderr
    done = cli(home, "train-adapter", "nosuchtask", "--inline")
    assert done.returncode == 2 and "nosuchtask" in done.stderr and "Traceback" not in done.stderr
    done = cli(home, "predict", "ghost", "hello")
    assert done.returncode == 2 and "no adapter or fusion named 'ghost'" in done.stderr
    done = cli(home, "runs", "show", "42")
    assert done.returncode == 2 and "no run with id 42" in done.stderr
    done = cli(home, "--help")
    assert done.returncode == 0 and "train-fusion" in done.stdout and "demo" in done.stdout


def queue_long_sst2_run(root, data_dir):
    """A real adapter run far too long to finish during a test, queued in a fresh workspace at ``root``."""
    workspace = Workspace(root).ensure()
    store = RunStore(workspace.runs_db)
    config = {
        "task": "sst2",
        "adapter_config": {"adapter_size": 8},
        "model_config": {"max_length": 32},
        "training_config": {"max_steps": 2000, "per_device_train_batch_size": 4, "max_eval_samples": 8},
        "data_dir": str(data_dir),
    }
    return workspace, store, store.enqueue("train_adapter", "sst2", config)


@pytest.mark.slow
def test_worker_killed_mid_training_leaves_failed_run_and_no_checkpoint(tmp_path, shared_data_dir):
    workspace, store, run_id = queue_long_sst2_run(tmp_path, shared_data_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while store.get(run_id).progress < 0.002 and time.monotonic() < deadline:  # a few real steps done
        time.sleep(0.2)
    assert store.get(run_id).status == "running"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert not (workspace.adapters_dir / "sst2").exists()
    assert workspace.list_adapters() == []
    failed = store.mark_dead_runs_failed(pid_alive)  # what the next worker does when it starts
    assert failed == [run_id]
    run = store.get(run_id)
    assert run.status == "failed" and str(worker.pid) in run.error


@pytest.mark.slow
def test_cancel_stops_a_real_training_run_within_seconds(tmp_path, shared_data_dir):
    from fusionlab.worker import ensure_worker

    workspace, store, run_id = queue_long_sst2_run(tmp_path, shared_data_dir)
    ensure_worker(workspace, idle_exit_seconds=2)
    deadline = time.monotonic() + 180
    while store.get(run_id).progress <= 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    store.request_cancel(run_id)
    asked = time.monotonic()
    while store.get(run_id).status == "running" and time.monotonic() - asked < 30:
        time.sleep(0.1)
    assert store.get(run_id).status == "cancelled"
    assert not (workspace.adapters_dir / "sst2").exists()


@pytest.mark.slow
def test_train_adapter_on_users_own_csv(home, tmp_path):
    rows = ["review,verdict"]
    for i, thing in enumerate(["soup", "film", "game", "song", "book", "hotel", "phone", "chair", "bike", "lamp"]):
        rows.append(f"I really loved this {thing},good")
        rows.append(f"this {thing} was awful and I want my money back,bad")
        rows.append(f"number {i} {thing} made me smile,good")
    data = tmp_path / "reviews.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = fusionlab(
        home,
        "train-adapter",
        "myreviews",
        "--file",
        str(data),
        "--text-columns",
        "review",
        "--label-column",
        "verdict",
        "--inline",
        "--max-steps",
        "2",
        "--max-length",
        "24",
        "--adapter-size",
        "4",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "adapter myreviews on myreviews" in done.stdout
    done = cli(home, "predict", "myreviews", "what a lovely lamp")
    assert done.returncode == 0 and ("good" in done.stdout and "bad" in done.stdout)
    bad = tmp_path / "broken.csv"
    bad.write_text("review,verdict\nfine text,good\n,bad\n", encoding="utf-8")
    done = fusionlab(
        home,
        "train-adapter",
        "broken",
        "--file",
        str(bad),
        "--text-columns",
        "review",
        "--label-column",
        "verdict",
        "--inline",
    )
    assert done.returncode == 2 and "broken.csv, line 3" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train-adapter", "rte", "--name", "x" * 300], "AdapterRun.name: must be at most 64 characters"),
        (["train-fusion", "rte", "--adapters", "rte,sst2", "--name", "../escape"], "FusionRun.name: '../escape'"),
        (["train-adapter", "rte", "--adapter-size", "200000"], "adapter_size: must be at most 4,096"),
        (["train-adapter", "rte", "--batch-size", "1000000"], "must be at most 4,096"),
        (["train-adapter", "rte", "--max-length", "1000"], "has 512 positions"),
        (["train-adapter", "rte", "--max-steps", "1000000000"], "max_steps: must be at most 1,000,000"),
        (["worker", "--device", "gpu"], "'cuda:N'"),
    ],
)
def test_bad_names_and_sizes_are_refused_before_anything_is_queued(home, args, message):
    done = cli(home, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    if (home / "runs.sqlite").exists():
        assert RunStore(home / "runs.sqlite").list_runs() == []


def test_version_and_profiles_are_documented(home):
    done = cli(home, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"fusionlab {__import__('fusionlab').__version__}"
    helped = cli(home, "train-adapter", "--help").stdout
    assert "--profile {recipe,classroom,compare}" in helped and "a short run that ends while" in helped


def test_serve_refuses_bad_server_settings_in_the_terminal(home, tmp_path):
    """A too-short teacher passphrase stops `fusionlab serve` before any student connects, not after."""
    short = tmp_path / "short.txt"
    short.write_text("abc123\n", encoding="utf-8")
    done = cli(home, "serve", "--check", "--classroom", "--teacher-passphrase-file", str(short))
    assert done.returncode == 2 and "was not started" in done.stderr and "at least 8 characters" in done.stderr
    good = tmp_path / "good.txt"
    good.write_text("correct horse battery\n", encoding="utf-8")
    done = cli(home, "serve", "--check", "--classroom", "--teacher-passphrase-file", str(good))
    assert done.returncode == 0 and "settings checked (classroom" in done.stdout


# -- help and output hygiene ------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def help_text(capsys, monkeypatch, *argv):
    """What `fusionlab ARGV --help` prints, wide enough that no description is wrapped mid-sentence."""
    from fusionlab.cli import main

    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_compare_help_lists_every_method(capsys, monkeypatch):
    from fusionlab.composition.methods import FINETUNED, methods

    shown = help_text(capsys, monkeypatch, "compare")
    for method in (*methods().values(), *FINETUNED.values()):
        assert f"  {method.name}: {method.description}" in shown


@pytest.mark.parametrize(
    ("command", "choices", "default"),
    [
        (["runs"], "RUNS_ACTIONS", "(default: list)"),
        (["pack"], "PACK_ACTIONS", None),
        (["demo"], "DEMO_PROFILES", "(default: classroom)"),
    ],
)
def test_help_describes_each_choice(capsys, monkeypatch, command, choices, default):
    from fusionlab import cli

    shown = help_text(capsys, monkeypatch, *command)
    described = getattr(cli, choices)
    assert "{" + ",".join(described) + "}" in shown  # the choices argparse accepts are the ones described
    for name, text in described.items():
        assert f"{name}: {text}" in shown
    assert default is None or default in shown


def test_help_shows_defaults_but_not_unset_options(capsys, monkeypatch):
    shown = help_text(capsys, monkeypatch, "compare")
    assert "training steps of every trained method (default: 200)" in shown
    assert "(default: None)" not in shown and "(default: False)" not in shown


def test_the_demo_help_describes_the_demo_profiles_that_exist():
    from fusionlab.cli import DEMO_PROFILES
    from fusionlab.demo import PROFILES

    assert list(DEMO_PROFILES) == list(PROFILES)


HEAVY = ("torch", "transformers", "pandas", "streamlit")
RUN_THEN_LIST_HEAVY = f"""
import sys
from fusionlab.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def heavy_modules_after(*argv):
    """Which of torch, transformers, pandas, streamlit a fresh interpreter holds after `fusionlab ARGV`."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_THEN_LIST_HEAVY, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_importing_the_cli_loads_no_torch():
    code = "import fusionlab.cli, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "False False", done.stdout + done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["runs", "--help"], ["train-fusion", "--help"], ["demo", "--help"]])
def test_help_loads_no_deep_learning_stack(argv):
    """Help answers at once: only `compare --help`, which lists the composition lab's methods, loads torch."""
    assert heavy_modules_after(*argv) == "[]"


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
def test_predict_prints_the_answer_without_loading_bars(home):
    env = {**os.environ, "FUSIONLAB_HOME": str(home), "FUSIONLAB_PACK": str(PACK_DIR), "HF_HUB_OFFLINE": "1"}
    done = cli_process("predict", "sst2", "What a wonderful film.", env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prediction:" in done.stdout
    assert "Loading weights" not in done.stdout + done.stderr


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
def test_pack_verify_checks_an_artifact_and_says_what_it_needs(home, shared_data_dir, monkeypatch):
    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))
    done = fusionlab(home, "pack", "verify", "--only", "cb", "--examples", "20", "--data-dir", str(shared_data_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"cb: (19|20)/20 dev predictions as on its card", done.stdout), done.stdout  # 1 may differ
    assert "1 of 1 models checked: 1 reproduce their card, 0 do not; 0 not checkable" in done.stdout
    assert "Tokenising" not in done.stdout + done.stderr and "Loading weights" not in done.stdout + done.stderr
    missing = cli(home, "pack", "verify", "--data-dir", str(home / "no-data"))
    assert missing.returncode == 2 and "needs the task data" in missing.stderr
    unbounded = cli(home, "pack", "verify", "--examples", "1000000")
    assert unbounded.returncode == 2 and "--examples must be between 1 and 20,000" in unbounded.stderr
    # a pack artifact's checkpoint line is its card's: selected on the carved split, scored on all of CoLA's dev
    cola = cli(home, "evaluate", "cola", "--max-samples", "8", "--data-dir", str(shared_data_dir))
    assert cola.returncode == 0, cola.stderr[-3000:]
    assert "selected on 855 selection examples carved from train; scored on 1,043 validation" in cola.stdout
