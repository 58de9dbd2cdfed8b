"""AdapterHub ``adapters`` interoperability, checked against numbers the library itself computed.

``tests/fixtures/adapterhub/`` holds adapters saved by ``adapters`` 1.3 (transformers 4.57, its own environment:
``make_fixture.py``) with random non-zero weights, the hidden states the library computed with each, and the
hidden states it computed after loading adapters that fusionlab exported (``check_export.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fusionlab.adapters.manager import tensors_hash
from fusionlab.checkpoint import load_adapter_into, read_adapter_tensors, read_meta
from fusionlab.cli import main
from fusionlab.config import FusionConfig
from fusionlab.interop.adapterhub import AdapterHubError, read_adapterhub
from fusionlab.interop.transfer import export_adapter, import_adapter
from fusionlab.model import FusionModel
from fusionlab.pack.store import PACK_DIR
from fusionlab.workspace import Workspace

FIXTURE = Path(__file__).parent / "fixtures" / "adapterhub"
REFERENCE = load_file(str(FIXTURE / "reference.safetensors"))
SENTENCES = ("single", "pair")
TOLERANCE = 1e-4  # observed: 3e-6, the encoder's own eager-vs-sdpa difference


def inputs(sentence: str) -> dict[str, torch.Tensor]:
    return {k: REFERENCE[f"{k}/{sentence}"] for k in ("input_ids", "token_type_ids", "attention_mask")}


def hidden_states(model: FusionModel, name: str, sentence: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs(sentence), adapter_names=[name]).last_hidden_state


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


@pytest.mark.parametrize(
    ("folder", "placement"),
    [
        ("pfeiffer", "pfeiffer"),
        ("pfeiffer_bin", "pfeiffer"),
        ("seqbn_noln", "ffn_output"),
        ("seqbn_swish", "ffn_output"),
    ],
)
def test_an_imported_adapter_computes_the_hidden_states_the_library_computed(folder, placement, workspace):
    path = import_adapter(FIXTURE / folder, workspace, name="hub")
    meta = read_meta(path)
    assert meta["adapter_config"]["placement"] == placement
    assert meta["extra"]["imported_from"]["weights"] == (
        "pytorch_adapter.bin" if folder.endswith("bin") else "adapter.safetensors"
    )
    model = FusionModel.from_pretrained(path).eval()  # through the saved fusionlab checkpoint, as any user would
    expected = folder.removesuffix("_bin")
    for sentence in SENTENCES:
        ours = hidden_states(model, "hub", sentence)
        assert torch.allclose(ours, REFERENCE[f"{expected}/{sentence}"], atol=TOLERANCE, rtol=0)
        assert (ours - REFERENCE[f"base/{sentence}"]).abs().max() > 0.1  # the adapter changes the states


def test_the_placement_is_what_makes_the_numbers_agree(workspace):
    """Run the Pfeiffer adapter where fusionlab's own adapters sit: the states no longer match the library's."""
    path = import_adapter(FIXTURE / "pfeiffer", workspace, name="hub")
    model = FusionModel.from_pretrained(path).eval()
    model.adapter_manager.configs["hub"].placement = "ffn_output"
    assert (hidden_states(model, "hub", "pair") - REFERENCE["pfeiffer/pair"]).abs().max() > 1e-2


def test_adapter_drop_and_fusion_work_with_the_pfeiffer_placement(workspace):
    """Dropping every layer gives the plain encoder exactly; dropping none, the adapter's own states; a fusion
    over two Pfeiffer adapters runs and its weights are probabilities."""
    path = import_adapter(FIXTURE / "pfeiffer", workspace, name="pf")
    import_adapter(FIXTURE / "pfeiffer", workspace, name="pf2")
    model = FusionModel.from_pretrained(path).eval()
    with torch.no_grad():
        none = model(**inputs("pair"), adapter_names=["pf"], drop_first_layers=0).last_hidden_state
        every = model(**inputs("pair"), adapter_names=["pf"], drop_first_layers=model.num_layers).last_hidden_state
    assert torch.allclose(none, REFERENCE["pfeiffer/pair"], atol=TOLERANCE, rtol=0)
    assert torch.allclose(every, REFERENCE["base/pair"], atol=TOLERANCE, rtol=0)
    load_adapter_into(model, workspace.adapter_dir("pf2"))
    model.add_fusion(FusionConfig(adapter_names=["pf", "pf2"]))
    with torch.no_grad():
        out = model(**inputs("single"), adapter_names=["pf", "pf2"], output_fusion_weights=True)
    assert torch.allclose(out.fusion_weights[0].sum(-1), torch.ones(()), atol=1e-5)


def test_mechanics_fuses_pfeiffer_adapters_as_the_model_does(workspace):
    """Mechanics rebuilds a layer's fusion from what the adapters read and the state their changes go to. With the
    Pfeiffer placement these differ (LayerNorm(h + x) vs h): the fused change it shows must be the model's own."""
    from fusionlab.base_model import ffn_output_modules
    from fusionlab.dashboard import mechanics

    path = import_adapter(FIXTURE / "pfeiffer", workspace, name="pf")
    import_adapter(FIXTURE / "pfeiffer", workspace, name="pf2")
    model = FusionModel.from_pretrained(path)
    load_adapter_into(model, workspace.adapter_dir("pf2"))
    model.add_fusion(FusionConfig(adapter_names=["pf", "pf2"]))
    model.eval()  # the fusion's dropout off, as in a Predictor
    torch.manual_seed(0)
    with torch.no_grad():  # two different adapters, and a fusion layer whose value projection is not the identity
        for param in [*model.adapter_manager.adapters["pf2"].parameters(), *model.fusion_layers.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    layer, seen = 3, {}
    # Registered after the model's own hook, this one sees the layer's output with the fusion applied.
    hook = ffn_output_modules(model.base_model)[layer].register_forward_hook(
        lambda module, args, output: seen.setdefault("fused", output.detach()[0].float())
    )
    with torch.inference_mode():
        query, residual, outputs = mechanics.layer_outputs(model, inputs("pair"), ["pf", "pf2"], layer, 10**6)
    hook.remove()
    assert (query - residual).abs().max() > 0.1  # the placement makes them differ
    real_change = seen["fused"] - residual
    state = {k: v.clone() for k, v in model.fusion_layers[layer].state_dict().items()}

    def shown(outputs: torch.Tensor, base: torch.Tensor) -> mechanics.OutputStats:
        tokens = ("t",) * len(query)
        read = mechanics.AdapterOutputs(("pf", "pf2"), outputs, query, tokens, "test", model.fusion_config, state, base)
        result = mechanics.fuse(read, "attention")
        assert "trained" in result.layer_source
        return result.fused

    fused = shown(outputs, residual)
    assert fused.norm == pytest.approx(float(real_change.norm(dim=-1).mean()), rel=1e-4)
    assert fused.mean == pytest.approx(float(real_change.mean()), abs=1e-6)
    naive = shown(query.unsqueeze(1) + (outputs - residual.unsqueeze(1)), query)  # "query + changes", as before
    assert abs(naive.norm - fused.norm) > 1e-3


def test_adapters_of_two_placements_cannot_be_fused(workspace):
    import_adapter(FIXTURE / "pfeiffer", workspace, name="pf")
    import_adapter(FIXTURE / "seqbn_noln", workspace, name="native")
    model = FusionModel()
    for name in ("pf", "native"):
        load_adapter_into(model, workspace.adapter_dir(name))
    with pytest.raises(ValueError, match="must share one placement, but pf uses pfeiffer, native uses ffn_output"):
        model.add_fusion(FusionConfig(adapter_names=["pf", "native"]))


def edited_copy(tmp_path: Path, change: dict, outer: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(FIXTURE / "seqbn_noln", copy)
    data = json.loads((copy / "adapter_config.json").read_text())
    data["config"].update(change)
    data.update(outer or {})
    for key in drop:
        del data[key]
    (copy / "adapter_config.json").write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize(
    ("change", "outer", "drop", "message"),
    [
        ({"is_parallel": True}, None, (), "config.is_parallel is true: a parallel adapter"),
        ({"ln_before": True}, None, (), "config.ln_before is true"),
        ({"use_gating": True}, None, (), "config.use_gating is true: the adapter is gated"),
        ({"leave_out": [0, 1]}, None, (), "config.leave_out is \\[0, 1\\]"),
        ({"scaling": "learned"}, None, (), "config.scaling is 'learned'"),
        ({"architecture": "lora"}, None, (), "config.architecture is 'lora'"),
        ({"non_linearity": "gelu"}, None, ("version",), "meant the tanh approximation"),
        ({"original_ln_before": True, "residual_before_ln": False}, None, (), "config.residual_before_ln is false"),
        ({}, {"model_type": "gpt2"}, (), "model_type is 'gpt2'"),
    ],
)
def test_configs_placed_elsewhere_are_refused_naming_the_option(tmp_path, change, outer, drop, message):
    with pytest.raises(AdapterHubError, match=message) as refused:
        read_adapterhub(edited_copy(tmp_path, change, outer, drop))
    assert "adapter_config.json" in str(refused.value)


def test_a_houlsby_adapter_is_refused_for_its_attention_adapter():
    with pytest.raises(AdapterHubError, match=r"config\.mh_adapter is true: the adapter also sits after the attention"):
        read_adapterhub(FIXTURE / "houlsby")


def test_a_numeric_scaling_is_folded_into_the_up_projection(tmp_path):
    plain = read_adapterhub(FIXTURE / "seqbn_noln")
    scaled = read_adapterhub(edited_copy(tmp_path, {"scaling": 0.5}))
    assert torch.equal(scaled.state["layers.3.up.weight"], 0.5 * plain.state["layers.3.up.weight"])
    assert torch.equal(scaled.state["layers.3.up.bias"], 0.5 * plain.state["layers.3.up.bias"])
    assert torch.equal(scaled.state["layers.3.down.weight"], plain.state["layers.3.down.weight"])


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/fusionlab-pickle-ran",))


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = Path("/tmp/fusionlab-pickle-ran")
    marker.unlink(missing_ok=True)
    folder = tmp_path / "evil"
    shutil.copytree(FIXTURE / "pfeiffer_bin", folder)
    torch.save({"bert.encoder.layer.0.output.adapters.x.adapter_up.bias": _Payload()}, folder / "pytorch_adapter.bin")
    with pytest.raises(AdapterHubError, match="cannot be read as adapter weights"):
        read_adapterhub(folder)
    assert not marker.exists()


def test_weights_of_other_modules_are_refused_by_name(tmp_path):
    folder = tmp_path / "extra"
    shutil.copytree(FIXTURE / "seqbn_noln", folder)
    tensors = load_file(str(folder / "adapter.safetensors"))
    tensors["bert.invertible_adapters.seqbn_noln.F.0.weight"] = torch.zeros(2)
    save_file(tensors, str(folder / "adapter.safetensors"))
    with pytest.raises(AdapterHubError, match=r"unexpected weight 'bert\.invertible_adapters"):
        read_adapterhub(folder)
    (folder / "adapter.safetensors").unlink()
    with pytest.raises(AdapterHubError, match=r"holds neither adapter\.safetensors nor pytorch_adapter\.bin"):
        read_adapterhub(folder)


@pytest.fixture
def pack_workspace(workspace) -> Workspace:
    for name in ("cb", "rte"):
        shutil.copytree(PACK_DIR / "adapters" / name, workspace.adapter_dir(name))
    return workspace


def test_an_exported_adapter_computes_in_the_library_what_it_computes_in_fusionlab(pack_workspace, tmp_path):
    """The pack's adapters, exported; ``check_export.py`` loaded those files with ``adapters`` 1.3 and recorded
    its hidden states: fusionlab's own states for the same adapters match them."""
    recorded = json.loads((FIXTURE / "export_reference.json").read_text())["adapters"]
    library = load_file(str(FIXTURE / "export_reference.safetensors"))
    for name in ("cb", "rte"):
        folder = export_adapter(pack_workspace, name, tmp_path / "out" / name)
        exported = load_file(str(folder / "adapter.safetensors"))
        assert tensors_hash(exported) == recorded[name]["tensors_sha256"], (
            f"the exported {name} adapter is not the one check_export.py measured: rerun it (see its docstring)"
        )
        assert json.loads((folder / "adapter_config.json").read_text())["config"] == recorded[name]["config"]
        model = FusionModel.from_pretrained(pack_workspace.adapter_dir(name)).eval()
        for sentence in SENTENCES:
            ours = hidden_states(model, name, sentence)
            assert torch.allclose(ours, library[f"{name}/{sentence}"], atol=TOLERANCE, rtol=0)


def test_export_then_import_gives_back_the_same_adapter(pack_workspace, tmp_path):
    export_adapter(pack_workspace, "cb", tmp_path / "cb-hub")
    path = import_adapter(tmp_path / "cb-hub", pack_workspace, name="cb-again", task="cb")
    _, original, _ = read_adapter_tensors(pack_workspace.adapter_dir("cb"))
    meta, again, _ = read_adapter_tensors(path)
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    assert meta["adapter_config"]["label_names"] == ["entailment", "contradiction", "neutral"]
    assert meta["extra"]["head"].startswith("untrained")


def test_the_cli_imports_and_exports_and_keeps_an_existing_adapter(pack_workspace, tmp_path, capsys):
    home = str(pack_workspace.root)
    assert main(["import-adapterhub", str(FIXTURE / "pfeiffer"), "--name", "hub", "--home", home]) == 0
    assert "imported" in capsys.readouterr().out
    assert main(["import-adapterhub", str(FIXTURE / "seqbn_noln"), "--name", "hub", "--home", home]) == 2
    assert "already has an adapter 'hub'" in capsys.readouterr().err
    assert main(["import-adapterhub", str(FIXTURE / "houlsby"), "--home", home]) == 2
    assert "mh_adapter" in capsys.readouterr().err
    assert main(["export-adapterhub", "hub", str(tmp_path / "hub-out"), "--home", home]) == 0
    exported = json.loads((tmp_path / "hub-out" / "adapter_config.json").read_text())
    assert exported["config"]["original_ln_before"] is True  # a Pfeiffer adapter goes back as one
    assert exported["config"]["reduction_factor"] == 24


@pytest.mark.parametrize("size", [13, 16, 64, 100, 383])
def test_every_bottleneck_size_gets_a_reduction_factor_adapterhub_turns_back_into_it(size):
    from fusionlab.interop.adapterhub import reduction_factor

    assert int(384 // reduction_factor(384, size)) == size
