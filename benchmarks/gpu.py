"""Ours against HF transformers on an NVIDIA GPU: bf16, SDPA (flash) attention, torch.compile, and MFU.

Run ``benchmarks/gpu.sh`` (full sizes, a few minutes on an H100) or
``benchmarks/gpu.sh --small`` (tiny sizes; runs on a CPU too, which is how the
tests check this script). The cases are the CPU suite's (``cases.py``: the same
weights in both implementations, outputs checked before timing), in bf16
autocast at GPU batch sizes, each implementation eager and compiled.

MFU is the model's analytic FLOPs per second over the GPU's dense bf16 peak
(H100/H200: 989 TFLOP/s); a bf16 matmul timed in the same run gives the
practical peak as well. Attention on CUDA in bf16 without a mask dispatches to
SDPA's flash kernel in both implementations.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from .cases import BUILDERS, OURS, REF, Case, Variant, Workspace, group_title
from .common import Runner, machine_info, matmul_rate, median, synchronize, time_alternating

# Dense bf16 tensor-core peaks (no sparsity), by substring of the device name.
GPU_BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                        "A10": 125.0}


def bf16_peak(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "no GPU: MFU is against the measured matmul only"
    name = torch.cuda.get_device_name(device)
    for key in sorted(GPU_BF16_PEAK_TFLOPS, key=len, reverse=True):  # "GH200" before "H200"
        if key in name:
            return GPU_BF16_PEAK_TFLOPS[key] * 1e12, f"{name}: {GPU_BF16_PEAK_TFLOPS[key]:.0f} TFLOP/s dense bf16"
    return None, f"{name}: peak unknown, MFU is against the measured matmul only"


COMPILED = (Variant("ref_compiled", "ref", compile=True), Variant("ours_compiled", "ours", compile=True))


def gpu_cases(small: bool) -> list[Case]:
    size = "small" if small else "full"
    batch = {"videomae_inference": 2 if small else 32, "videomae_pretrain": 2 if small else 32,
             "clip_video": 1 if small else 32}
    return [Case(f"{group}_bf16_b{b}", group, "bf16", b, (REF, OURS), size) for group, b in batch.items()]


def peak_memory_gib(runner: Runner, device: torch.device) -> float | None:
    """GPU memory one call allocates beyond what is already resident (activations and workspace)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    runner.run()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 30


def measure(case: Case, variants: tuple[Variant, ...], ws: Workspace, args: argparse.Namespace, peak: float | None,
            measured: float) -> dict[str, dict]:
    """Build, check against HF (eager) and time the variants of one case, interleaved with HF eager."""
    device = ws.device
    runners = {v.name: BUILDERS[case.group](case, v, ws) for v in (REF,) + variants}
    ref_out = runners["ref"].output()
    # A compiled training step checked under no_grad would compile a second graph: its loss is not compared.
    diffs = {v.name: None if (v.compile and case.group == "videomae_pretrain")
             else (runners[v.name].output() - ref_out).abs().max().item() for v in (REF,) + variants}
    wall, _ = time_alternating(runners, args.reps, args.warmup, device)
    ref_t = median(wall["ref"])
    rows = {}
    for name, times in wall.items():
        t = median(times)
        rate = case.flops / t
        rows[name] = {"how": runners[name].how, "median_s": t, "times_s": times, "tflops": rate / 1e12,
                      "activation_memory_gib": peak_memory_gib(runners[name], device),
                      "mfu_pct": None if peak is None else 100 * rate / peak,
                      "pct_of_measured_matmul": 100 * rate / measured, "speedup_vs_ref": ref_t / t,
                      "max_abs_diff_vs_ref_bf16": diffs[name]}
        mfu = "" if peak is None else f"MFU {rows[name]['mfu_pct']:5.1f} %  "
        diff = "" if diffs[name] is None else f"  Δ vs HF {diffs[name]:.1e}"
        print(f"   {name:<14} {t * 1e3:9.2f} ms  {ref_t / t:5.2f}x  {rate / 1e12:7.2f} TFLOP/s  {mfu}"
              f"({rows[name]['pct_of_measured_matmul']:.0f} % of matmul){diff}", flush=True)
    del runners
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def run(args: argparse.Namespace) -> dict:
    """Eager implementations of every case first, then compiled ones while the time budget lasts.

    Compilation dominates the run time, and a lent GPU session is short: the
    eager comparison always completes, and a failure to compile one model is
    recorded rather than ending the run.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.small:
        raise SystemExit("no CUDA device: run with --small to exercise the script on a CPU")
    peak, peak_note = bf16_peak(device)
    measured = matmul_rate(torch.bfloat16, device, 8192 if device.type == "cuda" else 256)
    results = {"machine": machine_info(device), "date": time.strftime("%Y-%m-%d %H:%M"), "device": str(device),
               "bf16_peak_tflops": None if peak is None else peak / 1e12, "peak_note": peak_note,
               "measured_bf16_matmul_tflops": measured / 1e12, "cases": {}}
    started = time.perf_counter()
    ws = Workspace(args.workdir, device)
    cases = gpu_cases(args.small)
    for case in cases:
        print(f"== {case.name}", flush=True)
        results["cases"][case.name] = {"group": case.group, "size": case.size, "batch": case.batch,
                                       "flops": case.flops, "variants": measure(case, (OURS,), ws, args, peak,
                                                                                measured)}
    for case in cases if not args.no_compile else ():
        if time.perf_counter() - started > args.budget:
            print(f"== {case.name}: compiled variants skipped (time budget of {args.budget} s spent)", flush=True)
            results["cases"][case.name]["compile_skipped"] = "time budget"
            continue
        print(f"== {case.name}, compiled", flush=True)
        try:
            rows = measure(case, COMPILED, ws, args, peak, measured)
        except Exception as exc:  # noqa: BLE001 - one model failing to compile must not lose the other results
            print(f"   compilation failed: {exc!r}", flush=True)
            results["cases"][case.name]["compile_error"] = repr(exc)
            continue
        rows.pop("ref")  # HF eager was timed again only as the yardstick of this pass
        results["cases"][case.name]["variants"].update(rows)
    results["elapsed_s"] = time.perf_counter() - started
    return results


def markdown(results: dict) -> str:
    lines = [f"Device: {results['peak_note']}; measured bf16 matmul {results['measured_bf16_matmul_tflops']:.1f} "
             f"TFLOP/s; torch {results['machine']['torch']}. Recorded {results['date']}. bf16 autocast throughout; "
             "memory is what one call allocates beyond the resident weights.", ""]
    for case in results["cases"].values():
        lines += [f"### {group_title(case['group'], case['size'])}, batch {case['batch']}", "",
                  "| implementation | time (ms) | vs HF | TFLOP/s | MFU | % of matmul | memory (GiB) |",
                  "|---|---|---|---|---|---|---|"]
        for name, v in case["variants"].items():
            mfu = "—" if v["mfu_pct"] is None else f"{v['mfu_pct']:.1f} %"
            mem = "—" if v["activation_memory_gib"] is None else f"{v['activation_memory_gib']:.2f}"
            lines.append(f"| {name} ({v['how']}) | {v['median_s'] * 1e3:.1f} | {v['speedup_vs_ref']:.2f}× | "
                         f"{v['tflops']:.1f} | {mfu} | {v['pct_of_measured_matmul']:.0f} % | {mem} |")
        if "compile_error" in case:
            lines.append(f"\ntorch.compile failed: `{case['compile_error'][:300]}`")
        elif "compile_skipped" in case:
            lines.append("\nCompiled variants skipped: the time budget (`--budget`) was spent.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny models (seconds; also on a CPU)")
    p.add_argument("--no-compile", action="store_true", help="eager only (compiling takes most of the time)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per implementation (compilation happens here)")
    p.add_argument("--budget", type=float, default=180, help="seconds after which no further model is compiled "
                   "(the eager comparison always runs)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu.json")
    p.add_argument("--workdir", type=Path, default=None, help="where reference weights are saved (default: temporary)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="internvideo-gpu-bench-") as tmp:
        args.workdir = args.workdir or Path(tmp)
        results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    args.out.with_suffix(".md").write_text(table)
    print(table + f"wrote {args.out} in {results['elapsed_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
