"""Run set-up: the process group ``torchrun`` describes, model wrapping, the run directory."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError
from .config import TrainConfig, save_config

log = logging.getLogger("internvideo.train")


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


class RunDirLocked(UserError):
    """Another run holds the run directory."""


LOCK_NAME = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, d: Dist) -> Iterator[None]:
    """An exclusive lock on ``run_dir`` (rank 0): ``run.lock`` holds the owner's pid and host.

    Two runs on one directory would resume from each other's checkpoints and
    interleave their logs. A lock whose process is gone (same host) is stale
    and taken over with a warning; one from another host is refused, naming
    it, since its process cannot be checked from here.
    """
    if not d.main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                log.warning("%s: taking over a stale lock of pid %d (no longer running)", run_dir, pid)
                lock.unlink(missing_ok=True)
                continue
            raise RunDirLocked(f"{run_dir} is in use by another run (pid {pid} on host {host}, since "
                               f"{holder.get('since')}); wait for it to finish, use another run.out_dir, or delete "
                               f"{lock} if that run is gone") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


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
