"""The device a model job runs on: ``model.device`` resolved once at the job's start (before the
model loads), named in the first line of its log, and stamped on its checkpoints, so a job resumed
on another device starts its checkpoint afresh instead of mixing CPU and GPU rows::

    >>> resolve_device("auto")        # CUDA when torch sees a GPU, else the CPU    # doctest: +SKIP
    device(type='cuda', index=0)
    >>> describe(torch.device("cpu")), stamp(torch.device("cpu"))
    ('cpu', 'cpu')
    >>> resolve_device("cuda")        # on a machine without one                     # doctest: +SKIP
    DeviceError: model.device is 'cuda' but torch sees no CUDA device here: ...

On a GPU, :func:`describe` adds the GPU's name and memory (``cuda:0 (NVIDIA H100 80GB HBM3,
79.1 GiB)``) and :func:`stamp` its name (``cuda (NVIDIA H100 80GB HBM3)``): another GPU model
computes in other kernels, another index of the same model does not.
"""

from __future__ import annotations

import os

import torch

GIB = 1024**3


class DeviceError(RuntimeError):
    """``model.device`` names a device torch cannot use on this machine."""


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: the first CUDA device when torch sees one, else the CPU; ``cpu``; ``cuda`` /
    ``cuda:N``: that GPU, or :class:`DeviceError` saying why torch cannot use it and what to set."""
    if device == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"model.device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if chosen.type != "cuda":
        return chosen
    if not torch.cuda.is_available():
        raise DeviceError(f"model.device is {device!r} but torch sees no CUDA device here: {_why_no_cuda()}. "
                          "Fix: set model.device: auto (or cpu) to run on the CPU, or run the job on a GPU node "
                          "with a CUDA build of torch")
    count = torch.cuda.device_count()
    index = chosen.index if chosen.index is not None else torch.cuda.current_device()
    if index >= count:
        raise DeviceError(f"model.device is {device!r} but this job sees {count} CUDA device(s), cuda:0 to "
                          f"cuda:{count - 1}. Fix: set model.device: cuda (or auto), or give the job that GPU")
    return torch.device("cuda", index)


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from this job (a job submitted without a GPU)"
    return (f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no GPU (no NVIDIA driver "
            "loaded, or a job submitted without a GPU)")


def describe(device: torch.device) -> str:
    """``cpu``, or ``cuda:N (GPU name, memory)``: what a model job's log starts with."""
    if device.type != "cuda":
        return str(device)
    gpu = torch.cuda.get_device_properties(device)
    return f"{device} ({gpu.name}, {gpu.total_memory / GIB:.1f} GiB)"


def stamp(device: torch.device) -> str:
    """What a checkpoint records of its device: the type, and the GPU model on CUDA."""
    if device.type != "cuda":
        return device.type
    return f"cuda ({torch.cuda.get_device_name(device)})"
