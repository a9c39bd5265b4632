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
   post-pretraining; slower to learn at this scale, see :data:`NOTES`). The
   multimodal model has no classification head in this code base, so its
   recognition number is a linear probe of its frozen video embedding.
5. **cross-model attention**: both backbones frozen, new gated cross-attention
   layers fuse them and a classifier reads the fused features (objective
   ``fusion``).
6. **benchmark** on the test split: action recognition (masked, multimodal,
   fused), zero-shot recognition from the class names, video-text retrieval
   in both directions, zero-shot multiple choice.

Every training stage runs the one training loop (:func:`internvideo.train.train`)
from a YAML recipe that the demo writes next to its run (``recipe.yaml``,
re-runnable with ``internvideo train``). Every evaluation is the public task
API (:mod:`internvideo.tasks`).

Output folder (default ``demo_out/``): ``results.json``, ``results.md``, the
training curves of every stage (``curves_<stage>.png``),
``reconstructions.png`` (original / masked input / reconstruction),
``retrieval.png`` (text queries and their top-3 videos), and the world, runs
and checkpoints under ``world/`` and ``runs/``.

Presets: the default run takes 17 minutes on a 2-core machine shared with
other jobs (11 minutes of CPU time; one compute thread beside one decoding
process); ``--quick`` a few minutes (numbers not meaningful; the slow test);
``--smoke`` under a minute (the pipeline only; the default test suite).
"""
from __future__ import annotations

import argparse
import dataclasses
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
import yaml


__all__ = ["Preset", "PRESETS", "run_demo", "add_arguments", "main"]


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
    batch_size: int = 16
    contrastive_batch_size: int = 32  # more same-looking clips per batch: the contrast has to use motion
    eval_every: int | None = None  # validation during training (None: at the end only)


PRESETS: dict[str, Preset] = {
    "default": Preset("default", num_videos=2000, mae_steps=400, contrastive_steps=1500, classify_steps=1500,
                      fusion_steps=400, eval_every=500),
    "quick": Preset("quick", num_videos=300, mae_steps=50, contrastive_steps=150, classify_steps=150,
                    fusion_steps=50),
    "smoke": Preset("smoke", num_videos=40, mae_steps=4, contrastive_steps=4, classify_steps=4, fusion_steps=4,
                    batch_size=4, contrastive_batch_size=4),
}

# Clips: 32 px frames; VideoMAE sees 8 of the world's 16 frames, the multimodal model 4 (MM_FRAMES).
IMG_SIZE = 32
WORLD_FRAMES = 16
NUM_FRAMES = 8
FRAME_INTERVAL = 2  # VideoMAE: a dense clip of 8 frames every 2 covers the whole 16-frame clip
MASK_RATIO = 0.75  # of a 4 x 4 tubelet grid, 0.9 would leave two visible patches per time slice

#: VideoMAE (pretraining and classifier): the tiny config 4 layers deep (2 layers learn the actions too slowly).
VIDEOMAE = {"num_frames": NUM_FRAMES, "depth": 4}
#: The multimodal model: the tiny config on 4 frames (it learned motion much faster from 4 frames than from 8
#: in our runs), without the caption decoder (see the notes in results.md).
MM_FRAMES = 4
MULTIMODAL = {"num_frames": MM_FRAMES, "caption_layers": 0}

#: Cross-model attention sized for the tiny backbones (128- and 64-wide tokens).
FUSION = {"width": 128, "num_heads": 4, "num_layers": 2, "mm_num_frames": MM_FRAMES}

#: Zero-shot prompts for the world's class names ("moving left", ...).
TEMPLATES = ("a shape {}.", "a video of a shape {}.", "{}.")


def demo_threads() -> int:
    """Compute threads: every core but one, which decodes videos (tiny models gain little beyond 4)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def decode_workers() -> int:
    """One decoding process beside the compute threads (none on a single core)."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


def _recipe(stage_dir: Path, world: Path, preset: Preset, seed: int, progress: bool,
            **sections: dict[str, Any]) -> dict[str, Any]:
    """A training recipe: the settings every demo stage shares, updated by ``sections``."""
    recipe: dict[str, Any] = {
        "model": {},
        "data": {"root": str(world), "num_frames": NUM_FRAMES, "frame_interval": FRAME_INTERVAL,
                 "img_size": IMG_SIZE, "short_side": IMG_SIZE, "flip": False, "scale": [0.5, 1.0],
                 "num_workers": decode_workers()},
        "optim": {"scale_lr": False, "warmup_steps": 30, "min_lr": 1e-5, "weight_decay": 0.05,
                  "betas": [0.9, 0.999]},
        "run": {"out_dir": str(stage_dir), "epochs": 10_000, "batch_size": preset.batch_size, "seed": seed,
                "log_every": 10, "save_every": 1_000_000, "keep_last": 1, "resume": False, "progress": progress,
                "eval_every": preset.eval_every},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            recipe.setdefault(key, {}).update(value)
        else:
            recipe[key] = value
    return recipe


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
        start = time.perf_counter()
        yield info
        seconds = time.perf_counter() - start
        self.records.append({"stage": name, "title": title, "seconds": round(seconds, 1), "summary": info["summary"]})
        print(f"[{self.index}/{self.total}] {title}: {info['summary']} ({_duration(seconds)})",
              flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _train_stage(recipe: dict[str, Any], stage_dir: Path, out: Path, name: str):
    """Write ``recipe.yaml`` into ``stage_dir``, train it, copy the curves; returns the TrainResult."""
    from .config import load_config
    from .train import train

    shutil.rmtree(stage_dir, ignore_errors=True)  # a demo stage always starts from scratch
    stage_dir.mkdir(parents=True)
    path = stage_dir / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = train(load_config(path))
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
        text += f", val {result.metric_name} {100 * evals[-1][result.metric_name]:.1f} %"
    return text


# ----------------------------------------------------------------------------- the run


def run_demo(out: str | os.PathLike = "demo_out", preset: str | Preset = "default", seed: int = 0,
             progress: bool = True, mae_init: bool = False) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the contents of ``results.json``.

    ``mae_init``: start the supervised stage from the masked autoencoder's
    encoder, as the paper does, instead of from random weights (see
    :data:`NOTES` for why that is not the default at this scale).
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


def _run(out: Path, p: Preset, seed: int, progress: bool, mae_init: bool) -> dict[str, Any]:
    from . import load_model
    from .data import make_world
    from .tasks import evaluate_multiple_choice, evaluate_recognition, evaluate_zeroshot, linear_probe
    from .tasks.retrieval import metrics_from_embeddings, retrieval_embeddings

    world, runs = out / "world", out / "runs"
    torch.manual_seed(seed)
    started = time.perf_counter()
    stages = _Stages(total=7)
    opts = dict(progress=progress, batch_size=32, num_workers=decode_workers())
    results: dict[str, Any] = {}
    print(f"InternVideo demo ({p.name}: {p.num_videos} clips, seed {seed}) -> {out.resolve()}")

    with stages.stage("world", "synthetic world") as st:
        shutil.rmtree(world, ignore_errors=True)
        w = make_world(world, num_videos=p.num_videos, seed=seed, size=IMG_SIZE, num_frames=WORLD_FRAMES,
                       num_long=4, num_ava=4, num_images=10)
        counts = {s: len((world / f"{s}.txt").read_text().splitlines()) for s in ("train", "val", "test")}
        st["summary"] = (f"{w.num_clips} clips of {len(w.classes)} actions ({counts['train']} train / "
                         f"{counts['val']} val / {counts['test']} test), {IMG_SIZE} px, {WORLD_FRAMES} frames")

    init = "from the MAE weights" if mae_init else "from scratch"

    def train_stage(name: str, title: str, note: str = "", **sections: Any):
        with stages.stage(name, title) as st:
            result = _train_stage(_recipe(runs / name, world, p, seed, progress, **sections), runs / name, out, name)
            st["summary"] = _train_summary(result) + note
        return result

    mae = train_stage(
        "mae", "masked video pretraining (VideoMAE)", f" (pixel MSE, {MASK_RATIO * 100:.0f} % tube masking)",
        objective="mae",
        model={"name": "videomae_tiny_pretrain", "overrides": {**VIDEOMAE, "norm_pix_loss": False}},
        data={"train": "train.txt", "mask_ratio": MASK_RATIO},
        optim={"lr": 1.5e-3, "betas": [0.9, 0.95]}, run={"max_steps": p.mae_steps, "eval_every": None})
    mm = train_stage(
        "contrastive", "video-language contrastive pretraining (multimodal)", objective="contrastive",
        model={"name": "internvideo_mm_tiny", "overrides": MULTIMODAL},
        data={"train": "captions_train.jsonl", "val": "captions_val.jsonl", "sampling": "segment",
              "num_frames": MM_FRAMES},
        optim={"lr": 1e-3, "betas": [0.9, 0.98]},
        run={"max_steps": p.contrastive_steps, "batch_size": p.contrastive_batch_size})
    cls = train_stage(
        "classify", f"supervised training of the masked video encoder ({init})", objective="classify",
        model={"name": "videomae_tiny", "pretrained": str(mae.checkpoint) if mae_init else None,
               "overrides": {**VIDEOMAE, "init_scale": 1.0}},
        data={"train": "train.txt", "val": "val.txt", "classes": "classes.txt"},
        optim={"lr": 1e-3}, run={"max_steps": p.classify_steps})
    fus = train_stage(
        "fusion", "cross-model attention over both frozen backbones", objective="fusion",
        model={"mae_backbone": str(cls.checkpoint), "mm_backbone": str(mm.checkpoint), "overrides": FUSION},
        data={"train": "train.txt", "val": "val.txt", "classes": "classes.txt", "mm_num_frames": MM_FRAMES,
              "feature_cache": str(runs / "fusion" / "feature_cache")},
        optim={"lr": 1e-3}, run={"max_steps": p.fusion_steps})

    with stages.stage("evaluate", "benchmark on the test split") as st:
        test, classes = world / "test.txt", world / "classes.txt"
        videomae = load_model(cls.checkpoint)
        multimodal = load_model(mm.checkpoint)
        results["recognition_videomae"] = evaluate_recognition(videomae, test, frame_interval=FRAME_INTERVAL,
                                                               **opts)
        results["recognition_videomae"]["init"] = init
        results["recognition_multimodal"] = linear_probe(multimodal, world / "train.txt", test, **opts)
        results["recognition_fused"] = _evaluate_fused(fus, test, videomae, opts)
        results["zeroshot"] = evaluate_zeroshot(multimodal, test, classes, TEMPLATES, **opts)
        emb = retrieval_embeddings(multimodal, world / "captions_test.jsonl", **opts)
        results["retrieval"] = metrics_from_embeddings(emb)
        results["multiple_choice"] = evaluate_multiple_choice(multimodal, world / "mc_test.jsonl", **opts)
        rows = table_rows(results)
        st["summary"] = ", ".join(f"{r['short']} {r['value']:.1f}" for r in rows)

    with stages.stage("figures", "figures") as st:
        reconstruction_figure(mae.checkpoint, world / "test.txt", out / "reconstructions.png", seed=seed)
        retrieval_figure(emb, world, out / "retrieval.png")
        st["summary"] = "reconstructions.png, retrieval.png, " + ", ".join(
            sorted(f.name for f in out.glob("curves_*.png")))

    wall = time.perf_counter() - started
    report = {
        "preset": dataclasses.asdict(p), "seed": seed, "mae_init": mae_init, "wall_seconds": round(wall, 1),
        "threads": torch.get_num_threads(), "data_workers": decode_workers(), "table": table_rows(results),
        "stages": stages.records,
        "details": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "results.md").write_text(results_markdown(report))
    print()
    print(format_table(report["table"]))
    print(f"\nwall time {_duration(wall)}; results in {out / 'results.md'} and {out / 'results.json'}")
    return report


def _evaluate_fused(result, test: Path, videomae, opts: dict[str, Any]) -> dict[str, Any]:
    """Recognition of the fused model on the same dense VideoMAE views (its multimodal view is derived in-model)."""
    from .tasks import evaluate_recognition
    from .tasks.recognition import classification_dataset

    dataset = classification_dataset(videomae, test, frame_interval=FRAME_INTERVAL)
    return evaluate_recognition(result.model, dataset, **opts)


# ----------------------------------------------------------------------------- results table

#: (key in the results, paper task family, model, metric, value getter, chance getter)
_ROWS: tuple[tuple[str, str, str, str, str, Callable[[dict], float], Callable[[dict], float]], ...] = (
    ("recognition_videomae", "Action recognition", "VideoMAE ViT, supervised {init}", "top-1",
     "recog. VideoMAE", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_multimodal", "Action recognition", "multimodal encoder, linear probe", "top-1",
     "recog. multimodal", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_fused", "Action recognition", "InternVideo: both, cross-model attention", "top-1",
     "recog. fused", lambda r: r["top1"], lambda r: r["chance"]),
    ("zeroshot", "Zero-shot action recognition", "multimodal (class names as prompts)", "top-1",
     "zero-shot", lambda r: r["top1"], lambda r: r["chance"]),
    ("retrieval", "Video-text retrieval", "multimodal, text -> video", "R@1",
     "t2v R@1", lambda r: r["t2v"]["R@1"], lambda r: r["chance_R@1"]),
    ("retrieval", "Video-text retrieval", "multimodal, video -> text", "R@1",
     "v2t R@1", lambda r: r["v2t"]["R@1"], lambda r: r["chance_R@1"]),
    ("multiple_choice", "Zero-shot multiple choice", "multimodal (5 captions per clip)", "accuracy",
     "MC acc.", lambda r: r["accuracy"], lambda r: r["chance"]),
)


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's one results table: one row per number, each with its chance level (percent)."""
    rows = []
    for key, family, model, metric, short, value, chance in _ROWS:
        if key in results:
            r = results[key]
            rows.append({"family": family, "model": model.format(init=r.get("init", "")), "metric": metric,
                         "short": short,
                         "value": round(float(value(r)), 1), "chance": round(float(chance(r)), 1)})
    return rows


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The table as plain text (terminal) or GitHub markdown."""
    head = ("Task family (paper)", "Model", "Metric", "Score (%)", "Chance (%)")
    cells = [(r["family"], r["model"], r["metric"], f"{r['value']:.1f}", f"{r['chance']:.1f}") for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 2) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(x[i]) for x in [head, *cells]) for i in range(len(head))]

    def line(c):
        return "  ".join(v.rjust(w) if i >= 3 else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *[line(c) for c in cells]])


def results_markdown(report: dict[str, Any]) -> str:
    p = report["preset"]
    d = report["details"]
    lines = [
        f"# InternVideo demo results ({p['name']} preset, seed {report['seed']})", "",
        f"Synthetic world: {p['num_videos']} clips of 10 actions (five time-reversed pairs: only motion tells a "
        f"pair apart), {IMG_SIZE} px, evaluated on the test split "
        f"({d['recognition_videomae']['num_samples'] if 'recognition_videomae' in d else '?'} clips). "
        "Every model is trained from scratch by the demo. Chance is what a model guessing uniformly would score.",
        "", format_table(report["table"], markdown=True), "",
        f"Wall time: {_duration(report['wall_seconds'])} ({report['threads']} compute thread(s), "
        f"{report['data_workers']} video-decoding process(es)).", "",
        "| stage | what | time | summary |", "|---|---|---:|---|",
    ]
    lines += [f"| {s['stage']} | {s['title']} | {_duration(s['seconds'])} | {s['summary']} |" for s in report["stages"]]
    lines += ["", "Notes:", *[f"- {n}" for n in NOTES], ""]
    return "\n".join(lines)


NOTES = (
    "Scale: 32 px clips of 8 (VideoMAE) or 4 (multimodal) frames; a 0.23 M-parameter VideoMAE ViT and a "
    "3.6 M-parameter multimodal model (3.2 M of them its 49k-token vocabulary), trained for minutes from random "
    "weights. The numbers show that every stage learns and every task runs; they say nothing about the paper's "
    "results.",
    "The supervised VideoMAE stage starts from random weights by default (`--mae-init` starts it from the masked "
    "autoencoder, as the paper does). At this scale the masked-autoencoder weights made supervised training "
    "slower, not faster: with the same 4-layer ViT, 1,500 supervised steps reached 12-14 % val top-1 from "
    "MAE weights (five runs: 400 MAE steps, masking 75 or 90 %, decoder depth 1 or 2, fine-tuning lr 3e-4 to "
    "3e-3; tuning runs on pre-decoded clips) against 42 % from random weights (one run). VideoMAE's data "
    "efficiency comes from long pretraining (thousands of epochs on UCF101 and HMDB51 in the VideoMAE paper); "
    "the demo can afford a few epochs.",
    "VideoMAE pretrains with plain-pixel targets (norm_pix_loss off): with per-patch normalisation the world's "
    "noisy, flat background is an unpredictable target and the loss stays at 0.99. The reconstruction figure "
    "shows the model's raw predictions, with nothing borrowed from the hidden patches.",
    f"Mask ratio {MASK_RATIO * 100:.0f} % instead of the paper's 90 %: the 32 px clips have a 4 x 4 tubelet "
    "grid, where 90 % leaves two of the 16 patches visible per time slice.",
    "The multimodal model sees 4 frames (TSN segments) and 32 clips per contrastive batch. In our tuning runs "
    "on this world, 8 frames (16 or 32 per batch, 1,000-1,500 steps) gave an embedding that knew appearance "
    "but hardly motion (linear probe 14-15 %, zero-shot at chance, t2v R@1 5-6 %), while 4 frames with 32 per "
    "batch (1,500 steps) reached 57 %, 24 % and 21 %.",
    "The multimodal model is trained without the captioning decoder: its 49k-way vocabulary projection costs "
    "about three times the rest of a training step on a CPU.",
    "The multimodal encoder has no classification head in this code base, so it is not trained with labels; its "
    "recognition row is a linear probe (logistic regression on its frozen video embedding, fitted on the "
    "train split).",
    "The fused model trains only the cross-model attention layers and the head (both backbones frozen), from "
    "backbone features cached once over the training set (test-time views, no augmentation). In training the "
    "fusion objective decodes 4 uniform frames of each clip for the multimodal stream; at test time the fused "
    "model takes them from the VideoMAE clip (uniform frames of the dense clip, CLIP normalisation), as "
    "`internvideo eval recognition` does: frames 0, 4, 10, 14 instead of 0, 5, 10, 15.",
    "Retrieval: each test clip has 4 captions; t2v ranks every clip for each caption, v2t counts a clip as "
    "retrieved when any of its captions ranks first. Chance R@1 is 1 / number of test clips in both directions.",
    f"Zero-shot prompts: {', '.join(repr(t) for t in TEMPLATES)} with the class names of classes.txt. The "
    "captions never use the class names' verbs ('moving', 'growing', ...), so only the words they share "
    "with the captions ('left', 'clockwise', ...) carry over.",
    "Multiple choice: the 5 candidates include the caption of the same shape doing the time-reversed action, so "
    "appearance alone reaches at most 50 %.",
)


# ----------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reconstruction_figure(checkpoint: str | os.PathLike, test_list: str | os.PathLike, path: str | os.PathLike, *,
                          seed: int = 0, num_clips: int = 4, mask_ratio: float = MASK_RATIO) -> Path:
    """VideoMAE reconstructions of test clips (one per class): original / masked input / reconstruction.

    The reconstruction shows the visible patches as given and the model's
    prediction for every hidden one. A model trained with ``norm_pix_loss``
    predicts per-patch standardised pixels; those are shown de-normalised with
    each hidden patch's true mean and std (said in the figure title), plain-pixel
    models are shown as predicted.
    """
    from . import load_model
    from .data import DenseSampler, EvalTransformConfig, VideoClassificationDataset, View, build_eval_transform
    from .models.videomae import reconstruction_target, tube_mask, unpatchify

    model = load_model(checkpoint).eval()
    c = model.config
    view = View(DenseSampler(c.num_frames, FRAME_INTERVAL),
                build_eval_transform(EvalTransformConfig(img_size=c.img_size, short_side=c.img_size)))
    dataset = VideoClassificationDataset(test_list, view, training=False)
    picks, seen = [], set()
    for i, sample in enumerate(dataset.samples):
        if sample.label not in seen:
            seen.add(sample.label)
            picks.append(i)
        if len(picks) == num_clips:
            break
    video = torch.stack([dataset[i]["video"] for i in picks])
    mask = tube_mask(len(picks), c.grid, mask_ratio, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = model(video, mask)["pred"].float()
    pixels = reconstruction_target(video, c.patch_size, c.tubelet_size, norm_pix=False)  # (B, N, D), 0-1
    b, n, dim = pixels.shape
    if c.norm_pix_loss:
        hidden = pixels[mask].reshape(b, -1, dim // 3, 3)
        pred = pred.reshape(hidden.shape) * (hidden.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6) \
            + hidden.mean(dim=-2, keepdim=True)
    recon, masked = pixels.clone(), pixels.clone()
    recon[mask] = pred.reshape(-1, dim)
    masked[mask] = 0.5
    rows = [("original", pixels), (f"masked ({mask_ratio * 100:.0f} %)", masked), ("reconstruction", recon)]
    clips = [(name, unpatchify(x, tuple(video.shape), c.patch_size, c.tubelet_size).clamp(0, 1)) for name, x in rows]

    plt = _pyplot()
    t = video.shape[2]
    fig, axes = plt.subplots(3 * len(picks), t, figsize=(t * 0.9, 3 * len(picks) * 0.95), squeeze=False)
    for k, i in enumerate(picks):
        label = dataset.classes[dataset.samples[i].label] if dataset.classes else str(dataset.samples[i].label)
        for r, (name, clip) in enumerate(clips):
            for f in range(t):
                ax = axes[3 * k + r, f]
                ax.imshow(clip[k, :, f].permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if f == 0:
                    ax.set_ylabel(name, fontsize=7)
                if r == 0 and f == 0:
                    ax.set_title(f"test clip: {label}", fontsize=8, loc="left")
    how = ("hidden patches de-normalised with their true mean/std" if c.norm_pix_loss
           else "plain-pixel predictions of the hidden patches, visible patches as input")
    fig.suptitle(f"VideoMAE reconstructions ({how}); frames left to right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def retrieval_figure(emb, world: Path, path: str | os.PathLike, num_queries: int = 4, top: int = 3) -> Path:
    """Text-to-video retrieval examples: each query caption with its top videos (first / middle / last frame).

    A green frame marks the clip the caption was written for.
    """
    from .data import probe, read_frames

    sim = emb.text @ emb.video.t()
    owners = emb.caption_to_video
    num_videos = len(emb.videos)
    queries = []
    for v in np.linspace(0, num_videos - 1, num_queries).round().astype(int):
        queries.append(int(np.flatnonzero(owners == v)[0]))  # the first caption of evenly spaced clips
    plt = _pyplot()
    fig, axes = plt.subplots(len(queries), top, figsize=(top * 2.6, len(queries) * 1.25), squeeze=False)
    for row, q in enumerate(queries):
        best = torch.topk(sim[q], top)
        for col, (score, v) in enumerate(zip(best.values.tolist(), best.indices.tolist())):
            n = probe(emb.videos[v]).num_frames
            frames = read_frames(emb.videos[v], [0, n // 2, n - 1])
            strip = np.concatenate([np.pad(f, ((0, 0), (0, 2), (0, 0)), constant_values=255) for f in frames], 1)
            ax = axes[row, col]
            ax.imshow(strip, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            correct = v == owners[q]
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if correct else "lightgray")
                spine.set_linewidth(3 if correct else 1)
            ax.set_xlabel(f"#{col + 1}  cos {score:.2f}" + ("  (match)" if correct else ""), fontsize=7)
        axes[row, 0].set_title(f'"{emb.captions[q]}"', fontsize=8, loc="left")
    fig.suptitle("Text-to-video retrieval on the test split: top-3 clips per query (first / middle / last frame)",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo demo``."""
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a few minutes, smaller world and fewer steps "
                                                            "(numbers not meaningful; what the tests run)")
    size.add_argument("--smoke", action="store_true", help="under a minute: the pipeline only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of every training run")
    parser.add_argument("--mae-init", action="store_true",
                        help="start the supervised VideoMAE stage from the masked autoencoder (the paper's "
                             "pipeline; slower to learn at this scale, see results.md)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    preset = "smoke" if args.smoke else "quick" if args.quick else "default"
    run_demo(args.out, preset, seed=args.seed, progress=args.progress, mae_init=args.mae_init)
    return 0
