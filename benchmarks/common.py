"""Measurement tools shared by the CPU runner (``run.py``) and the GPU script (``gpu.py``).

Timing alternates the implementations inside one process (ours, ref, ref, ours,
...) so that a slow spell of a shared machine hits both, and reports medians.
Achieved FLOP rates are compared with a plain matmul timed in the same run, the
machine's practical peak at that moment. Peak memory is measured per
implementation in a fresh process (see ``run.py``), because a high-water mark
can only go up within one process.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass
class Runner:
    """One implementation of one benchmark case, ready to run.

    ``run`` is the timed call. ``output`` returns the result compared across
    implementations (logits, embeddings, a loss), computed without changing any
    state; ``fp32_output`` is the same model's output in fp32, the yardstick of
    bf16 accuracy. ``how`` says in words what runs (shown in the tables).
    """

    run: Callable[[], object]
    output: Callable[[], torch.Tensor]
    how: str
    fp32_output: Callable[[], torch.Tensor] | None = None
    state: dict = field(default_factory=dict)  # keeps models alive while the runner is


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alternating(runners: dict[str, Runner], reps: int, warmup: int, device: torch.device
                     ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call of every runner, interleaved: each repetition runs all of them, in alternating order.

    Returns wall-clock times and process CPU times. On a shared machine the CPU
    time is the steadier of the two, but it also counts threads that spin while
    waiting, so the tables report wall time.
    """
    for runner in runners.values():
        for _ in range(warmup):
            runner.run()
    synchronize(device)
    names = list(runners)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            runners[name].run()
            synchronize(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int, reps: int = 5, cpu_clock: bool = False
                ) -> float:
    """The practical peak for ``dtype``: FLOP/s of square matmuls of ``size`` and ``size // 2``, the better median.

    Two sizes because the best one depends on the threads and caches: with two
    threads here a 1024³ fp32 matmul runs ~5 % faster than a 2048³ one.
    """
    rates = []
    for n in (size, size // 2):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        runner = Runner(lambda a=a, b=b: a @ b, lambda a=a: a, "mm")
        wall, cpu = time_alternating({"mm": runner}, reps, warmup=2, device=device)
        rates.append(2 * n ** 3 / median((cpu if cpu_clock else wall)["mm"]))
    return max(rates)


# ----------------------------------------------------------------------------- machine

_INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                      "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo() -> dict[str, str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    info = {}
    for line in text.split("\n\n")[0].splitlines():  # the first processor describes them all
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


# Settings that make PyTorch use less of the CPU than it has (recorded: results under them are of another CPU kind).
FORCING_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "INTERNVIDEO_CPU_BF16_ATTENTION")


def machine_info(device: torch.device | None = None) -> dict:
    """Cores, CPU model and flags, PyTorch's CPU capability and bf16 support, library versions; the GPU if used."""
    from internvideo.models import hardware

    cpu = _cpuinfo()
    flags = cpu.get("flags", "").split()
    bf16 = hardware.cpu_bf16()
    info = {
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_capability": bf16.capability,
        "bf16_native": bf16.native,
        "bf16_probe_speedup": bf16.speedup,
        "bf16": bf16.describe(),
        "forced": {k: os.environ[k] for k in FORCING_ENV if k in os.environ},
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags_relevant": [f for f in _INTERESTING_FLAGS if f in flags],
        "cpu_flags": flags,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
        if hasattr(os, "sysconf") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onednn": torch.backends.mkldnn.version() if hasattr(torch.backends.mkldnn, "version") else None,
        "platform": platform.platform(),
    }
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2 ** 30, 1)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> list[float] | None:
    """1/5/15-minute load; above the core count, other work shared the CPU while we measured."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------- memory

def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Restart the resident-set high-water mark (Linux: ``clear_refs`` 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """High-water resident set since the last :func:`reset_peak_rss` (or since start)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def _storage_bytes(tensors) -> dict[int, int]:
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors
            if isinstance(t, torch.Tensor) and t.device.type != "meta"}


def persistent_bytes(state: dict) -> int:
    """Bytes of the tensors a runner keeps between calls: parameters, buffers, optimizer moments.

    Tensors held as plain module attributes count too (HF keeps VideoMAE's
    sin/cos position tables that way, where ours are buffers).
    """
    storages: dict[int, int] = {}
    for obj in state.values():
        if isinstance(obj, torch.nn.Module):
            storages.update(_storage_bytes(obj.parameters()))
            storages.update(_storage_bytes(obj.buffers()))
            for module in obj.modules():
                storages.update(_storage_bytes(vars(module).values()))
        elif isinstance(obj, torch.optim.Optimizer):
            for per_param in obj.state.values():
                storages.update(_storage_bytes(per_param.values()))
    return sum(storages.values())


class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of tensor storage allocated inside the ``with`` block and still alive.

    Every operator's outputs are seen below autograd and autocast, so bf16
    copies of weights, saved activations, gradients and scratch buffers all
    count; a view, an in-place result or an ``out=`` result shares an input's
    storage and is not new. Storage is counted until it is freed (a weak
    reference on the storage), so the number is the live-tensor high-water mark,
    independent of how the allocator reuses or returns pages: the part of the
    resident set that the code decides, repeatable to the byte.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _freed(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = _storage_bytes(pytree.tree_leaves((args, kwargs)))
        for t in pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes and key not in inputs and key not in self.live:
                self.live[key] = nbytes
                self.current += nbytes
                weakref.finalize(storage, self._freed, key)
        self.peak = max(self.peak, self.current)
        return out
