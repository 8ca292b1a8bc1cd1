"""Choosing where to compute: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from chatrnn.errors import ChatrnnError


def pick_device(name: str | None = None) -> torch.device:
    """The device to train or sample on; ``name`` (``cuda``, ``cuda:1``, ``mps``, ``cpu``) overrides.

    Asking for an accelerator that is not there is a user error, not a silent fall-back: a user who
    typed ``--device cuda`` expects the GPU and would be misled by a slow CPU run.
    """
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ChatrnnError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ChatrnnError("--device cuda asked for, but no CUDA GPU is available here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ChatrnnError("--device mps asked for, but MPS is not available here")
    return dev


def autocast_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """bf16 autocast on CUDA by default (no loss scaling needed, unlike fp16); none elsewhere."""
    if amp is None:
        amp = device.type == "cuda"
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu":
        return torch.bfloat16
    return None
