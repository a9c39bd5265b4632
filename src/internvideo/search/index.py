"""``internvideo index FOLDER --model DIR [--out INDEX_DIR]``: embed every window of every video in a folder.

Each video is cut into windows of ``window`` seconds starting every
``stride`` seconds; when the last window ends before the video does, one more
window is aligned to the end so the tail is searchable too (a video shorter
than a window gives one window over all of it). The model sees its own input
recipe in each window, its sampler applied to the window's frames (for the
multimodal encoder: ``num_frames`` TSN segments spread over the window,
CLIP-normalised, centre crop) and the normalised
``encode_video`` embedding is stored, with a JPEG of the window's middle frame.

Incremental and resumable (see :mod:`.store`): a rerun skips files whose size
and modification time are unchanged, re-indexes changed ones, drops rows of
deleted ones, and after a kill carries on where the last committed video left
off. Unreadable videos are listed and skipped (and retried once they change).
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data import Sampler, VideoError, probe, read_frames
from ..data.transforms import Compose
from ..errors import MissingFile, UsageError
from ..models.hardware import resolve_precision
from ..recipe import InputRecipe
from ..tasks import common
from ..tasks.extract import VIDEO_EXTENSIONS, identity_collate, clip_batches, window_starts
from ..fileio import atomic_path, disk_full_guard, printable
from . import vectors
from .store import DB_NAME, THUMBS, VECTORS_META, VECTORS_NAME, SearchIndexError, Store, model_fingerprint
from .. import argtypes

log = logging.getLogger("internvideo.search")

DEFAULT_INDEX_DIR = ".internvideo-index"
THUMB_MAX_SIDE = 320
LOCK_NAME = ".lock"

__all__ = ["window_bounds", "find_videos", "build_index", "model_record", 
           "add_arguments", "main", "DEFAULT_INDEX_DIR"]


# ----------------------------------------------------------------------------- what to index


def window_bounds(num_frames: int, fps: float, window: float, stride: float) -> list[tuple[int, int]]:
    """``(first_frame, num_frames)`` of each window; the tail gets an end-aligned window (module docstring)."""
    if window <= 0 or stride <= 0:
        raise UsageError(f"window and stride must be > 0 seconds, got {window} and {stride}")
    if fps <= 0:
        raise ValueError("unknown frame rate")
    length = max(1, round(window * fps))
    step = max(1, round(stride * fps))
    if num_frames <= length:
        return [(0, num_frames)]
    starts = window_starts(num_frames, length, step).tolist()
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(s, length) for s in starts]


@dataclasses.dataclass(frozen=True)
class FileEntry:
    path: str  # absolute
    rel: str  # relative to the folder, '/'-separated: the key stored in the index
    size: int
    mtime_ns: int
    dev: int = 0  # which file: the server serves a video only while these still match
    ino: int = 0


def find_videos(folder: str | os.PathLike, extensions: Sequence[str] = tuple(sorted(VIDEO_EXTENSIONS)),
                skip: str | os.PathLike | None = None) -> list[FileEntry]:
    """Video files under ``folder`` (hidden folders and ``skip`` excluded), sorted by relative path.

    Symbolic links are followed only when they stay inside ``folder``, so an
    index never records (and a server never serves) a file outside it.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise MissingFile(f"{folder}: not a folder")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    skip_dir = Path(skip).resolve() if skip is not None else None
    found: list[FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != skip_dir)
        for name in filenames:
            p = here / name
            if name.startswith(".") or p.suffix.lower() not in exts:
                continue
            real = p.resolve()
            if not real.is_relative_to(root) or not real.is_file():
                log.warning("skipping %s: it points outside %s", printable(p), root)
                continue
            st = real.stat()
            found.append(FileEntry(str(p), p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_dev,
                                   st.st_ino))
    return sorted(found, key=lambda e: e.rel)


# ----------------------------------------------------------------------------- decoding


@dataclasses.dataclass
class _Piece:
    """Some consecutive windows of one video, decoded and transformed."""

    job: int
    clips: torch.Tensor | None = None  # (n, C, T, H, W)
    thumbs: list[np.ndarray] = dataclasses.field(default_factory=list)
    spans: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # seconds
    total: int = 0  # windows in the whole video
    info: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None


class _Decoder(torch.utils.data.IterableDataset):
    """Decodes videos window by window; in DataLoader workers the videos are split between them."""

    def __init__(self, files: Sequence[FileEntry], jobs: Sequence[int], sampler: Sampler, img_size: int,
                 transform: Compose, window: float, stride: float, chunk: int) -> None:
        self.files, self.jobs = list(files), list(jobs)
        self.sampler, self.img_size, self.transform = sampler, img_size, transform
        self.window, self.stride, self.chunk = window, stride, max(1, chunk)

    def __iter__(self) -> Iterator[_Piece]:
        worker = torch.utils.data.get_worker_info()
        mine = self.jobs if worker is None else self.jobs[worker.id::worker.num_workers]
        for job in mine:
            path = self.files[job].path
            try:
                yield from self._video(job, path)
            except (VideoError, OSError, ValueError) as e:
                yield _Piece(job, error=str(e) if str(e).startswith(path) else f"{path}: {e}")

    def _video(self, job: int, path: str) -> Iterator[_Piece]:
        info = probe(path)
        if info.fps <= 0:
            raise VideoError(path, "unknown frame rate")
        bounds = window_bounds(info.num_frames, info.fps, self.window, self.stride)
        # Decode at a modest size: the model needs img_size, a thumbnail a little more; full HD would be waste.
        short = min(info.width, info.height)
        want = max(self.img_size, 240)
        short_side = want if short > want else None
        for i in range(0, len(bounds), self.chunk):
            part = bounds[i:i + self.chunk]
            # The model's frames of each window, then its middle frame for the thumbnail.
            idx = [np.append(s + np.asarray(self.sampler(n, fps=info.fps)), s + n // 2) for s, n in part]
            frames = read_frames(path, np.concatenate(idx), short_side=short_side)
            ends = np.cumsum([len(x) for x in idx])
            clips = torch.stack([self.transform(frames[e - len(x):e - 1]) for x, e in zip(idx, ends)])
            yield _Piece(job, clips, [frames[e - 1] for e in ends],
                         [(s / info.fps, (s + n) / info.fps) for s, n in part], len(bounds),
                         {"duration": info.duration, "fps": info.fps})


def _save_thumb(path: Path, frame: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(frame)
    image.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE))
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=85)


# ----------------------------------------------------------------------------- model identity


def model_record(model: nn.Module, source: str | os.PathLike | None) -> dict[str, str]:
    """What an index remembers of its model: where it came from and a fingerprint of its weights."""
    src = str(source) if source is not None else type(model).__name__
    if source is not None and os.path.exists(src):
        src = os.path.abspath(src)
    return {"source": src, "class": type(model).__name__, "fingerprint": model_fingerprint(model)}


def describe_model(record: dict[str, str]) -> str:
    return f"{record.get('source')} (weights {record.get('fingerprint')})"


def check_model(stored: dict[str, str] | None, current: dict[str, str], where: str) -> None:
    """Refuse to mix embeddings of two models; the error names both."""
    if stored is not None and stored.get("fingerprint") != current["fingerprint"]:
        raise SearchIndexError(f"{where} was built with model {describe_model(stored)}, not with "
                               f"{describe_model(current)}; embeddings of different models cannot be compared "
                               "(use the same model, or rebuild the index with --overwrite)")


# ----------------------------------------------------------------------------- indexing


class _Lock:
    """An exclusive lock on the index folder for the length of a run (released by the OS if the run dies)."""

    def __init__(self, index_dir: Path) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        self.f = open(index_dir / LOCK_NAME, "w")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise SearchIndexError(f"{index_dir} is being written by another 'internvideo index' run") from None

    def release(self) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _check_settings(store: Store, settings: dict[str, Any], where: Path) -> None:
    before = store.get("settings")
    if before is None:
        return
    changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise SearchIndexError(f"{where} was built with other settings ({detail}); use another --out, or "
                               "--overwrite to rebuild it")


def _wipe(out: Path) -> None:
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", VECTORS_NAME, VECTORS_META):
        (out / name).unlink(missing_ok=True)
    thumbs = out / THUMBS
    if thumbs.is_dir():
        for p in thumbs.iterdir():
            p.unlink()


def _sweep_thumbs(store: Store) -> int:
    """Delete thumbnails whose window no longer exists (replaced or deleted videos, runs killed mid-video)."""
    folder = store.dir / THUMBS
    if not folder.is_dir():
        return 0
    live = {int(r[0]) for r in store.db.execute("SELECT id FROM windows")}
    removed = 0
    for p in folder.iterdir():
        stem = p.name.split(".")[0]
        if not (stem.isdigit() and int(stem) in live and p.suffix == ".jpg"):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def build_index(model: nn.Module, folder: str | os.PathLike, out: str | os.PathLike | None = None, *,
                model_source: str | os.PathLike | None = None, window: float = 4.0, stride: float = 2.0,
                extensions: Sequence[str] = tuple(sorted(VIDEO_EXTENSIONS)), kind: vectors.Kind = "flat",
                target_recall: float = 95.0, batch_size: int = 16, num_workers: int = 0,
                device: str | torch.device | None = None, precision: str = "auto", overwrite: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Index (or update the index of) ``folder`` into ``out`` (default ``FOLDER/.internvideo-index``).

    ``batch_size`` counts windows per forward pass. Returns a summary:
    ``videos`` (in the folder), ``indexed`` (this run), ``unchanged``,
    ``removed``, ``failed`` (``[{"video", "error"}]``, all unreadable files
    of the folder), ``windows`` (total in the index), ``seconds``,
    ``windows_per_s`` (this run), ``vectors`` (the FAISS kind and its recall).
    """
    common.require_multimodal(model, "video search")
    root = Path(folder).resolve()
    if not root.is_dir():
        raise MissingFile(f"{folder}: not a folder")
    out_dir = Path(out) if out is not None else root / DEFAULT_INDEX_DIR
    spec = common.input_recipe(model)
    current = model_record(model, model_source)
    settings = {"window": float(window), "stride": float(stride), "num_frames": spec.num_frames,
                "img_size": spec.img_size, "sampling": spec.sampling}
    window_bounds(1, 1.0, window, stride)  # validates window/stride before anything is written
    lock = _Lock(out_dir)
    try:
        if overwrite:
            _wipe(out_dir)
        store = Store(out_dir, create=True)
        try:
            check_model(store.get("model"), current, str(out_dir))
            _check_settings(store, settings, out_dir)
            stored_root = store.get("root")
            if stored_root is not None and stored_root != str(root):
                raise SearchIndexError(f"{out_dir} indexes {stored_root}, not {root}; use another --out")
            store.set("model", current)
            store.set("settings", settings)
            store.set("root", str(root))
            # SQLite says "database or disk is full"; FAISS and PIL their own way: one error naming the index.
            with disk_full_guard(out_dir):
                return _update(store, model, root, out_dir, spec, current, extensions=extensions, window=window,
                           stride=stride, kind=kind, target_recall=target_recall, batch_size=batch_size,
                           num_workers=num_workers, device=device, precision=precision, progress=progress)
        finally:
            store.close()
    finally:
        lock.release()


def _update(store: Store, model: nn.Module, root: Path, out_dir: Path, spec: InputRecipe,
            current: dict[str, str], *, extensions: Sequence[str], window: float, stride: float, kind: str,
            target_recall: float, batch_size: int, num_workers: int, device: str | torch.device | None,
            precision: str, progress: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    files = find_videos(root, extensions, skip=out_dir)
    known = store.videos()
    on_disk = {f.rel for f in files}
    gone = sorted(set(known) - on_disk)
    store.remove_videos(gone)
    todo = []
    for i, f in enumerate(files):
        row = known.get(f.rel)
        if row is None or (row.size, row.mtime_ns) != (f.size, f.mtime_ns):
            todo.append(i)
        elif row.ino is None:  # a row of an upgraded version-1 index: record which file it was built from
            store.set_identity(f.rel, f.dev, f.ino)
        elif (row.dev, row.ino) != (f.dev, f.ino):  # another file put in its place, same size and mtime
            todo.append(i)
    (out_dir / THUMBS).mkdir(exist_ok=True)
    _sweep_thumbs(store)

    dev = common.resolve_device(device)
    prec = resolve_precision(precision, dev)  # the one meaning of "auto" (models/hardware)
    view = common.eval_view(model)
    decoder = _Decoder(files, todo, view.sampler, spec.img_size, view.transform, window, stride, batch_size)
    embedded: dict[int, list[np.ndarray]] = {}
    pending: dict[int, list[_Piece]] = {}
    new_windows = 0
    bar = tqdm(total=len(todo), desc="index", unit="video", disable=not progress)

    def commit(job: int, pieces: list[_Piece]) -> None:
        nonlocal new_windows
        f = files[job]
        emb = np.concatenate(embedded.pop(job))
        bad = int((~np.isfinite(emb).all(axis=1)).sum())
        if bad:  # as extract does: a video whose model outputs are not finite is a failure, never good rows
            skip(_Piece(job, error=f"{f.path}: the model gave non-finite embeddings for {bad} of {len(emb)} "
                                   "windows"))
            return
        spans = [s for p in pieces for s in p.spans]
        thumbs = [t for p in pieces for t in p.thumbs]
        if store.get("dim") is None:
            store.set("dim", int(emb.shape[1]))
        ids = store.next_window_ids(len(spans))
        # Thumbnails first, named by the ids the rows will get: a kill before the commit leaves only files that
        # the next run overwrites or sweeps, never a row without its thumbnail.
        for wid, frame in zip(ids, thumbs):
            _save_thumb(store.thumb_path(wid), frame)
        got = store.replace_video(f.rel, f.size, f.mtime_ns, current["fingerprint"], windows=spans, embeddings=emb,
                                  duration=pieces[0].info.get("duration"), fps=pieces[0].info.get("fps"),
                                  dev=f.dev, ino=f.ino)
        assert got == ids, "window ids changed under a running index (is another process writing?)"
        new_windows += len(spans)
        bar.update()
        elapsed = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(windows=new_windows, win_s=f"{new_windows / elapsed:.1f}", vid_s=f"{bar.n / elapsed:.2f}")

    def run(batch: list[_Piece]) -> None:
        clips = torch.cat([p.clips for p in batch])
        feats = common.run_views(model.encode_video, clips.unsqueeze(1), dev, batch_size)[:, 0]
        feats = torch.nn.functional.normalize(feats.float(), dim=-1).numpy()
        start = 0
        for p in batch:
            n = p.clips.shape[0]
            embedded.setdefault(p.job, []).append(feats[start:start + n])
            got = pending.setdefault(p.job, [])
            got.append(p)
            if sum(len(q.spans) for q in got) == p.total:
                commit(p.job, pending.pop(p.job))
            start += n
        for p in batch:
            p.clips = None  # free the decoded frames; only embeddings are kept until a video commits

    failed_now = 0
    def skip(piece: _Piece) -> None:
        nonlocal failed_now
        f = files[piece.job]
        log.warning("skipping %s", printable(piece.error))
        store.replace_video(f.rel, f.size, f.mtime_ns, current["fingerprint"], error=piece.error, dev=f.dev,
                            ino=f.ino)
        failed_now += 1
        bar.update()

    with common.inference(model, dev, prec):
        stream = torch.utils.data.DataLoader(decoder, batch_size=None, num_workers=num_workers, collate_fn=identity_collate)
        for batch in clip_batches(stream, batch_size, skip):
            run(batch)
    bar.close()
    index_seconds = time.perf_counter() - t0

    _sweep_thumbs(store)
    ids, x = store.embeddings()
    vi = vectors.build(ids, x, kind, target_recall=target_recall)
    vectors.save(vi, out_dir, store.generation, VECTORS_NAME, VECTORS_META)
    store.set("kind", kind)
    failures = [{"video": p, "error": e} for p, e in store.failures()]
    return {"task": "index", "folder": str(root), "index": str(out_dir), "model": current, "videos": len(files),
            "indexed": len(todo) - failed_now, "failed_now": failed_now, "unchanged": len(files) - len(todo), "removed": len(gone),
            "failed": failures, "windows": store.count_windows(), "new_windows": new_windows,
            "seconds": round(time.perf_counter() - t0, 3),
            "windows_per_s": round(new_windows / index_seconds, 2) if new_windows else None,
            "precision": prec, "vectors": {"kind": vi.kind, "ntotal": vi.ntotal, **vi.params}}


def results_table(summary: dict[str, Any]) -> str:
    vec = summary["vectors"]
    rows = [("videos in folder", summary["videos"]), ("indexed now", summary["indexed"]),
            ("unchanged (skipped)", summary["unchanged"]), ("removed (deleted files)", summary["removed"]),
            ("failed (unreadable or non-finite; skipped)", len(summary["failed"])), ("windows in index", summary["windows"]),
            ("windows/s (this run)", summary["windows_per_s"] if summary["windows_per_s"] is not None else "-"),
            ("vector index", vec["kind"])]
    if "recall_at_10" in vec:
        rows.append(("recall@10 vs exact (%)", float(vec["recall_at_10"])))
    return common.format_table("Search index", rows)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo index``."""
    parser.add_argument("folder", help="folder of videos (searched recursively; hidden folders skipped)")
    parser.add_argument("--model", required=True, help="multimodal model checkpoint directory/file")
    parser.add_argument("--out", default=None, help=f"index folder (default: FOLDER/{DEFAULT_INDEX_DIR})")
    parser.add_argument("--window", type=argtypes.positive_float, default=4.0, help="window length in seconds")
    parser.add_argument("--stride", type=argtypes.positive_float, default=2.0, help="seconds between window starts")
    parser.add_argument("--extensions", default=",".join(sorted(VIDEO_EXTENSIONS)),
                        help="comma-separated file extensions to index")
    parser.add_argument("--index", dest="kind", choices=list(vectors.KINDS), default="flat",
                        help="vector index: flat (exact), flat16 (exhaustive, float16 storage), ivf or hnsw "
                             "(approximate, tuned to --target-recall)")
    parser.add_argument("--target-recall", type=argtypes.percent, default=95.0, help="recall@10 (%%) approximate indexes "
                                                                          "are tuned to")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=16, help="windows per forward pass")
    parser.add_argument("--num-workers", type=argtypes.nonnegative_int, default=0, help="decoding worker processes")
    parser.add_argument("--device", default=None)
    common.add_precision_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="rebuild the index from scratch")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def main(args: argparse.Namespace) -> int:
    import json

    model = common.load_model_from(args.model, "video search")
    summary = build_index(model, args.folder, args.out, model_source=args.model, window=args.window,
                          stride=args.stride, extensions=[e.strip() for e in args.extensions.split(",") if e.strip()],
                          kind=args.kind, target_recall=args.target_recall, batch_size=args.batch_size,
                          num_workers=args.num_workers, device=args.device, precision=args.precision,
                          overwrite=args.overwrite, progress=args.progress)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(results_table(summary))
        for failure in summary["failed"]:
            print(f"  failed: {printable(failure['error'])}")
    if summary["failed_now"] and not summary["indexed"]:
        raise SearchIndexError(f"all {summary['failed_now']} videos to index failed (the first: "
                               f"{summary['failed'][0]['error']})")
    if not args.json:
        print(f"search it: internvideo search {summary['index']} \"your query\"   or   "
              f"internvideo serve {summary['index']}")
    return 0
