"""AVA spatiotemporal action data: annotation files, person proposals, keyframe clips with boxes.

The files a user of AVA already has:

* ground truth / training CSV ``video_id, timestamp, x1, y1, x2, y2, action_id, person_id``
  (coordinates are fractions of the frame, ids start at 1); rows of just
  ``video_id, timestamp`` (keyframes without actions, AVA-Kinetics) are accepted and carry no box;
* result CSV ``video_id, timestamp, x1, y1, x2, y2, action_id, score`` (7 columns: score 1);
* the label map ``.pbtxt`` (``item { name: "..." id: N }``, ``label_id:`` also read);
* excluded timestamps ``video_id, timestamp``;
* person proposals: CSV ``video_id, timestamp, x1, y1, x2, y2, score`` or the pickled
  ``{"video_id,timestamp": array (N, 5)}`` files that SlowFast / AlphAction
  distribute. Pickles are read by an unpickler that loads only numpy's array,
  dtype and scalar reconstructors and a few builtins besides plain data
  (dicts, lists, tuples, numbers, strings); a stream naming anything else
  (a class, a function) is refused with an error before anything runs.

A keyframe is keyed by ``(video_id, timestamp)`` with the timestamp rounded
to microseconds (the official evaluator's key), so ``0902`` and ``902.0`` match.

:class:`AVADataset` turns keyframes into clips centred on them (``clip_len``
frames every ``frame_interval`` frames, decoded by :func:`~internvideo.data.read_frames`)
and carries the boxes through every spatial transform (:class:`BoxTransform`).
"""
from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import math
import os
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import atomic_path
from .datasets import AnnotationError, AVABox, text_lines
from .video import VideoError, probe, read_frames

__all__ = [
    "AVABox", "AVADetection", "Key", "key_of", "read_ava_groundtruth", "read_ava_results", "write_ava_results",
    "read_label_map", "read_excluded_timestamps", "read_proposals", "check_proposals_cover", "safe_unpickle",
    "BoxTransform", "AVADataset", "AVAKeyframe", "collate_ava", "jitter_boxes", "extend_boxes", "group_keyframes",
    "keyframes_from_proposals", "at_keyframes", "random_aug_boxes", "short_side_size", "KineticsClip",
    "index_kinetics_clips", "read_ava_kinetics",
]

PathLike = str | os.PathLike
Key = tuple[str, float]


def key_of(video_id: str, timestamp: float) -> Key:
    """The keyframe key: the official evaluator formats timestamps with 6 decimals."""
    return (video_id, round(float(timestamp), 6))


@dataclasses.dataclass(frozen=True)
class AVADetection:
    video_id: str
    timestamp: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2, fractions of width/height
    action_id: int
    score: float


# ----------------------------------------------------------------------------- CSV readers


def _rows(path: PathLike) -> Iterable[tuple[int, list[str]]]:
    """Numbered CSV rows; a UTF-8 BOM is dropped (it used to spoil the first video id, dropping that row) and
    bytes that are not UTF-8 are an error naming the file and line."""
    for number, line in text_lines(path):
        row = next(csv.reader([line]), [])
        if not row or all(not v.strip() for v in row):
            continue
        yield number, [v.strip() for v in row]


def _number(path: PathLike, line: int, field: str, text: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise AnnotationError(path, f"{field} must be {'an integer' if kind is int else 'a number'}, "
                                    f"got {text!r}", line) from None
    if kind is float and not math.isfinite(value):
        raise AnnotationError(path, f"{field} must be finite, got {text!r}", line)
    return value


def _box(path: PathLike, line: int, values: Sequence[str]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (_number(path, line, name, v) for name, v in zip(("x1", "y1", "x2", "y2"), values))
    if not (0 <= x1 <= 1 and 0 <= y1 <= 1 and 0 <= x2 <= 1 and 0 <= y2 <= 1):
        raise AnnotationError(path, f"box ({x1}, {y1}, {x2}, {y2}) has coordinates outside [0, 1] "
                                    "(AVA boxes are fractions of the frame)", line)
    if x2 < x1 or y2 < y1:
        raise AnnotationError(path, f"box ({x1}, {y1}, {x2}, {y2}) has x2 < x1 or y2 < y1", line)
    return (x1, y1, x2, y2)


def _action(path: PathLike, line: int, text: str, num_classes: int | None) -> int:
    action = _number(path, line, "action_id", text, int)
    if action < 1 or (num_classes is not None and action > num_classes):
        known = f"1..{num_classes}" if num_classes is not None else ">= 1"
        raise AnnotationError(path, f"unknown action id {action} (expected {known})", line)
    return action


def read_ava_groundtruth(path: PathLike, num_classes: int | None = None) -> list[AVABox]:
    """Ground-truth rows (8 columns; 7 = no person id, stored as -1; 2 = keyframe without boxes, skipped).

    ``num_classes``: action ids above it are an error (training); leave it
    ``None`` for evaluation, where the label map decides which ids count.
    """
    return [box for _, box in _groundtruth_rows(path, num_classes) if box is not None]


def _groundtruth_rows(path: PathLike, num_classes: int | None) -> Iterable[tuple[int, AVABox | None]]:
    """``(line, row)`` per ground-truth row; ``None`` for a keyframe without boxes (2 columns)."""
    for line, row in _rows(path):
        if len(row) == 2:
            _number(path, line, "timestamp", row[1])
            yield line, None
            continue
        if len(row) not in (7, 8):
            raise AnnotationError(path, f"expected 8 columns (video_id, timestamp, x1, y1, x2, y2, action_id, "
                                        f"person_id), got {len(row)}", line)
        timestamp = _number(path, line, "timestamp", row[1])
        box = _box(path, line, row[2:6])
        action = _action(path, line, row[6], num_classes)
        person = _number(path, line, "person_id", row[7], int) if len(row) == 8 else -1
        yield line, AVABox(row[0], timestamp, box, action, person)


# ----------------------------------------------------------------------------- AVA-Kinetics


@dataclasses.dataclass(frozen=True)
class KineticsClip:
    """A Kinetics clip file ``<youtube_id>_<start>_<end>.<ext>``: seconds ``start`` to ``end`` of the YouTube video."""

    path: Path
    start: int
    end: int

    def holds(self, timestamp: float) -> bool:
        return self.start < timestamp < self.end  # strict, as the official del_invalid_id

    def frame(self, timestamp: float, num_frames: int) -> int:
        """The keyframe's index: its relative position in the clip times the frame count, truncated (the
        official ``KineticsDataset._decode_video_data``, ``Spatial-Temporal-Action-Localization/data/ava.py``)."""
        return min(int((timestamp - self.start) / (self.end - self.start) * num_frames), num_frames - 1)


_KINETICS_NAME = re.compile(r"^(?P<id>.+)_(?P<start>\d+)_(?P<end>\d+)$")


def index_kinetics_clips(root: PathLike) -> dict[str, list[KineticsClip]]:
    """Kinetics clips under ``root`` (class sub-folders included) by YouTube id, named as Kinetics-700
    distributes them and mmaction2's ``cut_kinetics.py`` writes them: ``<youtube_id>_<start:06d>_<end:06d>.<ext>``
    (YouTube ids may hold ``_``). Files named otherwise are not clips and are left alone."""
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(root, "the Kinetics clip folder does not exist")
    out: dict[str, list[KineticsClip]] = collections.defaultdict(list)
    for p in sorted(root.rglob("*")):
        m = _KINETICS_NAME.match(p.stem) if p.is_file() else None
        if m and int(m["end"]) > int(m["start"]):
            out[m["id"]].append(KineticsClip(p, int(m["start"]), int(m["end"])))
    return dict(out)


def read_ava_kinetics(path: PathLike, clips: Mapping[str, Sequence[KineticsClip]], num_classes: int | None = None,
                      missing: str = "error") -> tuple[list[AVABox], dict[Key, KineticsClip], int]:
    """The Kinetics part of AVA-Kinetics: ``kinetics_{train,val}_v1.0.csv`` and the clips holding its keyframes.

    Rows as AVA's (``youtube_id, middle_frame_timestamp, x1, y1, x2, y2, action_id[, person_id]``: the v1.0
    release has no person id column, as mmaction2's ``tools/data/ava_kinetics/prepare_annotation.py`` reads it;
    ``youtube_id, timestamp`` rows are keyframes without actions), timestamps in seconds of the YouTube video,
    one annotated keyframe per clip. ``clips``: :func:`index_kinetics_clips`.

    A keyframe no clip holds (``start < timestamp < end``) is an error naming the line (``missing="error"``)
    or is dropped and counted (``"skip"``: what the official ``KineticsDataset.del_invalid_id`` does, since
    YouTube loses videos). Returns ``(rows, {keyframe key: clip}, number of rows skipped)``.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    rows: list[AVABox] = []
    where: dict[Key, KineticsClip] = {}
    skipped = 0
    for line, box in _groundtruth_rows(path, num_classes):
        if box is None:
            continue
        key = key_of(box.video_id, box.timestamp)
        if key not in where:
            clip = next((c for c in clips.get(box.video_id, ()) if c.holds(box.timestamp)), None)
            if clip is None:
                if missing == "skip":
                    skipped += 1
                    continue
                have = ", ".join(f"{c.start}-{c.end}" for c in clips.get(box.video_id, ())) or "none"
                raise AnnotationError(path, f"no Kinetics clip of {box.video_id} holds second {box.timestamp:g} "
                                            f"(clips {box.video_id}_<start>_<end>.* found: {have})", line)
            where[key] = clip
        rows.append(box)
    return rows, where, skipped


def read_ava_keyframes(path: PathLike) -> set[Key]:
    """Every keyframe a ground-truth CSV annotates, those without boxes (2-column rows) included."""
    return {key_of(row[0], _number(path, line, "timestamp", row[1])) for line, row in _rows(path) if len(row) >= 2}


def read_ava_results(path: PathLike) -> list[AVADetection]:
    """Result rows ``video_id, timestamp, x1, y1, x2, y2, action_id, score`` (no score column: 1.0)."""
    out = []
    for line, row in _rows(path):
        if len(row) not in (7, 8):
            raise AnnotationError(path, f"expected 8 columns (video_id, timestamp, x1, y1, x2, y2, action_id, "
                                        f"score), got {len(row)}", line)
        timestamp = _number(path, line, "timestamp", row[1])
        box = _box(path, line, row[2:6])
        action = _action(path, line, row[6], None)
        score = _number(path, line, "score", row[7]) if len(row) == 8 else 1.0
        out.append(AVADetection(row[0], timestamp, box, action, score))
    return out


def write_ava_results(path: PathLike, detections: Iterable[AVADetection]) -> Path:
    """Write the AVA result CSV; timestamps of whole seconds are written as AVA does (``0902``)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        for d in detections:
            ts = f"{int(d.timestamp):04d}" if float(d.timestamp).is_integer() else repr(float(d.timestamp))
            writer.writerow([d.video_id, ts, *(f"{v:.3f}" for v in d.box), d.action_id, f"{d.score:.6g}"])
    return path


def read_label_map(path: PathLike) -> dict[int, str]:
    """``{id: name}`` in file order from a label map ``.pbtxt`` (``item { name: "..." id: N }``)."""
    text = "\n".join(line for _, line in text_lines(path))
    labels: dict[int, str] = {}
    items = list(re.finditer(r"item\s*\{(.*?)\}", text, flags=re.S))
    if not items:
        raise AnnotationError(path, 'no "item { name: ... id: ... }" entries found (is this a label map .pbtxt?)')
    for m in items:
        line = text.count("\n", 0, m.start()) + 1
        body = m.group(1)
        ident = re.search(r"\b(?:label_)?id\s*:\s*(-?\d+)", body)
        name = re.search(r'\bname\s*:\s*"([^"]*)"', body) or re.search(r"\bdisplay_name\s*:\s*\"([^\"]*)\"", body)
        if ident is None:
            raise AnnotationError(path, "label map item without an id", line)
        class_id = int(ident.group(1))
        if class_id < 1:
            raise AnnotationError(path, f"label map ids start at 1, got {class_id}", line)
        if class_id in labels:
            raise AnnotationError(path, f"duplicate label map id {class_id}", line)
        labels[class_id] = name.group(1) if name else str(class_id)
    return labels


def read_excluded_timestamps(path: PathLike) -> set[Key]:
    """Keyframes the official evaluation ignores (``video_id, timestamp`` rows)."""
    keys = set()
    for line, row in _rows(path):
        if len(row) != 2:
            raise AnnotationError(path, f"expected 2 columns (video_id, timestamp), got {len(row)}", line)
        keys.add(key_of(row[0], _number(path, line, "timestamp", row[1])))
    return keys


# ----------------------------------------------------------------------------- proposals


def read_proposals(path: PathLike) -> dict[Key, np.ndarray]:
    """Person boxes per keyframe: ``{(video_id, timestamp): float32 (N, 5) x1, y1, x2, y2, score}``.

    CSV rows ``video_id, timestamp, x1, y1, x2, y2[, score]`` or a pickle
    (``.pkl``/``.pickle``) mapping ``"video_id,timestamp"`` to ``(N, 4|5)``
    arrays, read by :func:`safe_unpickle` (no code in it runs).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or path.suffix in (".pkl", ".pickle"):
        return _proposals_from_pickle(path)
    grouped: dict[Key, list[list[float]]] = collections.defaultdict(list)
    for line, row in _rows(path):
        if len(row) not in (6, 7):
            raise AnnotationError(path, f"expected 7 columns (video_id, timestamp, x1, y1, x2, y2, score), "
                                        f"got {len(row)}", line)
        ts = _number(path, line, "timestamp", row[1])
        score = _number(path, line, "score", row[6]) if len(row) == 7 else 1.0
        grouped[key_of(row[0], ts)].append([*_box(path, line, row[2:6]), score])
    return {k: np.asarray(v, dtype=np.float32).reshape(-1, 5) for k, v in grouped.items()}


def _proposals_from_pickle(path: Path) -> dict[Key, np.ndarray]:
    data = safe_unpickle(path.read_bytes(), str(path))
    if not isinstance(data, dict):
        raise AnnotationError(path, f"expected a dict of 'video_id,timestamp' -> boxes, got {type(data).__name__}")
    out = {}
    for name, boxes in data.items():
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if not isinstance(name, str) or "," not in name:
            raise AnnotationError(path, f"key {name!r} is not 'video_id,timestamp'")
        video, ts = name.rsplit(",", 1)
        try:
            timestamp = float(ts)
        except ValueError:
            raise AnnotationError(path, f"key {name!r}: timestamp {ts!r} is not a number") from None
        arr = np.asarray(boxes, dtype=np.float32)
        if arr.size == 0:
            arr = arr.reshape(0, 5)
        if arr.ndim != 2 or arr.shape[1] not in (4, 5):
            raise AnnotationError(path, f"key {name!r}: expected boxes of shape (N, 4) or (N, 5), got {arr.shape}")
        if arr.shape[1] == 4:
            arr = np.concatenate([arr, np.ones((len(arr), 1), np.float32)], axis=1)
        bad = ~((arr[:, :4] >= 0) & (arr[:, :4] <= 1)).all(1) | (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
        if bad.any():
            raise AnnotationError(path, f"key {name!r}: box {arr[bad][0, :4].tolist()} is outside [0, 1] or has "
                                        "x2 < x1 / y2 < y1")
        out[key_of(video, timestamp)] = arr
    return out


def check_proposals_cover(proposals: Mapping[Key, np.ndarray], keys: Iterable[Key], path: PathLike) -> None:
    """Raise if the proposals hold none of the videos of some keyframes (wrong file for this split)."""
    have = {video for video, _ in proposals}
    missing = sorted({video for video, _ in keys} - have)
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise AnnotationError(path, f"no proposals for {len(missing)} video(s) of the annotations: {listed} "
                                    "(a proposal file for other videos?)")


# Pickles: the standard unpickler, but a global it may load is looked up in this table, never imported (as
# torch.load(weights_only=True) does). What remains callable builds numpy arrays, dtypes and scalars, floats and
# bytes; a stream naming anything else (a class, os.system, ...) is refused before it runs.
def _numpy_reconstructors() -> dict[str, Any]:
    # Take them from numpy's own reduce output: their module moved (numpy.core -> numpy._core) between versions.
    return {"_reconstruct": np.array(0).__reduce__()[0], "_frombuffer": np.array([0.0]).__reduce_ex__(5)[0],
            "scalar": np.float64(0).__reduce__()[0]}


_NUMPY = _numpy_reconstructors()
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(f"numpy{core}.multiarray", k): _NUMPY[k] for core in (".core", "._core") for k in ("_reconstruct", "scalar")},
    **{(f"numpy{core}.numeric", "_frombuffer"): _NUMPY["_frombuffer"] for core in (".core", "._core")},
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    **{(m, k): v for m in ("builtins", "__builtin__") for k, v in (("float", float), ("bytes", bytes))},
    ("_codecs", "encode"): codecs.encode,  # Python 3 writes Python 2 byte strings as encode(text, "latin1")
}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays and plain data are "
                                         "read)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id (only numpy arrays and plain data are read)")


def safe_unpickle(data: bytes, name: str = "<pickle>") -> Any:
    """Read a pickle of dicts/lists/tuples/numbers/strings/numpy arrays, written by Python 2 or 3.

    Raises :class:`AnnotationError` naming ``name`` for anything else (a
    class or callable other than numpy's array, dtype and scalar
    reconstructors): nothing the stream names is imported or run.
    """
    try:
        # latin1: a Python 2 str is text or a numpy array's raw bytes; numpy reads the latter back from latin1
        return _PlainDataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - every failure of an untrusted stream is the file's problem
        raise AnnotationError(name, f"cannot convert pickle safely: {e}") from None


# ----------------------------------------------------------------------------- boxes


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator, scale: float = 0.05) -> np.ndarray:
    """Move each side of each box by up to ``scale`` of its width/height, clipped to the frame.

    The train-time box augmentation: ground-truth boxes are cleaner than the
    detector's proposals the head sees at test time.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    out = boxes + rng.uniform(-scale, scale, boxes.shape).astype(np.float32) * wh
    out = np.clip(out, 0, 1)
    lo, hi = np.minimum(out[:, :2], out[:, 2:]), np.maximum(out[:, :2], out[:, 2:])
    return np.concatenate([lo, hi], axis=1)


def extend_boxes(boxes: np.ndarray, extend: tuple[float, float] = (0.1, 0.05)) -> np.ndarray:
    """Grow boxes by ``extend`` (fraction of width, of height) in total, clipped: the official test-time context."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    dw = (boxes[:, 2] - boxes[:, 0]) * extend[0] / 2
    dh = (boxes[:, 3] - boxes[:, 1]) * extend[1] / 2
    out = boxes + np.stack([-dw, -dh, dw, dh], axis=1)
    return np.clip(out, 0, 1)


def random_aug_boxes(boxes: np.ndarray, width: int, height: int, rng: np.random.Generator,
                     extent: tuple[float, float, float, float] = (0.2, 0.1, 0.1, 0.05)) -> np.ndarray:
    """The official train-time box jitter (AlphAction ``BoxList.random_aug``, called by InternVideo's
    ``modeling_finetune.py`` ``sample_box`` as ``random_aug(0.2, 0.1, 0.1, 0.05)`` on the cropped, flipped frame).

    ``extent = (x_out, x_in, y_out, y_in)``: the left side moves by the box width times U(-x_out, x_in), the right
    side by U(-x_in, x_out) (so a box grows by up to ``x_out`` and shrinks by up to ``x_in`` on each side), top and
    bottom likewise with the height. Boxes are fractions of a ``width x height`` pixel frame; the official code's
    inclusive pixel boxes (``x2 + 1`` = our ``x2``) are clamped as there: left/top to ``[0, side - 2]`` px,
    right/bottom to at most the frame and at least 2 px past the left/top.
    """
    x_out, x_in, y_out, y_in = extent
    size = np.array([width, height, width, height], dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * size
    n = len(b)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    x1 = b[:, 0] + w * rng.uniform(-x_out, x_in, n)
    y1 = b[:, 1] + h * rng.uniform(-y_out, y_in, n)
    x2 = b[:, 2] + w * rng.uniform(-x_in, x_out, n)
    y2 = b[:, 3] + h * rng.uniform(-y_in, y_out, n)
    x1, y1 = np.clip(x1, 0, width - 2), np.clip(y1, 0, height - 2)
    x2 = np.maximum(np.minimum(x2, width), x1 + 2)
    y2 = np.maximum(np.minimum(y2, height), y1 + 2)
    return (np.stack([x1, y1, x2, y2], axis=1) / size).astype(np.float32)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` with the short side ``short_side`` and the long side ``int(short_side * long / short)``
    (truncated), as AlphAction's ``video_transforms.Resize.get_size`` (InternVideo
    ``Spatial-Temporal-Action-Localization/alphaction/dataset/transforms/video_transforms.py``).

    A frame whose short side already has that size is kept as it is (the official code means to, but returns
    its ``(h, w)`` where ``(w, h)`` is expected, transposing such frames: not reproduced).
    """
    if min(height, width) == short_side:
        return height, width
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


@dataclasses.dataclass
class BoxTransform:
    """Resize a clip and carry its boxes (fractions of the frame) along.

    Square mode (``keep_aspect=False``, ours): training scales the frame to a
    random ``side x side`` in ``size * scale`` and cuts a random
    ``size x size`` window; test resizes the whole frame to ``size x size``.
    The aspect ratio is not kept, which a fraction-of-frame box survives
    unchanged; every clip is ``size x size``.

    Aspect mode (``keep_aspect=True``, the official InternVideo / AlphAction
    pipeline: ``data/transforms.py`` ``build_transforms`` of InternVideo's
    ``Spatial-Temporal-Action-Localization``): the short side goes to
    ``short_side`` (official 256; default ``size``) and the long side keeps the
    ratio (:func:`short_side_size`); training cuts a random ``size x size``
    window (``RandomClip``: left ``int(u * (W - size))``, top likewise; ``scale``
    draws a random short side in ``short_side * scale``, official ``(1, 1)``);
    test keeps the whole frame and pads it right and bottom with zeros (after
    normalisation) to a multiple of ``pad_to`` (the official ``BatchCollator(size_divisible=16)``),
    so clips differ in size; :func:`collate_ava` pads a batch to its largest.

    Either way boxes are shifted and clipped to the window (boxes left with no
    area are dropped; the official crop keeps them, as 1-pixel boxes, with their
    labels) and come back as fractions of the returned frame, padding included,
    which is what the RoI head reads. Then the clip and its boxes are mirrored
    with probability ``flip``. ``antialias``: the resize low-pass filters when
    it shrinks (ours); the official ``cv2.resize`` (bilinear) does not.
    Returns ``(video float (C, T, H, W) normalised, boxes (K, 4), kept (K,) bool)``.

    ``flip`` defaults to 0: mirroring swaps left/right actions (the synthetic world's
    "moving left"); real AVA recipes use 0.5.
    """

    size: int
    training: bool = False
    scale: tuple[float, float] = (1.0, 1.25)
    flip: float = 0.0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    keep_aspect: bool = False
    short_side: int | None = None
    pad_to: int = 1
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.keep_aspect and self.short_side is not None and self.short_side < self.size:
            raise ValueError(f"short_side {self.short_side} is smaller than the crop size {self.size}")

    def geometry(self, height: int, width: int, rng: np.random.Generator
                 ) -> tuple[tuple[int, int], tuple[int, int, int, int], bool]:
        """``((resized h, w), (top, left, window h, w), flipped)`` for one clip of ``height x width`` frames."""
        if not self.keep_aspect:
            if not self.training:
                return (self.size, self.size), (0, 0, self.size, self.size), False
            side = max(self.size, int(round(self.size * rng.uniform(*self.scale))))
            top = int(rng.integers(0, side - self.size + 1))
            left = int(rng.integers(0, side - self.size + 1))
            return (side, side), (top, left, self.size, self.size), bool(rng.random() < self.flip)
        short = self.short_side or self.size
        if not self.training:
            rh, rw = short_side_size(height, width, short)
            return (rh, rw), (0, 0, rh, rw), False
        short = max(self.size, int(round(short * rng.uniform(*self.scale))))
        rh, rw = short_side_size(height, width, short)
        left = int(rng.random() * (rw - self.size))
        top = int(rng.random() * (rh - self.size))
        return (rh, rw), (top, left, self.size, self.size), bool(rng.random() < self.flip)

    def padded(self, h: int, w: int) -> tuple[int, int]:
        if not self.keep_aspect or self.training:
            return h, w
        m = max(self.pad_to, 1)
        return -(-h // m) * m, -(-w // m) * m

    def boxes(self, boxes: np.ndarray, resized: tuple[int, int], window: tuple[int, int, int, int],
              flipped: bool) -> tuple[np.ndarray, np.ndarray]:
        (rh, rw), (top, left, wh, ww) = resized, window
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([rw, rh, rw, rh], dtype=np.float64)
        b = b - np.array([left, top, left, top], dtype=np.float64)
        b = np.clip(b, 0, np.array([ww, wh, ww, wh], dtype=np.float64))
        kept = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        if flipped:
            b = np.stack([ww - b[:, 2], b[:, 1], ww - b[:, 0], b[:, 3]], axis=1)
        ph, pw = self.padded(wh, ww)
        return (b / np.array([pw, ph, pw, ph], dtype=np.float64)).astype(np.float32), kept

    def __call__(self, frames: np.ndarray, boxes: np.ndarray, rng: np.random.Generator | None = None):
        rng = rng if rng is not None else np.random.default_rng()
        resized, window, flipped = self.geometry(frames.shape[1], frames.shape[2], rng)
        top, left, wh, ww = window
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255)  # C T H W
        video = F.interpolate(video.permute(1, 0, 2, 3), size=resized, mode="bilinear", align_corners=False,
                              antialias=self.antialias).permute(1, 0, 2, 3)
        video = video[..., top:top + wh, left:left + ww]
        if flipped:
            video = video.flip(-1)
        mean = torch.tensor(self.mean).view(-1, 1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1, 1)
        video = (video - mean) / std
        ph, pw = self.padded(wh, ww)
        if (ph, pw) != (wh, ww):
            video = F.pad(video, (0, pw - ww, 0, ph - wh))
        out_boxes, kept = self.boxes(boxes, resized, window, flipped)
        return video.contiguous(), out_boxes, kept


# ----------------------------------------------------------------------------- dataset


@dataclasses.dataclass(frozen=True)
class AVAKeyframe:
    """One keyframe: its people (boxes) and, for training/evaluation, their action ids."""

    video_id: str
    timestamp: float
    boxes: tuple[tuple[float, float, float, float], ...]
    actions: tuple[tuple[int, ...], ...]  # per box; empty tuples for unlabelled proposals
    scores: tuple[float, ...]  # detector scores (1.0 for ground truth)


def group_keyframes(rows: Iterable[AVABox]) -> list[AVAKeyframe]:
    """Group ground-truth rows into keyframes; rows of one person (same box) merge their actions."""
    people: dict[Key, dict[tuple, list[int]]] = collections.defaultdict(dict)
    times: dict[Key, float] = {}
    for r in rows:
        key = key_of(r.video_id, r.timestamp)
        times[key] = r.timestamp
        person = (r.person_id, tuple(round(v, 4) for v in r.box))
        entry = people[key].setdefault(person, [])
        if r.action_id not in entry:
            entry.append(r.action_id)
    out = []
    for key, persons in people.items():
        boxes = tuple(tuple(float(v) for v in p[1]) for p in persons)
        out.append(AVAKeyframe(key[0], times[key], boxes, tuple(tuple(a) for a in persons.values()),
                               (1.0,) * len(boxes)))
    return out


def at_keyframes(rows: Iterable[AVABox], hz: float = 1.0) -> list[AVABox]:
    """Rows at keyframe times (multiples of ``1 / hz`` seconds; AVA annotates at 1 Hz)."""
    out = []
    for r in rows:
        steps = r.timestamp * hz
        if abs(steps - round(steps)) < 1e-6:
            out.append(r)
    return out


def keyframes_from_proposals(proposals: Mapping[Key, np.ndarray], keys: Iterable[Key],
                             threshold: float) -> list[AVAKeyframe]:
    """Keyframes whose boxes are the proposals scoring at least ``threshold`` (unlabelled)."""
    out = []
    for key in keys:
        boxes = proposals.get(key)
        if boxes is None:
            continue
        boxes = boxes[boxes[:, 4] >= threshold]
        if len(boxes):
            out.append(AVAKeyframe(key[0], key[1], tuple(tuple(float(v) for v in b[:4]) for b in boxes),
                                   ((),) * len(boxes), tuple(float(b[4]) for b in boxes)))
    return out


class AVADataset(torch.utils.data.Dataset):
    """Clips centred on keyframes, with their boxes and multi-hot action targets.

    Args:
        keyframes: from :func:`group_keyframes` (training, or evaluation on
            ground-truth boxes) or :func:`keyframes_from_proposals`.
        video_root: folder of the videos, found as ``<video_id>.<any extension>``.
        num_classes: size of the multi-hot target (action id ``a`` -> column ``a - 1``).
        clip_len, frame_interval: the clip is ``clip_len`` frames every
            ``frame_interval`` frames with the keyframe at position ``clip_len // 2``
            (AVA recipes: 16 x 4); frames before the start or after the end repeat the edge frame.
        time_offset: seconds subtracted from timestamps before finding the frame
            (900 for AVA's movies cut at 15:00; 0 for whole files).
        transform: a :class:`BoxTransform`.
        jitter: train-time box jitter (fraction of the box side) before the transform, 0 = off (ours).
        extend: test-time box growth ``(w, h)`` fractions, or None (official ``(0.1, 0.05)``:
            ``modeling_finetune.py`` ``test_ext`` with AlphAction's ``BoxList.extend``, :func:`extend_boxes`).
        box_aug: the official train-time jitter ``(x_out, x_in, y_out, y_in)`` after crop and flip
            (:func:`random_aug_boxes`, official ``(0.2, 0.1, 0.1, 0.05)``), or None.
        frame_shift: frames added to every sampled index. The official pipeline decodes 64 frames with the
            keyframe at index 32 and takes ``TemporalCrop`` indices ``1, 5, ..., 61`` (16 x 4), i.e. the
            keyframe's neighbours ``-31 .. +29``: shift 1 (``alphaction/dataset/transforms/video_transforms.py``).
        clips: keyframes found in Kinetics clips (AVA-Kinetics, :func:`read_ava_kinetics`): their frame is the
            keyframe's relative position in the clip, as the official ``KineticsDataset``; other keyframes are
            looked up as ``<video_id>.*`` in ``video_root``.

    Keyframes whose frame lies beyond the end of the video, or in a missing
    video, are dropped when the dataset is built and counted in
    ``self.skipped`` (reason -> count); a clip that fails to decode later
    comes back as ``None`` (dropped by :func:`collate_ava`, reported in the
    batch's ``"skipped"``).
    """

    def __init__(self, keyframes: Sequence[AVAKeyframe], video_root: PathLike, num_classes: int,
                 transform: BoxTransform, *, clip_len: int = 16, frame_interval: int = 4, time_offset: float = 0.0,
                 jitter: float = 0.0, extend: tuple[float, float] | None = None, seed: int = 0,
                 box_aug: tuple[float, float, float, float] | None = None, frame_shift: int = 0,
                 clips: Mapping[Key, "KineticsClip"] | None = None) -> None:
        self.root = Path(video_root)
        self.num_classes, self.transform = num_classes, transform
        self.clip_len, self.frame_interval, self.time_offset = clip_len, frame_interval, time_offset
        self.jitter, self.extend, self.seed, self.epoch = jitter, extend, seed, 0
        self.box_aug, self.frame_shift, self.clips = box_aug, frame_shift, clips or {}
        self.skipped: collections.Counter[str] = collections.Counter()
        files = {p.stem: p for p in sorted(self.root.iterdir()) if p.is_file()} if self.root.is_dir() else {}
        info: dict[str, tuple[int, float] | None] = {}
        self.items: list[tuple[AVAKeyframe, Path, int, int]] = []
        for kf in keyframes:
            for actions in kf.actions:
                for a in actions:
                    if not 1 <= a <= num_classes:
                        raise ValueError(f"{kf.video_id} @ {kf.timestamp}: unknown action id {a} "
                                         f"(expected 1..{num_classes})")
            clip = self.clips.get(key_of(kf.video_id, kf.timestamp))
            path = clip.path if clip is not None else files.get(kf.video_id)
            if path is None:
                self.skipped["video not found"] += 1
                continue
            name = str(path)
            if name not in info:
                try:
                    meta = probe(path)
                    info[name] = (meta.num_frames, meta.fps)
                except (VideoError, OSError):
                    info[name] = None
            if info[name] is None:
                self.skipped["unreadable video"] += 1
                continue
            num_frames, fps = info[name]
            frame = clip.frame(kf.timestamp, num_frames) if clip is not None else \
                int(round((kf.timestamp - time_offset) * fps))
            if not 0 <= frame < num_frames:
                self.skipped["no frame at the timestamp"] += 1
                continue
            self.items.append((kf, path, frame, num_frames))

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frame_indices(self, frame: int, num_frames: int) -> np.ndarray:
        offsets = (np.arange(self.clip_len) - self.clip_len // 2) * self.frame_interval + self.frame_shift
        return np.clip(frame + offsets, 0, num_frames - 1)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        kf, path, frame, num_frames = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            frames = read_frames(path, self.frame_indices(frame, num_frames))
        except VideoError as e:
            return {"skipped": (str(path), str(e))}
        boxes = np.asarray(kf.boxes, dtype=np.float32).reshape(-1, 4)
        if self.jitter and self.transform.training:
            boxes = jitter_boxes(boxes, rng, self.jitter)
        if self.extend is not None:
            boxes = extend_boxes(boxes, self.extend)
        video, boxes, kept = self.transform(frames, boxes, rng)
        if self.box_aug is not None and self.transform.training:
            boxes = random_aug_boxes(boxes, video.shape[-1], video.shape[-2], rng, self.box_aug)
        labels = np.zeros((len(kf.boxes), self.num_classes), dtype=np.float32)
        for i, actions in enumerate(kf.actions):
            for a in actions:
                labels[i, a - 1] = 1.0
        source = np.asarray(kf.boxes, dtype=np.float32).reshape(-1, 4)[kept]  # as annotated, for result files
        return {"video": video, "boxes": torch.from_numpy(boxes[kept]), "labels": torch.from_numpy(labels[kept]),
                "source_boxes": torch.from_numpy(source),
                "scores": torch.tensor(kf.scores, dtype=torch.float32)[torch.from_numpy(kept)],
                "video_id": kf.video_id, "timestamp": kf.timestamp, "index": index}


def collate_ava(items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack clips; concatenate boxes into ``rois (K, 5)`` = (clip index in the batch, x1, y1, x2, y2).

    Clips of different sizes (aspect-keeping test frames) are padded right and bottom with zeros to the
    largest, as AlphAction's ``batch_different_videos`` (``alphaction/dataset/collate_batch.py``); their boxes,
    fractions of their own frame, are rescaled to the padded one.
    """
    skipped = [it["skipped"] for it in items if it is not None and "skipped" in it]
    good = [it for it in items if it is not None and "skipped" not in it]
    if not good:
        return {"video": None, "rois": torch.zeros(0, 5), "labels": torch.zeros(0, 0), "skipped": skipped}
    height = max(int(it["video"].shape[-2]) for it in good)
    width = max(int(it["video"].shape[-1]) for it in good)
    videos, rois = [], []
    for i, it in enumerate(good):
        v, boxes = it["video"], it["boxes"]
        h, w = int(v.shape[-2]), int(v.shape[-1])
        if (h, w) != (height, width):
            v = F.pad(v, (0, width - w, 0, height - h))
            boxes = boxes * boxes.new_tensor([w / width, h / height, w / width, h / height])
        videos.append(v)
        rois.append(torch.cat([torch.full((len(boxes), 1), float(i)), boxes], dim=1))
    return {
        "video": torch.stack(videos),
        "rois": torch.cat(rois),
        "labels": torch.cat([it["labels"] for it in good]),
        "source_boxes": torch.cat([it["source_boxes"] for it in good]),
        "scores": torch.cat([it["scores"] for it in good]),
        "video_id": [it["video_id"] for it in good],
        "timestamp": [it["timestamp"] for it in good],
        "index": torch.tensor([it["index"] for it in good]),
        "skipped": skipped,
    }
