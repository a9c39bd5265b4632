"""Label sets: one classification head over one or several (list, classes) pairs, merged by class name.

Post-pretraining on a union of label sets (Kinetics-710 style: K400/600/700)
merges the classes of every set by name; the first set keeps its label indices,
so validation lists that share its ``classes.txt`` agree with the merged head.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .datasets import ClassificationSample, read_classes, read_classification_list
from .video import PathLike

log = logging.getLogger("internvideo.data")


def merge_label_sets(pairs: Sequence[tuple[PathLike, PathLike | None]], root: PathLike | None = None
                     ) -> tuple[list[str], list[ClassificationSample]]:
    """``[(list file, classes.txt or None), ...]`` -> (merged class names, samples relabelled into them).

    A list without a classes file uses the ``classes.txt`` beside it if there is
    one; without any, class names are the label numbers, kept in numeric order.
    """
    union: list[str] = []
    index: dict[str, int] = {}
    samples: list[ClassificationSample] = []
    for lst, cls_file in pairs:
        lst_path = Path(lst)
        cls_path = Path(cls_file) if cls_file else lst_path.with_name("classes.txt")
        names = read_classes(cls_path) if cls_path.exists() else None
        for name in names or []:  # every class of a named set, in its file's order
            if name not in index:
                index[name] = len(union)
                union.append(name)
        for s in read_classification_list(lst_path, root):
            name = names[s.label] if names else str(s.label)
            if name not in index:
                index[name] = len(union)
                union.append(name)
            samples.append(type(s)(path=s.path, label=index[name]))
    if len(pairs) > 1:
        log.info("merged %d label sets into %d classes", len(pairs), len(union))
    if all(n.isdigit() for n in union):
        order = sorted(range(len(union)), key=lambda i: int(union[i]))
        remap = {old: new for new, old in enumerate(order)}
        samples = [type(s)(path=s.path, label=remap[s.label]) for s in samples]
        union = [union[i] for i in order]
    return union, samples


__all__ = ["merge_label_sets"]
