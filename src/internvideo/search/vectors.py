"""FAISS indexes over normalised embeddings (inner product = cosine).

Kinds:

* ``flat`` (default): exhaustive search over float32 vectors; exact.
* ``flat16``: exhaustive search over vectors stored as float16: half the
  memory, and faster where search is bound by memory bandwidth (a single query
  over 1M x 512 vectors reads 2 GB in float32). Every vector is scored;
  scores differ from float32 by about 1e-3, so only near-ties can swap.
* ``ivf``: inverted file (k-means lists, ``nlist ~ sqrt(N)``, trained on at
  most 64 points per list so that 1M vectors train in seconds, not minutes);
  a query scans the ``nprobe`` nearest lists.
* ``hnsw``: a navigable small-world graph (M = 32); a query explores
  ``efSearch`` candidates.

Approximate kinds are tuned when built: ``nprobe`` / ``efSearch`` is doubled
until recall@10 against exact search reaches ``target_recall`` on queries
made from stored vectors plus noise; the recall reached is recorded and
reported, as is recall for ``flat16``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from .. import fileio
from ..fileio import atomic_path
from ..errors import UsageError

log = logging.getLogger("internvideo.search")

Kind = Literal["flat", "flat16", "ivf", "hnsw"]
KINDS: tuple[str, ...] = ("flat", "flat16", "ivf", "hnsw")
HNSW_M = 32


@dataclasses.dataclass
class VectorIndex:
    """A FAISS index with the settings it is searched with."""

    index: faiss.Index
    kind: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)  # nlist, nprobe, ef_search, recall_at_10

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and window ids ``(nq, k)``, best first; missing results have id -1 and score -inf."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), max(self.ntotal, 1)))
        scores, ids = self.index.search(q, k)
        scores = np.where(ids < 0, -np.inf, scores)
        return scores, ids


def _apply_params(vi: VectorIndex) -> None:
    if vi.kind == "ivf":
        faiss.extract_index_ivf(vi.index).nprobe = int(vi.params["nprobe"])
    elif vi.kind == "hnsw":
        faiss.downcast_index(faiss.downcast_index(vi.index).index).hnsw.efSearch = int(vi.params["ef_search"])


def _empty(kind: str, dim: int, n: int, seed: int) -> tuple[faiss.Index, dict[str, Any]]:
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), {}
    if kind == "flat16":
        return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                            faiss.METRIC_INNER_PRODUCT)), {}
    if kind == "ivf":
        # sqrt(N) lists: a query costs about nprobe * sqrt(N) vector reads; k-means wants >= 39 points a list.
        nlist = max(1, min(int(math.sqrt(max(n, 1))), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        return index, {"nlist": nlist, "nprobe": 1}
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(inner), {"m": HNSW_M, "ef_search": 16}
    raise UsageError(f"index kind must be one of {', '.join(KINDS)}, not {kind!r}")


def tuning_queries(x: np.ndarray, count: int = 200, noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """Queries near the data: stored vectors plus Gaussian noise of norm ~``noise``, renormalised.

    With noise 2 a query is at cosine ~0.45 from the vector it came from, about as far as a text query
    from the video it describes; near-duplicate queries would be too easy and under-tune the index.
    """
    rng = np.random.default_rng(seed)
    pick = x[rng.choice(len(x), size=min(count, len(x)), replace=False)]
    q = pick + rng.standard_normal(pick.shape, dtype=np.float32) * (noise / math.sqrt(x.shape[1]))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each query's true top-``k`` ids that ``found``'s top-``k`` contains, in percent."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1}) / max(1, len(set(t[:k].tolist()) - {-1}))
            for f, t in zip(found, truth)]
    return 100.0 * float(np.mean(hits)) if hits else 100.0


def build(ids: np.ndarray, x: np.ndarray, kind: Kind = "flat", *, target_recall: float = 95.0,
          seed: int = 0) -> VectorIndex:
    """An index of ``kind`` over ``x (N, D)`` (normalised) with FAISS ids ``ids``; approximate kinds tuned."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    index, params = _empty(kind, dim, n, seed)
    if kind == "ivf" and n:
        rng = np.random.default_rng(seed)
        sample = x if n <= 64 * params["nlist"] else x[rng.choice(n, size=64 * params["nlist"], replace=False)]
        index.train(sample)
    elif not index.is_trained:
        index.train(x[:1])
    if n:
        index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
    vi = VectorIndex(index, kind, params)
    if kind != "flat" and n:
        tune(vi, x, ids, target_recall=target_recall, seed=seed)
    return vi


def tune(vi: VectorIndex, x: np.ndarray, ids: np.ndarray, *, target_recall: float = 95.0, k: int = 10,
         seed: int = 0) -> float:
    """Raise ``nprobe`` / ``efSearch`` until recall@k vs exact reaches ``target_recall`` (percent); returns it."""
    q = tuning_queries(x, seed=seed)
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    _, truth_rows = exact.search(q, min(k, len(x)))
    truth = ids[truth_rows]
    knob, top = {"ivf": ("nprobe", vi.params.get("nlist", 1)), "hnsw": ("ef_search", 4096)}.get(vi.kind, (None, 0))
    while True:
        _apply_params(vi)
        recall = recall_at_k(vi.search(q, k)[1], truth, k)
        if knob is None or recall >= target_recall or vi.params[knob] >= top:
            break
        vi.params[knob] = min(top, vi.params[knob] * 2)
    vi.params["recall_at_10"] = round(recall, 2)
    return recall


def save(vi: VectorIndex, index_dir: str | os.PathLike, generation: int, vectors_name: str, meta_name: str) -> None:
    """Write the FAISS file and its JSON beside it, each through a temporary file and a rename."""
    d = Path(index_dir)
    with atomic_path(d / vectors_name) as tmp:
        faiss.write_index(vi.index, str(tmp))
    fileio.write_json(d / meta_name, {"kind": vi.kind, "generation": generation, "ntotal": vi.ntotal, **vi.params})


def load(index_dir: str | os.PathLike, vectors_name: str, meta_name: str) -> tuple[VectorIndex, int] | None:
    """The saved index and the generation it was built from; None when there is none."""
    d = Path(index_dir)
    if not (d / vectors_name).exists() or not (d / meta_name).exists():
        return None
    meta = json.loads((d / meta_name).read_text(encoding="utf-8"))
    kind = meta.pop("kind")
    generation = int(meta.pop("generation"))
    meta.pop("ntotal", None)
    vi = VectorIndex(faiss.read_index(str(d / vectors_name)), kind, meta)
    _apply_params(vi)
    return vi, generation
