import json

import pytest

from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig, TrainingConfig


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(num_labels=3, task_names=["a", "b"], pooling="cls"),
        AdapterConfig(
            adapter_size=128, task_name="qa", task_type="question_answering", label_names=["no", "yes"], num_labels=2
        ),
        FusionConfig(fusion_method="weighted", adapter_names=["a", "b"], temperature=0.5, target_task="b"),
        TrainingConfig(max_steps=5, eval_steps=2, early_stopping_patience=3, mixed_precision="bf16"),
    ],
)
def test_json_round_trip_is_exact(config, tmp_path):
    again = type(config).from_json(config.to_json())
    assert again == config
    config.save(tmp_path / "c.json")
    assert type(config).load(tmp_path / "c.json") == config
    assert json.loads(config.to_json()) == config.to_dict()


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: AdapterConfig(adapter_size=-8), "adapter_size"),
        (lambda: AdapterConfig(adapter_size=0), "adapter_size"),
        (lambda: AdapterConfig(dropout=1.0), "dropout"),
        (lambda: AdapterConfig(dropout=-0.1), "dropout"),
        (lambda: AdapterConfig(task_type="translation"), "task_type"),
        (lambda: AdapterConfig(non_linearity="sigmoid"), "non_linearity"),
        (lambda: AdapterConfig(num_labels=3, label_names=["a", "b"]), "label_names"),
        (lambda: FusionConfig(adapter_names=[]), "adapter_names"),
        (lambda: FusionConfig(adapter_names=["a", "a"]), "adapter_names"),
        (lambda: FusionConfig(fusion_method="concat", adapter_names=["a"]), "fusion_method"),
        (lambda: FusionConfig(adapter_names=["a"], fusion_dropout=1.5), "fusion_dropout"),
        (lambda: FusionConfig(adapter_names=["a"], num_attention_heads=0), "num_attention_heads"),
        (lambda: FusionConfig(adapter_names=["a"], temperature=0), "temperature"),
        (lambda: FusionConfig(adapter_names=["a"], weight_initialization="xavier"), "weight_initialization"),
        (lambda: ModelConfig(num_labels=0), "num_labels"),
        (lambda: ModelConfig(max_length=-1), "max_length"),
        (lambda: ModelConfig(pooling="max"), "pooling"),
        (lambda: ModelConfig(model_name_or_path=""), "model_name_or_path"),
        (lambda: TrainingConfig(learning_rate=0), "learning_rate"),
        (lambda: TrainingConfig(max_steps=0), "max_steps"),
        (lambda: TrainingConfig(per_device_train_batch_size=0), "per_device_train_batch_size"),
        (lambda: TrainingConfig(mixed_precision="fp8"), "mixed_precision"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(factory, field):
    with pytest.raises(ValueError, match=rf"\.{field}:"):
        factory()


def test_unknown_json_field_is_rejected():
    with pytest.raises(ValueError, match="unknown field"):
        AdapterConfig.from_json('{"adapter_size": 8, "colour": "red"}')


def test_fusion_target_defaults_to_first_adapter():
    assert FusionConfig(adapter_names=["rte", "sst2"]).target == "rte"
    assert FusionConfig(adapter_names=["rte", "sst2"], target_task="sst2").target == "sst2"
