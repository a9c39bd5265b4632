"""Hand-computed cases for every evaluation metric, ties included."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from internvideo.tasks import metrics as M
from internvideo.tasks.metrics import correct_rank, retrieval_ranks, topk_accuracy

# ----------------------------------------------------------------------------- classification


def test_correct_rank_counts_ties_against_the_true_class():
    scores = [[0.1, 0.5, 0.4],   # true 1: best -> 1
              [0.3, 0.3, 0.4],   # true 0: beaten by 2, tied with 1 -> 3
              [0.2, 0.2, 0.2]]   # true 2: all tied -> 3
    assert M.correct_rank(scores, [1, 0, 2]).tolist() == [1, 3, 3]


def test_topk_accuracy_by_hand():
    scores = np.array([[0.5, 0.3, 0.2, 0.0],   # true 0: rank 1
                       [0.1, 0.2, 0.3, 0.4],   # true 0: rank 4
                       [0.3, 0.4, 0.2, 0.1],   # true 0: rank 2
                       [0.1, 0.1, 0.7, 0.1]])  # true 3: tied with 0 and 1 -> rank 4
    acc = M.topk_accuracy(scores, [0, 0, 0, 3], ks=(1, 2, 3, 4))
    assert acc == {1: 25.0, 2: 50.0, 3: 50.0, 4: 100.0}


def test_constant_scores_are_never_right():
    # sklearn would credit the last class index on ties; the pessimistic rule gives no credit.
    scores = np.zeros((4, 3))
    assert M.topk_accuracy(scores, [0, 1, 2, 2], ks=(1, 2))[1] == 0.0
    assert M.mean_class_accuracy(scores, [0, 1, 2, 2]) == 0.0


def test_classification_metrics_match_sklearn_without_ties():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 7))
    labels = rng.integers(0, 7, size=200)
    acc = M.topk_accuracy(scores, labels, ks=(1, 5))
    for k in (1, 5):
        assert acc[k] == pytest.approx(100 * top_k_accuracy_score(labels, scores, k=k, labels=range(7)))
    assert M.mean_class_accuracy(scores, labels) == pytest.approx(
        100 * balanced_accuracy_score(labels, scores.argmax(1)))


def test_mean_class_accuracy_by_hand():
    # class 0: 2 of 3 right, class 1: 1 of 1, class 2: 0 of 2 -> (66.67 + 100 + 0) / 3; class 3 has no samples.
    scores = np.eye(4)[[0, 0, 1, 1, 0, 1]]
    labels = [0, 0, 0, 1, 2, 2]
    assert M.mean_class_accuracy(scores, labels) == pytest.approx((200 / 3 + 100 + 0) / 3)
    assert M.classification_metrics(scores, labels, ks=(1,)) == pytest.approx(
        {"top1": 50.0, "mean_class_acc": (200 / 3 + 100) / 3, "num_samples": 6})


def test_average_views_is_the_mean_of_per_view_softmax():
    # One video, two views over two classes: softmax([0, ln 3]) = [1/4, 3/4], softmax([ln 3, 0]) = [3/4, 1/4].
    logits = np.array([[[0.0, math.log(3)], [math.log(3), 0.0]]])
    np.testing.assert_allclose(M.average_views(logits), [[0.5, 0.5]])
    # A confident view cannot outvote two mildly confident ones, unlike a logit average.
    logits = np.array([[[0.0, 10.0], [2.0, 0.0], [2.0, 0.0]]])
    probs = M.average_views(logits)
    assert probs[0, 0] > probs[0, 1]
    assert logits.mean(axis=1)[0, 1] > logits.mean(axis=1)[0, 0]
    with pytest.raises(ValueError):
        M.average_views(np.zeros((2, 3)))


def test_multiple_choice_accuracy_ties_and_padding():
    scores = np.array([[0.9, 0.1, 0.2, -np.inf],  # answer 0 wins (4th slot is padding)
                       [0.5, 0.5, 0.1, 0.0],      # answer 1 tied with 0: wrong
                       [0.1, 0.2, 0.3, 0.8]])     # answer 2 loses
    assert M.multiple_choice_accuracy(scores, [0, 1, 2]) == pytest.approx(100 / 3)


def test_label_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="labels must lie"):
        M.correct_rank(np.zeros((2, 3)), [0, 3])


# ----------------------------------------------------------------------------- retrieval


def test_rank_metrics_by_hand():
    m = M.rank_metrics([1, 2, 3, 10, 11])
    assert m == pytest.approx({"R@1": 20.0, "R@5": 60.0, "R@10": 80.0, "MdR": 3.0, "MnR": 5.4, "num_queries": 5})


def test_one_caption_per_video_by_hand():
    sim = np.array([[0.9, 0.1, 0.0],    # caption 0 -> video 0 first: rank 1
                    [0.8, 0.7, 0.1],    # caption 1 -> video 1 second: rank 2
                    [0.3, 0.4, 0.2]])   # caption 2 -> video 2 last: rank 3
    t2v, v2t = M.retrieval_ranks_from_sim(sim)
    assert t2v.tolist() == [1, 2, 3]
    # video columns: v0 [0.9, 0.8, 0.3] -> caption 0 first; v1 [0.1, 0.7, 0.4] -> 1; v2 [0, 0.1, 0.2] -> 1
    assert v2t.tolist() == [1, 1, 1]
    assert M.retrieval_metrics(t2v, v2t)["t2v"]["R@1"] == pytest.approx(100 / 3)


def test_several_captions_per_video_by_hand():
    # Captions 0, 1 describe video 0; captions 2, 3 video 1; video 2 has no caption (a distractor only).
    owner = [0, 0, 1, 1]
    sim = np.array([[0.2, 0.5, 0.1],    # c0: v1 scores higher than v0 -> rank 2
                    [0.9, 0.3, 0.0],    # c1: v0 first -> 1
                    [0.4, 0.1, 0.6],    # c2: v0 and v2 above v1 -> 3
                    [0.0, 0.8, 0.1]])   # c3: v1 first -> 1
    t2v, v2t = M.retrieval_ranks_from_sim(sim, owner)
    assert t2v.tolist() == [2, 1, 3, 1]
    # v0 queries all captions: its best caption c1 (0.9) is above every other: rank 1.
    # v1: its best caption c3 (0.8) beats c0 (0.5), c1 (0.3): rank 1 even though c2 (0.1) is last.
    # v2 has no caption: no v2t query.
    assert v2t.tolist() == [1, 1]
    # Make v1's captions weak: column v1 = [0.5, 0.3, 0.1, 0.2] -> best own caption c3 (0.2) has c0, c1 above: 3.
    sim[3, 1] = 0.2
    assert M.retrieval_ranks_from_sim(sim, owner)[1].tolist() == [1, 3]


def test_retrieval_ties_are_pessimistic():
    sim = np.array([[0.5, 0.5, 0.1],     # c0 tied with v1 -> rank 2
                    [0.5, 0.5, 0.5],     # c1 tied with everything -> 3
                    [0.1, 0.2, 0.7]])    # c2 first -> 1
    t2v, v2t = M.retrieval_ranks_from_sim(sim)
    assert t2v.tolist() == [2, 3, 1]
    # v0 column [0.5, 0.5, 0.1]: own c0 tied with c1 -> 2; v1 column [0.5, 0.5, 0.2]: own c1 tied with c0 -> 2
    assert v2t.tolist() == [2, 2, 1]
    # Ties among a video's *own* captions never hurt it.
    t2v, v2t = M.retrieval_ranks_from_sim(np.array([[0.5, 0.1], [0.5, 0.1], [0.2, 0.3]]), [0, 0, 1])
    assert v2t.tolist() == [1, 1]


def test_dual_softmax_formula():
    sim = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    out = M.dual_softmax(sim, dim=0)
    col0 = torch.softmax(torch.tensor([1.0, 3.0]), 0)
    assert out[0, 0] == pytest.approx(1.0 * col0[0].item())
    assert out[1, 0] == pytest.approx(3.0 * col0[1].item())


def _naive_ranks(sim: np.ndarray, owner: np.ndarray) -> tuple[list[int], list[int]]:
    """Direct definition, one query at a time."""
    nt, nv = sim.shape
    t2v = [1 + sum(sim[i, j] >= sim[i, owner[i]] for j in range(nv) if j != owner[i]) for i in range(nt)]
    v2t = []
    for j in range(nv):
        own = [i for i in range(nt) if owner[i] == j]
        if own:
            best = max(sim[i, j] for i in own)
            v2t.append(1 + sum(sim[i, j] >= best for i in range(nt) if owner[i] != j))
    return t2v, v2t


def test_dsl_matches_the_official_formula():
    # Official: t2v ranks rows of sim * softmax(sim, axis=0); v2t ranks columns of sim * softmax(sim, axis=1).
    rng = np.random.default_rng(1)
    owner = np.array([0, 0, 1, 2, 2, 2, 3])
    sim = rng.normal(size=(7, 5)) * 3
    t2v, v2t = M.retrieval_ranks_from_sim(sim, owner, dsl=True)
    s = torch.tensor(sim)
    t2v_ref, _ = _naive_ranks(M.dual_softmax(s, 0).numpy(), owner)
    _, v2t_ref = _naive_ranks(M.dual_softmax(s, 1).numpy(), owner)
    assert t2v.tolist() == t2v_ref
    assert v2t.tolist() == v2t_ref


def test_dsl_demotes_a_hub_video():
    # Video 1 is a "hub": similar to every caption. Plain ranking sends caption 0 to it; DSL sees that
    # caption 1 wants video 1 even more, so caption 0 goes back to its own video 0.
    sim = np.array([[4.0, 5.0], [0.0, 9.0]])
    assert M.retrieval_ranks_from_sim(sim)[0].tolist() == [2, 1]
    assert M.retrieval_ranks_from_sim(sim, dsl=True)[0].tolist() == [1, 1]


@pytest.mark.parametrize("dsl", [False, True])
def test_chunked_equals_unchunked(dsl):
    rng = np.random.default_rng(2)
    text = torch.nn.functional.normalize(torch.randn(53, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    video = torch.nn.functional.normalize(torch.randn(20, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    owner = rng.integers(0, 19, size=53)  # video 19 gets no caption
    full = M.retrieval_ranks(text, video, owner, scale=30.0, chunk_size=10_000, dsl=dsl)
    for chunk in (1, 7, 52):
        got = M.retrieval_ranks(text, video, owner, scale=30.0, chunk_size=chunk, dsl=dsl)
        np.testing.assert_array_equal(got[0], full[0])
        np.testing.assert_array_equal(got[1], full[1])
    sim = (30.0 * text @ video.t()).numpy()
    naive = _naive_ranks(sim, owner) if not dsl else (
        _naive_ranks(M.dual_softmax(torch.tensor(sim), 0).numpy(), owner)[0],
        _naive_ranks(M.dual_softmax(torch.tensor(sim), 1).numpy(), owner)[1])
    assert full[0].tolist() == naive[0]
    assert full[1].tolist() == naive[1]
    assert len(full[1]) == 19


def test_similarity_is_computed_in_bounded_row_blocks():
    sim = torch.randn(25, 9)
    seen = []

    def blocks(a: int, b: int) -> torch.Tensor:
        seen.append(b - a)
        return sim[a:b]

    owner = torch.arange(25) % 9
    got = M._ranks(blocks, owner, 9, 4, True, sim.dtype)
    assert max(seen) <= 4
    ref = M.retrieval_ranks_from_sim(sim, owner.numpy(), chunk_size=100, dsl=True)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_retrieval_input_errors():
    with pytest.raises(ValueError, match="caption_to_video"):
        M.retrieval_ranks_from_sim(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="index videos"):
        M.retrieval_ranks_from_sim(np.zeros((2, 2)), [0, 2])


def test_nan_scores_never_count_as_hits():
    scores = np.array([[np.nan, 0.1, 0.2], [0.3, np.nan, 0.1], [np.inf, 0.0, 0.0]])
    # Before: a NaN true-class score had nothing ">=" it, so it ranked first (a hit).
    assert correct_rank(scores, [0, 1, 0]).tolist() == [3, 3, 3]
    assert topk_accuracy(np.full((4, 5), np.nan), [0, 1, 2, 3], ks=(1,))[1] == 0.0
    t2v, v2t = retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4))
    assert t2v.tolist() == [3, 3, 3] and v2t.tolist() == [3, 3, 3]
    t2v, v2t = retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4), dsl=True)
    assert t2v.tolist() == [3, 3, 3] and v2t.tolist() == [3, 3, 3]
