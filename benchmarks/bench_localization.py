"""Temporal action localization speed: ``python -m benchmarks.bench_localization [--quick] [--out FILE]``.

* **training steps/s** of the ActionFormer-style localizer on ActivityNet-sized
  feature sequences: 2304-wide features (InternVideo's concatenated window
  features), 192 steps; the ActivityNet recipe's model (256 wide, window 25,
  batch 16) and the THUMOS14 recipe's (512 wide, window 19, batch 2). A step is
  forward + loss + backward + AdamW.
* **(Soft-)NMS on 2,000 candidates** (10 classes, ActionFormer's multiclass
  setting): our vectorised torch version against a plain-Python loop that
  follows ActionFormer's C++ kernel line by line (written here); the results
  must be identical, and the speed-up is reported.

Medians of several repetitions, wall clock. Results go to
``benchmarks/results/localization.json`` (``--quick``: tiny sizes, a temporary
file unless ``--out``).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from internvideo.models.localization import NAMED_CONFIGS, ActionLocalizer, batched_nms, nms_1d, soft_nms_1d

ROOT = Path(__file__).resolve().parent


def python_soft_nms(segs: list[list[float]], scores: list[float], sigma: float, min_score: float,
                    max_num: int) -> list[tuple[int, float]]:
    """ActionFormer's ``softnms_1d_cpu`` (gaussian) as a Python loop; stops after ``max_num`` picks."""
    x1, x2 = [s[0] for s in segs], [s[1] for s in segs]
    sc = list(scores)
    area = [b - a + 1e-6 for a, b in zip(x1, x2)]
    inds = list(range(len(sc)))
    out: list[tuple[int, float]] = []
    n, i = len(sc), 0
    while i < n and len(out) < max_num:
        m = max(range(i, n), key=lambda p: (sc[p], -inds[p]))
        for arr in (x1, x2, sc, area, inds):
            arr[i], arr[m] = arr[m], arr[i]
        out.append((inds[i], sc[i]))
        p = i + 1
        while p < n:
            inter = max(0.0, min(x2[i], x2[p]) - max(x1[i], x1[p]))
            iou = inter / (area[i] + area[p] - inter)
            sc[p] *= math.exp(-(iou * iou) / sigma)
            if sc[p] < min_score:
                for arr in (x1, x2, sc, area, inds):
                    arr[p] = arr[n - 1]
                n -= 1
                p -= 1
            p += 1
        i += 1
    return out


def python_nms(segs: list[list[float]], scores: list[float], thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    area = [s[1] - s[0] + 1e-6 for s in segs]
    select = [True] * len(order)
    for a in range(len(order)):
        if not select[a]:
            continue
        i = order[a]
        for b in range(a + 1, len(order)):
            if select[b]:
                j = order[b]
                inter = max(0.0, min(segs[i][1], segs[j][1]) - max(segs[i][0], segs[j][0]))
                if inter / (area[i] + area[j] - inter) >= thr:
                    select[b] = False
    return [order[a] for a in range(len(order)) if select[a]]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def candidates(n: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 200, n)
    segs = torch.tensor(np.stack([start, start + rng.uniform(1, 40, n)], 1), dtype=torch.float64)
    scores = torch.tensor(rng.permutation(n) / n * 0.98 + 0.01, dtype=torch.float64)
    return segs, scores, torch.tensor(rng.integers(0, classes, n))


def bench_nms(n: int, repeats: int, device: str = "cpu") -> dict:
    segs, scores, labels = (t.to(device) for t in candidates(n))
    out = {"candidates": n, "classes": 10, "device": device}
    # Class-agnostic Soft-NMS keeping 200: the THUMOS14 / ActivityNet protocol (external class scores).
    agnostic = lambda: batched_nms(segs, scores, labels, method="soft", sigma=0.5, min_score=1e-3,  # noqa: E731
                                   max_num=200, multiclass=False)
    got = agnostic()
    ref = python_soft_nms(segs.tolist(), scores.tolist(), 0.5, 1e-3, 200)
    assert torch.allclose(got[1].cpu(), torch.tensor([s for _, s in ref], dtype=got[1].dtype), rtol=1e-9), \
        "soft-NMS differs from the reference loop"
    t_ours = _median_time(agnostic, repeats)
    t_ref = _median_time(lambda: python_soft_nms(segs.tolist(), scores.tolist(), 0.5, 1e-3, 200), 1, warmup=0)
    out["soft_nms"] = {"ours_ms": 1e3 * t_ours, "python_loop_ms": 1e3 * t_ref, "speedup": t_ref / t_ours,
                       "kept": 200, "multiclass": False}
    # Per class (ActionFormer's multiclass setting, 10 classes of ~n/10 candidates each).
    ours = lambda: batched_nms(segs, scores, labels, method="soft", sigma=0.5, min_score=1e-3,  # noqa: E731
                               max_num=200)

    def reference():
        picked = []
        for c in range(10):
            where = torch.nonzero(labels == c).flatten().tolist()
            ref = python_soft_nms(segs[where].tolist(), scores[where].tolist(), 0.5, 1e-3, 200)
            picked += [(where[i], s) for i, s in ref]
        picked.sort(key=lambda x: -x[1])
        return picked[:200]

    got = ours()
    ref = reference()
    assert torch.allclose(got[1].cpu(), torch.tensor([s for _, s in ref], dtype=got[1].dtype), rtol=1e-9), \
        "multiclass soft-NMS differs from the reference loop"
    t_ours, t_ref = _median_time(ours, repeats), _median_time(reference, 1, warmup=0)
    out["soft_nms_multiclass"] = {"ours_ms": 1e3 * t_ours, "python_loop_ms": 1e3 * t_ref, "speedup": t_ref / t_ours,
                                  "kept": 200, "multiclass": True}
    # Soft-NMS without the 200 cap (every candidate ends up picked or dropped): the loop's worst case.
    one = lambda: soft_nms_1d(segs, scores, sigma=0.5, min_score=1e-3)  # noqa: E731
    t_all = _median_time(one, max(1, repeats // 3))
    t_all_ref = _median_time(lambda: python_soft_nms(segs.tolist(), scores.tolist(), 0.5, 1e-3, n), 1, warmup=0)
    out["soft_nms_uncapped_one_class"] = {"ours_ms": 1e3 * t_all, "python_loop_ms": 1e3 * t_all_ref,
                                          "speedup": t_all_ref / t_all}
    hard = lambda: nms_1d(segs, scores, 0.5)  # noqa: E731
    assert hard().tolist() == python_nms(segs.tolist(), scores.tolist(), 0.5), "NMS differs from the reference loop"
    t_h, t_h_ref = _median_time(hard, repeats), _median_time(lambda: python_nms(segs.tolist(), scores.tolist(), 0.5),
                                                            1, warmup=0)
    out["nms"] = {"ours_ms": 1e3 * t_h, "python_loop_ms": 1e3 * t_h_ref, "speedup": t_h_ref / t_h}
    # The all-parallel alternative: the greedy result as the fixed point of "kept = not suppressed by an earlier
    # kept one" over the full N x N overlap matrix (exact; iterations = the longest suppression chain).
    fixed = lambda: fixed_point_nms(segs, scores, 0.5)  # noqa: E731
    assert fixed()[0].tolist() == hard().tolist(), "fixed-point NMS differs from the greedy one"
    out["nms_fixed_point"] = {"ms": 1e3 * _median_time(fixed, repeats), "iterations": fixed()[1],
                              "kept": len(hard())}
    return out


def fixed_point_nms(segments: torch.Tensor, scores: torch.Tensor, thr: float) -> tuple[torch.Tensor, int]:
    """Greedy 1-D NMS without a per-kept loop: N^2 overlaps once, then whole-vector sweeps until nothing changes."""
    order = torch.sort(scores, descending=True, stable=True).indices
    s = segments[order]
    x1, x2 = s[:, 0], s[:, 1]
    area = x2 - x1 + 1e-6
    inter = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp_(min=0)
    suppresses = (inter / (area[:, None] + area[None] - inter) >= thr).tril_(-1)  # [i, j]: earlier j overlaps i
    keep = torch.ones(len(s), dtype=torch.bool, device=s.device)
    for sweep in range(1, len(s) + 1):
        new = ~(suppresses & keep[None]).any(1)
        if torch.equal(new, keep):
            return order[keep], sweep
        keep = new
    return order[keep], len(s)


def bench_training(name: str, width: int, length: int, batch: int, repeats: int, device: str = "cpu",
                   **overrides) -> dict:
    torch.manual_seed(0)
    cls, cfg = NAMED_CONFIGS[name]
    model: ActionLocalizer = cls(cfg, input_dim=width, num_classes=20, max_seq_len=length, **overrides).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(length, width, generator=gen).to(device) for _ in range(batch)]
    x, mask = model.pad(feats)
    segs = [torch.tensor([[10.0, 40.0], [60.0, 150.0]]) * length / 192 for _ in range(batch)]
    labels = [torch.tensor([1, 7]) for _ in range(batch)]
    model.train()

    def step():
        loss = model.loss(model(x, mask), segs, labels)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = _median_time(step, repeats)
    return {"model": name, "device": device, "feature_width": width, "length": length, "batch": batch,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "step_ms": 1e3 * t,
            "steps_per_s": 1.0 / t, "sequences_per_s": batch / t}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds); writes to a temporary file")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/localization.json)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (training and our NMS; the Python loop is CPU)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        results = {"nms": bench_nms(200, 3, args.device),
                   "training": [bench_training("actionformer_small", 32, 64, 2, 2, args.device)]}
    else:
        results = {"nms": bench_nms(2000, 5, args.device),
                   "training": [bench_training("actionformer_activitynet", 2304, 192, 16, 5, args.device),
                                bench_training("actionformer_thumos14", 2304, 192, 2, 5, args.device)]}
    results["machine"] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                          "python": platform.python_version(),
                          "device": args.device}
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) / "localization.json" if args.quick
                                           else ROOT / "results" / "localization.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    n = results["nms"]
    print(f"soft-NMS ({n['candidates']} candidates, class-agnostic, 200 kept): "
          f"{n['soft_nms']['ours_ms']:.1f} ms vs Python loop {n['soft_nms']['python_loop_ms']:.0f} ms "
          f"({n['soft_nms']['speedup']:.0f}x)")
    m = n["soft_nms_multiclass"]
    print(f"soft-NMS per class ({n['classes']} classes, 200 kept): {m['ours_ms']:.1f} ms vs "
          f"{m['python_loop_ms']:.0f} ms ({m['speedup']:.1f}x)")
    print(f"soft-NMS uncapped, one class: {n['soft_nms_uncapped_one_class']['ours_ms']:.1f} ms vs "
          f"{n['soft_nms_uncapped_one_class']['python_loop_ms']:.0f} ms "
          f"({n['soft_nms_uncapped_one_class']['speedup']:.0f}x)")
    print(f"NMS: {n['nms']['ours_ms']:.1f} ms vs {n['nms']['python_loop_ms']:.0f} ms ({n['nms']['speedup']:.0f}x)")
    f = n["nms_fixed_point"]
    print(f"NMS as a fixed point over the N x N overlaps: {f['ms']:.1f} ms ({f['iterations']} sweeps)")
    for r in results["training"]:
        print(f"training {r['model']} ({r['params_M']:.1f}M params), batch {r['batch']} x {r['length']} x "
              f"{r['feature_width']}: {r['steps_per_s']:.2f} steps/s ({r['step_ms']:.0f} ms/step)")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
