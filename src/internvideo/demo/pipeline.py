"""``internvideo demo``: a complete miniature InternVideo on the synthetic world, on a CPU.

Everything the paper does, at toy scale and from scratch (no downloaded weights):

1. **world**: generate the synthetic video world (:func:`internvideo.data.make_world`):
   coloured shapes performing ten actions that come in time-reversed pairs,
   with classification lists, captions and multiple-choice questions.
2. **masked video pretraining**: a tiny VideoMAE learns to reconstruct
   tube-masked clips (objective ``mae``).
3. **video-language pretraining**: a tiny multimodal model (CLIP-style video
   encoder with local temporal and global spatiotemporal modules, text
   encoder) learns video-text InfoNCE on the captions (objective
   ``contrastive``).
4. **supervised training**: the masked video encoder's ViT is trained with
   the action labels (objective ``classify``); from random weights by
   default, from the masked autoencoder with ``--mae-init`` (the paper's
   post-pretraining; slower to learn at this scale, see ``docs/demo.md``). The
   multimodal model has no classification head in this code base, so its
   recognition numbers are a linear probe of its frozen video embedding and the
   encoder fine-tuned with its own head (UniFormerV2's, ``internvideo_mm_tiny_cls``).
5. **cross-model attention**: both backbones frozen; the paper's CMA (masked-
   encoder tokens query the multimodal encoder's intermediate tokens, then the
   multimodal class token reads the result) and our gated design, each with a
   classifier on top (objective ``fusion``).
6. **benchmark** on the test split: action recognition (masked, multimodal,
   fused), zero-shot recognition from the class names, video-text retrieval
   in both directions, zero-shot multiple choice.
7. **open-set recognition** as the paper runs it (DEAR's protocol): the
   supervised recipe of step 4 on the known classes only, with the evidential
   head and InternVideo's loss (objective ``openset``, log loss, no KL term),
   scored from its own head on the test split with the held-out actions.

Every training stage runs the one training loop (:func:`internvideo.train.train`)
on a :class:`~internvideo.train.TrainConfig` built here, which the demo also
writes next to its run (``recipe.yaml``, re-runnable with ``internvideo
train``). Every evaluation is the public task API (:mod:`internvideo.tasks`).
Notes on the choices made at this scale are in ``docs/demo.md``.

Output folder (default ``demo_out/``): ``results.json``, ``results.md``, the
training curves of every stage (``curves_<stage>.png``),
``reconstructions.png`` (original / masked input / reconstruction),
``retrieval.png`` (text queries and their top-3 videos), and the world, runs
and checkpoints under ``world/`` and ``runs/``.

Presets: the default run takes 10 minutes on an idle 2-core machine (17 CPU-minutes; two compute threads,
clips decoded once into memory; docs/demo.md has the 3-seed table); ``--quick`` a few minutes (numbers not
meaningful; the slow test); ``--smoke`` under a minute (the pipeline only; the default test suite).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..factory import load_model
from ..data import HELD_OUT_CLASSES, keep_decoded, make_world
from ..tasks import evaluate_multiple_choice, evaluate_recognition, evaluate_zeroshot, linear_probe
from ..tasks.openset import evaluate_openset
from ..tasks.recognition import classification_dataset
from ..tasks.retrieval import metrics_from_embeddings, retrieval_embeddings
from ..train import TrainConfig, train
from ..train.config import (DataSection, FusionSection, ModelSection, OpenSetSection, OptimSection, RunSection,
                            save_config)
from . import ava as ava_demo
from . import localization, open_language
from . import search as search_demo
from . import vln as vln_demo
from .context import DemoContext
from .figures import reconstruction_figure, retrieval_figure
from .reconstruction import reconstruction_errors
from .report import aggregate_seeds, claims, duration, format_table, results_markdown, seeds_markdown, table_rows
from .. import argtypes

__all__ = ["Preset", "PRESETS", "run_demo", "run_seeds", "add_arguments", "main"]


# ----------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of one demo run. Steps count optimiser steps of ``batch_size`` clips."""

    name: str
    num_videos: int  # action clips in the world (70 / 15 / 15 % train / val / test)
    mae_steps: int
    contrastive_steps: int
    classify_steps: int
    fusion_steps: int
    mm_classify_steps: int  # fine-tuning the multimodal encoder with its own head (the supervised branch)
    batch_size: int = 16
    contrastive_batch_size: int = 32  # more same-looking clips per batch: the contrast has to use motion
    eval_every: int | None = None  # validation every so many steps (None: EVAL_POINTS times per stage)


PRESETS: dict[str, Preset] = {
    "default": Preset("default", num_videos=2000, mae_steps=400, contrastive_steps=1200, classify_steps=1500,
                      fusion_steps=400, mm_classify_steps=300),
    "quick": Preset("quick", num_videos=300, mae_steps=50, contrastive_steps=150, classify_steps=150,
                    fusion_steps=50, mm_classify_steps=50),
    "smoke": Preset("smoke", num_videos=40, mae_steps=4, contrastive_steps=4, classify_steps=4, fusion_steps=4,
                    mm_classify_steps=4,
                    batch_size=4, contrastive_batch_size=4),
}

#: Validation points of every training stage's curve.
EVAL_POINTS = 5

# Clips: 32 px frames; VideoMAE sees 8 of the world's 16 frames, the multimodal model 4 (MM_FRAMES).
IMG_SIZE = 32
WORLD_FRAMES = 16
NUM_FRAMES = 8
FRAME_INTERVAL = 2  # VideoMAE: a dense clip of 8 frames every 2 covers the whole 16-frame clip
MASK_RATIO = 0.75  # of a 4 x 4 tubelet grid, 0.9 would leave two visible patches per time slice

#: VideoMAE (pretraining and classifier): the tiny config 4 layers deep (2 layers learn the actions too slowly),
#: with its input recipe: 8 frames every 2nd, 32 px.
VIDEOMAE = {"num_frames": NUM_FRAMES, "frame_interval": FRAME_INTERVAL, "img_size": IMG_SIZE, "depth": 4}
#: The multimodal model: the tiny config on 4 frames (TSN segments; it learned motion much faster from 4 frames
#: than from 8 in our runs), with its 2-layer caption decoder over a closed vocabulary (the tokens of the
#: training captions, ``model.caption_vocab=train``; see docs/demo.md).
MM_FRAMES = 4
MULTIMODAL = {"num_frames": MM_FRAMES, "sampling": "segment", "img_size": IMG_SIZE}

#: Cross-model attention sized for the tiny backbones (128- and 64-wide tokens): the paper's design with two CMA
#: modules (one intermediate, then the multimodal class token), and the gated design with two fusion layers.
FUSION = {"width": 128, "num_heads": 4, "num_layers": 2, "cma": "paper"}
FUSION_GATED = {**FUSION, "cma": "gated"}

#: Task families beyond the core: (stage name, title, function). Each function takes a :class:`DemoContext`
#: and returns table rows ``{"family", "model", "metric", "short", "value", "chance"}`` (percent; "chance" is
#: the stated baseline), within its time budget.
TASK_STAGES: tuple[tuple[str, str, Callable[[DemoContext], list[dict[str, Any]]]], ...] = (
    ("localization", "temporal action localization", localization.demo_stage),
    ("open_language", "open-ended QA, captioning", open_language.demo_stage),
    ("ava", "spatiotemporal action localization (AVA protocol)", ava_demo.demo_stage),
    ("search", "text-to-video search index over the test clips", search_demo.demo_stage),
    ("vln", "vision-language navigation (R2R protocol) in the synthetic houses", vln_demo.demo_stage),
)

#: Zero-shot prompts for the world's class names ("moving left", ...).
TEMPLATES = ("a shape {}.", "a video of a shape {}.", "{}.")


def demo_threads() -> int:
    """Compute threads: every core (training reads clips decoded once, in memory); tiny models gain little beyond 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _config(stage_dir: Path, world: Path, preset: Preset, seed: int, progress: bool, objective: str,
            model: ModelSection, data: dict[str, Any], optim: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None, **sections: Any) -> TrainConfig:
    """A training config: the settings every demo stage shares, updated by the stage's own (``sections``: the
    objective's own section, e.g. ``fusion=FusionSection(...)``)."""
    # The world is small (2,000 clips of 16 x 32 x 32 x 3 bytes, ~100 MB): decoded once, shared by every stage.
    # No loader workers then: cropping 32 px clips costs little, and both cores compute (1.2x faster contrastive
    # steps than one compute thread beside one worker, measured on 2 cores).
    data = {"root": str(world), "short_side": IMG_SIZE, "hflip": False, "scale": (0.5, 1.0),
            "num_workers": 0, "decode_once": True, **data}
    optim = {"scale_lr": False, "warmup_steps": 30, "min_lr": 1e-5, "weight_decay": 0.05, "betas": (0.9, 0.999),
             **(optim or {})}
    run = run or {}
    if run.get("max_steps") and optim["warmup_steps"] >= run["max_steps"]:  # the smoke preset: a few steps only
        optim["warmup_steps"] = run["max_steps"] // 5
    # Five or more validation points per stage, so that every training curve is a curve.
    eval_every = preset.eval_every or max(1, int(run.get("max_steps") or 1) // EVAL_POINTS)
    run = {"out_dir": str(stage_dir), "epochs": 10_000, "batch_size": preset.batch_size, "seed": seed,
           "log_every": 10, "save_every": 1_000_000, "keep_last": 1, "resume": False, "progress": progress,
           "eval_every": eval_every, **run}
    return TrainConfig(objective, model, DataSection(**data), OptimSection(**optim), RunSection(**run), **sections)


# ----------------------------------------------------------------------------- stages


class _Stages:
    """Numbered stage headers, a one-line summary with the wall time of each, and the records for results.json."""

    def __init__(self, total: int):
        self.total, self.index = total, 0
        self.records: list[dict[str, Any]] = []

    @contextmanager
    def stage(self, name: str, title: str) -> Iterator[dict[str, Any]]:
        self.index += 1
        print(f"\n[{self.index}/{self.total}] {title}", flush=True)
        info: dict[str, Any] = {"summary": ""}
        start, cpu = time.perf_counter(), cpu_seconds()
        yield info
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        self.records.append({"stage": name, "title": title, "seconds": round(seconds, 1),
                             "cpu_seconds": round(cpu, 1), "summary": info["summary"]})
        print(f"[{self.index}/{self.total}] {title}: {info['summary']} ({duration(seconds)}, CPU {duration(cpu)})",
              flush=True)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the data-loading workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _train_stage(cfg: TrainConfig, stage_dir: Path, out: Path, name: str):
    """Write ``recipe.yaml`` into ``stage_dir``, train it, copy the curves; returns the TrainResult."""
    shutil.rmtree(stage_dir, ignore_errors=True)  # a demo stage always starts from scratch
    stage_dir.mkdir(parents=True)
    save_config(cfg, stage_dir / "recipe.yaml")
    result = train(cfg)
    if (stage_dir / "curves.png").exists():
        shutil.copyfile(stage_dir / "curves.png", out / f"curves_{name}.png")
    if result.checkpoint is None:
        raise RuntimeError(f"stage {name}: training wrote no checkpoint (see {stage_dir})")
    return result


def _losses(result) -> tuple[float, float]:
    rows = [r["loss"] for r in result.history if r["kind"] == "train"]
    k = max(1, len(rows) // 10)
    return float(np.mean(rows[:k])), float(np.mean(rows[-k:]))


def _train_summary(result) -> str:
    first, last = _losses(result)
    text = f"{result.steps} steps, loss {first:.3f} -> {last:.3f}"
    evals = [r for r in result.history if r["kind"] == "eval"]
    if evals and result.metric_name and result.metric_name in evals[-1]:
        text += f", val {result.metric_name} {evals[-1][result.metric_name]:.1f} %"
    return text


# ----------------------------------------------------------------------------- the run


def run_demo(out: str | os.PathLike = "demo_out", preset: str | Preset = "default", seed: int = 0,
             progress: bool = True, mae_init: bool = False) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the contents of ``results.json``.

    ``mae_init``: start the supervised stage from the masked autoencoder's
    encoder, as the paper does, instead of from random weights (see
    ``docs/demo.md`` for why that is not the default at this scale).
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(demo_threads())
    try:
        return _run(out, p, seed, progress, mae_init)
    finally:
        torch.set_num_threads(threads)


def run_seeds(out: str | os.PathLike = "demo_out", preset: str | Preset = "default", seed: int = 0,
              num_seeds: int = 3, progress: bool = True, mae_init: bool = False) -> dict[str, Any]:
    """The demo for seeds ``seed .. seed + num_seeds - 1`` (one folder each, ``seed_<s>/``), then
    ``summary.json`` and ``summary.md``: every number's mean and spread over the seeds."""
    out = Path(out)
    reports = [run_demo(out / f"seed_{s}", preset, seed=s, progress=progress, mae_init=mae_init)
               for s in range(seed, seed + num_seeds)]
    summary = aggregate_seeds(reports)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(seeds_markdown(summary))
    print("\n" + seeds_markdown(summary))
    return summary


@dataclasses.dataclass
class _Demo:
    """What the stages of one demo run share: its settings, and what each stage leaves for the later ones."""

    out: Path
    p: Preset
    seed: int
    progress: bool
    mae_init: bool
    results: dict[str, Any] = dataclasses.field(default_factory=dict)  # the numbers of the benchmark stage
    trained: dict[str, Any] = dataclasses.field(default_factory=dict)  # stage name -> TrainResult
    extra_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the task-family stages' table rows
    embeddings: Any = None  # the test captions' retrieval embeddings (the retrieval figure)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    @property
    def names(self) -> dict[str, str]:
        """The stage-name and title placeholders: which start the classifier and its comparison have."""
        return {"init": "from the MAE weights" if self.mae_init else "from scratch",
                "compare_init": "from scratch" if self.mae_init else "from the MAE weights",
                "compare": "classify_scratch" if self.mae_init else "classify_mae"}

    @property
    def compare(self) -> str:
        return self.names["compare"]

    def opts(self) -> dict[str, Any]:
        # in-process loading: the evaluations read the clips through the run's decoded-video cache (keep_decoded)
        return dict(progress=self.progress, batch_size=32, num_workers=0)

    def train(self, name: str, objective: str, model: ModelSection, data: dict[str, Any], optim: dict[str, Any],
              run: dict[str, Any], **sections: Any) -> str:
        """Train stage ``name``; returns its summary line."""
        cfg = _config(self.runs / name, self.world, self.p, self.seed, self.progress, objective, model, data, optim,
                      run, **sections)
        self.trained[name] = _train_stage(cfg, self.runs / name, self.out, name)
        return _train_summary(self.trained[name])

    def checkpoint(self, name: str) -> Path:
        return Path(self.trained[name].checkpoint)


def _world_stage(r: _Demo) -> str:
    shutil.rmtree(r.world, ignore_errors=True)
    smoke = r.p.name == "smoke"
    w = make_world(r.world, num_videos=r.p.num_videos, seed=r.seed, size=IMG_SIZE, num_frames=WORLD_FRAMES,
                   num_long=4 if smoke else 40, num_ava=8 if smoke else 64, num_images=10, progress=r.progress)
    counts = {s: len((r.world / f"{s}.txt").read_text().splitlines()) for s in ("train", "val", "test")}
    return (f"{w.num_clips} clips of {len(w.classes)} actions ({counts['train']} train / "
            f"{counts['val']} val / {counts['test']} test), {IMG_SIZE} px, {WORLD_FRAMES} frames")


def _mae_stage(r: _Demo) -> str:
    return r.train(
        "mae", "mae",
        ModelSection("videomae_tiny_pretrain", overrides={**VIDEOMAE, "norm_pix_loss": False,
                                                          "mask_ratio": MASK_RATIO}),
        {"train": "train.txt"}, {"lr": 1.5e-3, "betas": (0.9, 0.95)}, {"max_steps": r.p.mae_steps, "eval_every": None},
    ) + f" (pixel MSE, {MASK_RATIO * 100:.0f} % tube masking)"


def _contrastive_stage(r: _Demo) -> str:
    return r.train(
        "contrastive", "contrastive", ModelSection("internvideo_mm_tiny", overrides=MULTIMODAL, caption_vocab="train"),
        {"train": "captions_train.jsonl", "val": "captions_val.jsonl"}, {"lr": 1e-3, "betas": (0.9, 0.98)},
        {"max_steps": r.p.contrastive_steps, "batch_size": r.p.contrastive_batch_size})


def _classify_recipe(r: _Demo, from_mae: bool) -> dict[str, Any]:
    """The supervised VideoMAE recipe (``model``, ``data``, ``optim``, ``run`` of :meth:`_Demo.train`): the
    ``classify`` stages and the open-set stage, which swaps in the known-class lists and its objective."""
    return dict(model=ModelSection("videomae_tiny", pretrained=str(r.checkpoint("mae")) if from_mae else None,
                                   overrides={**VIDEOMAE, "init_scale": 1.0}),
                data={"train": "train.txt", "val": "val.txt", "classes": "classes.txt"}, optim={"lr": 1e-3},
                run={"max_steps": r.p.classify_steps})


def _classify(r: _Demo, name: str, from_mae: bool) -> str:
    return r.train(name, "classify", **_classify_recipe(r, from_mae))


def _classify_stage(r: _Demo) -> str:
    """The encoder the later stages use."""
    return _classify(r, "classify", r.mae_init)


def _compare_stage(r: _Demo) -> str:
    """The same training from the other start: claim (a) compares them."""
    return _classify(r, r.compare, not r.mae_init)


def _fusion(r: _Demo, name: str, overrides: dict[str, Any]) -> str:
    return r.train(
        name, "fusion",
        ModelSection(mae_backbone=str(r.checkpoint("classify")), mm_backbone=str(r.checkpoint("contrastive")),
                     overrides=overrides),
        {"train": "train.txt", "val": "val.txt", "classes": "classes.txt"}, {"lr": 1e-3},
        {"max_steps": r.p.fusion_steps},
        # one folder; each run reads the subfolder keyed by its backbones and layers (late fusion and the gated CMA
        # share one; the paper's CMA, which also stores intermediate layers, has its own)
        fusion=FusionSection(feature_cache=str(r.runs / "feature_cache")))


def _fusion_stage(r: _Demo) -> str:
    return _fusion(r, "fusion", FUSION)


def _fusion_gated_stage(r: _Demo) -> str:
    return _fusion(r, "fusion_gated", FUSION_GATED)


def _late_fusion_stage(r: _Demo) -> str:
    """Claim (c)'s reference: the two frozen streams' pooled features side by side, one classifier (same cache)."""
    return _fusion(r, "late_fusion", {**FUSION, "num_layers": 0})


def _classify_mm_stage(r: _Demo) -> str:
    """The supervised branch: the multimodal video encoder fine-tuned with its own head (UniFormerV2's)."""
    return r.train(
        "classify_mm", "classify",
        ModelSection("internvideo_mm_tiny_cls", pretrained=str(r.checkpoint("contrastive")), overrides=MULTIMODAL),
        {"train": "train.txt", "val": "val.txt", "classes": "classes.txt"}, {"lr": 1e-3},
        {"max_steps": r.p.mm_classify_steps})


def _evaluate_stage(r: _Demo) -> str:
    world, results, opts = r.world, r.results, r.opts()
    test, classes = world / "test.txt", world / "classes.txt"
    videomae = load_model(r.checkpoint("classify"))
    multimodal = load_model(r.checkpoint("contrastive"))
    results["recognition_videomae"] = evaluate_recognition(videomae, test, **opts)
    results["recognition_videomae"]["init"] = r.names["init"]
    results["recognition_videomae_compare"] = evaluate_recognition(load_model(r.checkpoint(r.compare)), test, **opts)
    results["recognition_videomae_compare"]["init"] = r.names["compare_init"]
    results["recognition_multimodal"] = linear_probe(multimodal, world / "train.txt", test, **opts)
    results["recognition_multimodal_finetuned"] = evaluate_recognition(load_model(r.checkpoint("classify_mm")), test,
                                                                       **opts)
    results["recognition_fused"] = _evaluate_fused(r.trained["fusion"], test, videomae, opts)
    results["recognition_fused_gated"] = _evaluate_fused(r.trained["fusion_gated"], test, videomae, opts)
    results["recognition_late_fusion"] = _evaluate_fused(r.trained["late_fusion"], test, videomae, opts)
    results["reconstruction"] = reconstruction_errors(load_model(r.checkpoint("mae")), test, seed=r.seed)
    results["zeroshot"] = evaluate_zeroshot(multimodal, test, classes, TEMPLATES, **opts)
    r.embeddings = retrieval_embeddings(multimodal, world / "captions_test.jsonl", **opts)
    results["retrieval"] = metrics_from_embeddings(r.embeddings)
    results["multiple_choice"] = evaluate_multiple_choice(multimodal, world / "mc_test.jsonl", **opts)
    return ", ".join(f"{row['short']} {row['value']:.1f}" for row in table_rows(results))


def _openset_stage(r: _Demo) -> str:
    """Open-set recognition with the paper's protocol (DEAR's): the ``classify`` recipe (same start, same steps)
    fine-tuned on the known classes only with the evidential head (objective ``openset``, InternVideo's loss: log
    evidence, no KL term), then scored from its own head; held-out labels never reach the training."""
    recipe = _classify_recipe(r, r.mae_init)
    recipe["data"] = {**recipe["data"], "train": "openset_train.txt", "val": "openset_val.txt", "classes": None}
    text = r.train("openset", "openset", **recipe, openset=OpenSetSection(loss="log", kl=False))
    model, world = load_model(r.checkpoint("openset")), r.world
    result = evaluate_openset(model, world / "openset_train.txt", world / "openset_val.txt",
                              world / "openset_test.txt", head="model", **r.opts())
    # The validation split scored the same way (its held-out clips as the unknowns): the numbers to tune on.
    val = evaluate_openset(model, world / "openset_train.txt", world / "openset_val.txt", world / "val.txt",
                           classes=world / "classes.txt", unknown=HELD_OUT_CLASSES, head="model", **r.opts())
    result["validation"] = val["scores"]
    result["init"] = r.names["init"]
    r.results["openset"] = result
    scores = ", ".join(f"{k} {result['scores'][k]['auroc']:.1f} (val {val['scores'][k]['auroc']:.1f})"
                       for k in result["scores"])
    return (f"{text}; test AUROC {scores}; closed-set top-1 {result['scores']['msp']['closed_set_accuracy']:.1f} "
            f"(val {val['scores']['msp']['closed_set_accuracy']:.1f}) %")


def _task_stage(name: str, run_stage: Callable[[DemoContext], list[dict[str, Any]]], r: _Demo) -> str:
    ctx = DemoContext(r.world, r.runs / name, r.seed, r.progress, r.checkpoint("classify"), r.checkpoint("mae"),
                      r.checkpoint("contrastive"), IMG_SIZE, r.p.name)
    rows = run_stage(ctx)
    r.extra_rows += rows
    return ", ".join(f"{row['short']} {row['value']:.1f} (baseline {row['chance']:.1f})" for row in rows)


def _figures_stage(r: _Demo) -> str:
    reconstruction_figure(load_model(r.checkpoint("mae")), r.world / "test.txt", r.out / "reconstructions.png",
                          seed=r.seed)
    retrieval_figure(r.embeddings, r.world, r.out / "retrieval.png")
    return "reconstructions.png, retrieval.png, " + ", ".join(sorted(f.name for f in r.out.glob("curves_*.png")))


#: Every stage of the demo, in order: (name, title, function returning its summary line). Names and titles
#: may hold ``{init}``, ``{compare}``, ``{compare_init}`` (:attr:`_Demo.names`); the task families
#: (:data:`TASK_STAGES`) run after the benchmark.
STAGES: tuple[tuple[str, str, Callable[[_Demo], str]], ...] = (
    ("world", "synthetic world", _world_stage),
    ("mae", "masked video pretraining (VideoMAE)", _mae_stage),
    ("contrastive", "video-language contrastive pretraining (multimodal)", _contrastive_stage),
    ("classify", "supervised training of the masked video encoder ({init})", _classify_stage),
    ("{compare}", "supervised training of the masked video encoder ({compare_init})", _compare_stage),
    ("fusion", "cross-model attention as in the paper over both frozen backbones", _fusion_stage),
    ("fusion_gated", "gated cross-model attention (ours) over both frozen backbones", _fusion_gated_stage),
    ("late_fusion", "late fusion of both frozen backbones (concatenated features)", _late_fusion_stage),
    ("classify_mm", "supervised fine-tuning of the multimodal video encoder (its own head)", _classify_mm_stage),
    ("evaluate", "benchmark on the test split", _evaluate_stage),
    ("openset", "open-set recognition: the masked video encoder fine-tuned on the known classes ({init}; EDL head, "
                "DEAR protocol)", _openset_stage),
    *((name, title, functools.partial(_task_stage, name, fn)) for name, title, fn in TASK_STAGES),
    ("figures", "figures", _figures_stage),
)


def _run(out: Path, p: Preset, seed: int, progress: bool, mae_init: bool) -> dict[str, Any]:
    torch.manual_seed(seed)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    load_started = [round(x, 2) for x in os.getloadavg()]
    stages = _Stages(total=len(STAGES))
    r = _Demo(out, p, seed, progress, mae_init)
    print(f"InternVideo demo ({p.name}: {p.num_videos} clips, seed {seed}) -> {out.resolve()}")
    # The evaluations read the test clips a dozen times (every model, every task): each is decoded once.
    with keep_decoded():
        for name, title, run_stage in STAGES:
            with stages.stage(name.format(**r.names), title.format(**r.names)) as st:
                st["summary"] = run_stage(r)

    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    report = {
        "preset": dataclasses.asdict(p), "seed": seed, "mae_init": mae_init, "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
        "load_average_at_start": load_started, "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "table": table_rows(r.results) + r.extra_rows, "claims": claims(r.results), "stages": stages.records,
        "details": r.results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "results.md").write_text(results_markdown(report, IMG_SIZE))
    print()
    print(format_table(report["table"]))
    print(f"\nwall time {duration(wall)}, CPU time {duration(cpu)} (load average {report['load_average'][0]:.2f} "
          f"on {os.cpu_count()} cores); results in {out / 'results.md'} and {out / 'results.json'}")
    return report


def _evaluate_fused(result, test: Path, videomae, opts: dict[str, Any]) -> dict[str, Any]:
    """Recognition of the fused model on the same dense VideoMAE views (its multimodal view is derived in-model)."""
    dataset = classification_dataset(videomae, test)
    return evaluate_recognition(result.model, dataset, **opts)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo demo``."""
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a few minutes, smaller world and fewer steps "
                                                            "(numbers not meaningful; the slow test)")
    size.add_argument("--smoke", action="store_true", help="under a minute: the pipeline only (what the default tests run)")
    parser.add_argument("--seed", type=argtypes.nonnegative_int, default=0, help="seed of the world and of every training run")
    parser.add_argument("--seeds", type=argtypes.positive_int, default=1,
                        help="run the demo for this many seeds (--seed, --seed + 1, ...) into OUT/seed_<s>/ and "
                             "report every number's mean and spread in OUT/summary.md")
    parser.add_argument("--mae-init", action="store_true",
                        help="start the supervised VideoMAE stage from the masked autoencoder (the paper's "
                             "pipeline; slower to learn at this scale, see results.md)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    preset = "smoke" if args.smoke else "quick" if args.quick else "default"
    if args.seeds > 1:
        run_seeds(args.out, preset, seed=args.seed, num_seeds=args.seeds, progress=args.progress,
                  mae_init=args.mae_init)
    else:
        run_demo(args.out, preset, seed=args.seed, progress=args.progress, mae_init=args.mae_init)
    return 0
