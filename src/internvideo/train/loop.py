"""One training loop for every objective.

An objective (:mod:`internvideo.train.objectives`) supplies the model, the
datasets, the loss of a batch and its evaluation; this module does the rest the
same way for all of them: process group set-up under ``torchrun``, DDP/FSDP
wrapping, AdamW with weight-decay exclusions and layer-wise lr decay, warmup +
cosine schedule, gradient accumulation and clipping, EMA, bf16 or fp16 autocast (fp16 with loss
scaling), atomic checkpoints with exact resume, logging (tqdm, JSON lines, TensorBoard),
periodic evaluation, and a hard stop on a non-finite loss.

Exact resume: the sample order is a function of (seed, epoch), per-sample
randomness (augmentation, VideoMAE's tube mask) a function of (seed, epoch,
index), and the global RNG states are checkpointed, so a run killed at any step
and resumed ends with the same weights as an uninterrupted one (bit-identical on
CPU with one process).
"""
from __future__ import annotations

import functools
import json
import logging
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import fileio
from ..data.datasets import flatten_repeats, video_dataset_of
from ..data.shards import ShardStream, expand_shards
from ..data.workers import WorkerWatch
from ..errors import UserError
from ..models.hardware import resolve_precision
from .config import ConfigError, DataSection, TrainConfig, check_warmup, validate
from .objectives import Objective, check_objective, make_objective
from .optim import EMA, adamw, lr_at, sgd
from .setup import (
    Dist, all_reduce_mean, prepare_run_dir, run_dir_lock, seed_everything, setup_distributed, wrap_model,
)
from .state import Checkpointer, Progress, full_tensor, resume_latest

log = logging.getLogger("internvideo.train")


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


# ----------------------------------------------------------------------------- data order


class EpochSampler(Sampler[int]):
    """Deterministic sharded order: a permutation of (seed, epoch), split across ranks.

    ``start`` skips the first samples of this rank's share, which is how a
    resumed run continues mid-epoch without replaying batches.
    """

    def __init__(self, n: int, rank: int, world: int, seed: int, shuffle: bool = True, drop_last: bool = True):
        self.n, self.rank, self.world, self.seed, self.shuffle, self.drop_last = n, rank, world, seed, shuffle, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.drop_last:
            order = order[: self.n - self.n % self.world]
        else:
            order += order[: (-self.n) % self.world]  # pad so every rank gets the same count
        return order[self.rank:: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start)


class SeededDataset(Dataset):
    """Seeds the global RNGs from (seed, epoch, index) before each sample.

    Augmentations then depend only on which sample is drawn, not on which worker
    draws it or what came before — the basis of exact resume.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int | tuple[int, int]):
        if isinstance(index, tuple):  # (epoch, index): persistent workers learn the epoch with the index
            epoch, index = index
            if epoch != self.epoch:
                self.epoch = epoch
                if callable(getattr(self.dataset, "set_epoch", None)):
                    self.dataset.set_epoch(epoch)
        s = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index)
        s %= 2**63
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)
        return self.dataset[index]


class _WithEpoch(Sampler):
    """(epoch, index) pairs of an :class:`EpochSampler`, for workers that outlive an epoch."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _make_loader(ds: Dataset, sampler: EpochSampler | None, batch_size: int, data: DataSection, collate,
                 device: torch.device) -> DataLoader:
    """Map-style data with ``sampler``, or a shard stream (``sampler`` None)."""
    workers = data.num_workers
    extra = {"prefetch_factor": data.prefetch_factor} if workers and data.prefetch_factor else {}
    return DataLoader(ds, batch_size=batch_size, sampler=_WithEpoch(sampler) if sampler is not None else None,
                      num_workers=workers, collate_fn=collate, drop_last=True,
                      persistent_workers=data.persistent_workers and workers > 0,
                      pin_memory=data.pin_memory and device.type == "cuda",
                      multiprocessing_context="fork" if workers else None, **extra)


def _train_data(cfg: TrainConfig, objective: Objective, train_set: Dataset, seeded: SeededDataset, d: Dist):
    """(shard stream or None, items per micro-batch, collate): repeated views and shards set up as configured."""
    repeats, items = cfg.data.repeats, cfg.run.batch_size // cfg.data.repeats
    collate = objective.collate
    try:
        if repeats > 1:
            video_dataset_of(train_set).repeats = repeats
            collate = functools.partial(_collate_views, objective.collate)
        if not cfg.data.shards:
            return None, items, collate
        index, urls = expand_shards(cfg.data.shards)
        stream = ShardStream(urls, index, seeded, batch=items, rank=d.rank, world=d.world,
                             num_workers=cfg.data.num_workers, seed=cfg.run.seed,
                             shuffle_buffer=cfg.data.shuffle_buffer,
                             labels_required=getattr(objective, "labels_required", True))
    except TypeError as e:
        key = "data.shards" if cfg.data.shards else "data.repeats"
        raise ConfigError(f"{key}: objective {cfg.objective!r} cannot use it ({e})") from None
    if d.main:
        log.info("streaming %d samples from %d shard(s); %d per epoch left out to split them evenly",
                 index.total, len(urls), stream.dropped)
    return stream, items, collate


def _collate_views(collate, items):
    return collate(flatten_repeats(items))


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


# ----------------------------------------------------------------------------- schedule and logging


@dataclass(frozen=True)
class Schedule:
    """Step counts and learning rates of a run, from the config and the size of the training set."""

    steps_per_epoch: int
    total_steps: int
    warmup: int
    peak_lr: float
    min_lr: float
    milestones: tuple[int, ...] | None = None  # step schedule: the steps where the lr drops by gamma
    gamma: float = 0.1

    @classmethod
    def of(cls, cfg: TrainConfig, num_samples: int, d: Dist) -> Schedule:
        micro_per_rank = num_samples // cfg.run.batch_size
        steps_per_epoch = micro_per_rank // cfg.optim.accum_steps
        global_batch = cfg.run.batch_size * d.world * cfg.optim.accum_steps
        if steps_per_epoch == 0:
            raise ValueError(f"the training set has {num_samples * d.world} samples: fewer than one global batch of "
                             f"{global_batch} (batch_size x processes x accum_steps)")
        total = steps_per_epoch * cfg.run.epochs
        if cfg.run.max_steps is not None:
            total = min(total, cfg.run.max_steps)
        scale = global_batch / 256 if cfg.optim.scale_lr else 1.0
        o = cfg.optim
        warmup = o.warmup_steps or int(o.warmup_epochs * steps_per_epoch)
        check_warmup(warmup, total)
        milestones = (tuple(int(round(m * steps_per_epoch)) for m in o.milestones) if o.schedule == "step"
                      else None)
        return cls(steps_per_epoch, total, warmup, o.lr * scale, o.min_lr * scale, milestones, o.gamma)

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.warmup, self.peak_lr, self.min_lr, self.milestones, self.gamma)


class RunLog:
    """metrics.jsonl, TensorBoard and the in-memory history, written by rank 0 only."""

    def __init__(self, run_dir: Path, history: list[dict], d: Dist):
        self.history, self.main = history, d.main
        self.file = open(run_dir / "metrics.jsonl", "a") if d.main else None
        self.writer = _tensorboard(run_dir) if d.main else None

    def record(self, values: dict, kind: str) -> None:
        if not self.main:
            return
        row = {"kind": kind, **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}}
        self.history.append(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.writer is not None:
            for k, v in values.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"{kind}/{k}", v, values["step"])

    def close(self) -> None:
        for h in (self.file, self.writer):
            if h is not None:
                h.close()


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_metric: float | None
    metric_name: str | None
    checkpoint: Path | None
    run_dir: Path
    history: list[dict]
    model: nn.Module
    #: ``checkpoints/best``: the weights of the best evaluation (None without a validation metric)
    best_checkpoint: Path | None = None
    best_step: int | None = None

    def describe(self) -> str:
        """One line naming the best and the last checkpoint (and which is which)."""
        last = f"last checkpoint {self.checkpoint}"
        if self.best_metric is None:
            return f"{self.steps} steps in {self.seconds:.1f}s (no validation metric); {last}"
        return (f"{self.steps} steps in {self.seconds:.1f}s; best val {self.metric_name} {self.best_metric:.1f} % "
                f"at step {self.best_step}: {self.best_checkpoint}; {last}")


def train(cfg: TrainConfig, objective: Objective | None = None) -> TrainResult:
    """Run (or resume) training as ``cfg`` describes; returns a summary of the run.

    The run directory is locked for the whole run (a second run on it is refused, naming the holder).
    """
    validate(cfg)
    if objective is None:
        check_objective(cfg.objective)  # before the run directory is made
    d = setup_distributed()
    with run_dir_lock(Path(cfg.run.out_dir), d):
        return _train(cfg, objective, d, prepare_run_dir(cfg, d))


def _train(cfg: TrainConfig, objective: Objective | None, d: Dist, run_dir: Path) -> TrainResult:
    run = _Run(cfg, objective, d, run_dir)
    try:
        while run.progress.step < run.sched.total_steps:
            run.epoch()
    finally:
        run.close()
    return run.finish()


class _Run:
    """What one run carries from step to step: the model (plain, wrapped, compiled), its optimiser and EMA, the
    schedule, the checkpoints, the progress and the log. Built in the order the run sets them up."""

    def __init__(self, cfg: TrainConfig, objective: Objective | None, d: Dist, run_dir: Path):
        seed_everything(cfg.run.seed)
        self.cfg, self.d, self.run_dir = cfg, d, run_dir
        self.objective = objective = objective or make_objective(cfg)
        self.model = model = objective.build_model().to(d.device)
        if cfg.run.grad_checkpointing and callable(getattr(model, "set_grad_checkpointing", None)):
            model.set_grad_checkpointing(True)
        self.train_set, self.val_set = objective.datasets()
        self.seeded = SeededDataset(self.train_set, cfg.run.seed)
        self.stream, self.items_per_batch, self.collate = _train_data(cfg, objective, self.train_set, self.seeded, d)
        self.sampler = (EpochSampler(len(self.seeded), d.rank, d.world, cfg.run.seed, shuffle=True)
                        if self.stream is None else None)
        self.sched = sched = Schedule.of(cfg, len(self.sampler if self.stream is None else self.stream) * cfg.data.repeats,
                                            d)
        self.watch = WorkerWatch(cfg.data.num_workers)
        self.loader: DataLoader | None = None

        # Wrap first: FSDP replaces the parameters with sharded ones, which the optimiser and EMA must hold.
        self.wrapped = wrap_model(model, cfg, d)
        o = cfg.optim
        self.optimizer = (sgd(objective.param_groups(model), o.momentum, o.nesterov, lr=sched.peak_lr)
                          if o.optimizer == "sgd" else adamw(objective.param_groups(model), lr=sched.peak_lr,
                                                             betas=o.betas))
        self.ema = EMA(model, cfg.optim.ema) if cfg.optim.ema else None
        self.forward_model = torch.compile(self.wrapped) if cfg.run.compile else self.wrapped

        self.ckpt = Checkpointer(run_dir, cfg.run.keep_last)
        if d.main:
            self.ckpt.clean_stale()
        latest, self.progress = (resume_latest(self.ckpt, model, self.optimizer, self.ema) if cfg.run.resume
                                 else (None, Progress()))
        if latest is not None and d.main:
            log.info("resumed from %s at step %d", latest, self.progress.step)
            _drop_replayed_rows(run_dir / "metrics.jsonl", self.progress.step)
        layout = {"shards": cfg.data.shards, "world": d.world, "num_workers": cfg.data.num_workers,
                  "batch": self.items_per_batch} if self.stream is not None else {}
        if latest is not None and self.progress.pos_in_epoch and self.progress.data_layout != layout:
            raise ConfigError(f"{latest}: stopped mid-epoch reading {self.progress.data_layout or 'file lists'}, "
                              f"now {layout or 'file lists'}; the stream position only holds for the same shards, "
                              "processes, data.num_workers and batch (or set run.resume=false)")
        self.progress.data_layout = layout
        self.base_seconds = self.progress.seconds

        self.runlog = RunLog(run_dir, self.progress.history, d)
        self.last_good: Path | None = latest
        precision = resolve_precision(cfg.run.precision, d.device)  # logs a warning for bf16 on a CPU that emulates it
        self.autocast, self.scaler = mixed_precision(precision, d.device)
        self.micro_per_epoch = sched.steps_per_epoch * cfg.optim.accum_steps
        self.bar = _progress_bar(sched.total_steps, self.progress.step, d.main and cfg.run.progress)
        self.t_start = time.perf_counter()
        self.clips_seen, self.t_window = 0, time.perf_counter()

    def set_train_mode(self) -> None:
        self.model.train()
        self.objective.on_train_mode(self.model)

    def epoch(self) -> None:
        """The rest of the current epoch, or up to the last step; then move to the next epoch if this one ended."""
        cfg, progress, accum = self.cfg, self.progress, self.cfg.optim.accum_steps
        self.seeded.epoch = progress.epoch
        self.objective.start_epoch(self.train_set, progress.epoch)
        if self.stream is not None:
            self.stream.set_epoch(progress.epoch, progress.pos_in_epoch)
        else:
            self.sampler.set_epoch(progress.epoch, progress.pos_in_epoch * self.items_per_batch)
        if self.loader is None or not cfg.data.persistent_workers:
            self.loader = _make_loader(self.seeded if self.stream is None else self.stream, self.sampler,
                                       self.items_per_batch, cfg.data, self.collate, self.d.device)
        micro = 0
        self.set_train_mode()
        for batch in self.watch.iterate(self.loader):
            loss, logs, lr = self.forward_backward(batch, last_micro=micro + 1 >= accum)
            micro += 1
            if micro < accum:
                continue
            micro = 0
            self.step(loss, logs, lr)
            end_of_epoch = progress.pos_in_epoch >= self.micro_per_epoch
            self.evaluate_if_due(end_of_epoch)
            self.save_if_due()
            if progress.step >= self.sched.total_steps or end_of_epoch:
                break
        ended = progress.epoch
        if progress.pos_in_epoch >= self.micro_per_epoch:
            progress.epoch, progress.pos_in_epoch = progress.epoch + 1, 0
        if self.d.main:
            self.objective.end_epoch(ended)

    def forward_backward(self, batch, last_micro: bool) -> tuple[torch.Tensor, dict, float]:
        """One micro-batch: the loss at this step's lr, checked finite, and its gradients accumulated."""
        d, progress = self.d, self.progress
        batch = _to_device(batch, d.device)
        lr = self.sched.lr(progress.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        sync = nullcontext()
        if d.world > 1 and callable(getattr(self.wrapped, "no_sync", None)) and not last_micro:
            sync = self.wrapped.no_sync()  # DDP: all-reduce the gradients on the last micro-batch only
        with sync, self.autocast:
            loss, logs = self.objective.loss(self.forward_model, batch)
        self.last_good = _check_finite(loss, progress.step, self.last_good, self.ckpt, d)
        self.scaler.scale(loss / self.cfg.optim.accum_steps).backward()
        progress.pos_in_epoch += 1
        self.clips_seen += self.objective.batch_size(batch) * d.world
        return loss, logs, lr

    def step(self, loss: torch.Tensor, logs: dict, lr: float) -> None:
        """The optimiser step after the last micro-batch (clip, update, EMA), then its log row."""
        cfg, d, progress = self.cfg, self.d, self.progress
        logs.update(optimizer_step(self.optimizer, self.model, self.scaler, cfg.optim.clip_grad))
        if self.ema is not None:
            self.ema.update(self.model)
        progress.step += 1
        step = progress.step
        logs = all_reduce_mean({"loss": float(loss.detach()), **logs}, d)
        now = time.perf_counter()
        logs.update(step=step, epoch=progress.epoch, lr=lr,
                    clips_per_s=self.clips_seen / max(now - self.t_window, 1e-9))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{lr:.2e}", clips_s=f"{logs['clips_per_s']:.1f}")
        if step % cfg.run.log_every == 0 or step == self.sched.total_steps:
            self.clips_seen, self.t_window = 0, now
            self.runlog.record(logs, "train")
            if d.main and not cfg.run.progress:
                log.info("step %d/%d loss %.4f lr %.2e", step, self.sched.total_steps, logs["loss"], lr)

    def evaluate_if_due(self, end_of_epoch: bool) -> None:
        run, step = self.cfg.run, self.progress.step
        if self.val_set is None or not ((run.eval_every and step % run.eval_every == 0)
                                        or (not run.eval_every and end_of_epoch) or step == self.sched.total_steps):
            return
        if _evaluate(self.objective, self.model, self.val_set, self.d, self.progress, self.runlog):
            self.ckpt.save_best(self.progress, self.model, self.objective.metric_name, self.d)
        self.set_train_mode()

    def save_if_due(self) -> None:
        step = self.progress.step
        if step % self.cfg.run.save_every == 0 or step == self.sched.total_steps:
            self.progress.seconds = self.base_seconds + time.perf_counter() - self.t_start
            self.last_good = self.ckpt.save(self.progress, self.model, self.optimizer, self.ema, self.d)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.runlog.close()

    def finish(self) -> TrainResult:
        """The result, the curves and summary.json (rank 0)."""
        progress, run_dir = self.progress, self.run_dir
        segment = time.perf_counter() - self.t_start
        seconds = self.base_seconds + segment  # every segment of a resumed run, not only the last
        metric_name = self.objective.metric_name
        best_step = _best_step(progress.history, metric_name, progress.best)
        best = self.ckpt.dir / "best"
        best_dir = best if progress.best is not None and best.exists() else None
        result = TrainResult(progress.step, seconds, progress.best, metric_name, self.last_good, run_dir,
                             progress.history, self.model, best_dir, best_step)
        if self.d.main:
            _plot(progress.history, run_dir / "curves.png", metric_name)
            summary = {"steps": progress.step, "seconds": round(seconds, 3), "seconds_this_segment": round(segment, 3),
                       "best": progress.best, "metric": metric_name, "best_step": best_step,
                       "best_checkpoint": str(best_dir) if best_dir else None,
                       "checkpoint": str(self.last_good) if self.last_good else None}
            fileio.write_json(run_dir / "summary.json", summary)
            log.info("done: %s", result.describe())
        return result


def mixed_precision(precision: str, device: torch.device) -> tuple[object, torch.amp.GradScaler]:
    """The autocast context and gradient scaler of a precision (the scaler is a no-op unless fp16).

    fp16 is for GPUs without bf16 (V100, T4): its narrow range needs loss
    scaling (``GradScaler``: steps with inf/NaN gradients are skipped and the
    scale lowered). On a CPU it is refused: PyTorch's CPU fp16 kernels are
    slower than fp32 and bf16 has the range without the scaler.
    """
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"run.precision: fp16 needs a CUDA GPU, the device is {device.type}; use bf16 "
                          "(native on recent CPUs) or fp32 there")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def optimizer_step(optimizer: torch.optim.Optimizer, model: nn.Module, scaler: torch.amp.GradScaler,
                   clip_grad: float | None) -> dict[str, float]:
    """Clip (on unscaled gradients), step unless the scaler found inf/NaN gradients, zero; returns logs."""
    logs: dict[str, float] = {}
    if clip_grad:
        scaler.unscale_(optimizer)
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        logs["grad_norm"] = float(full_tensor(norm))
    if scaler.is_enabled():
        before = scaler.get_scale()
        scaler.step(optimizer)  # skipped when the gradients overflowed
        scaler.update()
        logs["loss_scale"] = scaler.get_scale()
        logs["skipped_step"] = float(scaler.get_scale() < before)
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return logs


def _evaluate(objective: Objective, model: nn.Module, val_set, d: Dist, progress: Progress, runlog: RunLog) -> bool:
    """Evaluate, record and print the metrics; True when the run's metric reached a new best."""
    metrics = all_reduce_mean(objective.evaluate(model, val_set, d.device), d)
    metrics["step"] = progress.step
    runlog.record(metrics, "eval")
    name = objective.metric_name
    if d.main:
        from tqdm.auto import tqdm

        shown = ", ".join(f"{k} {v:.1f}" + (" %" if k == name else "") for k, v in metrics.items()
                          if k != "step" and isinstance(v, (int, float)))
        tqdm.write(f"step {progress.step}: val {shown}")
    if name and name in metrics and (progress.best is None or metrics[name] > progress.best):
        progress.best = metrics[name]
        return True
    return False


def _best_step(history: list[dict], metric: str | None, best: float | None) -> int | None:
    # The history holds the metrics as logged (rounded to 6 decimals), the best its exact value.
    if not metric or best is None:
        return None
    steps = [r["step"] for r in history if r.get("kind") == "eval" and isinstance(r.get(metric), (int, float))
             and abs(r[metric] - best) <= 1e-5 * max(1.0, abs(best))]
    return steps[0] if steps else None


def _check_finite(loss: torch.Tensor, step: int, last_good: Path | None, ckpt: Checkpointer, d: Dist) -> Path | None:
    """Stop on a non-finite loss. A checkpoint of the weights that gave it is not "good": it is set aside."""
    bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=d.device)
    if d.world > 1:
        dist.all_reduce(bad)
    if not bad.item():
        return last_good
    set_aside = ""
    if last_good is not None and last_good.name == f"step_{step:07d}":
        # Saved after the update that produced these weights: resuming from it would diverge again.
        if d.main and last_good.exists():
            set_aside = f" The checkpoint of these weights was renamed to {ckpt.mark_diverged(last_good)}."
        if d.world > 1:
            dist.barrier()
        last_good = ckpt.latest()
    where = (f"The last good checkpoint is {last_good} (an automatic resume starts there)" if last_good
             else "There is no good checkpoint")
    raise TrainingDiverged(f"non-finite loss ({float(loss.detach())}) at step {step + 1}; stopping without updating "
                           f"the weights.{set_aside} {where}. Lower optim.lr or set optim.clip_grad; to start fresh, "
                           "set run.resume=false or use a new run.out_dir.")


def _drop_replayed_rows(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from: the resumed run logs those steps again."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        log.info("%s: dropped %d row(s) after step %d (logged before the interruption; they are re-run)",
                 path, len(lines) - len(kept), step)
        fileio.write_text(path, "".join(line + "\n" for line in kept))


def _plot(history: list[dict], path: Path, metric: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows = [r for r in history if r["kind"] == "train"]
    eval_rows = [r for r in history if r["kind"] == "eval"]
    fig, axes = plt.subplots(1, 2 if eval_rows else 1, figsize=(10 if eval_rows else 5, 3.5), squeeze=False)
    ax = axes[0, 0]
    ax.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows])
    ax.set(xlabel="step", ylabel="train loss", title="loss")
    if eval_rows:
        keys = [metric] if metric and metric in eval_rows[-1] else [k for k in eval_rows[-1] if k not in ("kind", "step")]
        for k in keys:
            axes[0, 1].plot([r["step"] for r in eval_rows], [r.get(k) for r in eval_rows], marker="o", label=k)
        axes[0, 1].set(xlabel="step", ylabel="%", title="evaluation")
        axes[0, 1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(config_path: str | None, overrides: list[str]) -> int:
    from .config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(config_path, overrides)
    result = train(cfg)
    if dist.is_initialized():
        dist.destroy_process_group()
    print(f"trained {result.describe()}; run directory {result.run_dir}")
    return 0
