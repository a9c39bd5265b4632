"""DEAR's open-set lists: UCF101 as the known classes, HMDB51 and MiT-v2 as unknown sets.

The official Open-Set-Action-Recognition code (InternVideo1/Downstream, built on
MMAction2) reads MMAction2 video lists, one ``relative/path.ext label`` per line,
labels 0-based, videos under ``<list folder>/videos`` (``get_threshold_dist.py``:
``data_prefix = os.path.join(os.path.dirname(train_data), 'videos')``; the
configs: ``data_root = 'data/ucf101/videos'``)::

    data/ucf101/ucf101_train_split_1_videos.txt   ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0
    data/ucf101/ucf101_val_split_1_videos.txt     known test videos (UCF101 split 1 test)
    data/hmdb51/hmdb51_val_split_1_videos.txt     brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi 0
    data/mit/mit_val_list_videos.txt              MiT-v2 validation videos

(``experiments/mae/run_get_mae_threshold.sh``, ``run_ood_mae_dist_detection.sh``).
An unknown set's own labels are ignored: every video in it is unknown (``-1``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from .datasets import AnnotationError, ClassificationSample, read_classification_list
from ..errors import UsageError
from .video import PathLike

__all__ = ["DEAR_LISTS", "read_dear_list", "openset_test_samples"]

#: The official file names, relative to the data folder (``data/`` in the official code).
DEAR_LISTS = {
    "ucf101_train": "ucf101/ucf101_train_split_1_videos.txt",
    "ucf101_val": "ucf101/ucf101_val_split_1_videos.txt",
    "hmdb51_val": "hmdb51/hmdb51_val_split_1_videos.txt",
    "mit_val": "mit/mit_val_list_videos.txt",
}


def read_dear_list(path: PathLike, root: PathLike | None = None, num_classes: int | None = None
                   ) -> list[ClassificationSample]:
    """One MMAction2 video list; videos relative to ``root``, by default ``<list folder>/videos`` as DEAR."""
    if root is None:
        root = os.path.join(os.path.dirname(os.path.abspath(os.fspath(path))), "videos")
    samples = read_classification_list(path, root, num_classes)
    if not samples:
        raise AnnotationError(path, "the list is empty")
    return samples


def openset_test_samples(known: PathLike, unknown: Sequence[PathLike], *, known_root: PathLike | None = None,
                         unknown_roots: Sequence[PathLike | None] | None = None,
                         num_classes: int | None = None) -> list[ClassificationSample]:
    """The open-set test set: the known list's videos with their labels, then every unknown list's as ``-1``.

    Each list is resolved against its own root (DEAR keeps each dataset in its own folder). A known-list label
    of ``-1`` is refused: unknowns come from the unknown lists.
    """
    samples = read_dear_list(known, known_root, num_classes)
    bad = [i for i, s in enumerate(samples) if s.label < 0]
    if bad:
        raise AnnotationError(known, "the known test list holds label -1; unknown videos come from the unknown "
                                     f"lists (first at entry {bad[0] + 1})")
    roots = list(unknown_roots) if unknown_roots is not None else [None] * len(unknown)
    if len(roots) != len(unknown):
        raise UsageError(f"{len(unknown)} unknown lists but {len(roots)} roots")
    for path, root in zip(unknown, roots):
        samples += [ClassificationSample(s.path, -1) for s in read_dear_list(path, root)]
    return samples
