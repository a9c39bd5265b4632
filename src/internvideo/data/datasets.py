"""Annotation readers and torch Datasets for video classification and video-text data.

Readers (one per format in ``docs/data.md``) turn files users already have into
small frozen dataclasses and stop at the first malformed entry with an
:class:`AnnotationError` naming the file, the line (or JSON field) and the
problem. They never touch video files.

Datasets decode with :func:`~internvideo.data.read_frames` and return dicts.

* **Views.** A dataset is built with one or more :class:`View` s, each a
  sampler plus a transform under a name. All views of a sample come from the
  same video, decoded in one pass, so a fusion model can ask for
  ``View("mae", DenseSampler(16, 4), ...)`` and ``View("clip", SegmentSampler(8), ...)``
  and receive ``batch["mae"]`` and ``batch["clip"]`` of the same video.
* **Randomness.** Training samples draw everything (frames, crops, captions,
  replacements) from ``numpy.random.default_rng([seed, epoch, index])``:
  identical for any number of workers and reproducible across runs. Call
  :meth:`VideoDataset.set_epoch` before each epoch (with ``persistent_workers=True``
  the workers keep the epoch they were started with).
* **Unreadable videos.** With ``strict=False`` (the default in training) a
  video that fails to decode is logged, recorded and replaced by a randomly
  chosen other sample. The record travels *inside the sample* (key
  ``"skipped"``), so it reaches the main process from any worker with no
  shared state. :func:`collate_videos` merges the records of a batch and
  :class:`SkipLog` adds them up over an epoch::

      loader = DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=collate_videos)
      skips = SkipLog()
      for batch in skips.track(loader):   # or: skips.update(batch) in your loop
          ...
      print(skips.summary())               # "2 unreadable videos skipped: ..."

  ``strict=True`` (the default in evaluation, where silently replacing a test
  video would change the score) raises the :class:`VideoError` instead.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import fileio
from ..fileio import atomic_path
from ..errors import UsageError, UserError
from ..recipe import InputRecipe
from .memory import DecodedVideos, active_decoded_videos
from .sampling import DenseSampler, Sampler, SegmentSampler, TestLayout, UniformSampler
from .transforms import EvalTransformConfig, TrainTransformConfig, as_float, build_eval_transform
from .transforms import build_train_transform, to_cthw
from .video import PathLike, VideoError, probe, read_frames
from .workers import note_decoding

__all__ = [
    "AnnotationError", "ClassificationSample", "VideoTextSample", "Segment", "LocalizationVideo", "AVABox", "QASample",
    "read_classification_list", "read_classes", "read_video_text", "write_video_text", "read_msrvtt",
    "read_activitynet", "read_qa", "text_lines",
    "View", "VideoDataset", "VideoClassificationDataset", "VideoTextDataset", "collate_videos", "SkipLog",
    "SkipSummary", "IMAGE_EXTENSIONS", "json_number", "read_segment", "flatten_repeats", "video_dataset_of",
]

log = logging.getLogger("internvideo.data")

#: Files with these suffixes are read as one-frame videos (image-text pairs).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"})


class AnnotationError(UserError):
    """A malformed annotation: the message reads ``file:line: problem`` (or ``file: field: problem``)."""

    def __init__(self, path: PathLike, problem: str, line: int | None = None, field: str | None = None) -> None:
        self.path, self.line, self.field, self.problem = os.fspath(path), line, field, problem
        where = self.path + (f":{line}" if line is not None else "") + (f": {field}" if field else "")
        super().__init__(f"{where}: {problem}")


# ----------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class ClassificationSample:
    path: str
    label: int  # -1 marks an unknown class (open-set test lists)


@dataclasses.dataclass(frozen=True)
class VideoTextSample:
    video: str
    captions: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    label: str


@dataclasses.dataclass(frozen=True)
class LocalizationVideo:
    video_id: str
    duration: float  # seconds
    subset: str
    segments: tuple[Segment, ...]
    fps: float | None = None  # frame rate, when the annotation file gives one


@dataclasses.dataclass(frozen=True)
class AVABox:
    video_id: str
    timestamp: float  # seconds
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of width/height
    action_id: int
    person_id: int


@dataclasses.dataclass(frozen=True)
class QASample:
    video: str
    question: str
    answer: str
    candidates: tuple[str, ...] | None = None
    type: str | None = None  # question type when the data has one (what/who/how/where/when, colour, ...)


# ----------------------------------------------------------------------------- readers


def _resolve(root: PathLike | None, path: str) -> str:
    return path if root is None or os.path.isabs(path) else os.path.join(os.fspath(root), path)


def _default_root(annotation: PathLike, root: PathLike | None) -> PathLike:
    """Relative video paths are relative to ``root``, or else to the annotation file's folder."""
    return root if root is not None else os.path.dirname(os.path.abspath(os.fspath(annotation)))


def text_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 text file (a leading BOM dropped); bad bytes are an error naming the line."""
    lines = re.split(r"\r\n|\r|\n", read_text(path))  # not str.splitlines: U+2028 and kin may sit in a caption
    if lines and lines[-1] == "":
        lines.pop()
    yield from enumerate(lines, start=1)


def read_text(path: PathLike) -> str:
    """:func:`internvideo.fileio.read_text` whose decoding error is an :class:`AnnotationError` (file:line)."""
    try:
        return fileio.read_text(path)
    except fileio.TextDecodeError as e:
        raise AnnotationError(path, e.problem, e.line) from None


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Numbered non-empty lines, skipping ``#`` comments."""
    for number, raw in text_lines(path):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _json_lines(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise AnnotationError(path, f"not valid JSON ({e.msg} at column {e.colno})", number) from e
        if not isinstance(record, dict):
            raise AnnotationError(path, f"expected a JSON object, got {type(record).__name__}", number)
        yield number, record


def _string_field(record: Mapping[str, Any], key: str, path: PathLike, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in record else f"{type(value).__name__} {value!r}"
        raise AnnotationError(path, f'field "{key}" must be a non-empty string ({got})', line)
    return value


def _captions(value: Any, path: PathLike, line: int, key: str = "caption") -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(c, str) and c.strip() for c in items):
        raise AnnotationError(path, f'field "{key}" must be a non-empty string or a non-empty list of strings '
                                    f"(got {value!r})", line)
    return tuple(items)


def read_classification_list(path: PathLike, root: PathLike | None = None, num_classes: int | None = None
                             ) -> list[ClassificationSample]:
    """Kinetics-style list: ``relative/path.mp4 label_index`` per line (paths may contain spaces).

    ``-1`` marks an unknown class (open-set lists). With ``num_classes`` (the
    length of the classes file), a label outside ``[-1, num_classes)`` is an
    error naming the line.
    """
    root = _default_root(path, root)
    samples = []
    for number, line in _lines(path):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise AnnotationError(path, f"expected '<video path> <label index>', got {line!r}", number)
        try:
            label = int(parts[1])
        except ValueError:
            raise AnnotationError(path, f"label must be an integer, got {parts[1]!r}", number) from None
        if label < -1:
            raise AnnotationError(path, f"label must be >= 0 (or -1 for unknown), got {label}", number)
        if num_classes is not None and label >= num_classes:
            raise AnnotationError(path, f"label {label} is out of range: there are {num_classes} classes "
                                        f"(labels 0..{num_classes - 1})", number)
        samples.append(ClassificationSample(_resolve(root, parts[0]), label))
    return samples


def read_classes(path: PathLike) -> list[str]:
    """``classes.txt``: one human-readable class name per line, line ``i`` naming label ``i``."""
    names = [line.strip() for _, line in text_lines(path)]
    while names and not names[-1]:
        names.pop()
    for number, name in enumerate(names, start=1):
        if not name:
            raise AnnotationError(path, "empty class name", number)
    return names


def read_video_text(path: PathLike, root: PathLike | None = None) -> list[VideoTextSample]:
    """JSON lines ``{"video": path, "caption": str | [str, ...]}``; ``"image"`` may replace ``"video"``."""
    root = _default_root(path, root)
    samples = []
    for number, record in _json_lines(path):
        key = "video" if "video" in record or "image" not in record else "image"
        video = _string_field(record, key, path, number)
        captions_key = "caption" if "caption" in record or "captions" not in record else "captions"
        samples.append(VideoTextSample(_resolve(root, video), _captions(record.get(captions_key), path, number,
                                                                       captions_key)))
    return samples


def write_video_text(samples: Iterable[VideoTextSample], path: PathLike, root: PathLike | None = None) -> None:
    """Write samples as video-text JSON lines (paths made relative to ``root`` when given)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for s in samples:
            video = os.path.relpath(s.video, root) if root is not None else s.video
            caption: str | list[str] = s.captions[0] if len(s.captions) == 1 else list(s.captions)
            f.write(json.dumps({"video": video, "caption": caption}) + "\n")


def read_msrvtt(path: PathLike, video_dir: PathLike, split: str | None = None,
                extension: str = ".mp4") -> list[VideoTextSample]:
    """Import MSR-VTT annotations: ``MSRVTT_data.json`` or a JSFusion-style ``.csv``.

    The JSON form (``{"videos": [{"video_id", "split"}], "sentences": [{"video_id", "caption"}]}``)
    yields one sample per video with all its captions, optionally only
    ``split`` ("train"/"validate"/"test"). The CSV form (columns including
    ``video_id`` and ``sentence``, e.g. the 1k-A test split) yields one sample
    per row. Videos are ``video_dir/<video_id><extension>``.
    """
    path = os.fspath(path)
    if path.endswith(".csv"):
        samples = []
        with io.StringIO(read_text(path), newline="") as f:
            reader = csv.DictReader(f)
            missing = {"video_id", "sentence"} - set(reader.fieldnames or [])
            if missing:
                raise AnnotationError(path, f"CSV header lacks column(s) {sorted(missing)}", 1)
            for number, row in enumerate(reader, start=2):
                vid, sentence = (row.get("video_id") or "").strip(), (row.get("sentence") or "").strip()
                if not vid or not sentence:
                    raise AnnotationError(path, "empty video_id or sentence", number)
                samples.append(VideoTextSample(os.path.join(os.fspath(video_dir), vid + extension), (sentence,)))
        return samples
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise AnnotationError(path, 'expected an object with a "sentences" list (MSRVTT_data.json)')
    wanted: set[str] | None = None
    if split is not None:
        videos = data.get("videos")
        if not isinstance(videos, list):
            raise AnnotationError(path, 'a split was requested but there is no "videos" list', field="videos")
        wanted = {v.get("video_id") for v in videos if isinstance(v, dict) and v.get("split") == split}
    captions: dict[str, list[str]] = collections.defaultdict(list)
    for i, sentence in enumerate(data["sentences"]):
        if not isinstance(sentence, dict) or not isinstance(sentence.get("video_id"), str) \
                or not isinstance(sentence.get("caption"), str):
            raise AnnotationError(path, 'needs string "video_id" and "caption"', field=f"sentences[{i}]")
        if wanted is None or sentence["video_id"] in wanted:
            captions[sentence["video_id"]].append(sentence["caption"])
    return [VideoTextSample(os.path.join(os.fspath(video_dir), vid + extension), tuple(caps))
            for vid, caps in sorted(captions.items(), key=lambda kv: _natural_key(kv[0]))]


def _natural_key(name: str) -> tuple[str, int]:
    """Sort ``video2`` before ``video10``."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    return stem, int(digits) if digits else -1


def load_json(path: PathLike) -> Any:
    """A JSON annotation or result file: UTF-8 (a leading BOM dropped); bad bytes, bad JSON and a key repeated
    in one object (a JSON reader would silently keep the last) are errors naming the file, line or key."""
    text = read_text(path)

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise AnnotationError(path, f"key {key!r} appears twice in one object (the first would be silently "
                                            "discarded); merge its entries", field=key)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as e:
        raise AnnotationError(path, f"not valid JSON ({e.msg} at column {e.colno})", e.lineno) from e



def json_number(value: Any, path: PathLike, field: str, *, finite: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(path, f"must be a number, got {value!r}", field=field)
    if finite and not math.isfinite(value):
        raise AnnotationError(path, f"must be a finite number, got {value!r}", field=field)
    return float(value)


def read_segment(segment: Any, path: PathLike, field: str, *, ground_truth: bool = False) -> tuple[float, float]:
    """An ActivityNet ``[start, end]`` in seconds, checked (the error names the file and the JSON field).

    A ground-truth segment must be finite: a NaN one can never be matched and
    would silently lower the recall of its class."""
    if not isinstance(segment, list) or len(segment) != 2:
        raise AnnotationError(path, f"segment must be [start, end], got {segment!r}", field=field)
    start, end = (json_number(x, path, field, finite=ground_truth) for x in segment)
    if start > end:
        raise AnnotationError(path, f"segment [{start}, {end}] must satisfy start <= end", field=field)
    return start, end


def read_activitynet(path: PathLike, clip: bool = True) -> dict[str, LocalizationVideo]:
    """ActivityNet-style temporal localization JSON, keyed by video id.

    ``{"database": {id: {"duration": s, "subset": "training", "annotations": [{"segment": [s, e], "label": name}]}}}``
    (an optional per-video ``"fps"`` is kept). Errors name the offending
    field, e.g. ``database/v_1/annotations[2]/segment``. With ``clip`` (for
    training) segments are clipped to ``[0, duration]`` with a warning and
    those left empty are dropped; without it (for scoring, as the official
    evaluation does) boundaries are kept as written. ``start > end`` is an error.
    """
    data = load_json(path)
    if not isinstance(data, dict) or "database" not in data:
        raise AnnotationError(path, 'missing key "database": expected a top-level object with a "database" object '
                                    '(ActivityNet format)')
    database = data["database"]
    if not isinstance(database, dict):
        raise AnnotationError(path, "must be an object mapping video ids to entries", field="database")
    videos = {}
    clipped = dropped = 0
    for vid, entry in database.items():
        where = f"database/{vid}"
        if not isinstance(entry, dict):
            raise AnnotationError(path, "must be an object", field=where)
        if "duration" not in entry:
            raise AnnotationError(path, 'missing key "duration"', field=where)
        duration = json_number(entry["duration"], path, f"{where}/duration", finite=True)
        subset = entry.get("subset", "")
        fps = entry.get("fps")
        fps = None if fps is None else json_number(fps, path, f"{where}/fps")
        annotations = entry.get("annotations", [])
        if not isinstance(annotations, list):
            raise AnnotationError(path, "must be a list", field=f"{where}/annotations")
        segments = []
        for i, ann in enumerate(annotations):
            field = f"{where}/annotations[{i}]"
            if not isinstance(ann, dict):
                raise AnnotationError(path, "must be an object", field=field)
            for key in ("segment", "label"):
                if key not in ann:
                    raise AnnotationError(path, f'missing key "{key}"', field=field)
            start, end = read_segment(ann["segment"], path, f"{field}/segment", ground_truth=True)
            label = ann["label"]
            if not isinstance(label, str) or not label:
                raise AnnotationError(path, f"label must be a non-empty string, got {label!r}", field=f"{field}/label")
            if not clip and end <= 0:  # scoring: predictions lie inside the video; this one could never be matched
                raise AnnotationError(path, f"segment [{start}, {end}] lies before the video starts (negative time)",
                                      field=f"{field}/segment")
            if clip and (start < 0 or end > duration):
                start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
                clipped += 1
                if end <= start:
                    dropped += 1
                    continue
            segments.append(Segment(start, end, label))
        videos[vid] = LocalizationVideo(vid, duration, str(subset), tuple(segments), fps)
    if clipped:
        log.warning("%s: %d segment(s) outside [0, duration] clipped (%d left empty and dropped)", os.fspath(path),
                    clipped, dropped)
    return videos


#: The question words MSRVTT-QA and MSVD-QA results are broken down by (from the question's first word).
QUESTION_WORDS = ("what", "who", "how", "where", "when")
#: TGIF-QA FrameQA's ``type`` column.
FRAMEQA_TYPES = {"0": "object", "1": "number", "2": "color", "3": "location"}


def _question_word(question: str) -> str:
    words = question.strip().lower().split()
    return words[0] if words and words[0] in QUESTION_WORDS else "other"


def _question(value: Any, path: PathLike, line: int | None, field: str | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(path, f'field "question" must be a non-empty string (got {value!r})', line, field)
    return value


def read_qa(path: PathLike, root: PathLike | None = None, video_template: str | None = None) -> list[QASample]:
    """Question answering annotations; the format is recognised from the file.

    * JSON lines ``{"video", "question", "answer", "candidates"?, "type"?}`` (ours);
      with candidates the answer must be one of them.
    * MSRVTT-QA / MSVD-QA ``.json``: a list of ``{"video_id", "question", "answer"}``;
      the video is ``video_template.format(video_id)`` (default ``video{}.mp4``,
      MSR-VTT's names; MSVD-QA wants e.g. ``vid{}.avi`` or its YouTube-id mapping)
      and the type is the question's first word (what/who/how/where/when).
    * TGIF-QA FrameQA ``.csv`` (tab-separated, columns ``gif_name, question, answer, type``):
      video ``video_template.format(gif_name)`` (default ``{}.gif``), type
      object/number/color/location.

    Empty questions (except in multiple choice, with candidates) or answers are errors naming the file and line
    (or list index).
    """
    root = _default_root(path, root)
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return _read_frameqa(path, root, video_template or "{}.gif")
    if suffix == ".json":
        return _read_qa_list(path, root, video_template or "video{}.mp4")
    samples = []
    for number, record in _json_lines(path):
        video = _string_field(record, "video", path, number)
        candidates = record.get("candidates")
        # Multiple choice (MSR-VTT MC) may have no question: the candidates carry the content.
        if candidates is not None:
            question = record.get("question") or ""
        else:
            question = _question(record.get("question"), path, number)
        answer = _string_field(record, "answer", path, number)
        if candidates is not None:
            candidates = _captions(candidates, path, number, "candidates")
            if answer not in candidates:
                raise AnnotationError(path, f"answer {answer!r} is not among the candidates", number)
        qtype = record.get("type")
        if qtype is not None and not isinstance(qtype, str):
            raise AnnotationError(path, f'field "type" must be a string (got {qtype!r})', number)
        samples.append(QASample(_resolve(root, video), question, answer, candidates, qtype))
    return samples


def _read_qa_list(path: PathLike, root: PathLike, template: str) -> list[QASample]:
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, 'expected a JSON list of {"video_id", "question", "answer"} (MSRVTT-QA/MSVD-QA)')
    samples = []
    for i, record in enumerate(data):
        where = f"[{i}]"
        if not isinstance(record, dict):
            raise AnnotationError(path, f"expected an object, got {type(record).__name__}", field=where)
        vid = record.get("video_id", record.get("video"))
        if isinstance(vid, bool) or not isinstance(vid, (str, int)) or (isinstance(vid, str) and not vid.strip()):
            raise AnnotationError(path, f'"video_id" must be a string or an integer (got {vid!r})', field=where)
        question = _question(record.get("question"), path, None, where)
        answer = record.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise AnnotationError(path, f'"answer" must be a non-empty string (got {answer!r})', field=where)
        samples.append(QASample(_resolve(root, template.format(vid)), question, answer,
                                type=_question_word(question)))
    return samples


def _read_frameqa(path: PathLike, root: PathLike, template: str) -> list[QASample]:
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"gif_name", "question", "answer"} - set(reader.fieldnames or [])
        if missing:
            raise AnnotationError(path, f"TGIF-QA FrameQA header lacks column(s) {sorted(missing)} "
                                        "(tab-separated: gif_name, question, answer, type)", 1)
        samples = []
        for number, row in enumerate(reader, start=2):
            name, answer = (row.get("gif_name") or "").strip(), (row.get("answer") or "").strip()
            question = _question(row.get("question"), path, number)
            if not name or not answer:
                raise AnnotationError(path, "empty gif_name or answer", number)
            qtype = FRAMEQA_TYPES.get((row.get("type") or "").strip(), (row.get("type") or "").strip() or None)
            samples.append(QASample(_resolve(root, template.format(name)), question, answer, type=qtype))
    return samples


# ----------------------------------------------------------------------------- datasets


@dataclasses.dataclass(frozen=True)
class View:
    """One model input made from a video: which frames (``sampler``) and how (``transform``).

    ``transform`` receives the decoded ``(T, H, W, 3)`` uint8 frames and an
    ``rng``; ``None`` just converts them to ``(C, T, H, W)`` floats in 0-1.
    The sample (and batch) key is ``name``.

    A sampler that yields several clips at test time (``DenseSampler(num_clips=K)``)
    gives a ``(K, C, T, H, W)`` tensor, and ``(K * 3, C, T, H, W)`` with three-crop.
    """

    sampler: Sampler
    transform: Callable[..., torch.Tensor] | None = None
    name: str = "video"


def default_view(training: bool, img_size: int = 224, sampler: Sampler | None = None) -> View:
    """16 x 4 dense frames with the standard training or evaluation transform."""
    transform = (build_train_transform(TrainTransformConfig(img_size=img_size)) if training
                 else build_eval_transform(EvalTransformConfig(img_size=img_size)))
    return View(sampler or DenseSampler(16, 4), transform)


def recipe_view(recipe: InputRecipe, *, augment: TrainTransformConfig | None = None, num_clips: int = 1,
                num_crops: int = 1, short_side: int | None = None, layout: TestLayout = "videomae",
                name: str = "video") -> View:
    """Clips of ``recipe``: its sampler and its transform (the one mapping, for training and evaluation alike).

    ``augment`` given: training clips augmented as it says (its size and
    normalisation become the recipe's). Otherwise test-time clips: resize the
    short side to ``short_side`` (default the recipe's ``img_size``), then one
    centre crop (``num_crops=1``) or three crops along the longer side (3).
    Dense sampling gives ``num_clips`` clips placed by ``layout`` (see
    :mod:`internvideo.data.sampling`); segment and uniform sampling cover the
    whole video in one clip.
    """
    if num_crops not in (1, 3):
        raise UsageError(f"num_crops must be 1 (centre) or 3 (three-crop), got {num_crops}")
    if recipe.sampling == "dense":
        sampler: Sampler = DenseSampler(recipe.num_frames, recipe.frame_interval, num_clips=num_clips, layout=layout)
    elif num_clips != 1:
        raise UsageError(f"{recipe.sampling} sampling covers the whole video in one clip; use sampling='dense' for "
                         f"num_clips={num_clips}")
    else:
        sampler = SegmentSampler(recipe.num_frames) if recipe.sampling == "segment" else \
            UniformSampler(recipe.num_frames)
    if augment is not None:
        transform = build_train_transform(dataclasses.replace(augment, img_size=recipe.img_size, mean=recipe.mean,
                                                              std=recipe.std))
    else:
        transform = build_eval_transform(EvalTransformConfig(
            img_size=recipe.img_size, short_side=short_side, crop="three" if num_crops == 3 else "center",
            mean=recipe.mean, std=recipe.std))
    return View(sampler, transform, name)


def _to_float_clip(frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
    """The transform of a :class:`View` without one: ``(C, T, H, W)`` floats in 0-1."""
    return as_float(to_cthw(frames))


def _load_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise FileNotFoundError(2, "image file not found", path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[None]
    except (UnidentifiedImageError, OSError) as e:
        raise VideoError(path, f"not a readable image ({e})") from e


class VideoDataset(torch.utils.data.Dataset):
    """Decodes one video per item into every configured :class:`View`.

    Subclasses supply the per-item annotation via :meth:`annotation`. Items
    are dicts: one tensor per view name, ``"index"`` (the item actually
    returned, which differs from the requested one after a replacement),
    ``"path"`` and ``"skipped"`` (``[(path, reason), ...]`` of unreadable
    videos passed over to produce this item).
    """

    def __init__(self, videos: Sequence[str], views: View | Sequence[View] | None = None, *, training: bool = False,
                 seed: int = 0, strict: bool | None = None, max_replacements: int = 10,
                 decode_short_side: int | None = None, threads: int = 1,
                 decoded: DecodedVideos | None = None) -> None:
        self.videos = list(videos)
        if decoded is not None and decoded.short_side != decode_short_side:
            raise ValueError(f"the decoded videos were decoded at short side {decoded.short_side}, the dataset asks "
                             f"for {decode_short_side}")
        self.decoded = decoded  # whole videos decoded once (see internvideo.data.memory)
        views = default_view(training) if views is None else views
        self.views: tuple[View, ...] = (views,) if isinstance(views, View) else tuple(views)
        names = [v.name for v in self.views]
        if not self.views or len(set(names)) != len(names):
            raise ValueError(f"views need distinct names, got {names}")
        self.training = training
        self.seed = seed
        self.epoch = 0
        self.strict = (not training) if strict is None else strict
        self.max_replacements = max_replacements
        self.decode_short_side = decode_short_side
        self.threads = threads
        #: views per decode (VideoMAE's ``num_sample``): above 1, items are lists of that many augmented dicts
        self.repeats = 1

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws for a new epoch (call before creating the epoch's iterator)."""
        self.epoch = epoch

    def annotation(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        """Extra fields for item ``index`` (labels, captions...); ``rng`` is None in evaluation."""
        return {}

    def load_frames(self, index: int, rng: np.random.Generator | None
                    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Decode the frames of every view of video ``index`` in one pass and transform them (``repeats`` times)."""
        path = self.videos[index]
        image = _load_image(path) if Path(path).suffix.lower() in IMAGE_EXTENSIONS else None
        decoded = self.decoded if self.decoded is not None else active_decoded_videos(self.decode_short_side)
        if image is None and decoded is not None:
            image, fps = decoded.get(path)  # the whole video, already in memory
            num_frames = len(image)
        elif image is not None:
            num_frames, fps = 1, 1.0
        else:
            info = probe(path)
            num_frames, fps = info.num_frames, info.fps
        picks = [np.asarray(view.sampler(num_frames, rng=rng, fps=fps), dtype=np.int64) for view in self.views]
        wanted = np.concatenate(picks)
        note_decoding(path)
        frames = image[wanted] if image is not None else read_frames(
            path, wanted, threads=self.threads, short_side=self.decode_short_side)
        clips, start = [], 0
        for pick in picks:
            clips.append(frames[start:start + len(pick)])
            start += len(pick)
        return [{view.name: self._transform(view, clip, rng) for view, clip in zip(self.views, clips, strict=True)}
                for _ in range(self.repeats)] if self.repeats > 1 else \
            {view.name: self._transform(view, clip, rng) for view, clip in zip(self.views, clips, strict=True)}

    def _transform(self, view: View, frames: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        clips = view.sampler.clips(rng is not None) if hasattr(view.sampler, "clips") else 1
        transform = view.transform or _to_float_clip
        if clips <= 1:
            return transform(frames, rng)
        outputs = [transform(part, rng) for part in np.split(frames, clips)]
        # (K, C, T, H, W), or (K * crops, C, T, H, W) when each clip gives several crops.
        return torch.cat([o if o.ndim == 5 else o.unsqueeze(0) for o in outputs])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} videos")
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.training else None
        replace_rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        skipped: list[tuple[str, str]] = []
        current = index
        for _ in range(self.max_replacements + 1):
            try:
                item = self.load_frames(current, rng)
                for n, view in enumerate(item if isinstance(item, list) else [item]):
                    view.update(self.annotation(current, rng))
                    view.update(index=current, path=self.videos[current], skipped=skipped if n == 0 else [])
                return item
            except (VideoError, FileNotFoundError) as e:
                if self.strict:
                    raise
                reason = e.problem if isinstance(e, VideoError) else "file not found"
                log.warning("skipping unreadable video %s: %s", self.videos[current], reason)
                skipped.append((self.videos[current], reason))
                current = int(replace_rng.integers(len(self)))
        raise VideoError(self.videos[index], f"this and {self.max_replacements} replacement videos were all unreadable "
                                             f"(last: {skipped[-1][0]}: {skipped[-1][1]})")


class VideoClassificationDataset(VideoDataset):
    """Videos with integer labels, from a Kinetics-style list (see :func:`read_classification_list`).

    Items add ``"label"`` (int). ``classes`` holds the class names when a
    ``classes.txt`` is given (or sits next to the list file), for zero-shot prompts.
    """

    def __init__(self, samples: PathLike | Sequence[ClassificationSample], views: View | Sequence[View] | None = None,
                 *, root: PathLike | None = None, classes: PathLike | Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        if isinstance(samples, (str, os.PathLike)):
            guess = Path(samples).with_name("classes.txt")
            if classes is None and guess.exists():
                classes = guess
        self.classes: list[str] | None = (read_classes(classes) if isinstance(classes, (str, os.PathLike))
                                          else list(classes) if classes is not None else None)
        if isinstance(samples, (str, os.PathLike)):
            samples = read_classification_list(samples, root, len(self.classes) if self.classes else None)
        self.samples = list(samples)
        super().__init__([s.path for s in self.samples], views, **kwargs)

    def annotation(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        return {"label": self.samples[index].label}


class VideoTextDataset(VideoDataset):
    """Videos (or images, as one-frame videos) with captions, from video-text JSON lines.

    Items add ``"caption"``: a random one of the video's captions in training,
    the first in evaluation, and ``"captions"``: all of them (for retrieval
    with several captions per video).
    """

    def __init__(self, samples: PathLike | Sequence[VideoTextSample], views: View | Sequence[View] | None = None,
                 *, root: PathLike | None = None, **kwargs: Any) -> None:
        if isinstance(samples, (str, os.PathLike)):
            samples = read_video_text(samples, root)
        self.samples = list(samples)
        super().__init__([s.video for s in self.samples], views, **kwargs)

    def annotation(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        captions = self.samples[index].captions
        pick = int(rng.integers(len(captions))) if rng is not None else 0
        return {"caption": captions[pick], "captions": list(captions)}


# ----------------------------------------------------------------------------- batching and skip reports


def collate_videos(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch dataset items: tensors are stacked, numbers become tensors, everything else a list.

    ``"skipped"`` lists are concatenated, so ``batch["skipped"]`` names every
    unreadable video passed over while building this batch.
    """
    items = flatten_repeats(items)
    if not items:
        return {}
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "skipped":
            batch[key] = [entry for v in values for entry in v]
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, np.integer)):
            batch[key] = torch.as_tensor(values, dtype=torch.long)
        elif isinstance(values[0], (float, np.floating)):
            batch[key] = torch.as_tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    return batch


def flatten_repeats(items: Sequence[Any]) -> list[Any]:
    """Items of a dataset with ``repeats > 1`` are lists of views: one batch entry each."""
    return [view for item in items for view in (item if isinstance(item, list) else [item])]


def video_dataset_of(dataset: Any) -> VideoDataset:
    """The :class:`VideoDataset` inside ``dataset`` and the wrappers around it (each holding ``.dataset``)."""
    inner = dataset
    while not isinstance(inner, VideoDataset):
        inner = getattr(inner, "dataset", None)
        if inner is None:
            raise TypeError(f"{type(dataset).__name__} does not read videos (it wraps no VideoDataset)")
    return inner


@dataclasses.dataclass(frozen=True)
class SkipSummary:
    """How many unreadable videos were skipped, and which (path -> times, reason)."""

    count: int
    videos: dict[str, tuple[int, str]]

    def __str__(self) -> str:
        if not self.count:
            return "no unreadable videos skipped"
        listed = "; ".join(f"{p} x{n} ({reason})" for p, (n, reason) in sorted(self.videos.items()))
        return f"{self.count} unreadable video(s) skipped ({len(self.videos)} distinct): {listed}"


class SkipLog:
    """Adds up the ``"skipped"`` reports of the batches of one epoch (in the main process)."""

    def __init__(self) -> None:
        self._times: collections.Counter[str] = collections.Counter()
        self._reason: dict[str, str] = {}

    def update(self, batch: Mapping[str, Any]) -> None:
        for path, reason in batch.get("skipped", ()):
            self._times[path] += 1
            self._reason[path] = reason

    def track(self, batches: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """Yield the batches unchanged while recording them; log the summary at the end."""
        for batch in batches:
            self.update(batch)
            yield batch
        summary = self.summary()
        if summary.count:
            log.warning("%s", summary)

    def summary(self) -> SkipSummary:
        return SkipSummary(sum(self._times.values()), {p: (n, self._reason[p]) for p, n in self._times.items()})

    def reset(self) -> None:
        self._times.clear()
        self._reason.clear()
