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
    one. Without any classes file the labels are the class indices as they
    are: class ``i`` is named ``"i"`` and the head has ``max label + 1``
    classes, so a validation list with the same numbers agrees with it.
    Label ``-1`` ("unknown", open-set lists) has no class to train: such lines
    are left out, with a warning counting them. A label beyond its classes file
    is an error naming the file and line.
    """
    union: list[str] = []
    index: dict[str, int] = {}
    samples: list[ClassificationSample] = []
    unknown, named = 0, False
    for lst, cls_file in pairs:
        lst_path = Path(lst)
        cls_path = Path(cls_file) if cls_file else lst_path.with_name("classes.txt")
        names = read_classes(cls_path) if cls_path.exists() else None
        named = named or names is not None
        for name in names or []:  # every class of a named set, in its file's order
            if name not in index:
                index[name] = len(union)
                union.append(name)
        for s in read_classification_list(lst_path, root, len(names) if names else None):
            if s.label < 0:
                unknown += 1
                continue
            name = names[s.label] if names else str(s.label)
            if name not in index:
                index[name] = len(union)
                union.append(name)
            samples.append(type(s)(path=s.path, label=index[name]))
    if unknown:
        log.warning("left out %d training line(s) labelled -1 (unknown class): a classifier cannot learn them", unknown)
    if len(pairs) > 1:
        log.info("merged %d label sets into %d classes", len(pairs), len(union))
    if union and not named:
        # Unnamed classes: the label is the class index, gaps included (never a renumbering that a
        # validation list or a later evaluation would have to guess).
        num = max(int(n) for n in union) + 1
        samples = [type(s)(path=s.path, label=int(union[s.label])) for s in samples]
        union = [str(i) for i in range(num)]
    return union, samples


__all__ = ["merge_label_sets"]
