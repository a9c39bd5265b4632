"""Feature sequences for temporal action localization, and a THUMOS14 annotation importer.

Input: one ``.npy`` file per video holding ``(T, D)`` window features (the
output of ``internvideo extract --window W --stride S``, or features a user
already has), an ActivityNet-style JSON for the segments, and the numbers that
place feature ``i`` in time: the stride between windows and the window length
(both in frames) and the frame rate. Feature ``i`` sits at the centre of its
window, ``(i * stride + window / 2) / fps`` seconds (ActionFormer's convention).

Where those numbers come from, first found wins: the ``index.jsonl`` that
``internvideo extract`` writes (``stride_frames``, ``window_frames``, ``fps``
per video; its ``extract_config.json`` for window/stride in frames when a
record lacks them), then the arguments ``feat_stride`` / ``window_frames`` /
``fps``, the per-video ``fps`` of the JSON for the frame rate.

Bad input is reported, not fatal where a run can go on: videos of the JSON
without a feature file (or whose extraction failed) are listed in
:attr:`FeatureSequenceDataset.missing`, logged and skipped; a feature file of
the wrong width, or not ``(T, D)``, is an error naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MissingFile, UsageError
from ..fileio import write_json
from .datasets import AnnotationError, LocalizationVideo, Segment, load_json, read_activitynet, text_lines
from .video import PathLike

log = logging.getLogger("internvideo.data")

AGNOSTIC = "action"
FEATURE_EXTS = (".npy", ".pkl", ".csv")
FIXED_LENGTH = -1.0  # FeatureTiming.stride of features that span the whole video (resolved per item)


def _numeric_row(row: str) -> bool:
    try:
        [float(v) for v in row.split(",")]
    except ValueError:
        return False
    return True


def read_feature_file(path: Path) -> np.ndarray:
    """One video's ``(T, D)`` float32 features from ``.npy``, ``.pkl`` (a pickled array, read without running
    code) or ``.csv`` (comma-separated, one row per time step, a header row allowed: FineAction's files)."""
    if path.suffix == ".pkl":
        from .ava import safe_unpickle

        feats = np.asarray(safe_unpickle(path.read_bytes(), str(path)))
    elif path.suffix == ".csv":
        rows = path.read_text(encoding="utf-8").splitlines()
        header = bool(rows) and not _numeric_row(rows[0])
        feats = np.loadtxt(rows[header:], delimiter=",", dtype=np.float32, ndmin=2)
    else:
        feats = np.load(path, mmap_mode="r")
    if feats.ndim != 2:
        raise ValueError(f"{path}: expected features of shape (T, D), got {feats.shape}")
    return np.array(feats, dtype=np.float32)  # a copy: a memory map stays read-only

__all__ = ["FEATURE_EXTS", "FeatureTiming", "FeatureSequenceDataset", "read_feature_file", "collate_sequences",
           "crop_sequence", "read_thumos14",
           "write_activitynet"]


@dataclasses.dataclass(frozen=True)
class FeatureTiming:
    """Where a video's features sit in time: window stride and length in frames, frames per second."""

    stride: float
    window: float
    fps: float

    def to_seconds(self, t: np.ndarray | torch.Tensor | float):
        return (t * self.stride + 0.5 * self.window) / self.fps

    def to_grid(self, s: np.ndarray | torch.Tensor | float):
        return (s * self.fps - 0.5 * self.window) / self.stride


def _read_index(folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``internvideo extract``'s records keyed by feature-file stem, and its settings (both may be empty)."""
    records: dict[str, dict[str, Any]] = {}
    index = folder / "index.jsonl"
    if index.exists():
        for n, line in text_lines(index):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnnotationError(index, f"not valid JSON ({e.msg})", n) from None
            name = r.get("features") or r.get("video")
            if isinstance(name, str):
                records[Path(name).stem] = r
    settings = {}
    cfg = folder / "extract_config.json"
    if cfg.exists():
        settings = load_json(cfg)
    return records, settings


def crop_sequence(feats: np.ndarray, segments: np.ndarray, labels: np.ndarray, max_len: int,
                  rng: np.random.Generator, trunc_thresh: float = 0.5,
                  crop_ratio: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ActionFormer's training crop: a random window of at most ``max_len`` features.

    With ``crop_ratio`` the window is also at most a random fraction of the
    sequence. Segments (grid units) are clipped to it; those keeping less than
    ``trunc_thresh`` of their length are dropped. Several tries look for a
    window that keeps at least one action (the last try is kept either way).
    """
    t = feats.shape[0]
    length = t
    if crop_ratio is not None:
        length = max(1, int(round(t * rng.uniform(*crop_ratio))))
    length = min(length, max_len)
    if length >= t:
        return feats, segments, labels
    for _ in range(10):
        start = int(rng.integers(0, t - length + 1))
        s = np.clip(segments, start, start + length)
        keep = (s[:, 1] - s[:, 0]) >= trunc_thresh * np.maximum(segments[:, 1] - segments[:, 0], 1e-6)
        if keep.any() or len(segments) == 0:
            break
    return feats[start:start + length], s[keep] - start, labels[keep]


class FeatureSequenceDataset(torch.utils.data.Dataset):
    """Videos of one or more subsets as ``{"video_id", "feats" (T, D), "segments" (N, 2) grid, "labels" (N,)}``.

    ``classes`` fixes the label order (default: every label of the JSON,
    sorted, as ActionFormer does); ``class_agnostic`` maps every label to
    one class, ``"action"`` (ActionFormer's ActivityNet / HACS setting, whose
    proposals are named by an external classifier). ``training`` turns on the random crop to
    ``max_seq_len`` (:func:`crop_sequence`); ``resize_to`` resamples every
    sequence to that many features by linear interpolation (ActionFormer's
    ActivityNet setting), adjusting the stride to match.
    """

    def __init__(self, annotations: PathLike | Mapping[str, LocalizationVideo],
                 features: PathLike | Sequence[PathLike], *,
                 subset: str | Sequence[str] | None = None, classes: Sequence[str] | None = None,
                 input_dim: int | None = None, feat_stride: float | None = None, window_frames: float | None = None,
                 fps: float | None = None, prefix: str = "", training: bool = False, max_seq_len: int = 2304,
                 trunc_thresh: float = 0.5, crop_ratio: tuple[float, float] | None = None,
                 resize_to: int | None = None, class_agnostic: bool = False, file_ext: str = ".npy") -> None:
        database = read_activitynet(annotations) if isinstance(annotations, (str, os.PathLike)) else annotations
        self.folders = [Path(f) for f in ([features] if isinstance(features, (str, os.PathLike)) else features)]
        if not self.folders:
            raise UsageError("no feature folder given")
        for folder in self.folders:
            if not folder.is_dir():
                raise MissingFile(f"feature folder {folder} does not exist")
        self.folder = self.folders[0]
        if file_ext not in FEATURE_EXTS:
            raise UsageError(f"feature files must be one of {', '.join(FEATURE_EXTS)}, not {file_ext!r}")
        wanted = None if subset is None else {s.lower() for s in ([subset] if isinstance(subset, str) else subset)}
        if class_agnostic:
            # One "action" class: the model proposes segments, an external video classifier names them.
            database = {vid: dataclasses.replace(v, segments=tuple(dataclasses.replace(s, label=AGNOSTIC)
                                                                 for s in v.segments)) for vid, v in database.items()}
            classes = [AGNOSTIC]
        self.classes = list(classes) if classes is not None else sorted(
            {s.label for v in database.values() for s in v.segments})
        index = {c: i for i, c in enumerate(self.classes)}
        indexes = [_read_index(folder) for folder in self.folders]
        self.training, self.max_seq_len, self.trunc_thresh, self.crop_ratio = training, max_seq_len, trunc_thresh, \
            crop_ratio
        self.resize_to = resize_to
        self.videos: list[LocalizationVideo] = []
        self.files: list[list[Path]] = []  # per video, one file per feature folder (concatenated per time step)
        self.timing: list[FeatureTiming] = []
        self.missing: list[str] = []
        self.unknown_labels: set[str] = set()
        self.input_dim = input_dim
        for vid, video in database.items():
            if wanted is not None and video.subset.lower() not in wanted:
                continue
            files, timings = [], []
            for folder, (records, settings) in zip(self.folders, indexes):
                record = records.get(prefix + vid, {})
                file = folder / (record["features"] if record.get("features") else f"{prefix}{vid}{file_ext}")
                if record.get("status") == "error" or not file.exists():
                    break
                files.append(file)
                timings.append(self._timing(vid, video, record, settings, feat_stride, window_frames, fps))
            if len(files) < len(self.folders):
                self.missing.append(vid)
                continue
            if len(set(timings)) > 1:
                raise UsageError(f"video {vid}: the feature folders disagree on stride/window/fps (frames): "
                                 + "; ".join(f"{f.parent}: stride {t.stride:g}, window {t.window:g}, fps {t.fps:g}"
                                             for f, t in zip(files, timings)))
            self.unknown_labels |= {s.label for s in video.segments if s.label not in index}
            self.videos.append(video)
            self.files.append(files)
            self.timing.append(timings[0])
        if self.missing:
            shown = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
            log.warning("%d video(s) without features in %s skipped: %s", len(self.missing),
                        ", ".join(map(str, self.folders)), shown)
        if self.unknown_labels:
            log.warning("labels not in the class list are ignored: %s", sorted(self.unknown_labels))
        self._index = index

    def _timing(self, vid: str, video: LocalizationVideo, record: Mapping[str, Any], settings: Mapping[str, Any],
                feat_stride: float | None, window_frames: float | None, fps: float | None) -> FeatureTiming:
        frames_unit = settings.get("unit", "frames") == "frames"
        stride = record.get("stride_frames") or feat_stride or (settings.get("stride") if frames_unit else None)
        if stride is not None and stride < 0:
            stride = FIXED_LENGTH  # ActionFormer's feat_stride -1: the features span the whole video
        window = record.get("window_frames") or window_frames or (settings.get("window") if frames_unit else None)
        rate = record.get("fps") or fps or video.fps
        absent = [n for n, v in (("feat_stride", stride), ("window_frames", window), ("fps", rate))
                  if v is None or v == 0]
        if absent:
            raise ValueError(f"video {vid}: no {', '.join(absent)} for its features (no index.jsonl record, "
                             "argument or per-video \"fps\" in the annotations gives it)")
        return FeatureTiming(float(stride), float(window), float(rate))

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, i: int) -> np.ndarray:
        """The video's ``(T, D)`` features; several folders are concatenated per time step (widths add up)."""
        parts = [read_feature_file(f) for f in self.files[i]]
        lengths = {len(p) for p in parts}
        if len(lengths) > 1:
            raise UsageError(f"video {self.videos[i].video_id}: the feature folders disagree on its length: "
                             + ", ".join(f"{f} has {len(p)} steps" for f, p in zip(self.files[i], parts)))
        feats = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if self.input_dim is None:
            self.input_dim = int(feats.shape[1])
        elif feats.shape[1] != self.input_dim:
            raise ValueError(f"{', '.join(map(str, self.files[i]))}: features are {feats.shape[1]} wide, expected "
                             f"{self.input_dim} (all videos must come from one extractor)")
        return feats

    def __getitem__(self, i: int) -> dict[str, Any]:
        video, timing = self.videos[i], self.timing[i]
        feats = self.load(i)
        fixed = timing.stride == FIXED_LENGTH
        if self.resize_to is not None and feats.shape[0] != self.resize_to:
            span = feats.shape[0] * timing.stride  # frames the sequence covers
            x = torch.from_numpy(feats).T[None]
            feats = torch.nn.functional.interpolate(x, size=self.resize_to, mode="linear",
                                                    align_corners=False)[0].T.numpy()
            timing = FeatureTiming(span / self.resize_to, timing.window, timing.fps)
        if fixed:
            # ActionFormer's feat_stride -1 (libs/datasets/anet.py): the sequence spans the video, so the stride
            # is duration x fps / length and a feature's window is num_frames (window_frames) strides long.
            stride = video.duration * timing.fps / feats.shape[0]
            timing = FeatureTiming(stride, timing.window * stride, timing.fps)
        known: list[Segment] = []
        for s in video.segments:
            # ActionFormer's remove_duplicate_annotations (tol 1e-3 s): HACS lists some instances twice
            if s.label in self._index and not any(k.label == s.label and abs(k.start - s.start) <= 1e-3
                                                   and abs(k.end - s.end) <= 1e-3 for k in known):
                known.append(s)
        segs = np.asarray([[s.start, s.end] for s in known], dtype=np.float32).reshape(-1, 2)
        segs = timing.to_grid(segs).astype(np.float32)
        labels = np.asarray([self._index[s.label] for s in known], dtype=np.int64)
        if self.training:
            # Drawn from the global generator, which the trainer seeds per sample (exact resume).
            rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
            feats, segs, labels = crop_sequence(feats, segs, labels, self.max_seq_len, rng, self.trunc_thresh,
                                                self.crop_ratio)
        return {"video_id": video.video_id, "feats": torch.from_numpy(np.ascontiguousarray(feats)),
                "segments": torch.from_numpy(np.ascontiguousarray(segs)), "labels": torch.from_numpy(labels),
                "duration": video.duration, "timing": timing}


def collate_sequences(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A batch as lists (sequences differ in length; the model pads them with a mask)."""
    return {k: [it[k] for it in items] for k in items[0]}


# ----------------------------------------------------------------------------- THUMOS14


def read_thumos14(annotation_dirs: Mapping[str, PathLike], durations: Mapping[str, float] | None = None,
                  fps: Mapping[str, float] | float | None = None, include_ambiguous: bool = False
                  ) -> dict[str, LocalizationVideo]:
    """THUMOS14's per-class files (``<Class>_val.txt`` / ``<Class>_test.txt``: ``video start end`` lines).

    ``annotation_dirs`` maps a subset name (``"validation"``, ``"test"``) to a
    folder of those files. ``durations`` (video id -> seconds, e.g. probed
    from the videos) is needed for the ActivityNet ``duration`` field; without
    it a video's last segment end is used, with a warning. ``Ambiguous_*``
    files (segments THUMOS excludes from scoring) are skipped unless asked for.
    """
    segments: dict[str, list[Segment]] = {}
    subset_of: dict[str, str] = {}
    for subset, folder in annotation_dirs.items():
        files = sorted(Path(folder).glob("*.txt"))
        if not files:
            raise MissingFile(f"no THUMOS14 annotation files (*.txt) in {folder}")
        for f in files:
            label = f.stem.rsplit("_", 1)[0]
            if label == "Ambiguous" and not include_ambiguous:
                continue
            for n, line in text_lines(f):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 3:
                    raise AnnotationError(f, f"expected 'video start end', got {line!r}", n)
                try:
                    start, end = float(parts[1]), float(parts[2])
                except ValueError:
                    raise AnnotationError(f, f"start and end must be numbers, got {line!r}", n) from None
                if start > end:
                    raise AnnotationError(f, f"start {start} > end {end}", n)
                segments.setdefault(parts[0], []).append(Segment(start, end, label))
                subset_of[parts[0]] = subset
    guessed = []
    out = {}
    for vid in sorted(segments):
        segs = tuple(sorted(segments[vid], key=lambda s: (s.start, s.end, s.label)))
        duration = (durations or {}).get(vid)
        if duration is None:
            duration = max(s.end for s in segs)
            guessed.append(vid)
        rate = fps.get(vid) if isinstance(fps, Mapping) else fps
        out[vid] = LocalizationVideo(vid, float(duration), subset_of[vid], segs, None if rate is None else float(rate))
    if guessed:
        log.warning("%d THUMOS14 video(s) without a duration: using their last segment end (%s ...)", len(guessed),
                    ", ".join(guessed[:3]))
    return out


def write_activitynet(videos: Mapping[str, LocalizationVideo], path: PathLike, version: str = "1.3") -> Path:
    """Write videos as an ActivityNet-style JSON (the format every localization reader here takes)."""
    database = {}
    for vid, v in videos.items():
        entry: dict[str, Any] = {"duration": v.duration, "subset": v.subset,
                                 "annotations": [{"segment": [s.start, s.end], "label": s.label}
                                                 for s in v.segments]}
        if v.fps is not None:
            entry["fps"] = v.fps
        database[vid] = entry
    return write_json(path, {"version": version, "database": database}, indent=1)
