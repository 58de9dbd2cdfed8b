"""Shared fixtures: the real default encoder (loaded once), tiny random encoders, the shared data folder."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys

# Tests never reach the Hugging Face Hub: fail fast instead of retrying for minutes (set before transformers loads).
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
# Workspaces start empty in tests unless a test asks for the pretrained pack (tests/test_pack.py and the
# fresh-start tests set FUSIONLAB_PACK themselves): most tests count exactly what they trained.
os.environ.setdefault("FUSIONLAB_PACK", "off")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel, RobertaConfig, RobertaModel  # noqa: E402

from fusionlab.base_model import load_encoder, load_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def cli(home, *args):
    """The same command in this test's process: for commands that read, print or refuse, where a fresh interpreter
    (torch and transformers imported again, several seconds) adds nothing. Trainings and the worker, and what only
    a fresh interpreter shows (loading bars, imports), keep a subprocess. An exception that
    escapes ``main`` fails the test, as a traceback in the terminal would."""
    from fusionlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setenv("FUSIONLAB_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's refusals and --help, --version
            code = exit.code if isinstance(exit.code, int) else 2
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 600):
    """``fusionlab ARGS`` in a fresh interpreter, as a user's terminal runs it (stdin closed: nothing may wait for
    input): for what queues runs and starts the worker, and what only a fresh interpreter shows."""
    command = [sys.executable, "-m", "fusionlab.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )


@pytest.fixture(scope="session")
def _pristine_default_encoder():
    return load_encoder()


@pytest.fixture
def default_encoder(_pristine_default_encoder):
    """A fresh copy of the real all-MiniLM-L6-v2 encoder (hooks of one test never reach another)."""
    return copy.deepcopy(_pristine_default_encoder)


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


def tiny_encoder(arch: str) -> torch.nn.Module:
    """A randomly initialised 2-layer encoder of the given architecture, built offline."""
    torch.manual_seed(0)
    if arch == "bert":
        cfg = BertConfig(
            vocab_size=120,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        return BertModel(cfg)
    if arch == "roberta":
        cfg = RobertaConfig(
            vocab_size=120,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=80,
            pad_token_id=1,
        )
        return RobertaModel(cfg)
    if arch == "distilbert":
        cfg = DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)
        return DistilBertModel(cfg)
    raise ValueError(arch)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    return path


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory, shared_data_dir):
    """A small real workspace: the demo's ``tiny`` profile (4 adapters, attention + weighted fusion for RTE),
    trained for a few steps on the shared data in this process (about 25 s on 2 cores)."""
    from fusionlab.demo import demo_runs
    from fusionlab.training.jobs import execute
    from fusionlab.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("workspace")).ensure()
    for run in demo_runs("tiny", str(shared_data_dir)):
        execute(run, workspace)
    return workspace


@pytest.fixture(scope="session")
def cb_comparison(tmp_path_factory, shared_data_dir):
    """One real ``fusionlab compare cb --adapters cb,mnli,rte`` over the pack's adapters on real CB data, every
    method at a tiny budget (3 steps, 24 dev examples; about a minute on 2 cores): ``(workspace root, its
    printed output)``. The composition tests and the Compare methods page's tests read the same comparison."""
    from fusionlab.cli import main
    from fusionlab.pack.store import PACK_DIR

    home = tmp_path_factory.mktemp("compare") / "ws"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("FUSIONLAB_PACK", str(PACK_DIR))  # the pack's adapters, as a fresh workspace has them
        code = main(
            ["compare", "cb", "--adapters", "cb,mnli,rte", "--max-steps", "3", "--batch-size", "8", "--max-length",
             "64", "--max-eval-samples", "24", "--search-evaluations", "5", "--latency-repeats", "1",
             "--home", str(home), "--data-dir", str(shared_data_dir)]
        )  # fmt: skip
    assert code == 0, out.getvalue()
    return home, out.getvalue()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (``playwright install`` cannot download browsers here)."""
    import shutil

    from playwright.sync_api import sync_playwright

    from bench.chromium import CHROMIUM_FLAGS  # one list of flags for the benches and the browser tests

    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
