"""Which unknowns can confidence scores flag? Open-set AUROC with each reversed pair of the world held out in turn.

The synthetic world holds out one reversed pair (appearing/disappearing) as
its unknowns. This experiment asks whether the demo's open-set numbers depend
on that choice: for every reversed pair, the fitted evidential and softmax
heads train on the video embeddings of the other eight classes (training
split) and are scored on the validation split, whose clips of the held-out
pair are the unknowns. One embedding pass serves every pair.

Usage: ``python -m internvideo.experiments.openset_pairs DEMO_OUT`` (a finished
demo's folder: its world and multimodal checkpoint), or
:func:`held_out_pairs` with any multimodal model and world.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import VideoDataset, read_classes, read_classification_list
from ..errors import MissingFile, run_command
from ..tasks import common
from ..tasks.openset import UNKNOWN, evaluate_openset_features
from .. import argtypes
from ..train.heads import fit_openset_head


def held_out_pairs(model: nn.Module, world: str | Path, *, hidden: int = 128, steps: int = 300, seed: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """``{"rows": [{"held_out": [a, b], "auroc": {score: %}, "closed_set_accuracy": %}], ...}``, val split."""
    world = Path(world)
    meta = json.loads((world / "world.json").read_text(encoding="utf-8"))
    classes = read_classes(world / "classes.txt")
    lists = {s: read_classification_list(world / f"{s}.txt") for s in ("train", "val")}
    videos = sorted({x.path for v in lists.values() for x in v})
    dataset = VideoDataset(videos, common.eval_view(model), training=False, strict=True)
    emb = common.video_embeddings(model, dataset, batch_size=32, device=common.resolve_device(None),
                                  progress=progress, desc="video embeddings")
    row = {v: i for i, v in enumerate(videos)}
    x = {s: emb[[row[s_.path] for s_ in v]].numpy() for s, v in lists.items()}
    y = {s: np.asarray([s_.label for s_ in v]) for s, v in lists.items()}
    pairs = sorted({tuple(sorted((classes.index(a), classes.index(b)))) for a, b in meta["reversed"].items()})
    rows = []
    for pair in pairs:
        held = np.isin(y["train"], pair)
        val_labels = np.where(np.isin(y["val"], pair), UNKNOWN, y["val"])
        if not (val_labels == UNKNOWN).any():  # a small world's validation split may miss a pair: say so
            rows.append({"held_out": [classes[c] for c in pair], "auroc": None, "closed_set_accuracy": None,
                         "skipped": "no validation clip of this pair"})
            continue
        val = (x["val"], val_labels)
        result = evaluate_openset_features((x["train"][~held], y["train"][~held]), val, val, fit=fit_openset_head,
                                           hidden=hidden, steps=steps, seed=seed)
        rows.append({"held_out": [classes[c] for c in pair],
                     "auroc": {k: m["auroc"] for k, m in result["scores"].items()},
                     "closed_set_accuracy": result["scores"]["msp"]["closed_set_accuracy"]})
    return {"rows": rows, "split": "val", "hidden": hidden, "steps": steps, "seed": seed,
            "world_held_out": meta["held_out_classes"]}


def markdown(result: dict[str, Any]) -> str:
    scores = next(list(r["auroc"]) for r in result["rows"] if r["auroc"])
    lines = ["| held out | " + " | ".join(f"{s} AUROC" for s in scores) + " | closed-set acc. |",
             "|---|" + "---:|" * (len(scores) + 1)]
    for r in result["rows"]:
        mark = " (the world's)" if r["held_out"] == sorted(result["world_held_out"]) else ""
        cells = [f"{r['auroc'][s]:.1f}" for s in scores] + [f"{r['closed_set_accuracy']:.1f}"] if r["auroc"] else \
            [r["skipped"]] + [""] * len(scores)
        lines.append(f"| {' / '.join(r['held_out'])}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from ..factory import load_model

    checkpoints = sorted((args.demo_out / "runs" / "contrastive" / "checkpoints").glob("step_*"))
    if not checkpoints:
        raise MissingFile(f"{args.demo_out}: no runs/contrastive/checkpoints/step_* (run the demo first)")
    torch.manual_seed(args.seed)
    result = held_out_pairs(load_model(checkpoints[-1]).eval(), args.demo_out / "world", seed=args.seed)
    print(markdown(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m internvideo.experiments.openset_pairs", description=__doc__)
    parser.add_argument("demo_out", type=Path, help="a finished demo's output folder")
    parser.add_argument("--seed", type=argtypes.nonnegative_int, default=0)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of user errors too")
    return run_command(_run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
