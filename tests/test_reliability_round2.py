"""Regression tests of the second probe (issue #26): each test reproduces one failure class the probe saw (the
listed example and at least one case of the same class it did not list) and would fail on the code before its fix.
docs/reliability.md lists the guarantees with the test that backs each (R2). The server's security tests live in
tests/test_search_server.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import internvideo
from eval_standins import ColourCLIP, make_colour_set
from internvideo.tasks import evaluate_retrieval, evaluate_zeroshot
from internvideo.tasks.metrics import NonFiniteError

from mm_helpers import one_thread  # noqa: F401  (autouse fixture)
from search_helpers import search_model, search_world, video_folder  # noqa: F401

QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_colour_set(tmp_path_factory.mktemp("colours"))


# ----------------------------------------------------------------------------- non-finite model outputs


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_logit_scale_is_the_same_error_for_every_metric(colours, raw):
    """Retrieval read a NaN logit_scale and scored 0 % without a word; zero-shot said why. Now both raise the
    same NonFiniteError (an infinite scale was clamped to a plausible 100 before)."""
    model = ColourCLIP()
    model.logit_scale.data.fill_(raw)
    with pytest.raises(NonFiniteError, match="logit_scale"):
        evaluate_retrieval(model, colours["captions"], **QUIET)
    with pytest.raises(NonFiniteError, match="logit_scale"):
        evaluate_zeroshot(model, colours["list"], colours["classes"], **QUIET)
    model.logit_scale.data.fill_(1000.0)  # finite and huge: clamped at 100 as CLIP does, not an error
    assert evaluate_zeroshot(model, colours["list"], colours["classes"], **QUIET)["top1"] == 100.0


def test_qa_with_nan_answer_scores_is_an_error_not_the_first_answer():
    """argmax over NaN logits returns the first NaN's index, which could be the right answer."""
    from internvideo.data import QASample
    from internvideo.tasks.qa import QAFeatures, predict_answers

    class NaNQA(nn.Module):
        answers = ["yes", "no"]

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward_head(self, q, pad, v):
            return torch.full((len(q), 2), float("nan"))

    samples = [QASample("a.mp4", "is it?", "yes"), QASample("b.mp4", "is it?", "yes")]
    features = QAFeatures(torch.zeros(1, 1, 1, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 4),
                          torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(NonFiniteError, match="2 of 2 questions"):
        predict_answers(NaNQA(), samples, features=features, progress=False)


def _nan_after(model, calls: int, value: float = float("nan")):
    """Make ``model.encode_video`` give ``value`` from its ``calls``-th call on (one call per window here)."""
    real, seen = model.encode_video, []

    def encode_video(video):
        seen.append(1)
        out = real(video)
        return out if len(seen) <= calls else torch.full_like(out, value)

    model.encode_video = encode_video
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_index_refuses_non_finite_embeddings_per_video(search_world, search_model, tmp_path, value):
    """NaN rows were stored as good ones and search then said "no results" (exit 0). Now the video is marked
    failed and counted, and no non-finite row reaches the index."""
    from internvideo.search import Searcher, build_index

    folder = video_folder(search_world, tmp_path / "videos", clips=3, long=False)
    out = tmp_path / "idx"
    # One window per forward pass; clip 0 and 1 are fine, clip 2 is non-finite.
    model = _nan_after(internvideo.load_model(search_model), calls=2, value=value)
    summary = build_index(model, folder, out, model_source=search_model, window=1.0, stride=1.0, batch_size=1,
                          precision="fp32", progress=False)
    assert summary["indexed"] == 2 and summary["failed_now"] == 1
    assert [f["video"] for f in summary["failed"]] == ["clips/clip_00002.mp4"]
    assert "non-finite" in summary["failed"][0]["error"]
    searcher = Searcher(out)
    try:
        ids, x = searcher.store.embeddings()
        assert np.isfinite(x).all() and len(ids) == summary["windows"] == 2
    finally:
        searcher.close()


def test_index_cli_exits_non_zero_when_every_video_fails(search_world, search_model, tmp_path, capsys):
    from internvideo.search.__main__ import main as search_main

    bad = tmp_path / "nan_model"
    model = internvideo.load_model(search_model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    internvideo.save_model(model, bad)
    folder = video_folder(search_world, tmp_path / "videos", clips=2, long=False)
    with pytest.raises(SystemExit) as e:
        search_main(["index", str(folder), "--model", str(bad), "--out", str(tmp_path / "idx"), "--window", "1",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "all 2 videos to index failed" in err and "non-finite" in err


def test_search_with_a_nan_text_projection_is_an_error(search_world, search_model, tmp_path):
    from internvideo.search import Searcher, build_index

    folder = video_folder(search_world, tmp_path / "videos", clips=2, long=False)
    build_index(internvideo.load_model(search_model), folder, tmp_path / "idx", model_source=search_model,
                window=1.0, precision="fp32", progress=False)
    searcher = Searcher(tmp_path / "idx")
    try:
        assert searcher.search("a red circle", 2)
        real = searcher.model.encode_text
        searcher.model.encode_text = lambda ids: real(ids) * float("nan")
        with pytest.raises(NonFiniteError, match="query"):
            searcher.search("a blue square", 2)  # was: [] ("no results", exit 0)
        searcher.model.encode_text = lambda ids: real(ids) * float("inf")
        with pytest.raises(NonFiniteError, match="query"):
            searcher.search("a green triangle", 2)
    finally:
        searcher.close()
