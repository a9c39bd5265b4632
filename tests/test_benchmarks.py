"""The benchmark scripts run at tiny sizes and produce their results; timings are never asserted.

The runner's ``--quick`` mode and the GPU script's ``--small`` mode (on this
CPU) run in subprocesses, as users run them; the FLOP formulas that every
GFLOP/s and MFU figure rests on are checked against PyTorch's FLOP counter.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ``benchmarks`` is a top-level folder of the repository, not part of the package

from benchmarks import cases, run  # noqa: E402


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_runner_writes_results_and_table(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nHand-written analysis stays.\n")
    # One tiny case: this tests the runner (timing, parity check, memory child, docs), not the speed.
    _run([sys.executable, "-m", "benchmarks.run", "--quick", "--reps", "1", "--only", "videomae_infer_fp32_b1",
          "--out", str(tmp_path), "--docs", str(docs)], tmp_path)
    results = json.loads((tmp_path / "cpu-quick.json").read_text())
    assert set(results["cases"]) == {"videomae_infer_fp32_b1"}
    machine = results["machine"]
    assert machine["torch"] == torch.__version__ and machine["logical_cpus"] >= 1 and "cpu_flags" in machine
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and "bf16" in machine
    variants = results["cases"]["videomae_infer_fp32_b1"]["variants"]
    assert {"ref", "ours"} <= set(variants)
    assert all(v["median_s"] > 0 and v["gflops"] > 0 for v in variants.values())
    # fp32: the runner refuses to time implementations that differ; the recorded difference is tiny.
    assert variants["ours"]["max_abs_diff_vs_ref"] < 1e-3
    # Memory is measured in fresh processes for the first case (quick mode).
    memory = results["cases"]["videomae_infer_fp32_b1"]["memory"]
    assert memory["ref"]["model_peak_mib"] > 0 and memory["ours"]["model_peak_mib"] > 0
    assert memory["ref"]["live_tensor_peak_mib"] > 0 and memory["ours"]["live_tensor_peak_mib"] > 0
    text = docs.read_text()
    assert "Hand-written analysis stays." in text
    assert "| precision | batch | implementation |" in text and "HF transformers" in text
    # Rewriting replaces the generated block instead of appending another.
    run.write_docs(docs, "new table", "cpu-quick")
    text = docs.read_text()
    assert text.count("results:cpu-quick:begin") == 1
    assert "new table" in text and "Hand-written analysis stays." in text


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 instruction set limits")
def test_runner_forced_avx2_records_the_cpu_kind(tmp_path):
    docs = tmp_path / "benchmarks.md"
    _run([sys.executable, "-m", "benchmarks.run", "--quick", "--isa", "avx2", "--reps", "1", "--no-memory",
          "--only", "videomae_infer_bf16_b1", "--out", str(tmp_path), "--docs", str(docs)], tmp_path)
    results = json.loads((tmp_path / "cpu-avx2-quick.json").read_text())
    machine = results["machine"]
    # Emulated bf16 is slow, not wrong: the same accuracy against fp32.
    assert all(v["bf16_rel_err"] < 0.05 for v in results["cases"]["videomae_infer_bf16_b1"]["variants"].values())
    assert machine["cpu_capability"] == "AVX2" and machine["bf16_native"] is False
    assert machine["forced"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    text = docs.read_text()
    assert "Emulated bf16 (PyTorch CPU capability AVX2), forced with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" in text
    assert "| bf16 | 1 | ours (bf16 autocast) |" in text and "| — |" in text  # no % of an emulated peak


def test_gpu_script_small_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    _run(["bash", "benchmarks/gpu.sh", "--small", "--no-compile", "--reps", "1", "--warmup", "1", "--out", str(out)],
         tmp_path)
    results = json.loads(out.read_text())
    assert set(results["cases"]) == {"videomae_inference_bf16_b2", "videomae_pretrain_bf16_b2", "clip_video_bf16_b1"}
    for case in results["cases"].values():
        assert set(case["variants"]) == {"ref", "ours"}
    assert "| implementation | time (ms) | vs HF |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_gpu_script_small_compiled_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    _run(["bash", "benchmarks/gpu.sh", "--small", "--reps", "1", "--warmup", "1", "--out", str(out)], tmp_path)
    variants = json.loads(out.read_text())["cases"]["clip_video_bf16_b1"]["variants"]
    assert {"ref_compiled", "ours_compiled"} <= set(variants)


# ----------------------------------------------------------------------------- FLOP formulas

def _counted(model: torch.nn.Module, *inputs) -> int:
    # The math SDPA backend decomposes attention into matmuls, which the counter sees.
    model.eval().requires_grad_(False)
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(*inputs)
    return counter.get_total_flops()


def test_flop_formulas_match_the_flop_counter():
    import internvideo
    from internvideo.models.video_clip import InternVideoMMConfig, VideoEncoder
    from internvideo.models.videomae import tube_mask
    s = cases.SIZES["small"]
    dims = dict(img_size=s.img, patch_size=s.patch, num_frames=s.frames, embed_dim=s.width, depth=s.depth,
                num_heads=s.heads)
    v = cases.video(2, s.frames, s.img)
    clf = internvideo.create_model("videomae_tiny", num_classes=s.num_classes, **dims)
    assert _counted(clf, v) == cases.videomae_inference_flops(s, 2)

    mae = internvideo.create_model("videomae_tiny_pretrain", decoder_embed_dim=s.dec_width,
                                   decoder_depth=s.dec_depth, decoder_num_heads=s.dec_heads, **dims)
    mask = tube_mask(2, mae.config.grid, s.mask_ratio)
    # The formula counts a training step as 3x the forward.
    assert 3 * _counted(mae, v, mask) == cases.videomae_pretrain_flops(s, 2)

    clip_video = cases.video(2, s.clip_frames, s.img)
    for full in (False, True):
        cfg = InternVideoMMConfig(img_size=s.img, patch_size=s.patch, num_frames=s.clip_frames, vision_width=s.width,
                                  vision_layers=s.depth, vision_heads=s.heads, embed_dim=512, use_local=full,
                                  num_global_layers=s.global_layers if full else 0)
        assert _counted(VideoEncoder(cfg), clip_video) == cases.clip_flops(s, 2, video_modules=full)


def test_live_tensor_peak_counts_new_storage_until_freed():
    from benchmarks.common import LiveTensorPeak, persistent_bytes
    kept = torch.zeros(256, 1024)  # 1 MiB from before: its views and in-place results are not new
    tracker = LiveTensorPeak()
    with tracker:
        transient = torch.ones(512, 1024)  # 2 MiB, freed below
        kept.add_(transient[:256])
        view = kept.view(-1)
        copy = kept.t().contiguous()  # 1 MiB, kept
        del transient
    assert tracker.peak == 3 * 2**20 and tracker.current == 2**20
    del copy, view
    assert tracker.current == 0
    lin = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.ones(1, 4)).sum().backward()
    opt.step()
    assert persistent_bytes({"model": lin, "opt": opt}) == 4 * (3 * (8 + 2)) + 4 * 2  # params, 2 moments, steps
    lin.table = torch.zeros(16)  # a plain tensor attribute is kept between calls too
    assert persistent_bytes({"model": lin}) == 4 * (8 + 2) + 4 * 16
