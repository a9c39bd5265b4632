"""Ours against HF transformers on this machine: ``python -m benchmarks.run [--quick] [--only NAME ...]``.

For every case (VideoMAE inference, VideoMAE pretraining step, multimodal video
encoder; fp32 and bf16; batch 1 and 4) the runner

1. builds our model and the reference from the same saved weights and checks
   that they compute the same thing (fp32: outputs within 1e-4 relative; bf16:
   each implementation's error against fp32 is recorded);
2. times them alternately after warm-up and reports medians, the speed-up, and
   the achieved GFLOP/s against a matmul of the same dtype timed just before;
3. measures peak resident memory of each implementation in a fresh process
   (``--child``), after a warm-up step, so that neither loading nor the other
   implementation pollutes the number.

The data pipeline benchmark (``benchmarks/bench_data.py``) runs as part of the
suite. Results: ``benchmarks/results/cpu.json`` (merged by case name, so
``--only`` refreshes some rows) and the tables between the markers in
``docs/benchmarks.md``; ``--report-only`` rewrites the tables from the JSON.

``--isa avx2`` reruns itself with PyTorch limited to AVX2 (``ATEN_CPU_CAPABILITY``
for ATen's kernels, ``ONEDNN_MAX_CPU_ISA`` for oneDNN's GEMMs): on an AVX-512
machine, the numbers of an AVX2-only CPU, where bf16 is emulated
(``cpu-avx2.json``, its own table).

``--threads 1 --clock cpu`` times process CPU time on one core instead
(``cpu-1thread.json``, its own table): on a machine shared with other jobs the
wall clock measures the neighbours as much as the code, CPU time of a single
thread does not. ``--quick`` runs tiny models in seconds and writes elsewhere
(a temporary directory unless ``--out``); it is what the tests run.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from internvideo.models import hardware

from .cases import BUILDERS, Case, Workspace, cpu_cases, group_title
from .common import (
    LiveTensorPeak, load_average, machine_info, matmul_rate, median, peak_rss_mib, persistent_bytes, reset_peak_rss,
    rss_mib, time_alternating,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
PARITY_RTOL = 1e-4
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# What ``--isa`` sets before torch starts: another kind of CPU on this one.
FORCED_ISA = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def check_outputs(case: Case, runners: dict) -> dict[str, dict]:
    """fp32: every implementation of the same computation must match the reference. bf16: record errors.

    The bf16 error of an implementation is measured against the same model in
    fp32 (for ours_bf16_weights, which has no fp32 mode, the reference in fp32).
    """
    ref32 = runners["ref"].fp32_output() if case.precision == "bf16" else runners["ref"].output()
    report = {}
    for v in case.variants:
        r = runners[v.name]
        out = r.output()
        if case.precision == "fp32":
            if v.impl in ("ref", "ours_full"):
                continue  # ours_full computes more than the reference: nothing to match
            diff, scale = _max_abs(out, ref32), ref32.abs().max().item()
            if diff > PARITY_RTOL * max(1.0, scale):
                raise AssertionError(f"{case.name}/{v.name}: output differs from HF by {diff:.3g} (scale {scale:.3g})")
            report[v.name] = {"max_abs_diff_vs_ref": diff}
        else:
            base = r.fp32_output() if r.fp32_output is not None else ref32
            err, scale = _max_abs(out, base), base.abs().max().item()
            report[v.name] = {"bf16_max_abs_err": err, "bf16_rel_err": err / max(scale, 1e-12)}
    return report


def run_case(case: Case, ws: Workspace, reps: int, warmup: int, peak_size: int, clock: str) -> dict:
    """Check, then time one case. ``clock`` is ``wall`` or ``cpu`` (process CPU time, single-threaded runs only)."""
    runners = {v.name: BUILDERS[case.group](case, v, ws) for v in case.variants}
    accuracy = check_outputs(case, runners)
    if case.precision == "bf16" and ws.device.type == "cpu" and not hardware.cpu_bf16().native:
        peak_size = min(peak_size, 512)  # emulated bf16: a 2048-cubed matmul takes 10-30 s, and is no peak
    peak = matmul_rate(DTYPES[case.precision], ws.device, peak_size, cpu_clock=clock == "cpu")
    wall, cpu = time_alternating(runners, reps, warmup, ws.device)
    times = wall if clock == "wall" else cpu
    ref_median = median(times["ref"])
    variants = {}
    for v in case.variants:
        t = median(times[v.name])
        flops = case.extra_flops(v) or case.flops
        variants[v.name] = {
            "how": runners[v.name].how, "median_s": t, "wall_times_s": [round(x, 4) for x in wall[v.name]],
            "cpu_times_s": [round(x, 4) for x in cpu[v.name]],
            "flops": flops, "gflops": flops / t / 1e9, "pct_of_matmul_peak": 100 * flops / t / peak,
            "speedup_vs_ref": ref_median / t, **accuracy.get(v.name, {}),
        }
    del runners
    gc.collect()
    return {"name": case.name, "group": case.group, "precision": case.precision, "batch": case.batch,
            "size": case.size, "flops": case.flops, "matmul_peak_gflops": peak / 1e9, "matmul_peak_size": peak_size, "reps": reps, "clock": clock,
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": load_average(), "variants": variants}


# ----------------------------------------------------------------------------- memory (fresh processes)

def _import_both_sides() -> None:
    """Load the code of both implementations, so that their processes start from the same baseline."""
    import transformers
    for name in ("VideoMAEForVideoClassification", "VideoMAEForPreTraining", "CLIPVisionModelWithProjection"):
        getattr(transformers, name)  # transformers imports model code lazily
    import internvideo.checkpoints.clip  # noqa: F401


def child(case: Case, variant_name: str, ws: Workspace) -> dict:
    """Peak RSS of one implementation while it runs (after loading and one warm-up call).

    ``model_peak_mib`` is the peak above the process's baseline (interpreter,
    torch, transformers and our code, the same for both sides): weights,
    activations and workspace of this implementation alone. One more call then
    runs under :class:`LiveTensorPeak`: ``live_tensor_peak_mib`` is the tensor
    storage alive at the worst moment (weights, buffers and optimizer moments
    kept between calls, plus the peak of what the call allocates), which does
    not depend on the allocator and repeats exactly.
    """
    _import_both_sides()
    gc.collect()
    baseline = rss_mib()
    variant = next(v for v in case.variants if v.name == variant_name)
    runner = BUILDERS[case.group](case, variant, ws)
    runner.run()  # lazily allocated state (optimizer moments, caches) belongs to the steady state
    gc.collect()
    loaded = rss_mib()
    exact = reset_peak_rss()
    for _ in range(2):
        runner.run()
    peak = peak_rss_mib()
    tracker = LiveTensorPeak()
    with tracker:
        runner.run()
    live = (persistent_bytes(runner.state) + tracker.peak) / 2**20
    return {"baseline_mib": baseline, "rss_loaded_mib": loaded, "peak_rss_mib": peak,
            "model_peak_mib": peak - baseline, "peak_is_since_warmup": exact, "live_tensor_peak_mib": live}


def measure_memory(case: Case, ws: Workspace, quick: bool, runs: int) -> dict[str, dict]:
    """Median over ``runs`` fresh processes per implementation, interleaved.

    The high-water mark of the same program varies by a few tens of MiB from
    run to run (where the allocator happens to place large buffers), which is
    as much as some of the differences being measured.
    """
    samples: dict[str, list[dict]] = {v.name: [] for v in case.variants}
    for _ in range(runs):
        for v in case.variants:
            cmd = [sys.executable, "-m", "benchmarks.run", "--child", case.name, v.name, "--workdir", str(ws.root),
                   "--threads", str(torch.get_num_threads())] + (["--quick"] if quick else [])
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"memory child {case.name}/{v.name} failed:\n{proc.stderr[-3000:]}")
            samples[v.name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = {}
    for name, runs_ in samples.items():
        by_peak = sorted(runs_, key=lambda r: r["model_peak_mib"])
        out[name] = {**by_peak[len(by_peak) // 2], "model_peak_mib_runs": [r["model_peak_mib"] for r in runs_]}
    return out


# ----------------------------------------------------------------------------- data pipeline

def run_data_benchmark(out_dir: Path, clips: int) -> dict | None:
    """The data engineer's ``bench_data.py`` (decode + sample + augment per worker), if present."""
    if not (ROOT / "benchmarks" / "bench_data.py").exists():
        return None
    path = out_dir / "data.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_data", "--clips", str(clips), "--out", str(path)],
                   cwd=ROOT, check=True)
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- report

def _fmt_mib(mem: dict | None, key: str = "model_peak_mib") -> str:
    return "—" if not mem or key not in mem else f"{mem[key]:,.0f}"


def _fmt_err(v: dict) -> str:
    if "max_abs_diff_vs_ref" in v:
        return f"Δ vs HF {v['max_abs_diff_vs_ref']:.1e}"
    if "bf16_rel_err" in v:
        return f"{v['bf16_max_abs_err']:.1e} ({100 * v['bf16_rel_err']:.2f} %)"
    return "—"


_NAMES = {"ref": "HF transformers", "ours": "ours", "ours_bf16_weights": "ours",
          "ours_full": "ours, with InternVideo's video modules"}


def _capability(m: dict) -> str:
    if "cpu_capability" not in m:
        return ""  # recorded before capabilities were
    forced = m.get("forced") or {}
    how = f", forced with {' '.join(f'{k}={v}' for k, v in forced.items())}" if forced else ""
    return f"{m['bf16'][0].upper()}{m['bf16'][1:]}{how}."


def markdown(results: dict, data: dict | None) -> str:
    m = results["machine"]
    clock = ("process CPU time (one thread: on a shared machine, the time the work took on its core)"
             if results.get("clock") == "cpu" else "wall-clock time")
    lines = [
        f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs ({m['torch_threads']} torch threads), "
        f"{m.get('memory_gib')} GiB; flags {' '.join(m['cpu_flags_relevant'])}; torch {m['torch']}, "
        f"transformers {m.get('transformers')}, Python {m['python']}. {_capability(m)} "
        f"Recorded {results['date']}; load average during the run {results.get('load_average')}.",
        "",
        f"Times are medians of alternating runs, in {clock}; *vs HF* is HF's time over ours (higher is better); "
        "*% of peak* compares the achieved rate with the better of two square matmuls (2048³ and 1024³; "
        "512³ and 256³ for bf16 where it is emulated, a rate the model beats: its bf16 rows show none) of the same dtype "
        "timed just before; "
        "*peak memory* is the resident-set high-water mark of a fresh process running only that implementation "
        "(after loading and one warm-up call), less the same process's baseline before the model was built "
        "(interpreter, torch, transformers and our code: the same for both); the median of several such processes; "
        "*live tensors* is the tensor storage alive at the worst moment of one more call (weights, optimizer "
        "moments, activations, gradients, bf16 copies, scratch), counted operator by operator: exact and "
        "repeatable, what the resident set would be with an allocator that returned every freed page. "
        "Error: fp32 rows show the largest difference from HF; "
        "bf16 rows the largest difference from the same model in fp32 (relative to the largest output).",
        "",
    ]
    emulated = m.get("bf16_native") is False
    by_group: dict[str, list[dict]] = {}
    for case in results["cases"].values():
        by_group.setdefault(case["group"], []).append(case)
    for group, cases in by_group.items():
        with_memory = any("memory" in c for c in cases)
        with_live = any("live_tensor_peak_mib" in m for c in cases for m in c.get("memory", {}).values())
        memory_head = ("| peak memory (MiB) ", "|---") if with_memory else ("", "")
        if with_live:
            memory_head = (memory_head[0] + "| live tensors (MiB) ", memory_head[1] + "|---")
        lines += [f"### {group_title(group, results['size'])}", "",
                  "| precision | batch | implementation | time (s) | vs HF | GFLOP/s | % of peak "
                  + memory_head[0] + "| error |", "|---|---|---|---|---|---|---" + memory_head[1] + "|---|"]
        for case in sorted(cases, key=lambda c: (c["precision"] != "fp32", c["batch"])):
            for name, v in case["variants"].items():
                m = case.get("memory", {}).get(name)
                mem = f"| {_fmt_mib(m)} " if with_memory else ""
                mem += f"| {_fmt_mib(m, 'live_tensor_peak_mib')} " if with_live else ""
                # Against an emulated bf16 matmul the percentage means nothing (the model's matmuls take other paths).
                pct = "—" if case["precision"] == "bf16" and emulated else f"{v['pct_of_matmul_peak']:.0f} %"
                lines.append(
                    f"| {case['precision']} | {case['batch']} | {_NAMES.get(name, name)} ({v['how']}) | "
                    f"{v['median_s']:.3f} | {v['speedup_vs_ref']:.2f}× | {v['gflops']:.0f} | "
                    f"{pct} {mem}| {_fmt_err(v)} |")
        peaks: dict[str, list[float]] = {}
        for c in cases:
            peaks.setdefault(c["precision"], []).append(c["matmul_peak_gflops"])
        lines += ["", "Matmul peak measured with these rows (GFLOP/s): " + ", ".join(
            f"{p} {min(g):.0f}–{max(g):.0f}" if round(min(g)) != round(max(g)) else f"{p} {g[0]:.0f}"
            for p, g in sorted(peaks.items(), key=lambda kv: kv[0] != "fp32")) + ".", ""]
    if data and data.get("results"):
        # Columns as bench_data.py records them (its own file; its fields may change).
        columns = list(data["results"][0])
        lines += [f"### Data pipeline: {data.get('what', 'decode + sample + augment')}", "",
                  "| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|---" * len(columns) + "|"]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in data["results"]]
        lines += ["", "From `benchmarks/bench_data.py` (see `docs/data.md`).", ""]
    return "\n".join(lines)


def write_docs(path: Path, table: str, key: str = "cpu") -> None:
    """Replace the generated block ``key`` of ``path`` (kept: everything outside the markers)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    begin = f"<!-- results:{key}:begin (generated by python -m benchmarks.run) -->"
    end = f"<!-- results:{key}:end -->"
    block = f"{begin}\n\n{table}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny models, few repetitions: seconds, for tests")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="cases whose name contains any of these (e.g. videomae_infer pretrain_bf16 clip data)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per implementation (default 5, quick 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice, one per core)")
    p.add_argument("--isa", choices=sorted(FORCED_ISA), default=None,
                   help="run as on a CPU with only this instruction set (a child process with PyTorch limited to it)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU time, steadier on a shared machine; needs --threads 1 (spinning "
                   "threads would count)")
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurements")
    p.add_argument("--memory-runs", type=int, default=None, help="fresh processes per implementation, median "
                   "reported (default 3, quick 1)")
    p.add_argument("--data-clips", type=int, default=20, help="clips per data-pipeline configuration")
    p.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results; "
                   "quick: a temporary directory)")
    p.add_argument("--docs", type=Path, default=None, help="markdown file whose generated block is rewritten "
                   "(default docs/benchmarks.md; quick: none)")
    p.add_argument("--workdir", type=Path, default=None, help="where reference weights are saved (default: temporary)")
    p.add_argument("--report-only", action="store_true", help="rewrite the tables from the recorded JSON, run nothing")
    p.add_argument("--child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.isa and any(os.environ.get(k) != v for k, v in FORCED_ISA[args.isa].items()):
        # The limits must be set before torch loads its kernels: rerun in a child that starts with them.
        argv = sys.argv[1:] if argv is None else argv
        env = {**os.environ, **FORCED_ISA[args.isa]}
        subprocess.run([sys.executable, "-m", "benchmarks.run", *argv], cwd=ROOT, env=env, check=True)
        return {}
    size = "small" if args.quick else "full"
    cases = {c.name: c for c in cpu_cases(size)}
    device = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(cases[args.child[0]], args.child[1], Workspace(args.workdir, device))))
        return {}

    selected = [c for c in cases.values() if not args.only or any(s in c.name for s in args.only)]
    # The data pipeline does not depend on the instruction set limits of --isa.
    want_data = not args.quick and args.clock == "wall" and not args.isa and (not args.only or "data" in args.only)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="internvideo-bench-")) if args.quick else RESULTS)
    docs = args.docs or (None if args.quick else DOCS)
    reps = args.reps or (3 if args.quick else 5)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        raise SystemExit("--clock cpu needs --threads 1")
    # One results file (and docs block) per kind of run: full/quick, wall/cpu clock.
    key = ("cpu" + (f"-{args.isa}" if args.isa else "") + ("-1thread" if args.clock == "cpu" else "")
           + ("-quick" if args.quick else ""))
    json_path = out_dir / f"{key}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {"cases": {}}
    if args.report_only:
        if not results["cases"]:
            raise SystemExit(f"no recorded results in {json_path}")
        selected, want_data = [], False
    else:
        results.update(machine=machine_info(), date=time.strftime("%Y-%m-%d %H:%M"), size=size, clock=args.clock,
                       load_average=load_average())
    with tempfile.TemporaryDirectory(prefix="internvideo-bench-weights-") as tmp:
        ws = Workspace(args.workdir or Path(tmp), device)
        for case in selected:
            print(f"== {case.name}", flush=True)
            res = run_case(case, ws, reps, args.warmup, 256 if args.quick else 2048, args.clock)
            # Quick mode measures memory for the first case only: each fresh process costs seconds.
            if not args.no_memory and not (args.quick and case is not selected[0]):
                res["memory"] = measure_memory(case, ws, args.quick, args.memory_runs or (1 if args.quick else 3))
            elif "memory" in results["cases"].get(case.name, {}):
                res["memory"] = results["cases"][case.name]["memory"]  # memory does not depend on the timing run
            for name, v in res["variants"].items():
                mem = res.get("memory", {}).get(name)
                print(f"   {name:<18} {v['median_s']:8.3f} s  {v['speedup_vs_ref']:5.2f}x  {v['gflops']:7.1f} GFLOP/s "
                      f"({v['pct_of_matmul_peak']:3.0f} % of {res['matmul_peak_gflops']:.0f})  "
                      f"memory {_fmt_mib(mem)} MiB (live {_fmt_mib(mem, 'live_tensor_peak_mib')})  {_fmt_err(v)}",
                      flush=True)
            results["cases"][case.name] = res
            json_path.write_text(json.dumps(results, indent=1) + "\n")  # after every case: partial runs keep data
    data = run_data_benchmark(out_dir, args.data_clips) if want_data else None
    if data is None and (out_dir / "data.json").exists() and key == "cpu":
        data = json.loads((out_dir / "data.json").read_text())
    table = markdown(results, data)
    (out_dir / f"{key}.md").write_text(table + "\n")
    if docs is not None:
        write_docs(docs, table, key)
    print(f"wrote {json_path}" + (f" and {docs}" if docs else ""))
    return results


if __name__ == "__main__":
    main()
