"""Every command of the README's command-line block, as written, in a fresh workspace with the bundled pack.

Only the budget is shrunk (``--max-steps N`` becomes a two-step run on a few examples, ``evaluate`` scores a
fixed subset of the dev split, and ``demo`` gets ``--no-wait``, its runs then cancelled): the commands, their
names and their order are the README's, so a README that drifts from the code fails here. The commands that queue
runs start a fresh interpreter as a user's do; the others run through the same ``main`` in the test's process.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
from pathlib import Path

import pytest

from fusionlab.runspec import TRAIN_ADAPTER, TRAIN_FUSION
from fusionlab.runstore import RunStore
from fusionlab.worker import pid_alive, worker_pid
from fusionlab.workspace import Workspace
from tests.conftest import cli, cli_process

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = "--max-steps 2 --max-train-samples 32 --max-eval-samples 16 --max-length 32"


def readme_commands() -> list[str]:
    """The ``fusionlab ...`` commands of the bash block under "## Command line", one per entry."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Command line") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)]
    commands = []
    for line in block.strip().splitlines():
        line = line.split("  #")[0].strip()
        commands += [part.strip() for part in line.split(";") if part.strip()]
    return commands


def shrunk(command: str) -> list[str]:
    command = re.sub(r"--max-steps \d+", TINY, command)
    if command.startswith("fusionlab evaluate "):
        command += " --max-samples 32"
    if command == "fusionlab demo":
        command += " --no-wait"
    argv = shlex.split(command)
    assert argv[0] == "fusionlab", command
    return argv[1:]


def write_reviews(path: Path) -> None:
    """A small CSV in the shape the README's last command expects (columns review, verdict)."""
    good = ["a delight from start to finish", "warm, funny and well acted", "I loved every minute of it"]
    bad = ["a dull, lifeless mess", "the plot makes no sense at all", "I walked out halfway through"]
    rows = ["review,verdict"]
    for i in range(12):
        rows.append(f'"{good[i % 3]} ({i})",positive')
        rows.append(f'"{bad[i % 3]} ({i})",negative')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def home(tmp_path: Path):
    yield tmp_path / "ws"
    pid = worker_pid(Workspace(tmp_path / "ws"))
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)


FRESH_PROCESS = ("train-adapter", "train-fusion", "demo")
"""The commands run as a user types them, in a fresh interpreter: those that queue runs and start the worker.
The others (they read, print or delete) run in the test's process through the same ``main``."""


@pytest.mark.slow
def test_every_readme_command_succeeds(home: Path, tmp_path: Path, shared_data_dir: Path, monkeypatch) -> None:
    commands = readme_commands()
    assert len(commands) >= 10 and any(c.startswith("fusionlab train-fusion") for c in commands)
    write_reviews(tmp_path / "reviews.csv")
    env = {k: v for k, v in os.environ.items() if k != "FUSIONLAB_PACK"}  # the bundled pack, as a user has it
    env |= {"FUSIONLAB_HOME": str(home), "FUSIONLAB_DATA_DIR": str(shared_data_dir), "HF_HUB_OFFLINE": "1"}
    monkeypatch.delenv("FUSIONLAB_PACK", raising=False)
    monkeypatch.setenv("FUSIONLAB_DATA_DIR", str(shared_data_dir))
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shrunk(command)
        done = cli_process(*argv, env=env, cwd=tmp_path) if argv[0] in FRESH_PROCESS else cli(home, *argv)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    workspace = Workspace(home)
    assert "cola-2" in set(workspace.list_adapters())
    assert "myreviews" not in set(workspace.list_adapters())  # trained, then deleted by the README's next line
    assert "rte-weighted" in workspace.list_fusions()  # the run's name is the checkpoint's name
    store = RunStore(workspace.runs_db)
    names = {(run.kind, run.name) for run in store.list_runs()}
    assert {(TRAIN_ADAPTER, "cola-2"), (TRAIN_FUSION, "rte-weighted"), (TRAIN_ADAPTER, "myreviews")} <= names
    demo = [run for run in store.list_runs() if run.name in ("imdb-live", "rte-live")]
    assert len(demo) == 2
    for run in demo:
        store.request_cancel(run.id)
