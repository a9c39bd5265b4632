"""Demo stage: temporal action localization on the synthetic long videos.

Window features of the demo's supervised VideoMAE (``internvideo extract``:
8-frame windows every 4 frames) feed the ActionFormer-style localizer, trained
through the one training loop (``localize`` objective) on the training long
videos and scored on the validation ones with the THUMOS14 protocol (average
mAP over tIoU 0.3:0.7). The baseline is random segments (50 per video, uniform
ends, random class and score) scored the same way. A timeline figure of
ground truth against predictions goes to ``localization_timeline.png``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..data.datasets import read_activitynet
from ..data.localization import FeatureSequenceDataset
from ..factory import load_model
from ..tasks.extract import extract_features
from ..tasks.localization import THUMOS_TIOUS, evaluate_localization, read_detections, timeline_figure
from ..train import train
from ..train.config import load_config
from .context import DemoContext

STEPS = {"smoke": 4, "quick": 60, "default": 200}
WINDOW, STRIDE = 8, 4  # frames


def demo_stage(ctx: DemoContext) -> list[dict[str, Any]]:
    folder = ctx.world / "localization"
    feats = ctx.work / "features"
    extract_features(load_model(ctx.mae_checkpoint), folder, feats, window=WINDOW, stride=STRIDE, batch_size=64,
                     progress=ctx.progress)
    # The smoke world has only a few long videos: a batch never exceeds the training set.
    num_train = sum(v.subset == "training" for v in read_activitynet(folder / "activitynet.json").values())
    cfg = load_config(None, [
        "objective=localize", "model.name=actionformer_small",
        f"data.train={folder / 'activitynet.json'}", f"localize.features={feats}", "data.num_workers=0",
        "localize.val_subset=none",  # no evaluation inside the loop: the stage scores the final model once below
        f"localize.tiou={list(THUMOS_TIOUS)}", "optim.lr=2e-3", "optim.scale_lr=false", "optim.clip_grad=1.0",
        f"optim.warmup_steps={20 if STEPS.get(ctx.preset, 200) > 20 else STEPS[ctx.preset] // 5}", f"run.batch_size={max(1, min(8, num_train))}", "run.epochs=1000", f"run.max_steps={STEPS.get(ctx.preset, 200)}",
        f"run.out_dir={ctx.work / 'run'}", f"run.progress={str(ctx.progress).lower()}", f"run.seed={ctx.seed}",
        "run.eval_every=100000", "run.save_every=100000", "run.resume=false"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sequences of tens of features: one thread is as fast and does not contend
    try:
        model = train(cfg).model
    finally:
        torch.set_num_threads(threads)
    val = FeatureSequenceDataset(folder / "activitynet.json", feats, subset="validation",
                                 classes=list(model.config.class_names), input_dim=model.config.input_dim)
    r = evaluate_localization(model, val, tiou_thresholds=THUMOS_TIOUS, pred_out=ctx.work / "results.json")
    gt = {v.video_id: v for v in val.videos}
    timeline_figure(gt, read_detections(r["pred"]), ctx.work.parent.parent / "localization_timeline.png")
    return [{"family": "Temporal action localization", "model": "ActionFormer-style on VideoMAE window features",
             "metric": "average mAP, tIoU 0.3:0.7 (baseline: random segments)", "short": "TAL mAP",
             "value": round(r["average_mAP"], 1), "chance": round(r["chance_average_mAP"], 1)}]
