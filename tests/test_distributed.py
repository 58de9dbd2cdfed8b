"""Several processes and devices: DistributedDataParallel stays correct, DataParallel is refused.

The DDP check runs for real on CPU: ``torchrun --nproc_per_node 2`` with the gloo backend, on loopback. Two
ranks that each take half a batch must end one optimiser step with exactly the weights one process reaches on
the whole batch (DDP averages the gradients; the loss is a mean), which fails if a hook read the wrong forward
context or an adapter were skipped on a rank.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.ddp_fusion_step import batch, build, step, trained_state

TESTS = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ddp_on_two_ranks_equals_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path / "rank0.safetensors"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(TESTS / "ddp_fusion_step.py"), str(out),
    ]  # fmt: skip
    env = {"PYTHONPATH": str(TESTS.parent), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    model = build()
    before = trained_state(model)
    step(model, batch())
    expected = trained_state(model)
    found = load_file(str(out))
    assert found.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(before[n], expected[n]) for n in expected), "the step changed nothing"


def test_data_parallel_replicas_are_refused_with_the_way_out() -> None:
    """``nn.DataParallel`` runs replicas made by ``_replicate_for_data_parallel``: the same call here, on CPU."""
    replica = build()._replicate_for_data_parallel()
    with pytest.raises(RuntimeError, match="torchrun"):
        replica(**{k: v for k, v in batch().items() if k != "labels"}, adapter_names=["a", "b"])
