"""Where the time goes: ``python -m benchmarks.profile CASE [VARIANT ...] [--quick] [--rows N]``.

Runs one benchmark case (names as in ``python -m benchmarks.run``) under
``torch.profiler`` after a warm-up call and prints the top operators by self
CPU time for each implementation (default: ``ref`` and ``ours``), as a markdown
table ready for ``docs/benchmarks.md``. Profiling adds overhead; read the
shares, not the absolute times.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from .cases import BUILDERS, Workspace, cpu_cases


def top_ops(runner_run, rows: int) -> str:
    runner_run()  # warm-up: lazily created state is not what we want to see
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        runner_run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    lines = ["| operator | self CPU (ms) | share | calls |", "|---|---|---|---|"]
    for e in events[:rows]:
        lines.append(f"| `{e.key}` | {e.self_cpu_time_total / 1e3:.1f} | {100 * e.self_cpu_time_total / total:.1f} % "
                     f"| {e.count} |")
    lines.append(f"| total | {total / 1e3:.1f} | 100 % | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    p.add_argument("case")
    p.add_argument("variants", nargs="*", default=["ref", "ours"])
    p.add_argument("--quick", action="store_true", help="the tiny models of --quick")
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = {c.name: c for c in cpu_cases("small" if args.quick else "full")}
    case = cases[args.case]
    with tempfile.TemporaryDirectory(prefix="internvideo-profile-") as tmp:
        ws = Workspace(Path(tmp), torch.device("cpu"))
        for name in args.variants:
            variant = next(v for v in case.variants if v.name == name)
            runner = BUILDERS[case.group](case, variant, ws)
            print(f"\n{case.name} / {name} ({runner.how}), {torch.get_num_threads()} threads\n")
            print(top_ops(runner.run, args.rows))
            del runner


if __name__ == "__main__":
    main()
