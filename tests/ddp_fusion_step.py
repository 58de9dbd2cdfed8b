"""One fusion training step under DistributedDataParallel, for tests/test_distributed.py.

Run by ``torchrun --nproc_per_node 2`` on CPU (gloo): every rank builds the same tiny FusionModel, takes its half
of a fixed batch, and steps once; rank 0 writes the gradients and the updated fusion weights to OUT (safetensors)
so the test can compare them with one process on the whole batch.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig


def build() -> FusionModel:
    """A tiny BERT with two adapters and attention fusion, dropout off, the same on every rank and process."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=120,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    )
    adapters = {name: AdapterConfig(adapter_size=4, init_std=0.5) for name in ("a", "b")}
    model = FusionModel(
        ModelConfig(head_dropout=0.0),
        FusionConfig(adapter_names=["a", "b"], fusion_dropout=0.0),
        AdapterManager(32, adapters),
        encoder=encoder,
    )
    with torch.no_grad():  # trained-looking adapters: distinct, non-zero outputs (a fresh adapter is the identity)
        for param in model.adapter_manager.parameters():
            param.normal_(std=0.3)
    model.train_fusion_only()
    return model.train()


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(1, 120, (4, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def step(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(**inputs, adapter_names=["a", "b"]).loss.backward()
    optimizer.step()


def trained_state(model: FusionModel) -> dict[str, torch.Tensor]:
    return {f"param.{n}": p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build()
    ddp = DistributedDataParallel(model)
    inputs = {k: v.chunk(world)[rank] for k, v in batch().items()}
    step(ddp, inputs)
    if rank == 0:
        save_file(trained_state(model), out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
