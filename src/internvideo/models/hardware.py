"""Whether this CPU computes bf16 natively: decided once per process, used by speed paths and precision choices.

PyTorch's bf16 matmuls on CPU (oneDNN) are fast only where the CPU has bf16
dot-product instructions (AVX-512 BF16, AMX): there they run 3-5x faster than
fp32. Elsewhere they are emulated: ~0.4x fp32 with AVX-512 but no BF16, and
0.002-0.05x on AVX2-only CPUs. A bf16 speed path or a bf16 default that wins on
one kind of CPU therefore loses badly on another.

``torch.backends.cpu.get_cpu_capability()`` names the vector ISA of ATen's own
kernels but not bf16 support ("AVX512" covers CPUs with and without it), so
where it allows native bf16 a short matmul probe (5-35 ms, once per process) decides.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

# Capabilities whose CPUs (or forced settings) have no native bf16 GEMM: no probe needed.
_EMULATED_CAPABILITIES = ("NO AVX", "DEFAULT", "AVX2")
# bf16 must beat fp32 by this much to count as native: the probe measures 1.8-2.0x with AVX-512 BF16 (a 2-core
# AMD EPYC), ~0.4x with AVX-512 but no BF16 and ~0.05x on AVX2 (both forced there through oneDNN's ISA limit).
_NATIVE_SPEEDUP = 1.5


@dataclass(frozen=True)
class Bf16Support:
    """``native``: bf16 matmuls are faster than fp32 here. ``speedup``: bf16 over fp32 matmul rate, if probed."""

    native: bool
    capability: str
    speedup: float | None = None

    def describe(self) -> str:
        measured = f", bf16 matmul {self.speedup:.3g}x the fp32 rate" if self.speedup is not None else ""
        return f"{'native' if self.native else 'emulated'} bf16 (PyTorch CPU capability {self.capability}{measured})"


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def probe_bf16_speedup(n: int = 256, reps: int = 5) -> float:
    """bf16 over fp32 rate of an ``n``-cubed matmul on one thread, the best of ``reps`` alternating calls each.

    One thread because with several, a neighbour's job on one core stalls the
    whole multi-threaded call (and oneDNN may run a small bf16 matmul on fewer
    threads than MKL's fp32 one); the best of alternating calls because a busy
    machine slows calls, never speeds them up. About 5 ms where bf16 is native.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            fp32 = torch.randn(n, n), torch.randn(n, n)
            bf16 = fp32[0].bfloat16(), fp32[1].bfloat16()
            best = {}
            for _ in range(reps + 1):  # the first round warms up (packing buffers, kernel selection)
                for a, b in (fp32, bf16):
                    start = time.perf_counter()
                    torch.mm(a, b)
                    best[a.dtype] = min(best.get(a.dtype, float("inf")), time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32] / best[torch.bfloat16]


@functools.cache
def cpu_bf16() -> Bf16Support:
    """How this process's CPU does bf16, probed on first use and cached (``cpu_bf16.cache_clear()`` re-probes)."""
    capability = cpu_capability()
    if capability in _EMULATED_CAPABILITIES:
        return Bf16Support(native=False, capability=capability)
    speedup = probe_bf16_speedup()
    return Bf16Support(native=speedup >= _NATIVE_SPEEDUP, capability=capability, speedup=speedup)


def default_precision(device: torch.device | str = "cpu") -> str:
    """``"bf16"`` where it is native (a CUDA GPU that supports it, a CPU with native bf16), else ``"fp32"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_bf16().native else "fp32"
    return "fp32"


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"auto"`` becomes :func:`default_precision`; ``"bf16"`` on a CPU that emulates it is logged as a warning."""
    if precision == "auto":
        return default_precision(device)
    if precision == "bf16":
        warn_if_bf16_emulated(device)
    return precision


def warn_if_bf16_emulated(device: torch.device | str = "cpu") -> bool:
    """Log, once per process and in one line, that bf16 on this CPU is emulated and fp32 would be faster.

    True if bf16 is emulated here (whether or not this call was the one that logged).
    """
    if torch.device(device).type != "cpu":
        return False
    support = cpu_bf16()
    if support.native:
        return False
    slower = f", bf16 matmuls measured {1 / support.speedup:.3g}x slower than fp32" if support.speedup else ""
    _log_once(f"bf16 requested, but this CPU emulates it (PyTorch CPU capability {support.capability}{slower}): "
              "fp32 will be faster")
    return True


@functools.cache
def _log_once(message: str) -> None:
    log.warning(message)
