"""Real training on the shared data: adapters learn, fusion leaves frozen weights alone, runs are reproducible."""

import hashlib
import shutil

import pytest
import torch

from fusionlab import AdapterConfig, FusionModel, FusionTrainer, ModelConfig, TrainingConfig
from fusionlab.checkpoint import read_meta
from fusionlab.data import DataFormatError
from fusionlab.training import Reporter, TrainingCancelled


def files_digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.slow
def test_short_sst2_adapter_run_beats_majority_baseline(tmp_path, shared_data_dir):
    config = TrainingConfig(
        max_steps=60,
        learning_rate=1e-3,
        per_device_train_batch_size=16,
        max_train_samples=2000,
        max_eval_samples=300,
        eval_steps=30,
        seed=3,
    )
    trainer = FusionTrainer(ModelConfig(max_length=64), config, tmp_path, shared_data_dir)
    result = trainer.train_adapter("sst2", AdapterConfig(adapter_size=32))
    assert result.metrics["accuracy"] > result.baseline["accuracy"] + 0.1, (result.metrics, result.baseline)
    assert result.evaluation.num_examples == 300
    assert sum(map(sum, result.evaluation.confusion_matrix)) == 300
    assert (tmp_path / "adapters" / "sst2" / "fusionlab.json").is_file()
    assert [h["step"] for h in result.history if "eval_accuracy" in h] == [30, 60]


@pytest.mark.slow
def test_fusion_training_leaves_base_and_adapters_bit_identical(tiny_workspace, tmp_path, shared_data_dir):
    workspace_root = tmp_path / "ws"
    shutil.copytree(tiny_workspace.root, workspace_root)
    adapters = ["rte", "sst2", "mnli"]
    before = {a: files_digest(workspace_root / "adapters" / a) for a in adapters}
    config = TrainingConfig(
        max_steps=5,
        learning_rate=5e-3,
        per_device_train_batch_size=8,
        max_train_samples=80,
        max_eval_samples=40,
        snapshot_steps=2,
    )
    snapshots = []

    class Collect(Reporter):
        def on_snapshot(self, step, payload):
            snapshots.append((step, payload))

    trainer = FusionTrainer(ModelConfig(max_length=48), config, workspace_root, shared_data_dir, reporter=Collect())
    base_before = {k: v.clone() for k, v in trainer._fresh_encoder().state_dict().items()}
    result = trainer.train_fusion("rte", adapters, method="attention", name="check")
    assert {a: files_digest(workspace_root / "adapters" / a) for a in adapters} == before
    model = FusionModel.from_pretrained(result.path, encoder=trainer._fresh_encoder())
    for key, value in model.base_model.state_dict().items():
        assert torch.equal(value, base_before[key]), key
    # the fusion itself did learn: its query weights moved away from their initialisation
    assert result.steps == 5 and [s for s, _ in snapshots][:3] == [0, 2, 4]  # step 0: before training
    assert len(snapshots[0][1]["layers"]) == 6 and len(snapshots[0][1]["layers"][0]) == 3
    stats = result.evaluation.fusion_stats
    assert stats.adapter_names == adapters and len(stats.mean) == 6
    for row in stats.mean:
        assert sum(row) == pytest.approx(1.0, abs=1e-4)
    assert set(stats.per_class) <= {"entailment", "not_entailment"}


@pytest.mark.slow
def test_weighted_fusion_logits_train_at_their_scaled_rate(tiny_workspace, tmp_path, shared_data_dir):
    """Under Adam a parameter moves about one learning rate a step at most: at 1e-3 for 6 steps, 0.006 from the
    uniform start. The weighted fusion's logits declare a scale of 100, so they leave uniform within the run."""
    workspace_root = tmp_path / "ws"
    shutil.copytree(tiny_workspace.root, workspace_root)
    config = TrainingConfig(max_steps=6, learning_rate=1e-3, per_device_train_batch_size=8, max_train_samples=64,
                            max_eval_samples=16, seed=5)  # fmt: skip
    trainer = FusionTrainer(ModelConfig(max_length=48), config, workspace_root, shared_data_dir)
    result = trainer.train_fusion("rte", ["rte", "sst2", "mnli"], method="weighted", name="scaled")
    model = FusionModel.from_pretrained(result.path, encoder=trainer._fresh_encoder())
    moved = max(layer.fusion_weights.abs().max().item() for layer in model.fusion_layers)  # logits start at 0
    assert moved > 0.05, moved
    assert result.loop.learning_rate_scales == {"weighted.fusion_weights": 100.0}
    assert read_meta(result.path)["extra"]["learning_rate_scales"] == {"weighted.fusion_weights": 100.0}


def test_the_trainer_schedules_weighted_fusion_logits_at_their_scaled_rate(tmp_path):
    """Through transformers' own optimizer and schedule: the logits' group starts at 100 times the rate, keeps the
    optimizer's options, and the run says which scales it applied (checkpoints record it)."""
    from fusionlab.training.loop import _ScaledTrainer, training_arguments
    from tests.conftest import tiny_encoder
    from tests.test_model import build

    model = build(tiny_encoder("bert"), "weighted")
    config = TrainingConfig(max_steps=10, learning_rate=1e-3, weight_decay=0.01)
    trainer = _ScaledTrainer(model=model, args=training_arguments(config, str(tmp_path), False))
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    logits = {id(layer.fusion_weights) for layer in model.fusion_layers}
    groups = trainer.optimizer.param_groups
    [at] = [i for i, g in enumerate(groups) if {id(p) for p in g["params"]} == logits]
    scaled = groups[at]
    assert trainer.lr_scheduler.base_lrs[at] == pytest.approx(0.1)
    assert sorted(set(trainer.lr_scheduler.base_lrs)) == [pytest.approx(1e-3), pytest.approx(0.1)]
    others = [g for g in groups if g is not scaled]
    assert {k: v for k, v in scaled.items() if k not in ("params", "lr", "initial_lr")} in [
        {k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr")} for g in others
    ]  # fused, betas, weight decay: as the group it came from
    assert trainer.applied_scales == {"weighted.fusion_weights": 100.0}


def test_scaled_parameters_get_groups_of_their_own_and_keep_their_weight_decay():
    from fusionlab.training.loop import scale_learning_rates

    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    optimizer = torch.optim.AdamW(
        [{"params": [a, b], "weight_decay": 0.1}, {"params": [c], "weight_decay": 0.0}], lr=1e-3
    )
    scale_learning_rates(optimizer, {b: 100.0, c: 10.0})
    groups = [([id(p) for p in g["params"]], g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [([id(a)], 1e-3, 0.1), ([id(b)], pytest.approx(0.1), 0.1), ([id(c)], pytest.approx(1e-2), 0.0)]


@pytest.mark.slow
def test_same_seed_same_adapter(tmp_path, shared_data_dir):
    config = TrainingConfig(
        max_steps=3,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        max_train_samples=64,
        max_eval_samples=32,
        seed=7,
    )
    hashes = []
    for run in ("a", "b"):
        trainer = FusionTrainer(ModelConfig(max_length=32), config, tmp_path / run, shared_data_dir)
        result = trainer.train_adapter("rte", AdapterConfig(adapter_size=8))
        hashes.append(files_digest(result.path)["adapter.safetensors"])
    assert hashes[0] == hashes[1]


@pytest.mark.slow
def test_early_stopping_stops_when_dev_metric_stalls(tmp_path, shared_data_dir):
    config = TrainingConfig(
        max_steps=50,
        learning_rate=1e-12,
        per_device_train_batch_size=4,
        max_train_samples=200,
        max_eval_samples=16,
        eval_steps=1,
        early_stopping_patience=2,
    )
    trainer = FusionTrainer(ModelConfig(max_length=32), config, tmp_path, shared_data_dir)
    result = trainer.train_adapter("cb", AdapterConfig(adapter_size=4))
    assert result.stopped_early and result.steps == 3 and result.best_step == 1


def test_cancel_stops_training_and_saves_nothing(tmp_path, shared_data_dir):
    class StopAtTwo(Reporter):
        step = 0

        def on_progress(self, step, total):
            self.step = step

        def should_stop(self):
            return self.step >= 2

    config = TrainingConfig(max_steps=50, per_device_train_batch_size=4, max_train_samples=100, max_eval_samples=8)
    trainer = FusionTrainer(ModelConfig(max_length=32), config, tmp_path, shared_data_dir, reporter=StopAtTwo())
    with pytest.raises(TrainingCancelled, match="step 2"):
        trainer.train_adapter("cb", AdapterConfig(adapter_size=4))
    assert not (tmp_path / "adapters" / "cb").exists()


def test_malformed_training_file_is_named_with_its_line(tmp_path, shared_data_dir):
    data = tmp_path / "data"
    shutil.copytree(shared_data_dir / "cb", data / "cb")
    lines = (data / "cb" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4][:-1]  # break the JSON of line 5
    (data / "cb" / "train.jsonl").chmod(0o644)
    (data / "cb" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    trainer = FusionTrainer(ModelConfig(max_length=32), TrainingConfig(max_steps=1), tmp_path / "ws", data)
    with pytest.raises(DataFormatError, match=r"train\.jsonl, line 5"):
        trainer.train_adapter("cb")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["adapter", "fusion"])
def test_in_training_dev_metric_equals_a_fresh_evaluation_of_the_saved_checkpoint(
    kind, tiny_workspace, tmp_path, shared_data_dir
):
    """The number the loop selects the best step by is the number the saved weights give when loaded back.

    With the default (fused) AdamW, version-keyed weight caches once made every in-loop evaluation reuse the
    weights of the first one; the in-loop numbers then described no saved model at all.
    """
    root = tmp_path / "ws"
    shutil.copytree(tiny_workspace.root, root)
    config = TrainingConfig(
        max_steps=8,
        learning_rate=3e-3,
        per_device_train_batch_size=8,
        max_train_samples=64,
        max_eval_samples=40,
        eval_steps=2,
        seed=5,
    )
    trainer = FusionTrainer(ModelConfig(max_length=48), config, root, shared_data_dir)
    if kind == "adapter":
        result = trainer.train_adapter("rte", AdapterConfig(adapter_size=16), name="fresh-check")
    else:
        result = trainer.train_fusion("rte", ["rte", "sst2", "mnli"], name="fresh-check")
    in_loop = [row for row in result.history if "eval_accuracy" in row]
    assert [row["step"] for row in in_loop] == [2, 4, 6, 8]
    assert len({row["eval_accuracy"] for row in in_loop}) > 1 or kind == "adapter", in_loop  # weights did move
    best = next(row for row in in_loop if row["step"] == result.best_step)

    checker = FusionTrainer(workspace=root, data_dir=shared_data_dir)
    selection = checker.evaluate(result.path, max_samples=40, split="selection")  # what chose the step
    assert selection.metrics["accuracy"] == best["eval_accuracy"] == result.selection_metrics["accuracy"]
    assert selection.num_examples == result.selection.selection_examples == 40
    fresh = checker.evaluate(result.path, max_samples=40)  # what is reported: dev, never seen in training
    assert fresh.metrics["accuracy"] == result.metrics["accuracy"]
    assert fresh.num_examples == result.evaluation.num_examples == 40
    for a, b in zip(fresh.predictions, result.evaluation.predictions, strict=True):
        assert a["label"] == b["label"] and a["prediction"] == b["prediction"]
        assert max(abs(x - y) for x, y in zip(a["probabilities"], b["probabilities"])) < 1e-5
