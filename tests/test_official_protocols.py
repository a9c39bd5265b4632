"""Test-time protocols against the official code's formulas.

Each reference below is a slow, literal transcription of what the official
loaders compute (VideoMAE ``kinetics.py`` test mode, mmaction2 ``SampleFrames``
and ``ThreeCrop``, InternVideo's ``main_task_retrieval.py`` + ``metrics.py``),
and the hand-checked cases write the index lists out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvideo.data import DenseSampler, dense_indices, segment_indices
from internvideo.data.transforms import CenterCrop, ResizeShortSide, ThreeCrop
from internvideo.tasks import metrics as M
from internvideo.errors import UsageError

# ----------------------------------------------------------------------------- references


def videomae_test_clips(num_frames: int, clip_len: int, interval: int, num_clips: int) -> list[list[int]]:
    """VideoMAE ``VideoClsDataset`` test mode: subsample, pad with the last frame, spread the starts."""
    all_index = list(range(0, num_frames, interval))
    while len(all_index) < clip_len:
        all_index.append(all_index[-1])
    step = max(1.0 * (len(all_index) - clip_len) / (num_clips - 1), 0)
    return [all_index[int(c * step):int(c * step) + clip_len] for c in range(num_clips)]


def mmaction_test_clips(num_frames: int, clip_len: int, interval: int, num_clips: int,
                        out_of_bound: str = "loop") -> list[list[int]]:
    """mmaction2 ``SampleFrames(test_mode=True)``."""
    ori_clip_len = (clip_len - 1) * interval + 1
    max_offset = max(num_frames - ori_clip_len, 0)
    if num_clips > 1:
        offsets = np.round(np.arange(num_clips) * (max_offset / float(num_clips - 1))).astype(np.int32)
    else:
        offsets = np.array([max_offset // 2])
    inds = offsets[:, None] + np.arange(clip_len)[None, :] * interval
    if out_of_bound == "loop":
        inds = np.mod(inds, num_frames)
    else:  # repeat_last
        safe = inds < num_frames
        last = np.max(safe * inds, axis=1)
        inds = safe * inds + ((1 - safe).T * last).T
    return inds.tolist()


def clips(idx: np.ndarray, clip_len: int) -> list[list[int]]:
    return idx.reshape(-1, clip_len).tolist()


# ----------------------------------------------------------------------------- temporal layout


def test_the_issue_cases_written_out():
    # 1,000 frames, 2 clips of 2: from the first frame to the last possible start.
    assert clips(dense_indices(1000, 2, 1, 2), 2) == [[0, 1], [998, 999]]
    # Little spare room: the clips move by one frame instead of repeating.
    assert clips(dense_indices(3, 2, 1, 2), 2) == [[0, 1], [1, 2]]
    # Kinetics recipe (16 x 4, 5 test clips) on 300 frames: 75 subsampled frames, step 59 / 4 = 14.75.
    got = clips(dense_indices(300, 16, 4, 5), 16)
    assert [c[0] for c in got] == [0, 56, 116, 176, 236]
    assert got[-1][-1] == 296
    # The previous (centred) layout is still there by name.
    assert clips(dense_indices(1000, 2, 1, 2, layout="centred"), 2) == [[249, 250], [748, 749]]
    assert clips(dense_indices(3, 2, 1, 2, layout="centred"), 2) == [[0, 1], [0, 1]]


@pytest.mark.parametrize("num_frames", [1, 2, 3, 7, 16, 31, 61, 64, 65, 100, 299, 300, 301, 1000])
@pytest.mark.parametrize("clip_len,interval", [(16, 4), (8, 2), (2, 1), (16, 5), (4, 8)])
@pytest.mark.parametrize("num_clips", [2, 3, 5, 10])
def test_multi_view_layout_is_videomae(num_frames, clip_len, interval, num_clips):
    got = clips(dense_indices(num_frames, clip_len, interval, num_clips), clip_len)
    assert got == videomae_test_clips(num_frames, clip_len, interval, num_clips)
    assert clips(DenseSampler(clip_len, interval, num_clips=num_clips)(num_frames), clip_len) == got


@pytest.mark.parametrize("num_frames", [1, 3, 7, 31, 61, 64, 65, 100, 300, 1000])
@pytest.mark.parametrize("clip_len,interval", [(16, 4), (8, 2), (2, 1), (16, 5)])
@pytest.mark.parametrize("num_clips", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("short", ["loop", "repeat_last"])
def test_mmaction_layout_and_out_of_bound_options(num_frames, clip_len, interval, num_clips, short):
    got = clips(dense_indices(num_frames, clip_len, interval, num_clips, layout="mmaction", short=short), clip_len)
    assert got == mmaction_test_clips(num_frames, clip_len, interval, num_clips, short)


def test_mmaction_rounds_halves_to_even():
    # max_offset 5 over 3 clips: 2.5 -> 2 (NumPy), not 3.
    assert [c[0] for c in clips(dense_indices(6, 1, 1, 3, layout="mmaction"), 1)] == [0, 2, 5]


def test_single_test_clip_is_the_centre_in_every_layout():
    for layout in ("videomae", "mmaction", "centred"):
        assert dense_indices(100, 16, 4, layout=layout)[0] == (100 - 61) // 2
    assert mmaction_test_clips(100, 16, 4, 1)[0][0] == 19


def test_repeat_last_repeats_the_last_sampled_frame():
    # 65 frames, 16 every 5th: the clip needs 76.
    expect = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 60, 60, 60]
    assert dense_indices(65, 16, 5, short="repeat_last").tolist() == expect
    assert dense_indices(65, 16, 5).tolist() == expect  # test default (VideoMAE pads this way)
    assert videomae_test_clips(65, 16, 5, 2)[0] == expect
    assert mmaction_test_clips(65, 16, 5, 1, "repeat_last")[0] == expect
    # clamp: the video's own last frame, documented as such.
    assert dense_indices(65, 16, 5, short="clamp").tolist()[-4:] == [60, 64, 64, 64]
    # training keeps mmaction2's default, loop
    train = dense_indices(65, 16, 5, rng=np.random.default_rng(0))
    assert train.tolist() == [i % 65 for i in range(0, 76, 5)]
    with pytest.raises(ValueError, match="layout"):
        dense_indices(65, 16, 5, num_clips=2, layout="slowfast")


def test_tsn_middles_in_integer_arithmetic():
    # 122 frames, 5 segments: the middle of segment 2 is exactly 61 (float arithmetic gave 60).
    assert segment_indices(122, 5).tolist() == [12, 36, 61, 85, 109]
    for n in range(1, 300):
        for k in (1, 2, 3, 4, 5, 8, 12, 16, 32):
            expect = [min((2 * i + 1) * n // (2 * k), n - 1) for i in range(k)]
            assert segment_indices(n, k).tolist() == expect, (n, k)


# ----------------------------------------------------------------------------- spatial layout


def _videomae_three_crop_starts(h: int, w: int, short_side: int) -> tuple[tuple[int, int], list[int]]:
    """VideoMAE test: resize the short side (long side ``int(size * long / short)``), 3 crops along the long side."""
    if w < h:
        nh, nw = int(short_side * h / w), short_side
    else:
        nh, nw = short_side, int(short_side * w / h)
    step = 1.0 * (max(nh, nw) - short_side) / (3 - 1)
    return (nh, nw), [int(i * step) for i in range(3)]


@pytest.mark.parametrize("h,w,size", [(256, 340, 224), (240, 320, 224), (360, 480, 224), (340, 256, 224),
                                      (57, 101, 32), (100, 40, 40), (32, 33, 32)])
def test_three_crop_matches_videomae(h, w, size):
    # Each pixel holds its own coordinates, so a crop tells where it came from.
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    video = torch.stack([yy, xx, torch.zeros_like(yy)]).float()[:, None]  # (C, T=1, H, W)
    (nh, nw), starts = _videomae_three_crop_starts(h, w, size)
    resized = ResizeShortSide(size)(video)
    assert tuple(resized.shape[-2:]) == (nh, nw)
    crops = ThreeCrop(size)(resized)
    for crop, start in zip(crops, starts):
        ref = resized[..., start:start + size, :] if nh > nw else resized[..., start:start + size]
        assert torch.equal(crop, ref)


def test_center_crop_offsets_round_like_videomae():
    # (297 - 224) / 2 = 36.5 -> 36 (round half to even); (299 - 224) / 2 = 37.5 -> 38.
    for w, left in ((297, 36), (299, 38), (298, 37)):
        x = torch.arange(w).float().expand(1, 1, 224, w)
        assert CenterCrop(224)(x)[0, 0, 0, 0].item() == left


# ----------------------------------------------------------------------------- multi-caption retrieval


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _official_compute_metrics(x: np.ndarray) -> np.ndarray:
    """InternVideo ``metrics.compute_metrics``: 0-based rank of the diagonal in each row."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    return np.where(sx - d == 0)[1]


def _official_multi_sentence(sim: np.ndarray, owner: np.ndarray, dsl: bool) -> tuple[np.ndarray, np.ndarray]:
    """``main_task_retrieval.eval_epoch``'s multi-sentence branch (captions sorted by video)."""
    mat = sim * _softmax(sim, axis=0) if dsl else sim
    cut = np.cumsum(np.bincount(owner))
    groups = list(zip(np.concatenate([[0], cut[:-1]]), cut))
    longest = max(e - s for s, e in groups)
    stacked = np.stack([np.concatenate([mat[s:e], np.full((longest - e + s, mat.shape[1]), -np.inf)])
                        for s, e in groups])  # (videos, captions per video, videos)
    # tensor_text_to_video_metrics: each caption's rank of its own video
    t2v = np.concatenate([[int((-mat[c]).argsort(kind="stable").tolist().index(v)) for c in range(s, e)]
                          for v, (s, e) in enumerate(groups)])
    # tensor_video_to_text_sim: best caption of each video -> (videos x videos), then compute_metrics
    v2t = _official_compute_metrics(stacked.max(axis=1).T)
    return t2v + 1, v2t + 1


@pytest.mark.parametrize("dsl", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_multi_caption_v2t(dsl, seed):
    gen = np.random.default_rng(seed)
    videos, per = 30, 4
    owner = np.repeat(np.arange(videos), per)
    emb_v = gen.normal(size=(videos, 16))
    emb_t = emb_v[owner] + 1.5 * gen.normal(size=(videos * per, 16))
    emb_v /= np.linalg.norm(emb_v, axis=1, keepdims=True)
    emb_t /= np.linalg.norm(emb_t, axis=1, keepdims=True)
    sim = 20.0 * emb_t @ emb_v.T
    ref_t2v, ref_v2t = _official_multi_sentence(sim, owner, dsl)
    t2v, v2t = M.retrieval_ranks_from_sim(sim, owner, dsl=dsl, multi_caption="official", chunk_size=7)
    np.testing.assert_array_equal(t2v, ref_t2v)
    np.testing.assert_array_equal(v2t, ref_v2t)
    # The same through embeddings, with the captions shuffled (the official code needs them grouped; we do not).
    perm = gen.permutation(len(owner))
    t2v_p, v2t_p = M.retrieval_ranks(torch.tensor(emb_t[perm]), torch.tensor(emb_v), owner[perm], scale=20.0,
                                     dsl=dsl, multi_caption="official", chunk_size=5)
    np.testing.assert_array_equal(t2v_p, ref_t2v[perm])
    np.testing.assert_array_equal(v2t_p, ref_v2t)
    ours = M.retrieval_ranks_from_sim(sim, owner, dsl=dsl)
    np.testing.assert_array_equal(ours[0], ref_t2v)  # t2v is the same protocol in both modes
    if not dsl:
        # Without DSL the best caption ranks first among captions exactly when it does among videos.
        np.testing.assert_array_equal(ours[1] == 1, ref_v2t == 1)


def test_official_single_caption_is_the_transposed_dsl():
    gen = np.random.default_rng(3)
    sim = 10.0 * gen.normal(size=(12, 12))
    # Single-caption branch: v2t DSL from sim.T * softmax(sim.T, axis=0), compute_metrics on the diagonal.
    ref_v2t = _official_compute_metrics(sim.T * _softmax(sim.T, axis=0)) + 1
    ref_t2v = _official_compute_metrics(sim * _softmax(sim, axis=0)) + 1
    for mode in ("captions", "official"):
        t2v, v2t = M.retrieval_ranks_from_sim(sim, dsl=True, multi_caption=mode)
        np.testing.assert_array_equal(t2v, ref_t2v)
        np.testing.assert_array_equal(v2t, ref_v2t)


def test_multi_caption_modes_differ_where_documented():
    # Video 0's best caption is beaten by two captions of video 1: rank 3 over captions, 2 over videos.
    sim = np.array([[0.5, 0.0], [0.1, 0.0], [0.6, 0.9], [0.7, 0.8]])
    owner = [0, 0, 1, 1]
    assert M.retrieval_ranks_from_sim(sim, owner)[1].tolist() == [3, 1]
    assert M.retrieval_ranks_from_sim(sim, owner, multi_caption="official")[1].tolist() == [2, 1]
    with pytest.raises(UsageError, match="multi_caption"):
        M.retrieval_ranks_from_sim(sim, owner, multi_caption="clip4clip")
