"""Open-set recognition: EDL loss (gradient-checked, KL against torch.distributions), scores, the protocol."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from internvideo.models.openset import (OpenSetHead, annealing, dirichlet_uncertainty, edl_loss, evidence,
                                        kl_to_uniform_dirichlet, unknown_scores)
from internvideo.tasks.openset import evaluate_openset_features, openset_metrics, resolve_unknown
from internvideo.train.heads import fit_openset_head
from internvideo.errors import UsageError
from internvideo.tasks.metrics import NonFiniteError
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)


def test_kl_matches_torch_distributions():
    alpha = torch.rand(5, 4, dtype=torch.float64) * 5 + 0.2
    ours = kl_to_uniform_dirichlet(alpha)
    ref = torch.distributions.kl_divergence(torch.distributions.Dirichlet(alpha),
                                            torch.distributions.Dirichlet(torch.ones_like(alpha)))
    torch.testing.assert_close(ours, ref)


def test_edl_loss_by_hand_and_gradcheck():
    ev = torch.tensor([[3.0, 0.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([0])
    # alpha = (4, 1, 2), S = 7: risk = digamma(7) - digamma(4); alpha~ = (1, 1, 2): KL(Dir(1,1,2) || Dir(1,1,1)).
    risk = torch.digamma(torch.tensor(7.0, dtype=torch.float64)) - torch.digamma(torch.tensor(4.0, dtype=torch.float64))
    # KL(Dir(1,1,2) || Dir(1,1,1)) = lgamma(4) - lgamma(3) - lgamma(2) + (2 - 1)(digamma(2) - digamma(4))
    #                             = log 3 - (1/2 + 1/3)
    kl = np.log(3.0) - (0.5 + 1.0 / 3.0)
    torch.testing.assert_close(edl_loss(ev, target, 0.0), risk)
    torch.testing.assert_close(edl_loss(ev, target, 0.5), risk + 0.5 * kl)

    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    for kind in ("exp", "softplus"):
        assert torch.autograd.gradcheck(lambda z: edl_loss(evidence(z, kind), y, 0.7), (logits,))
    relu_logits = (torch.rand(6, 5, dtype=torch.float64) + 0.1).requires_grad_()  # away from relu's kink
    assert torch.autograd.gradcheck(lambda z: edl_loss(evidence(z, "relu"), y, 0.7), (relu_logits,))


def _dear_loss_numpy(logits: np.ndarray, target: np.ndarray, loss_type: str) -> float:
    """DEAR's EvidenceLoss (official Open-Set-Action-Recognition mmaction/models/losses/edl_loss.py, with_kldiv=False,
    evidence='exp'), written out in NumPy from its arithmetic: no torch, no code shared with ours."""
    alpha = np.exp(np.clip(logits, -10, 10)) + 1.0
    y = np.eye(logits.shape[1])[target]
    s = alpha.sum(axis=1, keepdims=True)
    if loss_type == "log":
        per = (y * (np.log(s) - np.log(alpha))).sum(axis=1)
    else:  # mse: loglikelihood_err + loglikelihood_var
        per = ((y - alpha / s) ** 2).sum(axis=1) + (alpha * (s - alpha) / (s * s * (s + 1))).sum(axis=1)
    return float(per.mean())


@pytest.mark.parametrize("loss_type", ["log", "mse"])
def test_edl_log_and_mse_losses_match_dear_formula(loss_type):
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, size=(7, 5))
    target = rng.integers(0, 5, size=7)
    ours = edl_loss(evidence(torch.from_numpy(logits), "exp"), torch.from_numpy(target), 0.0, loss_type)
    assert ours.item() == pytest.approx(_dear_loss_numpy(logits, target, loss_type), rel=1e-10)
    # By hand, log loss: alpha = (4, 1, 2), S = 7, true class 0 -> log 7 - log 4.
    one = edl_loss(torch.tensor([[3.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([0]), 0.0, loss_type)
    # mse by hand: p = (4, 1, 2) / 7; (1 - 4/7)^2 + (1/7)^2 + (2/7)^2 + sum p (1 - p) / 8
    p = np.array([4, 1, 2]) / 7
    mse = (3 / 7) ** 2 + (1 / 7) ** 2 + (2 / 7) ** 2 + (p * (1 - p)).sum() / 8
    expected = np.log(7 / 4) if loss_type == "log" else mse
    assert one.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="loss_type must be"):
        edl_loss(torch.ones(1, 2), torch.tensor([0]), 0.0, "cross_entropy")


def test_kl_term_switches_off():
    """DEAR's with_kldiv=False: no KL at any epoch (annealing used to return 1.0 for annealing_epochs <= 0)."""
    assert [annealing(e, 10, kl=False) for e in (0, 5, 50)] == [0.0, 0.0, 0.0]
    assert annealing(0, 0, kl=False) == 0.0 and annealing(0, 0) == 1.0
    ev, y = torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([0])
    assert edl_loss(ev, y, annealing(50, 10, kl=False), "log") < edl_loss(ev, y, annealing(50, 10), "log")


def test_uncertainty_annealing_and_scores():
    assert dirichlet_uncertainty(torch.zeros(1, 4)).item() == 1.0  # no evidence: fully uncertain
    assert dirichlet_uncertainty(torch.tensor([[6.0, 0.0]])).item() == pytest.approx(2 / 8)
    assert [annealing(e, 10) for e in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0] and annealing(3, 0) == 1.0
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    msp = unknown_scores(logits, "msp")
    assert msp[0] < msp[1] and msp[1].item() == pytest.approx(-0.5)
    torch.testing.assert_close(unknown_scores(logits, "energy"), -torch.logsumexp(logits, -1))
    assert unknown_scores(logits, "max_logit").tolist() == [-2.0, 0.0]
    with pytest.raises(ValueError, match="score must be"):
        unknown_scores(logits, "entropy")
    with pytest.raises(ValueError, match="evidence must be"):
        evidence(logits, "square")
    assert evidence(torch.tensor([1e4]), "exp").isfinite().all()


def test_metrics_by_hand():
    # Two known classes (0, 1), unknown = -1. Scores: higher = more unknown.
    labels = np.array([0, 1, 0, -1, -1])
    predictions = np.array([0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    m = openset_metrics(scores, predictions, labels, threshold=0.55, num_classes=2)
    assert m["closed_set_accuracy"] == pytest.approx(100 * 2 / 3)
    # Unknown scores {0.5, 0.9} vs known {0.1, 0.2, 0.6}: pairs won 5 of 6.
    assert m["auroc"] == pytest.approx(100 * 5 / 6)
    # Called: [0, 1, unk, 0, unk]; truth: [0, 1, 0, unk, unk]. F1: class 0 = 2*1/(2+1)... by hand:
    # class 0: tp 1, fp 1 (video 4), fn 1 (video 3) -> 0.5; class 1: tp 1 -> 1.0; unknown: tp 1, fp 1, fn 1 -> 0.5.
    assert m["macro_f1"] == pytest.approx(100 * (0.5 + 1.0 + 0.5) / 3)
    with pytest.raises(UsageError, match="known and unknown"):
        openset_metrics(scores[:3], predictions[:3], labels[:3], 0.5, 2)


def test_overlapping_class_lists_are_named():
    classes = ["walk", "run", "jump"]
    assert resolve_unknown(classes, ["jump"], ["walk", "run"]) == {2}
    with pytest.raises(UsageError, match="both known and unknown: jump, run"):
        resolve_unknown(classes, ["run", "jump"], ["walk", "run", "jump"])
    with pytest.raises(UsageError, match="not in the class list: swim"):
        resolve_unknown(classes, ["swim"])


def _clusters(rng, labels, centres, noise=0.6):
    return centres[labels] + rng.normal(0, noise, (len(labels), centres.shape[1]))


def test_protocol_rejects_unseen_clusters_with_every_score():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (6, 16))  # classes 4 and 5 are never trained on
    y_train = np.repeat(np.arange(4), 30)
    y_val = np.repeat(np.arange(4), 8)
    y_test_true = np.repeat(np.arange(6), 10)
    y_test = np.where(y_test_true >= 4, -1, y_test_true)
    result = evaluate_openset_features((_clusters(rng, y_train, centres), y_train),
                                       (_clusters(rng, y_val, centres), y_val),
                                       (_clusters(rng, y_test_true, centres), y_test), fit=fit_openset_head, steps=200)
    assert set(result["scores"]) == {"uncertainty", "msp", "energy", "max_logit"}
    assert (result["num_known_classes"], result["num_test_known"], result["num_test_unknown"]) == (4, 40, 20)
    for score, m in result["scores"].items():
        assert m["closed_set_accuracy"] > 95, (score, m)
        assert m["auroc"] > 75, (score, m)
        assert m["macro_f1"] > 60, (score, m)


def test_protocol_input_errors():
    x = np.zeros((4, 3))
    with pytest.raises(UsageError, match="unknown videos"):
        evaluate_openset_features((x, np.array([0, 1, -1, 0])), (x, np.zeros(4)), (x, np.zeros(4)),
                                  fit=fit_openset_head)
    with pytest.raises(UsageError, match=r"test labels \[7\]"):
        evaluate_openset_features((x, np.array([0, 1, 1, 0])), (x, np.array([0, 1, 1, 0])),
                                  (x, np.array([0, 7, -1, 0])), fit=fit_openset_head, steps=2)
    bad = x.copy()
    bad[1, 0] = np.nan
    with pytest.raises(NonFiniteError, match="val: 1 videos have non-finite"):
        evaluate_openset_features((x, np.array([0, 1, 1, 0])), (bad, np.array([0, 1, 1, 0])),
                                  (x, np.array([0, 1, -1, 0])), fit=fit_openset_head)


def test_head_shapes():
    head = OpenSetHead(8, 3, hidden=16)
    assert head(torch.randn(5, 8)).shape == (5, 3)


def test_dear_threshold_is_the_official_order_statistic():
    """experiments/get_threshold.py: sort descending, topK = N - int(N * 0.95), threshold = sorted[topK - 1]."""
    from internvideo.tasks.openset import dear_threshold

    rng = np.random.default_rng(0)
    for n in (1, 7, 19, 20, 21, 100, 1001):
        u = rng.random(n)
        ref = np.sort(u)[::-1][n - int(n * 0.95) - 1]
        assert dear_threshold(u) == ref
        assert (u <= dear_threshold(u)).mean() >= 0.95 or n < 20  # 95 % of training videos kept
    from internvideo.errors import UserError

    with pytest.raises(UserError, match="no training scores"):
        dear_threshold(np.array([]))


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_dear_list_readers_with_the_official_layout(tmp_path):
    """MMAction2 lists as DEAR's scripts name them; videos under <list folder>/videos; unknown sets become -1."""
    from internvideo.data import DEAR_LISTS, AnnotationError, openset_test_samples, read_dear_list

    ucf = _write(tmp_path / DEAR_LISTS["ucf101_val"], "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 0\n"
                                                       "YoYo/v_YoYo_g07_c03.avi 100\n")
    hmdb = _write(tmp_path / DEAR_LISTS["hmdb51_val"], "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi 0\n")
    mit = _write(tmp_path / DEAR_LISTS["mit_val"], "adult+female+singing/yt-0Bx6RT1ZBmQ_8.mp4 4\n")
    known = read_dear_list(ucf, num_classes=101)
    assert [s.label for s in known] == [0, 100]
    assert known[0].path == str(tmp_path / "ucf101" / "videos" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    test = openset_test_samples(ucf, [hmdb, mit])
    assert [s.label for s in test] == [0, 100, -1, -1]
    assert test[2].path.startswith(str(tmp_path / "hmdb51" / "videos")) and "mit/videos/adult" in test[3].path
    with pytest.raises(AnnotationError, match=r"ucf101_val_split_1_videos.txt:2: label 100 is out of range"):
        read_dear_list(ucf, num_classes=100)
    bad = _write(tmp_path / "ucf101" / "with_unknown.txt", "a.avi 0\nb.avi -1\n")
    with pytest.raises(AnnotationError, match="with_unknown.txt: the known test list holds label -1"):
        openset_test_samples(bad, [hmdb])
    with pytest.raises(AnnotationError, match="empty.txt: the list is empty"):
        read_dear_list(_write(tmp_path / "empty.txt", "\n"))
