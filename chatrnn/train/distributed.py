"""torch.distributed glue: read torchrun's environment, agree on stopping, reduce metrics.

Single-process runs get ``None`` from :func:`from_env` and never touch torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.device.type == "cuda":
            return DDP(model, device_ids=[self.device.index])
        return DDP(model)

    def agree(self, stop: bool, progress: float) -> tuple[bool, float]:
        """All ranks stop together: any rank's stop request or the furthest progress wins."""
        t = torch.tensor([1.0 if stop else 0.0, progress], device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t[0] > 0), float(t[1])

    def reduce_metrics(self, m: dict) -> dict:
        """Validation loss averaged over ranks, weighted by how many tokens each scored."""
        import math

        dev = self.device if self.device.type == "cuda" else "cpu"
        count = float(m.get("chars", m.get("tokens", 1)))
        t = torch.tensor([m["loss"] * count, count], dtype=torch.float64, device=dev)
        torch.distributed.all_reduce(t)
        out = dict(m)
        out["loss"] = float(t[0] / t[1])
        out["perplexity"] = math.exp(min(out["loss"], 50.0))
        if "bpc" in m and "chars" in m:
            out["bpc"] = out["loss"] / math.log(2)
        return out

    def close(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def from_env(device_name: str | None = None) -> DistContext | None:
    """A process group when launched by torchrun (WORLD_SIZE > 1), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    from chatrnn.device import pick_device

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device_name)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, dev)
