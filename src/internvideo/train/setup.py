"""Run set-up: the process group ``torchrun`` describes, model wrapping, the run directory."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig, save_config


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the process group that ``torchrun`` describes in the environment; one process otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        dev = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return Dist(device=dev)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device)


def all_reduce_mean(values: dict[str, float], d: Dist) -> dict[str, float]:
    if d.world == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return {k: v / d.world for k, v in zip(keys, t.tolist())}


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def prepare_run_dir(cfg: TrainConfig, d: Dist) -> Path:
    """The run directory with the resolved config written into it (by rank 0)."""
    run_dir = Path(cfg.run.out_dir)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    return run_dir


def wrap_model(model: nn.Module, cfg: TrainConfig, d: Dist) -> nn.Module:
    """DDP or FSDP2 under ``torchrun``; the model itself in one process."""
    if d.world == 1:
        return model
    if cfg.run.distributed == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for blk in getattr(model, "blocks", []):
            fully_shard(blk)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
                                   find_unused_parameters=False)


def unwrap_model(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)
