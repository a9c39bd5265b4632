"""The CMA ablation (an experiment: it trains, then evaluates): single streams, late fusion and cross-model attention of depth L, one table.

Every variant trains through the one training loop (objective ``fusion``) on
the same split from the same frozen backbones, reading one shared feature
cache, and is evaluated on the same validation list with the same protocol
(single centre view, top-1/top-5).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import VideoClassificationDataset, read_classification_list
from ..errors import UsageError
from ..tasks import common
from ..train import TrainConfig, train
from ..train.config import DataSection, FusionSection, ModelSection, OptimSection, RunSection, load_config
from .. import argtypes
from ..train.objectives.video import FusionObjective


@dataclass(frozen=True)
class Variant:
    name: str
    streams: str
    num_layers: int
    cma: str = "paper"  # FusionConfig.cma: "paper" or "gated" (unused without fusion layers)


DEFAULT_VARIANTS = (
    Variant("masked-model encoder alone", "mae", 0),
    Variant("multimodal encoder alone", "mm", 0),
    Variant("late fusion (concat)", "both", 0),
    Variant("CMA (gated), L=1", "both", 1, "gated"),
    Variant("CMA (gated), L=2", "both", 2, "gated"),
    Variant("CMA (paper), K=2", "both", 2, "paper"),
    Variant("CMA (paper), K=4", "both", 4, "paper"),
)


def run_fusion_ablation(mae_backbone: str | Path, mm_backbone: str | Path, data_root: str | Path, train_list: str,
                        val_list: str, out_dir: str | Path, *, variants=DEFAULT_VARIANTS, epochs: int = 30,
                        lr: float = 1e-3, batch_size: int = 16, width: int = 64, num_heads: int = 4,
                        extra: list[str] | None = None, progress: bool = True,
                        save_scores: str | Path | None = None) -> dict:
    """Train and evaluate every variant; returns ``{"rows": [...], "chance": ...}`` and writes JSON + markdown.

    ``save_scores``: a folder; each variant's per-video validation probabilities go to ``<folder>/<run name>.npz``
    (the ``--save-scores`` format; combine them with ``internvideo eval ensemble``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    chance = None
    base = load_config(None, extra or [])  # the user's extra data/optim/run settings
    for v in variants:
        run_dir = out / "".join(ch for ch in v.name.replace(" ", "_") if ch.isalnum() or ch in "_-")
        cfg = TrainConfig(
            "fusion",
            ModelSection(mae_backbone=str(mae_backbone), mm_backbone=str(mm_backbone),
                         overrides={"streams": v.streams, "num_layers": v.num_layers, "cma": v.cma, "width": width,
                                    "num_heads": num_heads}),
            DataSection(**{**vars(base.data), "root": str(data_root), "train": train_list, "val": val_list}),
            OptimSection(**{**vars(base.optim), "lr": lr, "scale_lr": False, "weight_decay": 0.001}),
            RunSection(**{**vars(base.run), "epochs": epochs, "batch_size": batch_size, "out_dir": str(run_dir),
                          "progress": progress, "resume": False, "log_every": 10}),
            fusion=FusionSection(feature_cache=str(out / "feature_cache")),
        )
        result = train(cfg)
        evals = [r for r in result.history if r["kind"] == "eval"]
        final = evals[-1] if evals else {}
        chance = chance or 100.0 / result.model.config.num_classes
        if save_scores is not None:
            scores = variant_scores(cfg, result.model, f"{run_dir} ({v.name})")
            common.save_scores(Path(save_scores) / f"{run_dir.name}.npz", scores)
        rows.append({"variant": v.name, "streams": v.streams, "layers": v.num_layers, "cma": v.cma,
                     "top1": final.get("top1"), "top5": final.get("top5"), "steps": result.steps,
                     "seconds": round(result.seconds, 1)})
    report = {"rows": rows, "chance_top1": chance}
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "ablation.md").write_text(format_table(report))
    return report


@torch.no_grad()
def variant_scores(cfg: TrainConfig, model: torch.nn.Module, model_id: str) -> common.VideoScores:
    """Softmax probabilities of a trained fusion model on ``cfg.data.val`` with both views, as in its training."""
    objective = FusionObjective(cfg)
    objective.model = model
    samples = [s for s in read_classification_list(objective.path(cfg.data.val), objective.root,
                                                   len(objective.classes)) if s.label >= 0]
    dataset = VideoClassificationDataset(samples, objective.views(False), classes=objective.classes, training=False,
                                         strict=True)
    model.eval()
    probs, labels = [], []
    for batch in common.loader(dataset, cfg.run.batch_size, 0):
        probs.append(model(batch["video"], batch["mm_video"]).float().softmax(-1))
        labels.append(torch.as_tensor(batch["label"]))
    return common.dataset_scores(dataset, torch.cat(probs).numpy(), torch.cat(labels).numpy(), model_id, "fusion",
                                 objective.classes)


def format_table(report: dict) -> str:
    lines = ["| variant | top-1 | top-5 |", "|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['variant']} | {r['top1']:.1f} | {r['top5']:.1f} |")
    lines.append(f"\nchance top-1: {report['chance_top1']:.1f} %\n")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mae", required=True, help="VideoMAE classifier/encoder directory (frozen)")
    p.add_argument("--mm", required=True, help="InternVideoMM directory (frozen)")
    p.add_argument("--root", required=True, help="data root")
    p.add_argument("--train", required=True, help="classification list for training, relative to root")
    p.add_argument("--val", required=True, help="classification list for evaluation, relative to root")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--epochs", type=argtypes.positive_int, default=30)
    p.add_argument("--lr", type=argtypes.positive_float, default=1e-3)
    p.add_argument("--width", type=argtypes.positive_int, default=64, help="common width of the fusion layers")
    p.add_argument("--heads", type=argtypes.positive_int, default=4, help="attention heads of the fusion layers")
    p.add_argument("--save-scores", default=None, metavar="DIR",
                   help="write each variant's per-video validation scores to DIR/<variant>.npz (see eval ensemble)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra training overrides (data.*, optim.*, run.*; the variant sets model.overrides)")


def main(args: argparse.Namespace) -> int:
    if any(item.startswith("model.overrides") for item in args.set):
        raise UsageError("--set model.overrides would replace each variant's settings; use --width/--heads")
    report = run_fusion_ablation(args.mae, args.mm, args.root, args.train, args.val, args.out, epochs=args.epochs,
                                 lr=args.lr, width=args.width, num_heads=args.heads, extra=args.set,
                                 save_scores=args.save_scores)
    print(format_table(report))
    return 0
