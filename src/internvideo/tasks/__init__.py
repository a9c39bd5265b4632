"""Downstream tasks: one module per task family, each a plain Python API plus a CLI pair.

Every task has an ``evaluate_*`` function returning a results dict
(percentages), a ``results_table`` and, for the command line,
``add_arguments(parser)`` + ``main(args)``. Tasks never train and never import
:mod:`internvideo.train`: where an evaluation needs a head fitted on frozen
features (open-set ``head="fit"``), the fitting function is passed in
(:func:`internvideo.train.heads.fit_openset_head`, which ``cli`` gives
``eval openset``); the QA head and the caption decoder are trained by
:mod:`internvideo.train.heads`, and experiments that train and evaluate live
in :mod:`internvideo.experiments`. :data:`EVAL_COMMANDS` lists the
``internvideo eval TASK`` sub-commands; ``internvideo extract`` is
:func:`extract.add_arguments` + :func:`extract.main`. Metrics live in
:mod:`internvideo.tasks.metrics`; see ``docs/evaluation.md``.
"""
from __future__ import annotations

from . import ava, caption, ensemble, extract, localization, merge, metrics, multiple_choice, openset, qa, \
    recognition, retrieval, vln, zeroshot
from .common import clip_embedding, dataset_features, write_json
from .extract import extract_features
from .multiple_choice import evaluate_multiple_choice
from .recognition import evaluate_recognition, linear_probe
from .retrieval import evaluate_retrieval, retrieval_embeddings
from .merge import merge_models
from .zeroshot import ACTIONCLIP_TEMPLATES, DEFAULT_TEMPLATES, evaluate_zeroshot, zeroshot_classifier

#: ``internvideo eval NAME``: (help, add_arguments, main) for each task.
EVAL_COMMANDS = {
    "recognition": ("multi-view action recognition (top-1/top-5/mean class)", recognition.add_arguments,
                    recognition.main),
    "linear-probe": ("logistic regression on frozen features", recognition.add_linear_probe_arguments,
                     recognition.linear_probe_main),
    "zeroshot": ("zero-shot recognition from class-name prompts", zeroshot.add_arguments, zeroshot.main),
    "retrieval": ("video-text retrieval, both directions (R@k, MdR, MnR, optional DSL)", retrieval.add_arguments,
                  retrieval.main),
    "multiple-choice": ("zero-shot multiple choice among candidate captions", multiple_choice.add_arguments,
                        multiple_choice.main),
    "localization": ("temporal action localization: ActivityNet detection mAP of a result file, or of a trained "
                     "localizer on features", localization.add_arguments, localization.main),
    "openset": ("open-set recognition: evidential uncertainty vs MSP/energy/max-logit (AUROC, macro-F1)",
                openset.add_arguments, openset.main),
    "qa": ("open-ended video QA: accuracy overall and per question type", qa.add_arguments, qa.main),
    "caption": ("caption generation scored with BLEU-4 and CIDEr-D", caption.add_arguments, caption.main),
    "ava": ("score AVA detections: frame-mAP@0.5 as the official evaluation (no model)", ava.add_arguments,
            ava.main),
    "ensemble": ("average per-video scores of several models (--save-scores files): top-1/top-5 of each and of "
                 "the ensemble", ensemble.add_arguments, ensemble.main),
    "vln": ("vision-language navigation: R2R metrics (NE, SR, OSR, SPL, nDTW, SDTW) of trajectories, a trained "
            "agent or a baseline", vln.add_arguments, vln.main),
}

__all__ = [
    "EVAL_COMMANDS", "ACTIONCLIP_TEMPLATES", "DEFAULT_TEMPLATES", "ava", "caption", "ensemble", "openset", "qa",
    "clip_embedding", "dataset_features", "evaluate_multiple_choice",
    "evaluate_recognition", "evaluate_retrieval", "evaluate_zeroshot", "extract", "extract_features", "linear_probe",
    "localization", "merge", "merge_models", "metrics", "multiple_choice", "recognition", "retrieval",
    "retrieval_embeddings", "vln", "write_json", "zeroshot",
    "zeroshot_classifier",
]
