"""Evaluation metrics of the InternVideo benchmark, as pure functions of scores.

Conventions shared by every function here:

* Scores are "higher is better"; accuracies and recalls are **percentages** (0-100),
  as papers report them; ranks are 1-based.
* **Ties count against the correct answer (pessimistic rank).** The rank of a
  correct item is ``1 + (number of wrong items scoring >= it)``. A model that
  gives every class the same score therefore gets top-1 = 0, not an accuracy
  that depends on how a sort happens to order equal values. scikit-learn's
  ``top_k_accuracy_score`` breaks ties by class index instead, which is why the
  classification metrics are computed from these ranks; on tie-free scores
  they equal scikit-learn's ``top_k_accuracy_score`` / ``balanced_accuracy_score``
  (the tests check both).
* **Non-finite scores are the worst score.** NaN and +inf are read as -inf
  before ranking, so with pessimistic ties a sample whose true class scores
  NaN is ranked last and never counts as a hit (a NaN compares false with
  everything, so without this it would have no wrong class "ahead" of it and
  rank first). Evaluations count the clips whose model outputs were
  non-finite and fail unless asked to continue (:func:`check_finite`).

Retrieval (see :func:`retrieval_ranks`) works on a text x video similarity
matrix that may have several captions per video and is computed in row blocks,
so a 10k x 10k evaluation never holds more than ``chunk_size`` rows at once.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from ..errors import UsageError, UserError

ArrayLike = np.ndarray | torch.Tensor | Sequence

__all__ = [
    "NonFiniteError", "check_finite", "worst_if_nonfinite", "average_views", "correct_rank", "topk_accuracy",
    "mean_class_accuracy", "classification_metrics", "multiple_choice_accuracy", "rank_metrics", "dual_softmax",
    "retrieval_ranks", "retrieval_ranks_from_sim", "MultiCaption",
    "retrieval_metrics", "caption_words", "caption_metrics",
]


def _np(x: ArrayLike, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _torch(x: ArrayLike) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.float() if t.dtype != torch.float64 else t


# ----------------------------------------------------------------------------- non-finite outputs


class NonFiniteError(UserError):
    """Model outputs were NaN/inf for some clips; scoring them would make the metric meaningless."""


def worst_if_nonfinite(scores: np.ndarray | torch.Tensor):
    """NaN and +inf replaced by -inf (the worst score); -inf is kept (it already is the worst)."""
    if isinstance(scores, torch.Tensor):
        return scores.nan_to_num(nan=-torch.inf, posinf=-torch.inf)
    return np.nan_to_num(scores, nan=-np.inf, posinf=-np.inf, neginf=-np.inf)


def check_finite(values: ArrayLike, what: str, *, allow: bool = False) -> int:
    """Number of rows of ``values`` (first axis = clips/videos/captions) holding any NaN/inf.

    Raises :class:`NonFiniteError` naming how many, unless ``allow`` (then
    those rows are scored as wrong: :func:`worst_if_nonfinite`).
    """
    v = _np(values, np.float64)
    bad = int((~np.isfinite(v.reshape(len(v), -1))).any(axis=1).sum()) if v.size else 0
    if bad and not allow:
        raise NonFiniteError(f"{bad} of {len(v)} {what} gave non-finite model outputs (NaN/inf); the model is "
                             "probably broken (diverged training, corrupt weights). Pass allow_nonfinite=True "
                             "(--allow-nonfinite) to score them as wrong and continue")
    return bad


# ----------------------------------------------------------------------------- classification


def average_views(view_logits: ArrayLike) -> np.ndarray:
    """Multi-view test scores: softmax over classes per view, then the mean over views.

    ``view_logits`` is ``(N, V, C)`` (V = num_clips x num_crops views per
    video). This is what the official VideoMAE/InternVideo test scripts do
    (each view's logits are softmaxed before averaging), so one over-confident
    view cannot outvote the others as it could when averaging raw logits.
    Returns probabilities ``(N, C)``.
    """
    logits = _torch(view_logits)
    if logits.ndim != 3:
        raise ValueError(f"expected view logits of shape (N, V, C), got {tuple(logits.shape)}")
    # A non-finite logit makes that view's softmax NaN, and the NaN carries into the mean: the video ranks last.
    return logits.double().softmax(dim=-1).mean(dim=1).numpy()


def correct_rank(scores: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """1-based rank of each sample's true class among ``scores (N, C)``, ties pessimistic, NaN worst."""
    s = worst_if_nonfinite(_np(scores, np.float64))
    y = _np(labels, np.int64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise ValueError(f"expected scores (N, C) and labels (N,), got {s.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), got range [{y.min()}, {y.max()}]")
    true = s[np.arange(len(y)), y][:, None]
    # Every class scoring >= the true one is ranked ahead of it; the true class itself is one of them.
    return (s >= true).sum(axis=1)


def topk_accuracy(scores: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy (%) for each k: the true class is among the k best (ties pessimistic)."""
    ranks = correct_rank(scores, labels)
    if ranks.size == 0:
        return {k: float("nan") for k in ks}
    return {k: 100.0 * float((ranks <= k).mean()) for k in ks}


def mean_class_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy (%) per class, averaged over the classes that occur in ``labels``.

    The same as scikit-learn's ``balanced_accuracy_score`` on argmax
    predictions (without its tie breaking); classes without test samples are
    left out rather than counted as 0.
    """
    y = _np(labels, np.int64).reshape(-1)
    if y.size == 0:
        return float("nan")
    hit = (correct_rank(scores, y) == 1).astype(np.float64)
    present = np.unique(y)
    per_class = np.bincount(y, weights=hit)[present] / np.bincount(y)[present]
    return 100.0 * float(per_class.mean())


def classification_metrics(scores: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"top1", "top5", ..., "mean_class_acc", "num_samples"}`` from scores ``(N, C)``."""
    out: dict[str, float] = {f"top{k}": v for k, v in topk_accuracy(scores, labels, ks).items()}
    out["mean_class_acc"] = mean_class_accuracy(scores, labels)
    out["num_samples"] = int(_np(labels).size)
    return out


def multiple_choice_accuracy(scores: ArrayLike, answers: ArrayLike) -> float:
    """Accuracy (%) of picking the answer among K candidates: ``scores (N, K)``, ``answers (N,)``.

    A question counts as right only if its answer scores strictly above every
    other candidate (ties pessimistic, as everywhere in this module).
    """
    ranks = correct_rank(scores, answers)
    return 100.0 * float((ranks == 1).mean()) if ranks.size else float("nan")


# ----------------------------------------------------------------------------- retrieval


def rank_metrics(ranks: ArrayLike, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``R@k`` (%) for each k, median rank ``MdR``, mean rank ``MnR`` and ``num_queries``."""
    r = _np(ranks, np.float64).reshape(-1)
    out: dict[str, float] = {f"R@{k}": 100.0 * float((r <= k).mean()) if r.size else float("nan") for k in ks}
    out["MdR"] = float(np.median(r)) if r.size else float("nan")
    out["MnR"] = float(r.mean()) if r.size else float("nan")
    out["num_queries"] = int(r.size)
    return out


def dual_softmax(sim: torch.Tensor, dim: int) -> torch.Tensor:
    """Dual-softmax re-scoring: ``sim * softmax(sim, dim)``.

    The official InternVideo retrieval evaluation (its CLIP4Clip-based
    ``main_task_retrieval.py``) applies this to the text x video matrix of
    *logits* (``logit_scale * cosine``, logit scale clamped at 100): for
    text-to-video it multiplies in a softmax over the **texts** (``dim=0``),
    for video-to-text a softmax over the **videos** (``dim=1``), i.e. each
    ranking is re-weighted by how strongly the other side prefers the pair.
    The softmax temperature is therefore ``1 / logit_scale``.
    """
    return sim * torch.softmax(sim, dim=dim)


RowBlocks = Callable[[int, int], torch.Tensor]
MultiCaption = Literal["captions", "official"]


def _as_index(caption_to_video: ArrayLike, num_texts: int, num_videos: int) -> torch.Tensor:
    owner = torch.as_tensor(_np(caption_to_video, np.int64).reshape(-1))
    if owner.numel() != num_texts:
        raise ValueError(f"caption_to_video has {owner.numel()} entries for {num_texts} captions")
    if num_texts and (int(owner.min()) < 0 or int(owner.max()) >= num_videos):
        raise ValueError(f"caption_to_video must index videos in [0, {num_videos})")
    return owner


def _dsl(block: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """``block * softmax`` given the softmax's log-normaliser ``lse`` (broadcast along the softmax axis)."""
    # -inf * 0 is NaN: keep a worst score worst after re-scoring.
    return worst_if_nonfinite(block * torch.exp(block - lse))


def _spans(owner: torch.Tensor, chunk_size: int, whole_groups: bool) -> list[tuple[int, int]]:
    """Row blocks of about ``chunk_size`` captions; with ``whole_groups`` a video's captions share a block."""
    n = owner.numel()
    if not whole_groups:
        return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    ends = (torch.nonzero(owner[1:] != owner[:-1]).flatten() + 1).tolist() + [n]
    spans, start, prev = [], 0, 0
    for end in ends:
        if end - start > chunk_size and prev > start:
            spans.append((start, prev))
            start = prev
        prev = end
    return spans + [(start, n)] if n else spans


def _ranks(blocks: RowBlocks, owner: torch.Tensor, num_videos: int, chunk_size: int, dsl: bool,
           dtype: torch.dtype, multi_caption: MultiCaption = "captions") -> tuple[np.ndarray, np.ndarray]:
    """Both directions' ranks from row blocks ``blocks(start, stop) -> sim[start:stop]`` (texts x videos).

    Up to three passes over the rows, so no more than one block is ever held:
    for DSL, the two softmax normalisers (per text over videos, row-local, and
    per video over all texts, a running log-sum-exp); then each video's best
    caption score (the v2t target); then, per query, the wrong items scoring
    >= the correct one. ``multi_caption="official"`` needs each video's
    captions in consecutive rows (:func:`_grouped` arranges that).

    Every score that is compared is recomputed in the last pass by exactly the
    same tensor expression on the same block as before, so the correct pair's
    score is bit-identical in both and ties are decided by the data, not by
    rounding differences between code paths.
    """
    if multi_caption not in ("captions", "official"):
        raise UsageError(f"multi_caption must be 'captions' or 'official', not {multi_caption!r}")
    num_texts = owner.numel()
    counts = torch.bincount(owner, minlength=num_videos)
    # With one caption per video the official code takes its single-caption branch, which is ours.
    official = multi_caption == "official" and bool((counts > 1).any())
    if official and num_texts > 1 and bool((owner[1:] < owner[:-1]).any()):
        raise UsageError("multi_caption='official' needs each video's captions in consecutive rows")
    spans = _spans(owner, chunk_size, official)

    def finite_blocks(s: int, e: int) -> torch.Tensor:  # non-finite scores count as the worst
        return worst_if_nonfinite(blocks(s, e))

    row_lse = torch.zeros(num_texts, 1, dtype=dtype)
    col_lse = torch.full((1, num_videos), -torch.inf, dtype=dtype)
    if dsl:
        for s, e in spans:
            block = finite_blocks(s, e)
            row_lse[s:e] = block.logsumexp(dim=1, keepdim=True)
            col_lse = torch.logaddexp(col_lse, block.logsumexp(dim=0, keepdim=True))

    def t2v_scores(block: torch.Tensor) -> torch.Tensor:
        # Text-to-video DSL multiplies in the softmax over texts: the column normaliser.
        return _dsl(block, col_lse) if dsl else block

    def v2t_scores(block: torch.Tensor, s: int, e: int) -> torch.Tensor:
        if not dsl:
            return block
        # Ours: video-to-text DSL multiplies in the softmax over videos (row-local). The official
        # multi-caption branch re-uses the text-to-video DSL matrix (softmax over texts) instead.
        return _dsl(block, col_lse) if official else _dsl(block, row_lse[s:e])

    v2t_best = torch.full((num_videos,), -torch.inf, dtype=dtype)
    for s, e in spans:
        pair = v2t_scores(finite_blocks(s, e), s, e)[torch.arange(e - s), owner[s:e]]
        # A video query is answered by its best caption; videos without captions stay at -inf.
        v2t_best.scatter_reduce_(0, owner[s:e], pair, reduce="amax")

    t2v_rank = torch.empty(num_texts, dtype=torch.int64)
    v2t_wrong_ahead = torch.zeros(num_videos, dtype=torch.int64)
    for s, e in spans:
        block = finite_blocks(s, e)
        rows, own = torch.arange(e - s), owner[s:e]
        t2v = t2v_scores(block)
        # Own video included in the count: rank = 1 + wrong videos scoring >= the correct one.
        t2v_rank[s:e] = (t2v >= t2v[rows, own][:, None]).sum(dim=1)
        ahead = v2t_scores(block, s, e) >= v2t_best[None, :]
        ahead[rows, own] = False  # a video's own captions are never wrong answers
        if official:
            # Official: a video's captions are max-pooled into one candidate, so count other videos, not captions.
            _, group = torch.unique_consecutive(own, return_inverse=True)
            per_video = torch.zeros(int(group.max()) + 1, num_videos, dtype=torch.int64)
            ahead = per_video.index_add_(0, group, ahead.long()) > 0
        v2t_wrong_ahead += ahead.sum(dim=0)
    return t2v_rank.numpy(), (1 + v2t_wrong_ahead[counts > 0]).numpy()


def _grouped(owner: torch.Tensor, multi_caption: MultiCaption) -> torch.Tensor | None:
    """The row order that puts each video's captions together, when the official mode needs one."""
    if multi_caption != "official" or owner.numel() < 2 or not bool((owner[1:] < owner[:-1]).any()):
        return None
    return torch.sort(owner, stable=True).indices


def _in_caption_order(ranks: tuple[np.ndarray, np.ndarray], order: torch.Tensor | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    if order is None:
        return ranks
    t2v = np.empty_like(ranks[0])
    t2v[order.numpy()] = ranks[0]
    return t2v, ranks[1]


def retrieval_ranks_from_sim(sim: ArrayLike, caption_to_video: ArrayLike | None = None, *, chunk_size: int = 1024,
                             dsl: bool = False, multi_caption: MultiCaption = "captions"
                             ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`retrieval_ranks` for a similarity matrix you already have: ``sim`` is texts x videos.

    Without ``caption_to_video`` the matrix must be square with caption ``i``
    describing video ``i``. For DSL, ``sim`` should hold logits
    (``logit_scale * cosine``), as in the official evaluation.
    """
    s = _torch(sim)
    if s.ndim != 2:
        raise ValueError(f"expected a (num_texts, num_videos) similarity matrix, got {tuple(s.shape)}")
    if caption_to_video is None:
        if s.shape[0] != s.shape[1]:
            raise ValueError(f"a {tuple(s.shape)} matrix needs caption_to_video (which video each caption describes)")
        caption_to_video = np.arange(s.shape[0])
    owner = _as_index(caption_to_video, s.shape[0], s.shape[1])
    order = _grouped(owner, multi_caption)
    if order is not None:
        s, owner = s[order], owner[order]
    ranks = _ranks(lambda a, b: s[a:b], owner, s.shape[1], max(1, chunk_size), dsl, s.dtype, multi_caption)
    return _in_caption_order(ranks, order)


def retrieval_ranks(text_emb: ArrayLike, video_emb: ArrayLike, caption_to_video: ArrayLike | None = None, *,
                    scale: float = 100.0, chunk_size: int = 1024, dsl: bool = False,
                    multi_caption: MultiCaption = "captions") -> tuple[np.ndarray, np.ndarray]:
    """Ranks for text-to-video and video-to-text retrieval, similarity computed in row blocks.

    ``sim = scale * text_emb @ video_emb.T`` (pass L2-normalised embeddings for
    cosine similarity; ``scale`` only matters for DSL, where it is the
    model's logit scale), computed ``chunk_size`` caption rows at a time: peak
    memory is ``O(chunk_size x num_videos)``, never the full matrix.

    * **t2v**: each caption is a query over all videos; its rank is that of the
      one video it describes. One rank per caption.
    * **v2t**: each video is a query; any of its captions is a correct answer.
      One rank per video that has at least one caption (caption-less videos
      are only distractors for t2v). With one caption per video both
      directions are the usual diagonal ranking and the two modes below agree.
    * ``dsl``: dual-softmax re-scoring (:func:`dual_softmax`), official InternVideo.

    ``multi_caption`` says how v2t treats videos with several captions:

    * ``"captions"`` (default): the video ranks all captions and its rank is
      that of its best-ranked caption, ``1 + (captions of other videos scoring
      >= its best caption)``; v2t DSL multiplies in the softmax over videos,
      the mirror image of t2v.
    * ``"official"``: InternVideo's (CLIP4Clip's) multi-sentence branch: each
      video's captions are max-pooled into one score per video, the video
      ranks the other videos, ``1 + (other videos whose best caption scores >=
      its best caption)``, and v2t DSL re-uses the text-to-video DSL matrix
      (softmax over texts). R@1 without DSL is the same in both modes; R@5/10,
      the ranks and every v2t DSL number can differ by points. Use it to
      reproduce published multi-caption tables (e.g. MSVD, VATEX).

    Ties count against the correct answer in both modes (the official code
    breaks them in its favour; on real-valued scores ties do not occur).

    Returns ``(t2v_ranks (num_texts,), v2t_ranks (num_videos_with_captions,))``.
    """
    t, v = _torch(text_emb), _torch(video_emb)
    if t.ndim != 2 or v.ndim != 2 or t.shape[1] != v.shape[1]:
        raise ValueError(f"expected (num_texts, D) and (num_videos, D) embeddings, got {tuple(t.shape)}, "
                         f"{tuple(v.shape)}")
    if caption_to_video is None:
        if t.shape[0] != v.shape[0]:
            raise ValueError("different numbers of captions and videos need caption_to_video")
        caption_to_video = np.arange(t.shape[0])
    owner = _as_index(caption_to_video, t.shape[0], v.shape[0])
    order = _grouped(owner, multi_caption)
    if order is not None:
        t, owner = t[order], owner[order]
    v = v.to(t.dtype)
    v_t = v.t().contiguous()
    ranks = _ranks(lambda a, b: scale * (t[a:b] @ v_t), owner, v.shape[0], max(1, chunk_size), dsl, t.dtype,
                   multi_caption)
    return _in_caption_order(ranks, order)


def retrieval_metrics(t2v_ranks: ArrayLike, v2t_ranks: ArrayLike, ks: Sequence[int] = (1, 5, 10)
                      ) -> dict[str, dict[str, float]]:
    """``{"t2v": {...}, "v2t": {...}}`` of :func:`rank_metrics`."""
    return {"t2v": rank_metrics(t2v_ranks, ks), "v2t": rank_metrics(v2t_ranks, ks)}


# ----------------------------------------------------------------------------- captioning

_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})


def caption_words(text: str) -> str:
    """Lower-cased words without punctuation, as the COCO caption evaluation compares them.

    The official pipeline runs the Stanford PTB tokenizer (Java) and then
    deletes punctuation tokens; splitting on punctuation and whitespace gives
    the same words for plain English captions without needing Java.
    """
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def caption_metrics(references: dict[Any, Sequence[str]], predictions: dict[Any, str]) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr-D (percent), scored by ``pycocoevalcap``'s pure-Python scorers.

    ``references[key]`` are the reference captions of a video, ``predictions[key]``
    its one generated caption; both are normalised with :func:`caption_words`.
    CIDEr-D is the COCO evaluation's ``Cider`` (n-grams 1-4, Gaussian length
    penalty with sigma 6, clipped counts, x10), here x100 as well.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if set(references) != set(predictions):
        missing = sorted(map(str, set(references) ^ set(predictions)))[:5]
        raise ValueError(f"references and predictions must cover the same videos; differing keys: {missing}")
    if not references:
        raise UsageError("no captions to score")
    keys = list(references)
    gts = {k: [caption_words(r) for r in references[k]] for k in keys}
    res = {k: [caption_words(predictions[k])] for k in keys}
    empty = [k for k in keys if not gts[k] or not all(gts[k])]
    if empty:
        raise UsageError(f"{len(empty)} videos have an empty reference caption (first: {empty[0]})")
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{n}": 100.0 * float(b) for n, b in enumerate(bleu, start=1)}
    out["cider"] = 100.0 * float(cider)
    return out
