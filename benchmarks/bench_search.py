"""Search speed: ``python -m benchmarks.bench_search [--sizes 10000 1000000] [--threads 2] [--quick]``.

* **query latency**: median and p95 over single queries (one at a time, as a
  user types them) of the vector search, for N random 512-d unit vectors
  (uniform on the sphere: the hardest case for approximate search, since no
  vector has a near neighbour) in each index kind; for the approximate kinds a
  sweep of ``nprobe`` / ``efSearch`` with recall@10 against exact search on
  the same random queries. Text encoding of the query (prompt ensemble of 4,
  i.e. one batch of 4 prompts) is timed separately for the tiny model and for
  the ViT-B/16-sized text tower: latency = text encode + search.
* **indexing throughput**: windows/s of ``build_index`` over synthetic videos
  with the tiny model and, on a few windows, with ``internvideo_mm_b16``
  (8 frames at 224 px), fp32 and bf16 where the CPU has it.

Results go to ``benchmarks/results/search.json`` (``--quick``: a temporary
file) with the machine (CPU model, flags, ``torch.backends.cpu.get_cpu_capability()``,
load average, which matters on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

import internvideo  # noqa: E402
from internvideo.tasks import common  # noqa: E402
from internvideo.search import build_index, vectors  # noqa: E402
from internvideo.search.index import auto_precision  # noqa: E402
from internvideo.search.query import SEARCH_TEMPLATES  # noqa: E402

from .common import load_average, machine_info  # noqa: E402


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, 100_000):  # in chunks: no float64 temporaries of the whole array
        block = rng.standard_normal((min(100_000, n - i), d), dtype=np.float32)
        out[i:i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _clustered(n: int, d: int, seed: int, centres: int = 1000) -> np.ndarray:
    """Unit vectors around ``centres`` random directions (cosine ~0.5 to their centre), like embeddings of
    a collection with recurring scenes; queries drawn the same way have near neighbours, as real ones do."""
    rng = np.random.default_rng(1234)  # the same centres for data and queries
    c = _unit(centres, d, seed=1234)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        block = c[rng.integers(centres, size=m)] + rng.standard_normal((m, d), dtype=np.float32) / np.sqrt(d) * 1.7
        out[i:i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _latency(fn, queries: np.ndarray, warmup: int = 3) -> dict[str, float]:
    """Wall clock and process CPU time per single query: on a machine shared with other jobs the wall
    clock also measures the neighbours, CPU time (summed over our threads) much less so."""
    for q in queries[:warmup]:
        fn(q[None])
    wall, cpu = [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(q[None])
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)

    def p95(v: list[float]) -> float:
        return sorted(v)[min(len(v) - 1, int(0.95 * len(v)))]

    return {"median_ms": round(statistics.median(wall), 3), "p95_ms": round(p95(wall), 3),
            "cpu_median_ms": round(statistics.median(cpu), 3), "cpu_p95_ms": round(p95(cpu), 3)}


def bench_vectors(n: int, dim: int, num_queries: int, kinds: list[str], data: str = "uniform") -> list[dict]:
    make = _unit if data == "uniform" else _clustered
    x = make(n, dim, seed=0)
    ids = np.arange(n, dtype=np.int64)
    queries = make(num_queries if n <= 100_000 else max(20, num_queries // 3), dim, seed=1)
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    truth = exact.search(queries, 10)[1]
    del exact
    rows = []
    for kind in kinds:
        if kind == "hnsw" and n > 200_000:
            rows.append({"n": n, "data": data, "kind": kind, "skipped": "graph build over 1M x 512 takes too long on 2 cores"})
            continue
        t0 = time.perf_counter()
        vi = vectors.build(ids, x, kind)
        build_s = time.perf_counter() - t0
        tuned = dict(vi.params)  # what build() chose on its own tuning queries (stored vectors + noise)
        knob = {"ivf": "nprobe", "hnsw": "ef_search"}.get(kind)
        settings = [None]
        if knob == "nprobe":
            settings = [p for p in (1, 4, 16, 32, 64, 128, 256, 512) if p < vi.params["nlist"]] + [vi.params["nlist"]]
        elif knob == "ef_search":
            settings = [16, 32, 64, 128, 256, 512]
        for value in settings:
            if knob is not None:
                vi.params[knob] = value
                vectors._apply_params(vi)
            found = vi.search(queries, 10)[1]
            row = {"n": n, "data": data, "kind": kind, "build_s": round(build_s, 2),
                   "recall_at_10": round(vectors.recall_at_k(found, truth), 2),
                   **_latency(lambda q: vi.search(q, 10), queries)}
            if knob is not None:
                row[knob] = value
            row["built_with"] = tuned
            rows.append(row)
            print(json.dumps(row), flush=True)
        del vi
    return rows


def bench_text(names: list[str], reps: int = 20) -> list[dict]:
    rows = []
    tok_cache: dict[int, object] = {}
    for name in names:
        torch.manual_seed(0)
        model = internvideo.create_model(name).eval()
        ctx = model.config.context_length
        tokenizer = tok_cache.setdefault(ctx, internvideo.get_tokenizer("clip", context_length=ctx))
        prompts = [t.replace("{}", "a dog catching a frisbee") for t in SEARCH_TEMPLATES]
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and auto_precision(torch.device("cpu")) != "bf16":
                continue
            full = tokenizer(prompts)
            # What the Searcher runs: padding after the longest prompt trimmed (same result, causal text tower).
            trimmed = full[:, :int((full != 0).sum(dim=1).max())]
            for tokens, ids in (("padded to context", full), ("trimmed", trimmed)):
                with common.inference(model, torch.device("cpu"), precision):
                    timing = _latency(lambda q: model.encode_text(ids), np.zeros((reps, 1), dtype=np.float32))
                rows.append({"model": name, "precision": precision, "prompts": len(prompts), "tokens": tokens,
                             "length": int(ids.shape[1]), **timing})
                print(json.dumps(rows[-1]), flush=True)
        del model
    return rows


def bench_indexing(work: Path, big: bool) -> list[dict]:
    from internvideo.data import make_world

    world = make_world(work / "world", num_videos=40, seed=0, size=64, num_frames=16, num_long=2, num_ava=0,
                       num_images=0)
    rows = []
    cases = [("internvideo_mm_tiny", world.root / "videos", 1.0, 0.5)]
    if big:
        cases.append(("internvideo_mm_b16", world.root / "localization", 4.0, 4.0))
    for name, folder, window, stride in cases:
        torch.manual_seed(0)
        model = internvideo.create_model(name)
        precisions = ["fp32"] + (["bf16"] if auto_precision(torch.device("cpu")) == "bf16" else [])
        for precision in precisions:
            out = work / f"idx_{name}_{precision}"
            summary = build_index(model, folder, out, window=window, stride=stride, precision=precision,
                                  progress=False, batch_size=16 if "tiny" in name else 4)
            rows.append({"model": name, "precision": precision, "videos": summary["videos"],
                         "windows": summary["new_windows"], "seconds": summary["seconds"],
                         "windows_per_s": summary["windows_per_s"]})
            print(json.dumps(rows[-1]), flush=True)
        del model
    return rows


DOCS = ROOT / "docs" / "search.md"
MARK_START, MARK_END = "<!-- search-bench -->", "<!-- /search-bench -->"


def _ms(row: dict, key: str) -> str:
    return f"{row[key + 'median_ms']:.1f} / {row[key + 'p95_ms']:.1f}"


def report(results: dict) -> str:
    """Markdown tables of a results dict (what goes between the markers in docs/search.md)."""
    m = results["machine"]
    lines = [f"Machine: {m.get('cpu_model')}, {m.get('logical_cpus')} logical CPUs, "
             f"`torch.backends.cpu.get_cpu_capability()` = `{m.get('cpu_capability')}`, flags "
             f"{', '.join(m.get('cpu_flags_relevant', []))}; faiss {m.get('faiss')}, torch {m.get('torch')}, "
             f"{m.get('threads')} threads; load average before/after {m.get('load_before')} / {m.get('load_after')}.",
             "", "Vector search, one query at a time (k = 10):", "",
             "| vectors | data | index | setting | recall@10 (%) | CPU ms median / p95 | wall ms median / p95 | build (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["vectors"]:
        if "skipped" in r:
            lines.append(f"| {r['n']:,} | {r['data']} | {r['kind']} | - | not run: {r['skipped']} | | | |")
            continue
        knob = "nprobe" if "nprobe" in r else "ef_search" if "ef_search" in r else None
        setting = f"{knob} {r[knob]}" if knob else "-"
        if knob and r["built_with"].get(knob) == r[knob]:
            setting += " (tuned)"
        lines.append(f"| {r['n']:,} | {r['data']} | {r['kind']} | {setting} | {r['recall_at_10']:.1f} | "
                     f"{_ms(r, 'cpu_')} | {_ms(r, '')} | {r['build_s']:.1f} |")
    if results.get("text"):
        lines += ["", "Query text encoding (4 prompts of the ensemble in one batch):", "",
                  "| model | precision | tokens | CPU ms median / p95 | wall ms median / p95 |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['precision']} | {r.get('tokens', 'padded to context')}, {r.get('length', 77)} | "
                  f"{_ms(r, 'cpu_') if 'cpu_median_ms' in r else 'not measured'} | {_ms(r, '')} |"
                  for r in results["text"]]
    if results.get("indexing"):
        lines += ["", "Indexing throughput (decode + embed + store, synthetic 64 px videos):", "",
                  "| model | precision | videos | windows | seconds | windows/s |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['precision']} | {r['videos']} | {r['windows']} | {r['seconds']:.1f} | "
                  f"{r['windows_per_s']} |" for r in results["indexing"]]
    return "\n".join(lines)


def write_report(results: dict, docs: Path = DOCS) -> None:
    text = docs.read_text(encoding="utf-8")
    start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    docs.write_text(text[:start] + "\n" + report(results) + "\n" + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--kinds", nargs="+", default=["flat", "flat16", "ivf", "hnsw"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", nargs="+", default=["uniform", "clustered"], choices=["uniform", "clustered"],
                   help="vector distributions (clustered: approximate kinds only)")
    p.add_argument("--quick", action="store_true", help="small sizes, tiny model only; writes to a temporary file")
    p.add_argument("--skip-indexing", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--report-only", action="store_true", help="rewrite docs/search.md's tables from the JSON")
    args = p.parse_args(argv)
    if args.report_only:
        write_report(json.loads(Path(args.out or RESULTS / "search.json").read_text()))
        return 0
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    if args.quick:
        args.sizes, args.queries = [2000], 20
    info = machine_info()
    info.pop("cpu_flags", None)
    results = {"machine": {**info, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                           "faiss": faiss.__version__, "threads": args.threads, "load_before": load_average()},
               "vectors": [], "text": [], "indexing": []}
    for data in args.data:
        kinds = args.kinds if data == "uniform" else [k for k in args.kinds if k in ("ivf", "hnsw")]
        for n in args.sizes:
            results["vectors"] += bench_vectors(n, args.dim, args.queries, kinds, data)
    results["text"] = bench_text(["internvideo_mm_tiny"] + ([] if args.quick else ["internvideo_mm_b16"]))
    if not args.skip_indexing:
        with tempfile.TemporaryDirectory() as tmp:
            results["indexing"] = bench_indexing(Path(tmp), big=not args.quick)
    results["machine"]["load_after"] = load_average()
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / "search_quick.json" if args.quick
                                           else RESULTS / "search.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {out}")
    if not args.quick:
        write_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
