"""``internvideo search INDEX_DIR "a dog catching a frisbee" [-k 10] [--json]``.

A query is embedded as zero-shot recognition embeds a class name: each
phrasing is put into every prompt template, the prompts are embedded and
normalised, averaged and normalised again (several phrasings may be given;
they are averaged too). Windows are ranked by cosine similarity to it.

The index remembers the model it was built with (path and a fingerprint of
its weights); the same model is loaded to embed queries, and a model given
with ``--model`` must be the same one.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..tasks import common
from ..tasks.metrics import check_finite
from ..tasks.zeroshot import read_templates, zeroshot_classifier
from . import vectors
from .index import check_model, model_record
from .store import VECTORS_META, VECTORS_NAME, SearchIndexError, Store
from .. import argtypes
from ..fileio import printable

log = logging.getLogger("internvideo.search")

#: Prompt templates for a query; ``{}`` is the query. Plain text first: most queries are already a description.
SEARCH_TEMPLATES: tuple[str, ...] = ("{}", "a video of {}.", "a clip of {}.", "a video showing {}.")
MAX_QUERY_CHARS = 500
MAX_K = 100

__all__ = ["SEARCH_TEMPLATES", "Hit", "Searcher", "NotServed", "add_arguments", "main"]


class NotServed(Exception):
    """A file the server must not send: ``status`` 404 (unknown, gone, outside the folder) or 409 (changed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result: a window of a video, its cosine similarity to the query and its rank (1 = best)."""

    rank: int
    id: int  # the window's id (its thumbnail is /thumb/<id>)
    video_id: int  # the file's id (/video/<video_id>)
    video: str
    start: float
    end: float
    score: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Searcher:
    """An open index with its model: ``searcher.search("a red circle", k=10) -> [Hit, ...]``.

    Safe to call from several threads (the server does): encoding and search
    are serialised, and recent query embeddings are cached.
    """

    def __init__(self, index_dir: str | os.PathLike, model: nn.Module | str | os.PathLike | None = None, *,
                 templates: Sequence[str] = SEARCH_TEMPLATES, device: str | torch.device | None = None,
                 precision: common.Precision = "fp32", cache_size: int = 256) -> None:
        self.dir = Path(index_dir)
        self.store = Store(self.dir)
        stored = self.store.get("model")
        if stored is None:
            raise SearchIndexError(f"{self.dir}: the index holds no model record (was 'internvideo index' run?)")
        source = stored["source"] if model is None else model
        if model is None and not os.path.exists(str(source)):
            raise SearchIndexError(f"{self.dir} was built with model {source}, which is no longer there; pass the "
                                   "same model with --model")
        self.model = common.load_model_from(source, "video search")
        check_model(stored, model_record(self.model, None if isinstance(source, nn.Module) else source),
                    f"index {self.dir}")
        self.root = Path(self.store.get("root"))
        self.templates = tuple(templates)
        if not self.templates or any("{}" not in t for t in self.templates):
            raise UsageError("every query template needs a '{}' for the query")
        self.device = common.resolve_device(device)
        self.precision = precision
        self.vectors = self._load_vectors()
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple[str, ...], np.ndarray] = collections.OrderedDict()
        self._cache_size = cache_size

    def _load_vectors(self) -> vectors.VectorIndex:
        loaded = vectors.load(self.dir, VECTORS_NAME, VECTORS_META)
        generation = self.store.generation
        if loaded is not None and loaded[1] == generation:
            return loaded[0]
        # An index run was interrupted after committing videos: the rows are the truth, so rebuild from them.
        kind = loaded[0].kind if loaded is not None else self.store.get("kind", "flat")
        log.warning("%s: the vector file is older than the database (an interrupted 'internvideo index'?); "
                    "rebuilding it in memory; run 'internvideo index' again to save it", self.dir)
        ids, x = self.store.embeddings()
        return vectors.build(ids, x, kind)

    def __len__(self) -> int:
        return self.vectors.ntotal

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        """The normalised ensemble embedding ``(D,)`` of one or more phrasings of a query."""
        key = tuple(queries)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        emb = zeroshot_classifier(self.model, list(queries), self.templates, device=self.device,
                                  precision=self.precision, progress=False, trim_padding=True)
        vec = torch.nn.functional.normalize(emb.mean(dim=0), dim=-1).numpy().astype(np.float32)
        # NaN scores would rank nothing and "no results" would look like an honest answer.
        check_finite(vec[None], "query embeddings")
        self._cache[key] = vec
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vec

    def search(self, query: str | Sequence[str], k: int = 10) -> list[Hit]:
        """The ``k`` windows most similar to ``query`` (a string, or several phrasings of it), best first."""
        queries = [query] if isinstance(query, str) else list(query)
        queries = [q.strip() for q in queries]
        if not queries or any(not q for q in queries):
            raise UsageError("empty query")
        if any(len(q) > MAX_QUERY_CHARS for q in queries):
            raise UsageError(f"query longer than {MAX_QUERY_CHARS} characters")
        if not 1 <= int(k) <= MAX_K:
            raise UsageError(f"k must be between 1 and {MAX_K}, got {k}")
        with self._lock:
            if self.vectors.ntotal == 0:
                return []
            vec = self.encode(queries)
            scores, ids = self.vectors.search(vec[None], int(k))
            rows = self.store.windows([int(i) for i in ids[0] if i >= 0])
        hits = []
        for score, wid in zip(scores[0], ids[0]):
            row = rows.get(int(wid))
            if row is None or not np.isfinite(score):  # non-finite scores never count as hits
                continue
            hits.append(Hit(len(hits) + 1, row.id, row.video_id, row.video, round(row.start, 3), round(row.end, 3), float(score)))
        return hits

    def video_file(self, video_id: int) -> tuple[Path, os.stat_result]:
        """An indexed video's file and its status, if it is still the very file that was indexed.

        It must resolve inside the indexed folder (a symbolic link may not
        lead out of it), be a regular file, and have the device, inode, size
        and modification time recorded when it was indexed: a file swapped in
        later (a hard link to another file, a symlink to a file that was never
        indexed, a copy) is refused. Raises :class:`NotServed`; the caller logs it.
        """
        with self._lock:
            row = self.store.video_record(int(video_id))
        if row is None:
            raise NotServed(404, f"no indexed video {video_id}")
        root = self.root.resolve()
        path = (root / row.path).resolve()
        if not path.is_relative_to(root):
            raise NotServed(404, f"{row.path} now points outside the indexed folder {root}")
        try:
            st = os.stat(path)
        except OSError:
            raise NotServed(404, f"{row.path} is no longer there") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotServed(404, f"{row.path} is no longer a regular file")
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (row.dev, row.ino, row.size, row.mtime_ns):
            raise NotServed(409, f"{row.path} is not the file that was indexed (another file, or changed since); "
                                 "run 'internvideo index' again")
        return path, st

    def thumb_file(self, window_id: int) -> tuple[Path, os.stat_result]:
        """A window's thumbnail, if it is a regular file of the index (not a link to anything else)."""
        with self._lock:
            known = self.store.has_window(int(window_id))
        if not known:
            raise NotServed(404, f"no thumbnail for window {window_id}")
        path = self.store.thumb_path(int(window_id))
        try:
            st = os.lstat(path)
        except OSError:
            raise NotServed(404, f"no thumbnail for window {window_id}") from None
        # The indexer writes each thumbnail as a new file (temp + rename): a symlink or a second name is not its own.
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise NotServed(409, f"{path} is not a thumbnail this index wrote")
        return path, st

    def close(self) -> None:
        self.store.close()


def format_hits(hits: Sequence[Hit]) -> str:
    if not hits:
        return "no results"
    names = [printable(h.video) for h in hits]  # file names may hold terminal control characters
    width = max(len(n) for n in names)
    lines = [f"{'rank':>4}  {'score':>6}  {'video':<{width}}  window (s)"]
    lines += [f"{h.rank:>4}  {h.score:6.3f}  {n:<{width}}  {h.start:.2f}-{h.end:.2f}" for h, n in zip(hits, names)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo search``."""
    parser.add_argument("index_dir", help="an index folder written by 'internvideo index'")
    parser.add_argument("query", nargs="+", help="what to find; several phrasings of one query are averaged")
    parser.add_argument("-k", type=argtypes.number(int, low=1, high=MAX_K), default=10, help=f"results to show (1-{MAX_K})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--model", default=None, help="model to embed the query with (default: the index's; "
                                                      "another model is refused)")
    parser.add_argument("--templates", default=None, help="prompt templates, one per line with {} for the query "
                                                          "(default: '{}', 'a video of {}.', ...)")
    parser.add_argument("--no-templates", action="store_true", help="embed the query text as it is")
    parser.add_argument("--device", default=None)
    common.add_precision_argument(parser)


def templates_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    if getattr(args, "no_templates", False):
        return ("{}",)
    if getattr(args, "templates", None):
        return tuple(read_templates(args.templates))
    return SEARCH_TEMPLATES


def main(args: argparse.Namespace) -> int:
    searcher = Searcher(args.index_dir, args.model, templates=templates_from_args(args), device=args.device,
                        precision=args.precision)
    try:
        hits = searcher.search(args.query, args.k)
    finally:
        searcher.close()
    if args.json:
        print(json.dumps({"query": args.query, "k": args.k, "results": [h.as_dict() for h in hits]}, indent=2))
    else:
        print(format_hits(hits))
    return 0
