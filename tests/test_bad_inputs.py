"""No silent wrong answer: every bad input a careless user can produce ends in a clear error, and nothing is lost.

The broad sweep is ``bench/fuzz_inputs.py`` (data files, names, sizes, checkpoints, model paths, half-written
directories, each through the code path that meets it); its run here must find no case that is accepted,
crashes or ends in a traceback. The tests below pin the individual defects on the real code paths.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig
from fusionlab.data import DataFormatError, task_from_file
from fusionlab.pack import PACK_DIR, install_pack
from fusionlab.workspace import Workspace
from tests.conftest import tiny_encoder

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_fuzz_bench_finds_only_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz_inputs.py"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert len(results) >= 60
    bad = [r for r in results if r["outcome"] not in ("clear error", "cleaned up")]
    assert bad == []
    assert all(r["workspace_intact"] is not False for r in results)
    assert "| input | case | outcome | workspace intact | message |" in done.stdout


# -- data files ------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _registered_tasks_restored():
    """``task_from_file`` registers the user's task process-wide; leave the registry as it was."""
    from fusionlab.data import TASKS

    before = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(before)


@pytest.mark.parametrize(
    ("labels", "names"),
    [([1, 2, 3, 4, 5, 3], ["1", "2", "3", "4", "5"]), ([-1, 1, 1, -1], ["-1", "1"]), ([0, 2, 2, 0], ["0", "2"])],
)
def test_integer_labels_are_the_distinct_values_seen(tmp_path: Path, labels: list[int], names: list[str]) -> None:
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": v}) + "\n" for i, v in enumerate(labels)))
    custom = task_from_file(path, ["text"], validation_fraction=0.5)
    assert list(custom.spec.label_names) == names
    ids = list(custom.train["label"]) + list(custom.validation["label"])
    assert sorted(ids) == sorted(names.index(str(v)) for v in labels)


def test_a_typo_label_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.csv"
    path.write_text("text,label\na,0\nb,1\nc,10\nd,1\n")
    with pytest.raises(DataFormatError, match=r"typo\.csv, line 4: label 10 is far outside"):
        task_from_file(path, ["text"])


# -- checkpoints -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
@pytest.mark.slow
def test_a_broken_fusion_is_one_broken_entry_on_every_page(tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from fusionlab.dashboard.settings import HOME_KEY

    workspace = Workspace(tmp_path / "ws").ensure()
    install_pack(workspace, PACK_DIR)
    meta = workspace.fusion_dir("imdb-attention") / "fusionlab.json"
    data = json.loads(meta.read_text())
    del data["fusion_config"]["fusion_method"]
    meta.write_text(json.dumps(data))
    for page in ("home.py", "playground.py", "efficiency.py"):
        at = AppTest.from_file(str(REPO / "app_pages" / page), default_timeout=120)
        at.session_state[HOME_KEY] = str(workspace.root)
        at.run()
        assert not at.exception, page
        if page == "home.py":
            table = at.dataframe[1].value  # fusions
            broken = table[table["name"] == "imdb-attention"]["status"].item()
            assert "fusion_method" in broken and "is missing" in broken
            assert table[table["name"] == "rte-attention"]["status"].item() == "ready"
        else:  # the picker falls back to a fusion that loads; the broken one says why when chosen
            assert len(at.metric) >= 1 or page == "efficiency.py"
            at.selectbox[0].set_value("imdb-attention").run()
            assert not at.exception and "fusion_method" in at.error[0].value.replace("\\", "")


# -- the model -----------------------------------------------------------------------------------------------------
def _two_adapters(**nonlinearities: str) -> AdapterManager:
    return AdapterManager(32, {n: AdapterConfig(adapter_size=4, non_linearity=a) for n, a in nonlinearities.items()})


def test_adapters_with_different_nonlinearities_are_refused_when_the_fusion_is_built() -> None:
    with pytest.raises(ValueError, match="a uses relu, b uses gelu"):
        FusionModel(
            ModelConfig(),
            FusionConfig(adapter_names=["a", "b"]),
            _two_adapters(a="relu", b="gelu"),
            tiny_encoder("bert"),
        )
    model = FusionModel(ModelConfig(), None, _two_adapters(a="relu", b="gelu"), tiny_encoder("bert"))
    with pytest.raises(ValueError, match="share one non-linearity"):
        model.add_fusion(FusionConfig(adapter_names=["a", "b"]))


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
@pytest.mark.slow
def test_a_model_loaded_under_inference_mode_still_trains(tmp_path: Path) -> None:
    """A cached loader may build the model inside ``torch.inference_mode()``; training it later must work."""
    workspace = Workspace(tmp_path / "ws").ensure()
    install_pack(workspace, PACK_DIR)
    with torch.inference_mode():
        model = FusionModel.from_pretrained(workspace.fusion_dir("rte-attention"), adapters_dir=workspace.adapters_dir)
    assert not any(p.is_inference() for p in model.parameters())
    model.train_fusion_only()
    model.train()
    ids = torch.randint(1000, 2000, (2, 12))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1]))
    out.loss.backward()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model.fusion_layers[0].query.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(model.fusion_layers[0].query.weight, before)


def test_model_built_under_inference_mode_has_ordinary_tensors() -> None:
    with torch.inference_mode():
        model = FusionModel(
            ModelConfig(),
            FusionConfig(adapter_names=["a", "b"]),
            _two_adapters(a="relu", b="relu"),
            tiny_encoder("bert"),
        )
    assert not any(p.is_inference() for p in model.parameters())
    assert not any(b.is_inference() for b in model.buffers())


def test_abandoned_temporary_directories_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    import os

    from fusionlab.pack.store import ready_workspace

    workspace = Workspace(tmp_path / "ws").ensure()
    dead = workspace.adapters_dir / ".tmp-999999999-rte-x1"
    live = workspace.fusions_dir / f".tmp-{os.getpid()}-f-x2"
    dead_version = workspace.fusions_dir / ".versions" / "f" / ".tmp-999999999-0123abcd-x3"  # a copy killed midway
    dead_deletion = workspace.fusions_dir / ".versions" / ".tmp-999999999-deleted-g-x4"  # a deletion killed midway
    for directory in (dead, live, dead_version, dead_deletion):
        directory.mkdir(parents=True)
    ready_workspace(workspace.root)
    assert not dead.exists() and live.exists() and not dead_version.exists() and not dead_deletion.exists()
    assert dead_version.parent.is_dir()  # the name's kept versions stay
    shutil.rmtree(live)


def test_a_fusion_over_one_adapter_is_refused_with_the_reason():
    """One name alone takes that adapter's own path and head: such a "fusion" would train nothing (its loss had no
    gradient, and the run failed deep in the trainer)."""
    from fusionlab.runspec import FusionRun

    with pytest.raises(ValueError, match="a fusion needs two adapters or more to mix"):
        FusionRun(target_task="rte", adapters=["rte"])
