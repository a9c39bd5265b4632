"""The demo's spatiotemporal action localization stage (AVA protocol on the synthetic actors).

Each AVA clip of the synthetic world has two shapes doing two different
actions at once. The detector is the demo's supervised VideoMAE (the
``classify`` stage, whose head also initialises the box head) with an RoI head,
fine-tuned through the one training loop (objective ``ava``) on the
ground-truth boxes of the training videos, then
scored with the official frame-mAP@0.5 on the validation keyframes (1 Hz)
with the ground-truth boxes as person proposals.

Beside it, the box-agnostic baseline: the same VideoMAE classifier scores the
whole clip and every person of the clip gets those scores. It knows what
happens in the clip but not who does it, so each person is also credited with
the other person's action.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..data import read_frames
from ..data.ava import AVADataset, BoxTransform, at_keyframes, group_keyframes, read_ava_groundtruth, read_label_map
from ..factory import create_model, load_model, save_model
from ..tasks.ava import detect, frame_map
from ..train import TrainConfig, train
from ..train.config import AVASection, DataSection, ModelSection, OptimSection, RunSection
from .context import DemoContext
from .figures import _pyplot

#: fine-tuning steps of the detector per preset
STEPS = {"default": 400, "quick": 40, "smoke": 2}
#: the AVA clips are twice as long as the classification clips, so the detector samples every 4th frame where
#: the classifier took every 2nd: the same 8-frame clip then spans the same share of an action
FRAME_INTERVAL = 4

TRUNK_FIELDS = ("img_size", "patch_size", "num_frames", "tubelet_size", "embed_dim", "depth", "num_heads",
                "mlp_ratio", "qkv_bias", "mean", "std")


def _trunk_overrides(classifier: torch.nn.Module) -> dict[str, Any]:
    c = classifier.config
    return {f: getattr(c, f) for f in TRUNK_FIELDS} | {"frame_interval": FRAME_INTERVAL}


def _val_dataset(model: torch.nn.Module, folder: Path, num_classes: int) -> tuple[AVADataset, list]:
    rows = at_keyframes(read_ava_groundtruth(folder / "ava_val.csv"))
    r = model.input_recipe()
    ds = AVADataset(group_keyframes(rows), folder, num_classes, BoxTransform(r.img_size, mean=r.mean, std=r.std),
                    clip_len=r.num_frames, frame_interval=FRAME_INTERVAL)
    return ds, rows


def train_detector(ctx: DemoContext, steps: int, box_agnostic: bool = False) -> Path:
    """Fine-tune the classifier as a detector (objective ``ava``); returns the checkpoint.

    The world's actions are the classifier's classes, so the whole classifier initialises the detector
    (:meth:`~internvideo.models.roi_head.VideoMAEDetector.init_from_classifier`): every box starts as the
    classifier applied to the features inside it, and the loop fine-tunes trunk (layer-wise lr decay) and head.
    """
    folder = ctx.world / "ava"
    classifier = load_model(ctx.mae_checkpoint)
    name = "detector_box_agnostic" if box_agnostic else "detector"
    overrides = {**_trunk_overrides(classifier), "init_scale": 1.0, "head_dropout": 0.2, "box_agnostic": box_agnostic,
                 "use_mean_pooling": True, "head_norm": True}
    start = create_model("videomae_tiny_ava", **overrides)
    start.init_from_classifier(classifier)
    save_model(start, ctx.work / f"{name}_init")
    cfg = TrainConfig(
        "ava",
        ModelSection("videomae_tiny_ava", pretrained=str(ctx.work / f"{name}_init"), overrides=overrides),
        DataSection(root=str(folder), train="ava_train.csv", hflip=False, num_workers=min(2, os.cpu_count() or 1)),
        OptimSection(lr=1e-3, layer_decay=0.75, scale_lr=False, warmup_steps=min(20, steps // 5), min_lr=1e-5,
                     betas=(0.9, 0.999)),
        RunSection(out_dir=str(ctx.work / name), epochs=10_000, max_steps=steps, batch_size=16, seed=ctx.seed,
                   log_every=10, save_every=1_000_000, keep_last=1, resume=False, progress=ctx.progress),
        AVASection(labels="label_map.pbtxt", box_jitter=0.05, box_scale=(1.0, 1.15)),
    )
    return Path(train(cfg).checkpoint)


def evaluate(ctx: DemoContext, checkpoint: Path) -> dict[str, Any]:
    """frame-mAP of a detector and of the box-agnostic clip-classifier baseline on the validation keyframes."""
    folder = ctx.world / "ava"
    labels = read_label_map(folder / "label_map.pbtxt")
    detector = load_model(checkpoint)
    ds, rows = _val_dataset(detector, folder, len(labels))
    dets = detect(detector, ds, batch_size=16)
    classifier = load_model(ctx.mae_checkpoint)
    baseline = detect(classifier, ds, batch_size=16, clip_level=True)
    return {"detector": frame_map(rows, dets, labels), "baseline": frame_map(rows, baseline, labels),
            "detections": dets, "dataset": ds, "rows": rows, "labels": labels}


def keyframe_figure(dataset: AVADataset, rows, detections, labels: dict[int, str], path: str | os.PathLike,
                    num: int = 4) -> Path:
    """Keyframes with ground-truth boxes (green, true action) and each box's top prediction (yellow)."""
    plt = _pyplot()
    def rounded(box) -> tuple:  # detections carry float32 copies of the annotated boxes
        return tuple(round(float(v), 4) for v in box)

    truth: dict[tuple, dict[tuple, int]] = {}
    for r in rows:
        truth.setdefault((r.video_id, r.timestamp), {})[rounded(r.box)] = r.action_id
    best: dict[tuple, tuple[float, int]] = {}
    for d in detections:
        k = (d.video_id, d.timestamp, rounded(d.box))
        if k not in best or d.score > best[k][0]:
            best[k] = (d.score, d.action_id)
    picks, seen = [], set()
    for i, (kf, *_rest) in enumerate(dataset.items):  # one keyframe per video, with both people visible
        if len(kf.boxes) >= 2 and kf.video_id not in seen and kf.timestamp > 0:
            picks.append(i)
            seen.add(kf.video_id)
    picks = picks[:num] or list(range(min(num, len(dataset))))
    fig, axes = plt.subplots(1, max(len(picks), 1), figsize=(3.2 * max(len(picks), 1), 3.6), squeeze=False)
    for ax, i in zip(axes[0], picks):
        kf, video_path, frame, _ = dataset.items[i]
        image = read_frames(video_path, [frame])[0]
        h, w = image.shape[:2]
        ax.imshow(image, interpolation="nearest")
        for box, action in truth.get((kf.video_id, kf.timestamp), {}).items():
            x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime", lw=1.5))
            ax.text(x1 - 0.5, y1 - 1, labels.get(action, str(action)), color="lime", fontsize=7, va="bottom")
            score, predicted = best.get((kf.video_id, kf.timestamp, tuple(box)), (0.0, 0))
            ax.text(x1 - 0.5, y2 + 0.5, f"{labels.get(predicted, '?')} {score:.2f}", color="yellow", fontsize=7,
                    va="top")
        ax.set_title(f"{kf.video_id} @ {kf.timestamp:g} s", fontsize=8)
        ax.axis("off")
    fig.suptitle("AVA-style keyframes: ground truth (green), top prediction per box (yellow)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def demo_stage(ctx: DemoContext) -> list[dict[str, Any]]:
    """Train the detector, score it and the box-agnostic baseline; rows for the demo's table (percent)."""
    ctx.work.mkdir(parents=True, exist_ok=True)
    checkpoint = train_detector(ctx, STEPS.get(ctx.preset, STEPS["default"]))
    r = evaluate(ctx, checkpoint)
    keyframe_figure(r["dataset"], r["rows"], r["detections"], r["labels"], ctx.work / "ava_keyframes.png")
    (ctx.work / "ava_results.json").write_text(json.dumps({k: r[k] for k in ("detector", "baseline")}, indent=1),
                                               encoding="utf-8")
    return [{"family": "Spatiotemporal action localization", "model": "VideoMAE + RoI head (AVA protocol)",
             "metric": "frame-mAP@0.5", "short": "AVA mAP", "value": r["detector"]["mAP"],
             "chance": r["baseline"]["mAP"]}]
