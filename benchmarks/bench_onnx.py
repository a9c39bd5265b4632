"""onnxruntime CPU against torch CPU, same weights, same machine, same run: ``python -m benchmarks.bench_onnx``.

The VideoMAE ViT-B/16 classifier (16 x 224², batch 1, fp32; random weights:
speed does not depend on them) is exported with ``internvideo export onnx``'s
code path (torch.export -> ONNX, checked against torch to 1e-4), then torch
eager and an onnxruntime CPU session are timed alternately after warm-up
(medians). Both use every core the process may use (``torch.get_num_threads()``
threads for each). The machine's load average is recorded: on a shared
machine, the neighbours' work lands in both columns alike but makes both
slower. ``--quick`` times the tiny model (what the test runs). Results:
``benchmarks/results/onnx.json``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import internvideo
from internvideo.checkpoints.onnx import export_onnx, relative_difference

from .common import Runner, load_average, machine_info, median, time_alternating

RESULTS = Path(__file__).resolve().parent / "results"


def measure(name: str, reps: int, warmup: int, workdir: Path) -> dict:
    import onnxruntime as ort

    model = internvideo.create_model(name).eval()
    c = model.config
    video = torch.randn(1, 3, c.num_frames, c.img_size, c.img_size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    report = export_onnx(model, workdir / f"{name}.onnx")
    export_s = time.perf_counter() - t0
    [(path, diff)] = report.items()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: video.numpy()}

    def torch_run():
        with torch.no_grad():
            return model(video)

    runners = {
        "torch": Runner(torch_run, torch_run, "torch eager, fp32"),
        "onnxruntime": Runner(lambda: session.run(None, feed), lambda: torch.from_numpy(session.run(None, feed)[0]),
                              f"onnxruntime {ort.__version__} CPUExecutionProvider, fp32"),
    }
    load_before = load_average()
    wall, cpu = time_alternating(runners, reps, warmup, torch.device("cpu"))
    return {
        "model": name, "input": list(video.shape), "batch": 1, "precision": "fp32", "reps": reps, "warmup": warmup,
        "threads": torch.get_num_threads(), "export_seconds": round(export_s, 1),
        "onnx_vs_torch_max_rel_diff": diff,
        "final_rel_diff": relative_difference(runners["onnxruntime"].output(), runners["torch"].output()),
        "median_s": {k: median(v) for k, v in wall.items()}, "all_s": wall,
        "cpu_s_median": {k: median(v) for k, v in cpu.items()},
        "speedup_onnxruntime": median(wall["torch"]) / median(wall["onnxruntime"]),
        "load_average_before": load_before, "load_average_after": load_average(),
        "how": {k: r.how for k, r in runners.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the tiny model, in seconds (writes to --out)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results; --quick: a temp dir)")
    args = p.parse_args(argv)
    name = "videomae_tiny" if args.quick else "videomae_vit_b16"
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    with tempfile.TemporaryDirectory() as work:
        row = measure(name, args.reps, args.warmup, Path(work))
    results = {"machine": machine_info(),
               "cases": {name: row}}
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("onnx-quick.json" if args.quick else "onnx.json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    m = row["median_s"]
    print(f"{name} {row['input']} fp32 batch 1 on {results['machine']['cpu_capability']} "
          f"({row['threads']} threads, load {row['load_average_before']}): torch {m['torch'] * 1e3:.0f} ms, "
          f"onnxruntime {m['onnxruntime'] * 1e3:.0f} ms (x{row['speedup_onnxruntime']:.2f}); "
          f"max rel. diff {row['onnx_vs_torch_max_rel_diff']:.1e}; written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
