"""Where a worker's runs execute: ``auto``, ``cpu``, or one GPU (``cuda:N``).

A worker serves one device and places its whole process there, by the environment variable every CUDA program
reads: ``cpu`` hides every GPU (``CUDA_VISIBLE_DEVICES=""``), ``cuda:N`` shows GPU N alone (it is then
``cuda:0`` inside the process), and ``auto`` (the default) changes nothing, so training takes the first GPU if
there is one and the CPU otherwise. Placing the process rather than each tensor keeps ``Trainer``,
``accelerate`` and every library below them on the same device without a flag of their own, and it never hides
a GPU from another worker: each worker is its own process. The default worker and a ``cuda:1`` worker can serve
one workspace side by side (each device has its own lock, see :func:`fusionlab.worker.lock_path`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

AUTO = "auto"
CPU = "cpu"
VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
_CUDA = re.compile(r"cuda(?::(\d{1,2}))?")


def parse_device(text: str) -> str:
    """``auto``, ``cpu`` or ``cuda:N`` (``cuda`` alone means ``cuda:0``); a ``ValueError`` names the rest."""
    value = (text or "").strip().lower()
    if value in (AUTO, CPU):
        return value
    match = _CUDA.fullmatch(value)
    if match is None:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda:N' (e.g. cuda:0), got {text!r}")
    return f"cuda:{int(match.group(1) or 0)}"


def device_argument(text: str) -> str:
    """:func:`parse_device` for argparse's ``type=``: the reason reaches the user, not "invalid value"."""
    try:
        return parse_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def place_process(device: str) -> None:
    """Make this process see only ``device`` (call it first thing in a worker process, before CUDA starts).

    Refuses when CUDA is already initialised here: the variable would then change nothing, and runs would land
    on whatever GPU CUDA had already picked.
    """
    device = parse_device(device)
    if device == AUTO:
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError(f"cannot place this process on {device}: CUDA is already initialised in it")
    os.environ[VISIBLE_DEVICES_ENV] = "" if device == CPU else device.split(":")[1]


def require_device(device: str) -> None:
    """Fail a run at once, with the reason, if its worker serves a GPU that this process cannot see.

    Anything but ``cuda[:N]`` passes (``auto``, ``cpu``, and the ``inline`` of runs in the caller's process)."""
    if _CUDA.fullmatch((device or "").strip().lower()) is None:
        return
    device = parse_device(device)
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get(VISIBLE_DEVICES_ENV)
        raise RuntimeError(
            f"this worker serves {device}, but torch sees no GPU here ({VISIBLE_DEVICES_ENV}={visible!r}); "
            "start the worker with --device cpu or auto, or on a machine with that GPU"
        )


def describe_device() -> str:
    """Where this process computes, as results record it: the GPU's name, else the CPU and its thread count."""
    import torch  # here, not at the top: a worker places its process (CUDA_VISIBLE_DEVICES) before torch loads

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"
