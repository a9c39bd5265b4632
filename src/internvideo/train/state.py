"""Checkpoint state: atomic ``step_N`` directories and exact resume (weights, optimiser, EMA, RNGs, position).

``run_dir/checkpoints/step_XXXXXXX/`` is written to a temporary name and renamed,
so a crash mid-write leaves at most a ``.tmp`` directory, never a corrupt latest
checkpoint. Weights and optimiser state are gathered in full (unsharded) so a run
can resume with another number of processes.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from ..checkpoints import CheckpointError, save_model
from ..checkpoints.base import load_safetensors
from ..fileio import atomic_path
from ..errors import UserError
from .optim import EMA
from .setup import Dist, unwrap_model

log = logging.getLogger("internvideo.train")


def rng_state() -> dict:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
            "numpy_gauss": [int(has_gauss), float(gauss)], "python": list(random.getstate()[1])}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    random.setstate((3, tuple(state["python"]), None))


@dataclass
class Progress:
    """Where a run is: what a checkpoint must restore besides the tensors."""

    step: int = 0
    epoch: int = 0
    pos_in_epoch: int = 0  # micro-batches of this epoch already consumed
    best: float | None = None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # training time of the earlier segments of a resumed run
    # what pos_in_epoch counts in: for a shard stream its shards, processes, loader workers and batch
    data_layout: dict = field(default_factory=dict)


class Checkpointer:
    """``step_XXXXXXX`` directories under ``run_dir/checkpoints``; only the last ``keep_last`` are kept."""

    def __init__(self, run_dir: Path, keep_last: int):
        self.dir = run_dir / "checkpoints"
        self.keep_last = keep_last

    def _complete(self) -> list[Path]:
        if not self.dir.exists():
            return []
        return sorted(p for p in self.dir.iterdir() if p.is_dir() and p.name.startswith("step_")
                      and p.name[len("step_"):].isdigit() and (p / "train_state.pt").exists())

    def latest(self) -> Path | None:
        done = self._complete()
        return done[-1] if done else None

    def clean_stale(self) -> None:
        """Remove ``step_N.tmp`` directories a crash (or a full disk) left behind; call with the run lock held."""
        if self.dir.exists():
            for p in self.dir.glob("step_*.tmp"):
                log.warning("removing the unfinished checkpoint %s", p)
                shutil.rmtree(p, ignore_errors=True)

    def mark_diverged(self, path: Path) -> Path:
        """Rename a checkpoint whose weights gave a non-finite loss, so no resume starts from it again."""
        bad = path.with_name(path.name + ".diverged")
        shutil.rmtree(bad, ignore_errors=True)
        os.replace(path, bad)
        return bad

    def write(self, step: int, model: nn.Module, state: dict, ema: dict | None, weights: dict) -> Path:
        final = self.dir / f"step_{step:07d}"
        with atomic_path(final, directory=True) as tmp:  # step_N.tmp until complete; removed on failure
            save_model(model, tmp, state_dict=weights)
            if ema is not None:
                save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
            torch.save(state, tmp / "train_state.pt")
        if self.keep_last > 0:  # 0 keeps every checkpoint
            old = [p for p in self._complete() if p != final]
            # The one just written is never pruned: a run always ends with its final checkpoint on disk.
            for p in old[: max(0, len(old) - (self.keep_last - 1))]:
                # Renamed first: a kill mid-delete then leaves a step_N.tmp, which the next run's clean_stale
                # removes, never a half-deleted step_N that no pruning would ever see again.
                trash = p.with_name(p.name + ".tmp")
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(p, trash)
                shutil.rmtree(trash, ignore_errors=True)
        return final

    def save_best(self, progress: Progress, model: nn.Module, metric: str, d: Dist) -> Path | None:
        """The weights of the best evaluation so far in ``checkpoints/best`` (+ ``best.json``: step, metric, value).

        Weights only (no optimiser), for evaluation; resuming always uses the latest ``step_*``. Written under a
        temporary name and renamed, like the step checkpoints.
        """
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        weights = get_model_state_dict(model, options=_state_options())
        final = self.dir / "best"
        if d.main:
            with atomic_path(final, directory=True) as tmp:
                save_model(unwrap_model(model), tmp, state_dict=weights)
                (tmp / "best.json").write_text(json.dumps({"step": progress.step, "metric": metric,
                                                           "value": progress.best}) + "\n")
        if d.world > 1:
            dist.barrier()
        return final

    def save(self, progress: Progress, model: nn.Module, optimizer, ema: EMA | None, d: Dist) -> Path | None:
        """Gather full (unsharded) weights and optimiser state on every rank; rank 0 writes them."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        opts = _state_options()
        weights = get_model_state_dict(model, options=opts)
        optim_state = get_optimizer_state_dict(model, optimizer, options=opts)
        ema_state = {k: full_tensor(v) for k, v in ema.shadow.items()} if ema is not None else None
        state = {"step": progress.step, "epoch": progress.epoch, "pos_in_epoch": progress.pos_in_epoch,
                 "best": progress.best, "history": progress.history, "optimizer": optim_state, "rng": rng_state(),
                 "seconds": progress.seconds, "data_layout": progress.data_layout}
        bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # such a checkpoint could only mislead a resume; the divergence guard stops the run next
            log.warning("not saving step %d: non-finite weights (%s)", progress.step, ", ".join(bad[:3]))
        path = None
        if d.main and not bad:
            path = self.write(progress.step, unwrap_model(model), state, ema_state, weights)
        if d.world > 1:
            dist.barrier()
        return path or self.latest()


class NoIntactCheckpoint(UserError):
    """Every checkpoint of the run directory is damaged."""


def resume_latest(ckpt: Checkpointer, model: nn.Module, optimizer, ema: EMA | None) -> tuple[Path | None, Progress]:
    """Resume from the newest checkpoint that reads back whole, skipping damaged ones with a warning.

    Returns ``(None, Progress())`` when there is no checkpoint. If there are
    some but none is intact the run stops (``run.resume=false`` starts fresh).
    """
    candidates = ckpt._complete()
    skipped = []
    for path in reversed(candidates):
        try:
            return path, resume(path, model, optimizer, ema)
        except Exception as e:  # noqa: BLE001 - a damaged file raises whatever its reader raises
            log.warning("skipping damaged checkpoint %s: %s: %s; trying the previous one", path, type(e).__name__, e)
            skipped.append(path.name)
    if candidates:
        raise NoIntactCheckpoint(f"{ckpt.dir}: no intact checkpoint ({', '.join(skipped)} are damaged); set "
                                 "run.resume=false or use a new run.out_dir to start fresh")
    return None, Progress()


def resume(path: Path, model: nn.Module, optimizer, ema: EMA | None) -> Progress:
    """Restore everything :meth:`Checkpointer.save` wrote; returns where the run was.

    The weights file is checked first (it opens, and holds exactly the model's
    tensors), so a damaged checkpoint fails before anything is restored.
    """
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    opts = _state_options()
    weights = load_safetensors(path / "model.safetensors")
    expected = set(unwrap_model(model).state_dict())
    if set(weights) != expected:
        diff = sorted(set(weights) ^ expected)
        raise CheckpointError(f"{path / 'model.safetensors'}: its tensors do not match the model ({diff[:3]} ...)")
    state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=True)
    set_model_state_dict(model, weights, options=opts)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=opts)
    if ema is not None and (path / "ema.safetensors").exists():
        saved = load_safetensors(path / "ema.safetensors")
        for k, v in ema.shadow.items():
            full = saved[k]
            if hasattr(v, "full_tensor"):  # re-shard like the live parameter
                from torch.distributed.tensor import distribute_tensor

                full = distribute_tensor(full, v.device_mesh, v.placements)
            v.copy_(full)
    set_rng_state(state["rng"])
    return Progress(state["step"], state["epoch"], state["pos_in_epoch"], state["best"], state["history"],
                    state.get("seconds", 0.0), state.get("data_layout", {}))


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    # FSDP shards are DTensors: gather (a collective: every rank calls it) and move to CPU.
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()


def _state_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)
