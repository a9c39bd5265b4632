"""AVA RoI head speed: vectorised RoIAlign against a per-box loop, and a training step of the head.

* RoIAlign forward + backward for 100 boxes spread over 8 clips on a ViT-B/16
  token grid (768 channels, 14 x 14 after the temporal mean; 7 x 7 bins,
  adaptive sampling, aligned), vectorised (:func:`internvideo.models.roi_head.roi_align`,
  one matmul per clip for all its boxes) against two loops over boxes: our
  kernel called once per box ("per-box loop"), and the usual plain-torch
  RoIAlign that gathers the four neighbours of each sample point box by box
  ("per-box gather"). All give the same numbers (checked).
* One training step (forward, BCE, backward, AdamW) of the whole RoI head on
  ViT-B tokens (8 clips, 16 frames -> 8 x 14 x 14 tokens, 100 boxes, 80
  classes): LayerNorm'd tokens in, the step of everything after the trunk.

Timing is process CPU time per call (median of ``--repeats``), meaningful on a
shared machine; wall time is printed beside it. One compute thread by default
(``--threads``). Run: ``python -m benchmarks.bench_ava [--repeats N] [--out PATH]``;
writes a table to stdout and JSON to ``benchmarks/results/ava.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from internvideo.models.roi_head import RoIActionHead, RoIHeadConfig, roi_align

CLIPS, BOXES, WIDTH, GRID, TIME, BINS, CLASSES = 8, 100, 768, 14, 8, 7, 80


def _boxes(gen: torch.Generator) -> torch.Tensor:
    """Person-sized boxes (10-60 % of the frame side) in token-grid units in random clips, listed clip by clip
    (as :func:`internvideo.data.ava.collate_ava` gives them)."""
    size = (torch.rand(BOXES, 2, generator=gen) * 0.5 + 0.1) * GRID
    corner = torch.rand(BOXES, 2, generator=gen) * (GRID - size)
    clip = torch.randint(0, CLIPS, (BOXES, 1), generator=gen).sort(dim=0).values.float()
    return torch.cat([clip, corner, corner + size], dim=1)


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def gather_roi_align_loop(features: torch.Tensor, rois: torch.Tensor, bins: int) -> torch.Tensor:
    """RoIAlign as usually written in plain torch: per box, gather the four neighbours of every sample point.

    Same rules as :func:`roi_align` (aligned, adaptive sampling); vectorised
    inside a box, a Python loop over boxes.
    """
    _, c, h, w = features.shape
    out = []
    for b, x1, y1, x2, y2 in rois.tolist():
        x1, y1, x2, y2 = x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5
        gy, gx = max(math.ceil((y2 - y1) / bins), 1), max(math.ceil((x2 - x1) / bins), 1)
        ys = y1 + (torch.arange(bins * gy) + 0.5) * (y2 - y1) / (bins * gy)
        xs = x1 + (torch.arange(bins * gx) + 0.5) * (x2 - x1) / (bins * gx)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        valid = ((yy >= -1) & (yy <= h) & (xx >= -1) & (xx <= w)).to(features.dtype)
        yy, xx = yy.clamp(0, h - 1), xx.clamp(0, w - 1)
        y0, x0 = yy.floor().long(), xx.floor().long()
        y1i, x1i = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
        ly, lx = yy - y0, xx - x0
        fmap = features[int(b)].reshape(c, h * w)
        value = sum(fmap[:, (yi * w + xi).reshape(-1)] * wt.reshape(-1) for yi, xi, wt in (
            (y0, x0, (1 - ly) * (1 - lx)), (y0, x1i, (1 - ly) * lx), (y1i, x0, ly * (1 - lx)), (y1i, x1i, ly * lx)))
        value = (value * valid.reshape(-1)).reshape(c, bins, gy, bins, gx)
        out.append(value.mean(dim=(2, 4)))
    return torch.stack(out)


def roi_align_cases(repeats: int) -> dict[str, dict[str, float]]:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(CLIPS, WIDTH, GRID, GRID, generator=gen, requires_grad=True)
    rois = _boxes(gen)
    # The incoming gradient has the output's memory layout, as autograd hands it over from the ops after it.
    grad = torch.randn_like(roi_align(features, rois, BINS))

    def vectorised():
        features.grad = None
        roi_align(features, rois, BINS).backward(grad)

    def loop():
        features.grad = None
        torch.cat([roi_align(features, rois[i:i + 1], BINS) for i in range(BOXES)]).backward(grad)

    def gather_loop():
        features.grad = None
        gather_roi_align_loop(features, rois, BINS).backward(grad)

    want = roi_align(features, rois, BINS)
    torch.testing.assert_close(want, torch.cat([roi_align(features, rois[i:i + 1], BINS) for i in range(BOXES)]))
    torch.testing.assert_close(want, gather_roi_align_loop(features, rois, BINS), rtol=1e-4, atol=1e-5)
    out = {}
    for name, fn in (("vectorised", vectorised), ("per-box loop", loop), ("per-box gather", gather_loop)):
        cpu, wall = _time(fn, repeats)
        out[name] = {"cpu_ms": cpu * 1e3, "wall_ms": wall * 1e3}
    out["speedup"] = {"vs per-box loop": out["per-box loop"]["cpu_ms"] / out["vectorised"]["cpu_ms"],
                      "vs per-box gather": out["per-box gather"]["cpu_ms"] / out["vectorised"]["cpu_ms"]}
    return out


def head_step(repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    head = RoIActionHead(WIDTH, (TIME, GRID, GRID), RoIHeadConfig(num_classes=CLASSES))
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4)
    tokens = torch.randn(CLIPS, TIME * GRID * GRID, WIDTH, generator=gen, requires_grad=True)
    rois = _boxes(gen) / GRID  # the head takes fractions of the frame
    labels = (torch.rand(BOXES, CLASSES, generator=gen) < 0.05).float()

    def step():
        tokens.grad = None
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(tokens, rois), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    cpu, wall = _time(step, repeats)
    return {"cpu_ms": cpu * 1e3, "wall_ms": wall * 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ava.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    roi = roi_align_cases(args.repeats)
    step = head_step(args.repeats)
    print(f"RoIAlign fwd+bwd, {BOXES} boxes on {CLIPS} clips, {WIDTH} x {GRID} x {GRID} grid, {BINS} x {BINS} bins "
          f"({args.threads} thread(s), CPU ms per call):")
    for name in ("vectorised", "per-box loop", "per-box gather"):
        print(f"  {name:<15} {roi[name]['cpu_ms']:8.2f} ms  (wall {roi[name]['wall_ms']:.2f} ms)")
    for name, ratio in roi["speedup"].items():
        print(f"  speed-up {name:<18} {ratio:6.1f} x")
    print(f"RoI head training step (ViT-B tokens {CLIPS} x {TIME * GRID * GRID} x {WIDTH}, {BOXES} boxes, "
          f"{CLASSES} classes): {step['cpu_ms']:.1f} ms (wall {step['wall_ms']:.1f} ms)")
    result = {"roi_align": roi, "head_step": step, "threads": args.threads, "repeats": args.repeats,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
