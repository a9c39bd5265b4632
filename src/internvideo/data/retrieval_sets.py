"""Readers for the video-text retrieval benchmarks besides MSR-VTT, in the official split layouts.

Each reader takes the annotation folder as the official InternVideo retrieval
code expects it (OpenGVLab/InternVideo InternVideo1/Downstream/
Video-Text-Retrieval/dataloaders/dataloader_<name>_retrieval.py) and returns
one :class:`~internvideo.data.VideoTextSample` per video, with all its captions,
in the official order. Videos are ``video_dir/<id><extension>`` (default
``video_dir``: the annotation folder); the files are not opened here.

=============== ======================================================== ===========================================
set             files in ``root`` (``split``)                             captions
=============== ======================================================== ===========================================
MSVD            ``{train,val,test}_list.txt`` (video ids), ``raw-        every caption of the video; a caption is
                captions.pkl`` (id -> list of token lists)                its tokens joined by spaces
LSMDC           ``LSMDC16_annos_training.csv``, ``LSMDC16_annos_val.     one per line; tab-separated ``clip_id,
                csv``, ``LSMDC16_challenge_1000_publictect.csv`` (test)   start/end aligned, start/end extracted,
                                                                          sentence``; videos ``<movie>/<clip_id>``;
                                                                          train leaves out clips 58200-58299 (in
                                                                          first-seen order), as the official code
DiDeMo          ``{train,val,test}_list.txt``, ``{train,val,test}_data.   paragraph: the video's descriptions in file
                json`` (``[{"video", "description", "times"}]``)           order, joined by spaces
ActivityNet     ``{train,val}_ids.json`` (``v_<id>`` list), ``train.json``   paragraph: the video's sentences joined by
Captions        / ``val_1.json`` (``{"v_<id>": {"sentences", ...}}``)      spaces; videos ``v_<id>``
VATEX           ``{train,test}_list.txt`` (val reads the test list),      the ten English captions (``enCap``);
                ``vatex_training_v1.0.json`` / ``vatex_validation_v1.0.   videos ``<videoID>`` or the item's ``path``
                json`` (``[{"videoID", "enCap", "path"?}]``)
=============== ======================================================== ===========================================

Empty captions (a blank sentence of a paragraph, a blank LSMDC line) are left
out and counted in a warning naming the file; a video left with none is left
out too. A listed MSVD video without captions is an error naming both files
(the official loader asserts); the other sets leave listed videos without
annotations out, as their official loaders do, and count them in a warning.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingFile, UsageError
from .ava import safe_unpickle
from .datasets import AnnotationError, PathLike, VideoTextSample, load_json, _lines, text_lines

log = logging.getLogger("internvideo.data")

__all__ = ["read_msvd", "read_lsmdc", "read_didemo", "read_activitynet_captions", "read_vatex"]

# dataloader_lsmdc_retrieval.py: video_id_list[:58200] + video_id_list[58300:] for the training split
_LSMDC_TRAIN_LEFT_OUT = range(58200, 58300)


def _video_dir(root: PathLike, video_dir: PathLike | None) -> str:
    return os.fspath(video_dir if video_dir is not None else root)


def _split(split: str, allowed: Sequence[str], reader: str) -> str:
    if split not in allowed:
        raise UsageError(f"{reader}: split must be one of {', '.join(allowed)}, not {split!r}")
    return split


def _id_list(path: Path) -> list[str]:
    ids = [line for _, line in _lines(path)]
    if not ids:
        raise AnnotationError(path, "no video ids")
    return ids


def _samples(videos: Iterable[tuple[str, list[str]]], video_dir: str, source: PathLike, unannotated: int = 0
             ) -> list[VideoTextSample]:
    """Samples of ``(video file, captions)``; blank captions (and videos left without any) counted and left out."""
    out, blank, empty_videos = [], 0, 0
    for video, captions in videos:
        kept = tuple(c.strip() for c in captions if c.strip())
        blank += len(captions) - len(kept)
        if not kept:
            empty_videos += 1
            continue
        out.append(VideoTextSample(os.path.join(video_dir, video), kept))
    if blank or empty_videos or unannotated:
        log.warning("%s: left out %d empty caption(s), %d video(s) left without a caption and %d listed video(s) "
                    "without annotations", source, blank, empty_videos, unannotated)
    if not out:
        raise AnnotationError(source, "no video with a caption")
    return out


def _paragraph(sentences: Any, path: PathLike, field: str) -> list[str]:
    """The official paragraph: the non-empty sentences joined by spaces (one caption, or none)."""
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise AnnotationError(path, f"expected a list of sentences, got {type(sentences).__name__}", field=field)
    kept = [s.strip() for s in sentences if s.strip()]
    dropped = len(sentences) - len(kept)
    if dropped:
        log.warning("%s: %s: left out %d empty sentence(s) of the paragraph", path, field, dropped)
    return [" ".join(kept)] if kept else []


def read_msvd(root: PathLike, split: str = "test", video_dir: PathLike | None = None,
              extension: str = ".avi") -> list[VideoTextSample]:
    """MSVD: ``{split}_list.txt`` ids with their captions from ``raw-captions.pkl`` (read without executing it)."""
    _split(split, ("train", "val", "test"), "read_msvd")
    root = Path(root)
    ids = _id_list(root / f"{split}_list.txt")
    pkl = root / "raw-captions.pkl"
    captions = safe_unpickle(pkl.read_bytes(), str(pkl))
    if not isinstance(captions, dict):
        raise AnnotationError(pkl, f"expected a dict of video id -> captions, got {type(captions).__name__}")
    videos = []
    for vid in ids:
        if vid not in captions:
            raise AnnotationError(pkl, f"no captions for {vid!r} of {root / f'{split}_list.txt'}")
        caps = captions[vid]
        if not isinstance(caps, list):
            raise AnnotationError(pkl, f"expected a list of captions, got {type(caps).__name__}", field=vid)
        # each caption is a list of tokens (" ".join in the official loader); a plain string is taken as is
        videos.append((vid + extension, [c if isinstance(c, str) else " ".join(map(str, c)) for c in caps]))
    return _samples(videos, _video_dir(root, video_dir), pkl)


_LSMDC_FILES = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
                "test": "LSMDC16_challenge_1000_publictect.csv"}


def read_lsmdc(root: PathLike, split: str = "test", video_dir: PathLike | None = None,
               extension: str = ".avi") -> list[VideoTextSample]:
    """LSMDC: the split's tab-separated file; videos ``video_dir/<movie>/<clip_id><extension>``."""
    path = Path(root) / _LSMDC_FILES[_split(split, tuple(_LSMDC_FILES), "read_lsmdc")]
    clips: dict[str, list[str]] = {}
    for number, line in text_lines(path):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 6:
            raise AnnotationError(path, f"expected 6 tab-separated fields (clip id, 4 times, sentence), got "
                                        f"{len(fields)}", number)
        clips.setdefault(fields[0].strip(), []).append(fields[5])
    order = list(clips)
    if split == "train":
        order = [c for i, c in enumerate(order) if i not in _LSMDC_TRAIN_LEFT_OUT]
    # The clip id is <movie>_<start>-<end>; the clips sit in one folder per movie.
    return _samples(((f"{c.rsplit('_', 1)[0]}/{c}{extension}", clips[c]) for c in order),
                    _video_dir(root, video_dir), path)


def read_didemo(root: PathLike, split: str = "test", video_dir: PathLike | None = None,
                extension: str = ".mp4") -> list[VideoTextSample]:
    """DiDeMo, paragraph-to-video: each listed video's descriptions joined in file order."""
    _split(split, ("train", "val", "test"), "read_didemo")
    root = Path(root)
    listed = _id_list(root / f"{split}_list.txt")
    path = root / f"{split}_data.json"
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, 'expected a list of {"video", "description", "times"}')
    sentences: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("video"), str) \
                or not isinstance(item.get("description"), str):
            raise AnnotationError(path, 'needs string "video" and "description"', field=f"[{i}]")
        if item["video"] in listed:
            sentences.setdefault(item["video"], []).append(item["description"])
    return _samples(((v + extension, _paragraph(s, path, v)) for v, s in sentences.items()),
                    _video_dir(root, video_dir), path, len(set(listed) - set(sentences)))


_ACTIVITYNET_FILES = {"train": ("train_ids.json", "train.json"), "val": ("val_ids.json", "val_1.json")}


def read_activitynet_captions(root: PathLike, split: str = "val", video_dir: PathLike | None = None,
                              extension: str = ".mp4") -> list[VideoTextSample]:
    """ActivityNet Captions, paragraph-to-video: each video's sentences joined; ``val`` is ``val_1.json``."""
    ids_name, captions_name = _ACTIVITYNET_FILES[_split(split, tuple(_ACTIVITYNET_FILES),
                                                        "read_activitynet_captions")]
    root = Path(root)
    ids_path, path = root / ids_name, root / captions_name
    ids = load_json(ids_path)
    if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
        raise AnnotationError(ids_path, 'expected a list of video ids ("v_<id>")')
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, 'expected an object {"v_<id>": {"sentences": [...], ...}}')
    videos = []
    listed = list(dict.fromkeys(ids))  # the official list drops repeated ids
    for vid in listed:
        if vid not in data:
            continue  # the official loader skips listed ids without captions
        item = data[vid]
        if not isinstance(item, dict):
            raise AnnotationError(path, "expected an object with \"sentences\"", field=vid)
        videos.append((vid + extension, _paragraph(item.get("sentences"), path, vid)))
    return _samples(videos, _video_dir(root, video_dir), path, len(listed) - len(videos))


def _vatex_json(root: Path, split: str) -> Path:
    stem = "vatex_training_v1.0" if split == "train" else "vatex_validation_v1.0"
    for name in (f"{stem}.json", f"{stem}_ceph.json"):  # the official code reads its storage copy, *_ceph.json
        if (root / name).exists():
            return root / name
    raise MissingFile(f"{root}: neither {stem}.json nor {stem}_ceph.json")


def read_vatex(root: PathLike, split: str = "test", video_dir: PathLike | None = None,
               extension: str = ".mp4") -> list[VideoTextSample]:
    """VATEX: the English captions of ``{split}_list.txt``'s videos (val and test read ``test_list.txt`` and the
    validation JSON, as the official code)."""
    _split(split, ("train", "val", "test"), "read_vatex")
    root = Path(root)
    ids = _id_list(root / ("train_list.txt" if split == "train" else "test_list.txt"))
    path = _vatex_json(root, split)
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, 'expected a list of {"videoID", "enCap"}')
    found: dict[str, tuple[str, list[str]]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("videoID"), str):
            raise AnnotationError(path, 'needs a string "videoID"', field=f"[{i}]")
        captions = item.get("enCap")
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise AnnotationError(path, '"enCap" must be a list of strings', field=f"[{i}]")
        found[item["videoID"]] = (str(item.get("path") or item["videoID"] + extension), captions)
    return _samples([found[v] for v in ids if v in found], _video_dir(root, video_dir), path,
                    sum(1 for v in ids if v not in found))
