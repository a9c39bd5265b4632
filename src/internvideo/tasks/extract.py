"""Per-video feature extraction: ``internvideo extract --model DIR --videos LIST --out DIR``.

For every video it writes one ``.npy`` file, and at the end an ``index.jsonl``
with one line per video (``video``, ``features``, ``shape``, ``status``, and
``error`` for a video that could not be read). Two modes:

* **clip** (default): one embedding per video, shape ``(D,)``, from the
  model's test-time view (VideoMAE: the centre dense clip of ``num_frames``
  frames every ``frame_interval``; multimodal models: ``num_frames`` segments
  spanning the whole video).
* **windows** (``window`` given): a sequence of embeddings ``(num_windows, D)``
  for long videos, e.g. as input to temporal action localisation. Windows are
  ``window`` frames (or seconds) long, start every ``stride`` frames (or
  seconds) from frame 0, and the model sees ``num_frames`` frames spread evenly
  over each window (the middle frame of each of ``num_frames`` equal parts).
  Window ``i`` covers frames ``[i * stride, i * stride + window)``; windows
  never run past the end, so up to ``stride - 1`` trailing frames are not
  covered, and a video shorter than one window gives one window over all of it.

What the embedding is (``pool``) is defined once, by
:func:`internvideo.tasks.common.clip_embedding`.

Robustness: a video is written to ``name.npy.tmp`` and renamed when complete,
so an existing ``name.npy`` is always whole and a rerun skips it (resume after
an interruption by running the same command). The settings are stored in
``extract_config.json``; rerunning into the same folder with other settings is
refused, so one folder never mixes features of two recipes. An unreadable
video is logged, listed in the index with its error, and skipped; it is tried
again on the next run.

**Navigation view features** (``--vln-views DIR`` instead of ``--videos``):
the 36 view images ``DIR/{scan}/{viewpoint}/{k}.jpg`` of every viewpoint
become one ``{scan}_{viewpoint}.npy`` of shape ``(36, D)`` in the output
folder, the store the navigation agent reads
(:class:`internvideo.data.vln.ViewFeatures`). Each image is a one-frame video:
the model's test-time sampler repeats it to the model's ``num_frames`` (as for
image-text pairs), then the same embedding (``pool``). Resume and the settings
check work as above, per viewpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data import Sampler, VideoError, probe, read_frames, segment_indices
from ..data.datasets import VideoDataset, text_lines
from ..data.vln import NUM_VIEWS, ViewFeatures, view_images
from ..data.transforms import Compose
from .. import fileio
from ..fileio import printable
from ..errors import UsageError
from . import common
from .common import Pool, Precision, SamplingOverride
from .. import argtypes

log = logging.getLogger("internvideo.extract")

Unit = Literal["frames", "seconds"]
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                              ".ts", ".gif"})
INDEX_NAME = "index.jsonl"
CONFIG_NAME = "extract_config.json"

__all__ = ["feature_names", "window_starts", "read_video_list", "extract_features", "extract_view_features",
           "identity_collate", "clip_batches", "add_arguments", "main", "INDEX_NAME", "CONFIG_NAME"]


# ----------------------------------------------------------------------------- embeddings


# ----------------------------------------------------------------------------- windows and lists


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
    """First frame of each window: ``0, stride, 2 * stride, ...`` while the window fits (at least one)."""
    if window < 1 or stride < 1:
        raise UsageError(f"window and stride must be >= 1 frame, got {window} and {stride}")
    return np.arange(0, max(num_frames - window, 0) + 1, stride, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """A video to extract: its file and the relative name its features are stored under."""

    path: str
    key: str


def _key(path: str, root: str | None) -> str:
    p = Path(os.path.abspath(path))
    if root is not None:
        try:
            return p.relative_to(os.path.abspath(root)).as_posix()
        except ValueError:
            pass
    return p.relative_to(p.anchor).as_posix()


def read_video_list(videos: str | os.PathLike | Sequence[str], root: str | os.PathLike | None = None
                    ) -> list[VideoEntry]:
    """Videos to extract, from a folder (searched recursively), a list file, or a list of paths.

    List files: ``.jsonl`` with a ``"video"`` field per line (video-text and QA
    annotations), or text with one path per line, optionally followed by an
    integer label (a Kinetics-style classification list works as it is).
    Relative paths are relative to ``root``, default the list file's folder.
    Duplicates are extracted once.
    """
    if isinstance(videos, (str, os.PathLike)) and os.path.isdir(videos):
        base = os.fspath(videos)
        found = sorted(str(p) for p in Path(base).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        return [VideoEntry(p, _key(p, base)) for p in found]
    if isinstance(videos, (str, os.PathLike)):
        list_file = os.fspath(videos)
        base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(list_file))
        paths = _list_file_paths(list_file)
    else:
        base = os.fspath(root) if root is not None else None
        paths = [os.fspath(p) for p in videos]
    entries: dict[str, VideoEntry] = {}
    for p in paths:
        full = p if base is None or os.path.isabs(p) else os.path.join(base, p)
        entries.setdefault(os.path.normpath(full), VideoEntry(full, _key(full, base)))
    return list(entries.values())


def _list_file_paths(list_file: str) -> list[str]:
    lines = [(n, line.strip()) for n, line in text_lines(list_file)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if list_file.endswith(".jsonl"):
        paths = []
        for n, line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{list_file}:{n}: not valid JSON ({e.msg})") from None
            video = record.get("video", record.get("image")) if isinstance(record, dict) else None
            if not isinstance(video, str):
                raise UsageError(f"{list_file}:{n}: expected a JSON object with a \"video\" path")
            paths.append(video)
        return paths
    paths = []
    for _, line in lines:
        parts = line.rsplit(maxsplit=1)
        # "path label": drop a trailing integer label (paths may contain spaces).
        paths.append(parts[0] if len(parts) == 2 and parts[1].lstrip("-").isdigit() else line)
    return paths


# ----------------------------------------------------------------------------- decoding (in DataLoader workers)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How clips are cut from a video; everything a decoding worker needs."""

    num_frames: int  # frames per clip (the model's)
    window: float | None  # None: clip mode
    stride: float | None  # given whenever window is
    unit: Unit
    sampler: Sampler  # clip mode: the model's test-time sampler
    transform: Compose
    chunk: int  # clips per piece handed to the main process

    def layout(self, path: str) -> tuple[list[np.ndarray], dict[str, Any]]:
        """Frame indices of every clip of the video, and what the index should record about it."""
        info = probe(path)
        if self.window is None:
            return [np.asarray(self.sampler(info.num_frames, fps=info.fps), dtype=np.int64)], {}
        scale = info.fps if self.unit == "seconds" else 1.0
        if self.unit == "seconds" and info.fps <= 0:
            raise VideoError(path, "unknown frame rate; give the window in frames")
        window = max(1, round(self.window * scale))
        stride = max(1, round(self.stride * scale))
        length = min(window, info.num_frames)
        clips = [s + segment_indices(length, self.num_frames) for s in window_starts(info.num_frames, window, stride)]
        meta = {"window_frames": window, "stride_frames": stride, "fps": info.fps, "num_frames": info.num_frames}
        return clips, meta


@dataclasses.dataclass
class _Piece:
    job: int
    clips: torch.Tensor | None  # (n, C, T, H, W); None with error set
    total: int = 0  # clips in the whole video
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None


class _Decoder(torch.utils.data.IterableDataset):
    """Yields each video's clips in pieces of at most ``plan.chunk``; videos are split across workers."""

    def __init__(self, entries: Sequence[VideoEntry], jobs: Sequence[int], plan: _Plan) -> None:
        self.entries, self.jobs, self.plan = list(entries), list(jobs), plan

    def __iter__(self) -> Iterator[_Piece]:
        info = torch.utils.data.get_worker_info()
        mine = self.jobs if info is None else self.jobs[info.id::info.num_workers]
        for job in mine:
            path = self.entries[job].path
            try:
                clips, meta = self.plan.layout(path)
                for i in range(0, len(clips), self.plan.chunk):
                    part = clips[i:i + self.plan.chunk]
                    frames = read_frames(path, np.concatenate(part))
                    t = self.plan.num_frames
                    tensor = torch.stack([self.plan.transform(frames[k * t:(k + 1) * t]) for k in range(len(part))])
                    yield _Piece(job, tensor, len(clips), meta)
            except (VideoError, OSError) as e:
                yield _Piece(job, None, error=str(e))


# ----------------------------------------------------------------------------- extraction


def feature_names(entries: Sequence[VideoEntry]) -> list[str]:
    """The ``.npy`` path of each video inside the output folder.

    ``dir/name.npy`` for ``dir/name.mp4``; videos that differ only by their
    extension (``a.mp4``, ``a.mkv``) keep it (``a.mp4.npy``, ``a.mkv.npy``)
    so each has its own file.
    """
    stems = [str(Path(e.key).with_suffix("")) for e in entries]
    repeated = {s for s in stems if stems.count(s) > 1}
    return [(e.key if stem in repeated else stem) + ".npy" for e, stem in zip(entries, stems)]


def _existing_shape(path: Path) -> list[int] | None:
    """The shape of a finished feature file; None when missing or unreadable (e.g. 0 bytes): extract it again."""
    if not path.exists():
        return None
    try:
        return list(np.load(path, mmap_mode="r").shape)
    except (EOFError, ValueError, OSError) as e:
        log.warning("%s is unreadable (%s: %s); extracting it again", printable(path), type(e).__name__,
                    printable(e))
        return None


def _previous_index(out: Path) -> dict[str, dict[str, Any]]:
    """The records of an earlier run's index, by feature file."""
    index = out / INDEX_NAME
    if not index.exists():
        return {}
    records = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # an index cut by a crash: the rows it lost are rebuilt from the files
        if isinstance(record, dict) and record.get("features"):
            records[record["features"]] = record
    return records


def identity_collate(piece: _Piece) -> _Piece:
    return piece  # pieces are already batched by video; a module-level function pickles into workers


def clip_batches(pieces: Iterable[Any], batch_size: int, on_error: Callable[[Any], None]) -> Iterator[list[Any]]:
    """Group decoded pieces (``.clips`` tensors, or ``.error`` set) into batches of at least ``batch_size`` clips.

    Pieces of several short videos share a batch, so a forward pass stays full;
    a piece whose video failed goes to ``on_error`` instead. The last batch may be smaller.
    """
    buffer: list[Any] = []
    for piece in pieces:
        if piece.error is not None:
            on_error(piece)
            continue
        buffer.append(piece)
        if sum(p.clips.shape[0] for p in buffer) >= batch_size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def _read_settings(cfg: Path) -> dict[str, Any] | None:
    """The settings an earlier run recorded. A file a crash left empty or torn (older versions wrote it in place)
    is written again when no features are there yet; beside features it is an error, since nothing then says
    which settings made them."""
    try:
        before = json.loads(cfg.read_bytes().decode("utf-8"))
        problem = None if isinstance(before, dict) else "holds no settings object"
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        before, problem = None, f"is damaged ({e})"
    if problem is None:
        return before
    if any(cfg.parent.rglob("*.npy")):
        raise UsageError(f"{cfg} {problem}, so the features beside it cannot be checked against this run's "
                         "settings; pass --overwrite to extract everything again")
    log.warning("%s %s, as an interrupted run may leave it; it is written again", cfg, problem)
    return None


def _check_config(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    cfg = out / CONFIG_NAME
    before = _read_settings(cfg) if cfg.exists() and not overwrite else None
    if before is not None:
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise UsageError(f"{out} holds features extracted with other settings ({detail}); use another --out "
                             "folder, or --overwrite to re-extract everything")
    fileio.write_json(cfg, settings)


class _Writer:
    """Runs batches of pieces through the model, gathers each video's pieces and writes its file and index row
    (or its error row) once all of them are in."""

    def __init__(self, entries: list, feature_file: dict[int, Path], out: Path, records: dict[int, dict[str, Any]],
                 bar, dtype: str, *, clip_level: bool, embed, device: torch.device, batch_size: int):
        self.entries, self.feature_file, self.out, self.records, self.bar = entries, feature_file, out, records, bar
        self.dtype, self.clip_level, self.embed, self.device, self.batch_size = (dtype, clip_level, embed, device,
                                                                                 batch_size)
        self.parts: dict[int, list[np.ndarray]] = {}
        self.failed: set[int] = set()

    def finish_video(self, job: int, array: np.ndarray, meta: dict[str, Any]) -> None:
        if not np.isfinite(array).all():  # a broken model's NaN features must not pass as "ok"
            self.fail(job, f"the model gave non-finite features (NaN/inf) for {int((~np.isfinite(array)).sum())} "
                           "value(s); nothing written")
            return
        _save_atomic(self.feature_file[job], array.astype(self.dtype))
        self.records[job] = {"video": self.entries[job].path,
                             "features": self.feature_file[job].relative_to(self.out).as_posix(),
                             "shape": list(array.shape), "status": "ok", **meta}
        self.bar.update()

    def fail(self, job: int, error: str) -> None:
        self.failed.add(job)
        self.records[job] = {"video": self.entries[job].path, "features": None, "shape": None, "status": "error",
                             "error": error}
        log.warning("skipping %s: %s", printable(self.entries[job].path), printable(error))
        self.bar.update()

    def run(self, pieces: list[_Piece]) -> None:
        clips = torch.cat([p.clips for p in pieces])
        feats = common.run_views(self.embed, clips.unsqueeze(1), self.device, self.batch_size)
        feats = feats[:, 0].numpy()
        start = 0
        for p in pieces:
            n = p.clips.shape[0]
            if p.job not in self.failed:
                got = self.parts.setdefault(p.job, [])
                got.append(feats[start:start + n])
                if sum(len(g) for g in got) == p.total:
                    array = np.concatenate(self.parts.pop(p.job))
                    self.finish_video(p.job, array[0] if self.clip_level else array, p.meta)
            start += n

    def skip(self, piece: _Piece) -> None:
        self.parts.pop(piece.job, None)
        self.fail(piece.job, piece.error)


def extract_features(model: nn.Module, videos: str | os.PathLike | Sequence[str], out_dir: str | os.PathLike, *,
                     root: str | os.PathLike | None = None, window: float | None = None, stride: float | None = None,
                     unit: Unit = "frames", sampling: SamplingOverride = "auto", frame_interval: int | None = None,
                     pool: Pool = "auto", batch_size: int = 16, num_workers: int = 0,
                     device: str | torch.device | None = None, precision: Precision = "fp32",
                     dtype: Literal["float32", "float16"] = "float32", overwrite: bool = False,
                     progress: bool = True, model_name: str | None = None) -> dict[str, Any]:
    """Extract features of ``videos`` into ``out_dir`` (see the module docstring); returns a summary dict.

    ``batch_size`` counts clips per forward pass (windows of one long video
    are batched together; short videos are batched with each other).
    The summary has ``videos``, ``extracted``, ``existing`` (skipped, already
    done), ``failed`` (``[{"video", "error"}]``), ``out`` and ``index``.
    """
    if unit not in ("frames", "seconds"):
        raise UsageError(f"unit must be 'frames' or 'seconds', not {unit!r}")
    if window is None and stride is not None:
        raise UsageError("stride needs a window length")
    out = Path(out_dir)
    entries = read_video_list(videos, root)
    names = feature_names(entries)
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise UsageError(f"videos would share a feature file name: {clash[:5]}")
    spec = common.input_recipe(model, sampling=sampling, frame_interval=frame_interval)
    if window is not None and stride is None:
        stride = window  # back-to-back windows
    settings = {"model": model_name or type(model).__name__, "mode": "clip" if window is None else "windows",
                "window": window, "stride": stride, "unit": unit,
                "sampling": spec.sampling, "frame_interval": spec.frame_interval, "pool": pool, "dtype": dtype,
                "num_frames": spec.num_frames, "img_size": spec.img_size}
    _check_config(out, settings, overwrite)

    feature_file = {i: out / name for i, name in enumerate(names)}
    before = _previous_index(out)
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for i, e in enumerate(entries):
        shape = None if overwrite else _existing_shape(feature_file[i])
        if shape is None:
            todo.append(i)
            continue
        rel = feature_file[i].relative_to(out).as_posix()
        # Keep what the first run recorded (window/stride/fps/num_frames): a rerun must not thin the index.
        kept = {k: v for k, v in before.get(rel, {}).items() if k not in ("video", "features", "shape", "status")}
        records[i] = {"video": e.path, "features": rel, "shape": shape, "status": "exists", **kept}

    view = common.eval_view(model, sampling=sampling, frame_interval=frame_interval)
    plan = _Plan(spec.num_frames, window, stride, unit, view.sampler, view.transform, max(1, batch_size))
    dev = common.resolve_device(device)
    bar = tqdm(total=len(entries), initial=len(records), desc="extract", disable=not progress, unit="video")
    writer = _Writer(entries, feature_file, out, records, bar, dtype, clip_level=window is None,
                     embed=lambda x: common.clip_embedding(model, x, pool), device=dev, batch_size=batch_size)
    with common.inference(model, dev, precision):
        stream = torch.utils.data.DataLoader(_Decoder(entries, todo, plan), batch_size=None, num_workers=num_workers,
                                             collate_fn=identity_collate)
        for batch in clip_batches(stream, batch_size, writer.skip):
            writer.run(batch)
    bar.close()
    failed = writer.failed

    index = fileio.write_text(out / INDEX_NAME, "".join(fileio.json_text(records[i], indent=None) + "\n"
                                                        for i in range(len(entries))))
    errors = [{"video": records[i]["video"], "error": records[i]["error"]} for i in sorted(failed)]
    return {"task": "extract", "videos": len(entries),
            "extracted": sum(r["status"] == "ok" for r in records.values()),
            "existing": sum(r["status"] == "exists" for r in records.values()), "failed": errors,
            "out": str(out), "index": str(index)}


def extract_view_features(model: nn.Module, views: str | os.PathLike, out_dir: str | os.PathLike, *,
                          pool: Pool = "auto", batch_size: int = 16, num_workers: int = 0,
                          device: str | torch.device | None = None, precision: Precision = "fp32",
                          dtype: Literal["float32", "float16"] = "float32", overwrite: bool = False,
                          progress: bool = True, model_name: str | None = None) -> dict[str, Any]:
    """Navigation view features: ``views/{scan}/{viewpoint}/{k}.jpg`` -> ``out_dir/{scan}_{viewpoint}.npy``
    ``(36, D)`` (see the module docstring); returns a summary dict (``viewpoints``, ``extracted``,
    ``existing``, ``out``). An unreadable image is an error naming it (a viewpoint without all its views is of no
    use to the agent)."""
    out = Path(out_dir)
    images = {ViewFeatures.key(scan, vp): paths for (scan, vp), paths in view_images(views).items()}
    spec = common.input_recipe(model)
    _check_config(out, {"model": model_name or type(model).__name__, "mode": "vln-views", "pool": pool,
                        "dtype": dtype, "sampling": spec.sampling, "num_frames": spec.num_frames,
                        "img_size": spec.img_size}, overwrite)
    todo = [k for k in images if overwrite or _existing_shape(out / f"{k}.npy") is None]
    dataset = VideoDataset([str(p) for k in todo for p in images[k]], common.eval_view(model))
    dev = common.resolve_device(device)
    done, pending = 0, np.zeros((0, 0), np.float32)
    with common.inference(model, dev, precision):
        for batch in tqdm(common.loader(dataset, batch_size, num_workers), desc="views", disable=not progress,
                          unit="batch"):
            feats = common.run_views(lambda x: common.clip_embedding(model, x, pool), common.as_views(batch["video"]),
                                     dev, batch_size)[:, 0].numpy()
            pending = np.concatenate([pending.reshape(-1, feats.shape[1]), feats])
            while len(pending) >= NUM_VIEWS:  # the dataset is in viewpoint order, 36 images each
                key, array, pending = todo[done], pending[:NUM_VIEWS], pending[NUM_VIEWS:]
                if not np.isfinite(array).all():
                    raise UsageError(f"the model gave non-finite features (NaN/inf) for the views of {key}; "
                                     "nothing written for it")
                _save_atomic(out / f"{key}.npy", array.astype(dtype))
                done += 1
    return {"task": "extract", "viewpoints": len(images), "extracted": done, "existing": len(images) - len(todo),
            "out": str(out)}


def results_table(summary: dict[str, Any]) -> str:
    if "viewpoints" in summary:
        return common.format_table("Navigation view features", [
            ("viewpoints", summary["viewpoints"]), ("extracted", summary["extracted"]),
            ("already done (skipped)", summary["existing"]), ("store", summary["out"])])
    rows = [("videos", summary["videos"]), ("extracted", summary["extracted"]),
            ("already done (skipped)", summary["existing"]), ("unreadable (skipped)", len(summary["failed"])),
            ("index", summary["index"])]
    return common.format_table("Feature extraction", rows)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo extract``."""
    parser.add_argument("--model", required=True, help="model checkpoint directory/file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", help="a folder of videos, a list file (one path per line, "
                                         "optionally with a label) or a .jsonl with \"video\" fields")
    source.add_argument("--vln-views", help="navigation view images DIR/{scan}/{viewpoint}/{k}.jpg (k = 0..35): "
                                            "writes {scan}_{viewpoint}.npy (36, D) per viewpoint (docs/vln.md)")
    parser.add_argument("--out", required=True, help="output folder: one .npy per video + index.jsonl")
    parser.add_argument("--root", default=None, help="folder relative paths in the list start from "
                                                     "(default: the list file's folder)")
    parser.add_argument("--window", type=argtypes.positive_float, default=None,
                        help="window length for a sequence of features per video (default: one clip-level feature)")
    parser.add_argument("--stride", type=argtypes.positive_float, default=None, help="window step (default: the window length)")
    parser.add_argument("--unit", choices=["frames", "seconds"], default="frames", help="unit of --window/--stride")
    common.add_sampling_arguments(parser)
    parser.add_argument("--pool", choices=["auto", "pre_logits", "mean", "embed"], default="auto",
                        help="auto: encode_video for multimodal models, pre-logits for classifiers, else token mean")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=16, help="clips per forward pass")
    parser.add_argument("--num-workers", type=argtypes.nonnegative_int, default=0, help="decoding worker processes")
    parser.add_argument("--device", default=None)
    common.add_precision_argument(parser)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored feature dtype")
    parser.add_argument("--overwrite", action="store_true", help="re-extract videos that already have features")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    name = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    if args.vln_views:
        unused = [f"--{k}" for k in ("window", "stride", "root") if getattr(args, k) is not None]
        if unused:
            raise UsageError(f"{', '.join(unused)} do not apply to --vln-views (one image per view)")
        print(results_table(extract_view_features(
            model, args.vln_views, args.out, pool=args.pool, batch_size=args.batch_size,
            num_workers=args.num_workers, device=args.device, precision=args.precision, dtype=args.dtype,
            overwrite=args.overwrite, progress=args.progress, model_name=name)))
        return 0
    summary = extract_features(
        model, args.videos, args.out, root=args.root, window=args.window, stride=args.stride, unit=args.unit,
        sampling=args.sampling, frame_interval=args.frame_interval, pool=args.pool, batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device, precision=args.precision, dtype=args.dtype,
        overwrite=args.overwrite, progress=args.progress, model_name=name)
    print(results_table(summary))
    for failure in summary["failed"]:
        print(f"  unreadable: {printable(failure['video'])}: {printable(failure['error'])}")
    return 0
