"""Regression tests of the bad-input probe (issue #13): no silent wrong results, no lost data, clean errors.

Each test reproduces one failure the probe saw and would fail on the code before its fix.
docs/reliability.md lists the guarantees with the test that backs each.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eval_standins import ColourClassifier, ColourCLIP, make_colour_set
from internvideo.tasks import evaluate_recognition, evaluate_retrieval, evaluate_zeroshot, linear_probe
from internvideo.tasks.metrics import NonFiniteError, correct_rank, retrieval_ranks, topk_accuracy

QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_colour_set(tmp_path_factory.mktemp("colours"))


# ----------------------------------------------------------------------------- 1. non-finite scores


def test_nan_scores_never_count_as_hits():
    scores = np.array([[np.nan, 0.1, 0.2], [0.3, np.nan, 0.1], [np.inf, 0.0, 0.0]])
    # Before: a NaN true-class score had nothing ">=" it, so it ranked first (a hit).
    assert correct_rank(scores, [0, 1, 0]).tolist() == [3, 3, 3]
    assert topk_accuracy(np.full((4, 5), np.nan), [0, 1, 2, 3], ks=(1,))[1] == 0.0
    t2v, v2t = retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4))
    assert t2v.tolist() == [3, 3, 3] and v2t.tolist() == [3, 3, 3]
    t2v, v2t = retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4), dsl=True)
    assert t2v.tolist() == [3, 3, 3] and v2t.tolist() == [3, 3, 3]


def _nan_classifier() -> ColourClassifier:
    model = ColourClassifier()
    model.centres[0, 0] = float("nan")  # one NaN weight in the "head"
    return model


def test_recognition_with_nan_weight_fails_then_scores_zero(colours):
    with pytest.raises(NonFiniteError, match="8 of 8 test videos gave non-finite"):
        evaluate_recognition(_nan_classifier(), colours["list"], **QUIET)
    result = evaluate_recognition(_nan_classifier(), colours["list"], allow_nonfinite=True, **QUIET)
    assert result["top1"] == 0.0 and result["num_nonfinite"] == 8  # was 100 %
    assert evaluate_recognition(ColourClassifier(), colours["list"], **QUIET)["num_nonfinite"] == 0


def test_linear_probe_with_nan_features_fails(colours):
    with pytest.raises(NonFiniteError, match="training videos"):
        linear_probe(_nan_classifier_features(), colours["list"], colours["list"], **QUIET)


def _nan_classifier_features() -> ColourClassifier:
    model = ColourClassifier()
    model.forward_features = lambda video: torch.full((video.shape[0], 4, 3), float("nan"))
    return model


class _NaNCLIP(ColourCLIP):
    def encode_video(self, video):
        out = super().encode_video(video)
        return out + self.bad  # one NaN in the "projection"

    def __init__(self):
        super().__init__()
        self.bad = torch.tensor([float("nan"), 0.0, 0.0])


def test_zeroshot_and_retrieval_with_nan_projection(colours):
    with pytest.raises(NonFiniteError, match="8 of 8 test videos"):
        evaluate_zeroshot(_NaNCLIP(), colours["list"], colours["classes"], **QUIET)
    zs = evaluate_zeroshot(_NaNCLIP(), colours["list"], colours["classes"], allow_nonfinite=True, **QUIET)
    assert zs["top1"] == 0.0 and zs["num_nonfinite"] == 8
    with pytest.raises(NonFiniteError, match="8 of 8 videos"):
        evaluate_retrieval(_NaNCLIP(), colours["captions"], **QUIET)
    r = evaluate_retrieval(_NaNCLIP(), colours["captions"], dsl=True, allow_nonfinite=True, **QUIET)
    assert r["t2v"]["R@1"] == 0.0 and r["v2t"]["R@1"] == 0.0  # was 100 % both ways
    assert r["dsl"]["t2v"]["R@1"] == 0.0 and r["num_nonfinite"] == {"videos": 8, "captions": 0}
