"""A walk through Adapter Fusion with fusionlab, offline on a CPU in well under a minute.

1. The fusion mechanisms on random tensors: attention fusion and weighted fusion, their weights over adapters.
2. An adapter manager with three task adapters of different sizes.
3. A fusion model on the bundled all-MiniLM-L6-v2: adapters and fusion in every one of its 6 layers.
4. Inference on three sentences: the sentiment adapter alone vs fusion over all three adapters. The adapters
   here are untrained (identity), so the predictions are near chance: train them with
   ``fusionlab train-adapter`` / ``fusionlab demo`` to see real ones.
5. Parameter efficiency: what is trained, compared with full fine-tuning.
6. The three fusion methods side by side, and the cost of fusion against the base model.

Run: ``python examples/fusion_basics.py``
"""

from __future__ import annotations

import time

import torch

from fusionlab import (
    AdapterConfig,
    AdapterManager,
    AttentionFusion,
    AverageFusion,
    FusionConfig,
    FusionModel,
    ModelConfig,
    WeightedFusion,
)
from fusionlab.base_model import load_tokenizer

HIDDEN = 384  # all-MiniLM-L6-v2
SENTENCES = [
    "A warm, funny and beautifully acted story.",
    "Two hours of my life I will never get back.",
    "It was fine: neither memorable nor bad.",
]


def section(title: str) -> None:
    print(f"\n=== {title} ===")


def mechanisms() -> None:
    section("1. fusion mechanisms on random adapter outputs")
    torch.manual_seed(0)
    outputs = [torch.randn(2, 10, HIDDEN) for _ in ("sentiment", "nli", "qa")]
    hidden = torch.randn(2, 10, HIDDEN)  # the layer's own hidden state: the query of attention fusion
    attention = AttentionFusion(HIDDEN, num_adapters=3, num_attention_heads=8).eval()
    with torch.no_grad():
        fused = attention.fuse(outputs, query=hidden)
    print(
        f"attention fusion: output {tuple(fused.hidden_states.shape)}, weights {tuple(fused.weights.shape)} "
        "= [batch, tokens, heads, adapters]"
    )
    print(f"  token 0, head 0 weights: {fused.weights[0, 0, 0].numpy().round(3)} (sum 1)")
    weighted = WeightedFusion(HIDDEN, num_adapters=3, weight_initialization="target")
    print(f"weighted fusion: softmax(fusion_weights) = {weighted.adapter_weights().detach().numpy().round(3)}")
    print(
        f"  parameters: attention {sum(p.numel() for p in attention.parameters()):,}, "
        f"weighted {sum(p.numel() for p in weighted.parameters())}"
    )


def build_model() -> FusionModel:
    section("2. adapter manager")
    configs = {
        "sentiment": AdapterConfig(
            adapter_size=64, task_name="sentiment", label_names=["negative", "positive"], num_labels=2
        ),
        "nli": AdapterConfig(adapter_size=64, task_name="nli"),
        "qa": AdapterConfig(adapter_size=128, task_name="qa", task_type="question_answering"),
    }
    manager = AdapterManager(hidden_size=HIDDEN, adapter_configs=configs, freeze_adapters=True)
    manager.print_adapter_info()

    section("3. fusion model on the bundled all-MiniLM-L6-v2")
    fusion = FusionConfig(fusion_method="attention", adapter_names=list(configs), num_attention_heads=8)
    model = FusionModel(ModelConfig(max_length=128), fusion, manager).eval()
    model.print_model_info()
    return model


def inference(model: FusionModel) -> None:
    section("4. single adapter vs fusion on three sentences")
    tokenizer = load_tokenizer()
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True, truncation=True, max_length=128)
    with torch.inference_mode():
        single = model(**batch, adapter_names=["sentiment"]).logits.softmax(-1)
        fused = model(**batch, adapter_names=["sentiment", "nli", "qa"], output_fusion_weights=True)
    labels = model.label_names(["sentiment"])
    for i, text in enumerate(SENTENCES):
        fused_probs = fused.logits[i].softmax(-1)
        print(
            f"{text!r}\n  sentiment only: "
            + ", ".join(f"{n} {p:.3f}" for n, p in zip(labels, single[i].tolist()))
            + "\n  fused:          "
            + ", ".join(f"{n} {p:.3f}" for n, p in zip(labels, fused_probs.tolist()))
        )
    real_tokens = batch["attention_mask"].sum(dim=1, keepdim=True)
    last = fused.fusion_weights[-1].mean(dim=2).sum(dim=1) / real_tokens  # padding weights are zero: mean of real
    print(f"last-layer mean fusion weights per sentence [sentiment, nli, qa]:\n{last.numpy().round(3)}")


def efficiency(model: FusionModel) -> None:
    section("5. parameter efficiency")
    info = model.parameter_breakdown()
    added = sum(info["adapters"].values()) + info["fusion"] + sum(info["heads"].values())
    print(
        f"base (frozen) {info['base']:,} | adapters {sum(info['adapters'].values()):,} | fusion {info['fusion']:,} "
        f"| heads {sum(info['heads'].values()):,}"
    )
    print(
        f"trainable now (fusion stage): {info['trainable']:,} = {100 * info['trainable'] / info['total']:.1f}% "
        f"of {info['total']:,}"
    )
    print(f"full fine-tuning would train {info['base']:,}: {info['base'] / added:.1f}x more than all added parts")


def compare_methods(model: FusionModel) -> None:
    section("6. fusion methods compared")
    torch.manual_seed(1)
    outputs = [torch.randn(2, 10, HIDDEN) for _ in range(3)]
    for layer in (AttentionFusion(HIDDEN, 3), WeightedFusion(HIDDEN, 3), AverageFusion(HIDDEN, 3)):
        with torch.no_grad():
            out = layer.eval()(outputs)
        params = sum(p.numel() for p in layer.parameters())
        print(
            f"{layer.method:<9} params {params:>9,} ({params * 4 / 2**20:.2f} MB fp32)  "
            f"output mean {out.mean():+.4f} std {out.std():.4f}"
        )
    tokenizer = load_tokenizer()
    batch = tokenizer(SENTENCES[:1] * 8, return_tensors="pt", padding=True)
    with torch.inference_mode():
        timings = {}
        for label, call in (
            ("base", lambda: model.base_model(**batch)),
            ("fusion x3", lambda: model(**batch, adapter_names=["sentiment", "nli", "qa"])),
        ):
            call()
            start = time.perf_counter()
            for _ in range(10):
                call()
            timings[label] = (time.perf_counter() - start) / 10
    print(
        f"forward of 8 sentences: base {1000 * timings['base']:.1f} ms, fusion over 3 adapters "
        f"{1000 * timings['fusion x3']:.1f} ms (x{timings['fusion x3'] / timings['base']:.2f}; "
        "see bench/fusion_overhead.py for a careful measurement)"
    )


def main() -> None:
    mechanisms()
    model = build_model()
    inference(model)
    efficiency(model)
    compare_methods(model)


if __name__ == "__main__":
    main()
