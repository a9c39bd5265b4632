"""Run set-up: the process group ``torchrun`` describes, model wrapping, the run directory."""
from __future__ import annotations

import contextlib
import fcntl
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


def _holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _acquire(lock: Path, run_dir: Path) -> int:
    """An open descriptor of ``lock`` holding an exclusive ``flock``; RunDirLocked if another process holds it."""
    for _ in range(100):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirLocked(f"{run_dir} is in use by another run (pid {holder.get('pid')} on host "
                               f"{holder.get('host')}, since {holder.get('since')}); wait for it to finish, or use "
                               "another run.out_dir") from None
        # The holder may have released and removed the file between our open and our lock: then we hold a lock
        # on a file nobody else will ever see, and must lock the file that is there now.
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RunDirLocked(f"{run_dir}: could not lock {lock} (it keeps being replaced by other runs)")


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, d: Dist) -> Iterator[None]:
    """An exclusive lock on ``run_dir`` (rank 0) for the run's life: an OS file lock (``flock``) on ``run.lock``.

    Two runs on one directory would resume from each other's checkpoints and
    interleave their logs. The kernel releases the lock when its process ends,
    however it ends, so a lock left by a killed run is free at once, and of
    several runs that find it so, exactly one gets it (there is no "check
    then take over" step to race through). The file also holds the owner's
    pid and host, to name it when a second run is refused.
    """
    if not d.main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    fd = _acquire(lock, run_dir)
    try:
        before = _holder(fd)
        if before.get("pid") is not None:
            log.warning("%s: taking over the lock of pid %s on %s, which ended without releasing it", run_dir,
                        before.get("pid"), before.get("host"))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still holding it: see _acquire
        os.close(fd)


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
