"""Pyramid downsampling of the localizer, ActionFormer's (``attention``) against ours (``maxpool``).

``python -m benchmarks.pyramid_downsampling [--seeds 0 1 2] [--steps 200] [--quick] [--out FILE]``

The demo's localization setting: the synthetic world's long videos
(``make_world(..., num_long=40)``, 32 px, 30 training / 10 validation videos),
window features (8 frames every 4) of a **random-weight** tiny VideoMAE (the
demo's architecture, seed 0; no training, so the numbers are those of weak
features, where the class is the hard part), ``actionformer_small`` trained
through the one training loop with the demo's settings (batch 8, lr 2e-3,
20 warmup steps, clip 1.0), and the THUMOS14 protocol on the validation videos
(average mAP over tIoU 0.3:0.7). Each seed trains both modes from the same
seed; the seed sets the initialisation and the batch order.

Speed, one thread: the training loop's wall time per step, and a fixed batch
of 8 training videos timed alone (forward + loss + backward + AdamW), the two
modes alternating so that a slow spell of the shared machine hits both;
medians. ``torch.backends.cpu.get_cpu_capability()`` is recorded.
Results: ``benchmarks/results/pyramid_downsampling.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import internvideo
from internvideo.data import make_world
from internvideo.data.datasets import read_activitynet
from internvideo.data.localization import FeatureSequenceDataset, collate_sequences
from internvideo.demo import pipeline
from internvideo.demo.localization import STRIDE, WINDOW
from internvideo.tasks.extract import extract_features
from internvideo.tasks.localization import THUMOS_TIOUS, evaluate_localization
from internvideo.train import train
from internvideo.train.config import load_config

ROOT = Path(__file__).resolve().parent
MODES = ("attention", "maxpool")


def build_features(work: Path, num_long: int) -> tuple[Path, Path]:
    folder = work / "world" / "localization"
    feats = work / "features"
    if not (folder / "activitynet.json").exists():
        make_world(work / "world", num_videos=10, seed=0, size=pipeline.IMG_SIZE, num_frames=pipeline.WORLD_FRAMES,
                   num_long=num_long, num_ava=0, num_images=0)
    if not (feats / "index.jsonl").exists():
        torch.manual_seed(0)
        model = internvideo.create_model("videomae_tiny", **pipeline.VIDEOMAE).eval()
        extract_features(model, folder, feats, window=WINDOW, stride=STRIDE, batch_size=64, progress=False)
    return folder / "activitynet.json", feats


def train_one(gt: Path, feats: Path, mode: str, seed: int, steps: int, out: Path) -> dict:
    num_train = sum(v.subset == "training" for v in read_activitynet(gt).values())
    cfg = load_config(None, [
        "objective=localize", "model.name=actionformer_small", f"model.overrides={{downsample: {mode}}}",
        f"data.train={gt}", f"localize.features={feats}", "data.num_workers=0", "localize.val_subset=none",
        f"localize.tiou={list(THUMOS_TIOUS)}", "optim.lr=2e-3", "optim.scale_lr=false", "optim.clip_grad=1.0",
        f"optim.warmup_steps={min(20, steps // 5)}", f"run.batch_size={max(1, min(8, num_train))}",
        "run.epochs=1000", f"run.max_steps={steps}", f"run.out_dir={out}", "run.progress=false", f"run.seed={seed}",
        "run.eval_every=100000", "run.save_every=100000", "run.resume=false"])
    started = time.perf_counter()
    model = train(cfg).model
    wall = time.perf_counter() - started
    val = FeatureSequenceDataset(gt, feats, subset="validation", classes=list(model.config.class_names),
                                 input_dim=model.config.input_dim)
    r = evaluate_localization(model, val, tiou_thresholds=THUMOS_TIOUS)
    return {"mode": mode, "seed": seed, "steps": steps, "average_mAP": round(r["average_mAP"], 2),
            "mAP": {str(k): round(v, 2) for k, v in r["mAP"].items()},
            "chance_average_mAP": round(r["chance_average_mAP"], 2), "loop_s_per_step": round(wall / steps, 4),
            "parameters": sum(p.numel() for p in model.parameters()), "val_videos": len(val)}


def time_steps(gt: Path, feats: Path, reps: int) -> dict:
    """Seconds per training step on one fixed batch of 8, the modes alternating; medians."""
    data = FeatureSequenceDataset(gt, feats, subset="training")
    batch = collate_sequences([data[i] for i in range(min(8, len(data)))])
    runs = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = internvideo.create_model("actionformer_small", input_dim=int(batch["feats"][0].shape[1]),
                                         num_classes=len(data.classes), downsample=mode).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        padded = model.pad(batch["feats"])

        def step(model=model, opt=opt, padded=padded) -> None:
            loss = model.loss(model(*padded), batch["segments"], batch["labels"])["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        runs[mode] = step
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(3):
        for run in runs.values():
            run()
    for i in range(reps):
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
            t = time.perf_counter()
            runs[mode]()
            times[mode].append(time.perf_counter() - t)
    length = int(batch["feats"][0].shape[0]) if batch["feats"] else 0
    return {"batch": len(batch["feats"]), "first_length": length,
            **{f"{m}_ms": round(1e3 * statistics.median(t), 2) for m, t in times.items()}}


def summarize(runs: list[dict]) -> dict:
    """Per mode: mean / sd / per-seed average mAP, mean mAP per tIoU, loop time; and the paired difference."""
    by = {m: sorted((r for r in runs if r["mode"] == m), key=lambda r: r["seed"]) for m in MODES}
    out: dict = {}
    for m, rs in by.items():
        avg = [r["average_mAP"] for r in rs]
        out[m] = {"average_mAP_mean": round(statistics.mean(avg), 2),
                  "average_mAP_sd": round(statistics.stdev(avg), 2) if len(avg) > 1 else None,
                  "average_mAP_per_seed": avg,
                  "mAP_mean": {t: round(statistics.mean(r["mAP"][t] for r in rs), 2) for t in rs[0]["mAP"]},
                  "loop_s_per_step_median": round(statistics.median(r["loop_s_per_step"] for r in rs), 4)}
    seeds = [r["seed"] for r in by[MODES[0]]]
    if seeds == [r["seed"] for r in by[MODES[1]]] and len(seeds) > 1:
        paired = {}
        for key in ["average_mAP"] + list(by[MODES[0]][0]["mAP"]):
            diff = [(a["average_mAP"] - b["average_mAP"]) if key == "average_mAP" else a["mAP"][key] - b["mAP"][key]
                    for a, b in zip(*by.values())]
            paired[key] = {"mean": round(statistics.mean(diff), 2),
                           "standard_error": round(statistics.stdev(diff) / len(diff) ** 0.5, 2),
                           f"{MODES[0]}_wins": sum(d > 0 for d in diff), "seeds": len(diff)}
        out[f"{MODES[0]}_minus_{MODES[1]}"] = paired
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--num-long", type=int, default=40)
    ap.add_argument("--reps", type=int, default=40, help="timed steps per mode on the fixed batch")
    ap.add_argument("--work", type=Path, default=None, help="world, features and runs (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="a tiny world and a few steps (a smoke run)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.num_long, args.reps = args.seeds[:1], 4, 8, 2
    out = args.out or (Path(tempfile.mkdtemp()) / "pyramid.json" if args.quick
                       else ROOT / "results" / "pyramid_downsampling.json")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        gt, feats = build_features(work, args.num_long)
        runs = []
        for seed in args.seeds:
            for mode in (MODES if seed % 2 == 0 else MODES[::-1]):
                runs.append(train_one(gt, feats, mode, seed, args.steps, work / "runs" / f"{mode}_{seed}"))
                print(json.dumps(runs[-1]), file=sys.stderr)
        timing = time_steps(gt, feats, args.reps)
    summary = summarize(runs)
    result = {"machine": {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": 1,
                          "torch": torch.__version__, "python": platform.python_version(),
                          "processor": platform.processor() or platform.machine()},
              "setting": {"world": f"make_world(num_videos=10, seed=0, size={pipeline.IMG_SIZE}, "
                                   f"num_frames={pipeline.WORLD_FRAMES}, num_long={args.num_long})",
                          "features": f"random-weight videomae_tiny (seed 0), windows of {WINDOW} frames every {STRIDE}",
                          "model": "actionformer_small", "steps": args.steps, "seeds": args.seeds},
              "summary": summary, "fixed_batch_step": timing, "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"summary": summary, "fixed_batch_step": timing, "out": str(out)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
