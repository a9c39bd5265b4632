"""Frame index samplers: ranges, layouts, short videos, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from internvideo.data import (DenseSampler, FpsSampler, SegmentSampler, UniformSampler, dense_indices, fps_indices,
                              segment_indices, uniform_indices)


def test_dense_test_layout_is_centred_and_deterministic():
    idx = dense_indices(100, clip_len=16, frame_interval=4)
    span = 15 * 4 + 1
    start = (100 - span) // 2
    np.testing.assert_array_equal(idx, start + 4 * np.arange(16))
    np.testing.assert_array_equal(idx, dense_indices(100, 16, 4))


def test_dense_multi_clip_test_views_are_evenly_spread():
    idx = dense_indices(300, 8, 2, num_clips=3).reshape(3, 8)
    starts = idx[:, 0]
    assert list(np.diff(idx, axis=1).ravel()) == [2] * 21
    assert starts[0] < starts[1] < starts[2]
    assert np.diff(starts)[0] == pytest.approx(np.diff(starts)[1], abs=1)
    assert idx.max() < 300


def test_dense_training_is_random_but_reproducible():
    draws = [tuple(dense_indices(200, 16, 4, rng=np.random.default_rng(s))) for s in range(20)]
    assert len(set(draws)) > 10  # random starts
    for d in draws:
        assert np.all(np.diff(d) == 4) and 0 <= min(d) and max(d) < 200
    again = dense_indices(200, 16, 4, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(again, draws[5])


def test_short_video_loop_repeat_last_and_clamp():
    loop = dense_indices(20, 16, 2, short="loop")  # needs 31 frames
    clamp = dense_indices(21, 16, 2, short="clamp")
    np.testing.assert_array_equal(loop, (2 * np.arange(16)) % 20)
    np.testing.assert_array_equal(clamp, np.minimum(2 * np.arange(16), 20))
    # test default: the last sampled frame repeated (VideoMAE / mmaction2 "repeat_last")
    np.testing.assert_array_equal(dense_indices(21, 16, 2), np.minimum(2 * np.arange(16), 20))
    np.testing.assert_array_equal(dense_indices(20, 16, 2), np.minimum(2 * np.arange(16), 18))
    assert dense_indices(1, 16, 4).tolist() == [0] * 16  # an image
    with pytest.raises(ValueError, match="short"):
        dense_indices(20, 16, 2, short="bounce")


def test_segment_sampling_one_frame_per_segment():
    test = segment_indices(80, 8)
    np.testing.assert_array_equal(test, np.arange(8) * 10 + 5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        train = segment_indices(80, 8, rng=rng)
        assert np.all(train // 10 == np.arange(8))  # each draw stays inside its segment
    assert segment_indices(3, 8).tolist() == sorted(segment_indices(3, 8).tolist())
    assert set(segment_indices(3, 8).tolist()) == {0, 1, 2}


def test_uniform_includes_both_ends():
    assert uniform_indices(100, 8).tolist() == [0, 14, 28, 42, 57, 71, 85, 99]
    assert uniform_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_fps_sampling_one_per_second_capped():
    assert fps_indices(300, 30.0).tolist() == [15 + 30 * k for k in range(10)]
    capped = fps_indices(3000, 30.0, max_frames=12)
    assert len(capped) == 12 and capped[0] == 15 and capped[-1] == 2985
    assert fps_indices(10, 30.0).tolist() == [5]  # shorter than a second: still one frame
    train = fps_indices(300, 30.0, rng=np.random.default_rng(0))
    assert np.all(train // 30 == np.arange(10))
    padded = FpsSampler(max_frames=12)(90, fps=30.0)
    assert padded.tolist() == [15, 45, 75] + [75] * 9


@pytest.mark.parametrize("sampler", [DenseSampler(8, 3), SegmentSampler(8), UniformSampler(8), FpsSampler(2.0, 8)])
@pytest.mark.parametrize("num_frames", [1, 2, 7, 23, 64, 1000])
def test_samplers_always_give_valid_fixed_length_indices(sampler, num_frames):
    for rng in (None, np.random.default_rng(num_frames)):
        idx = sampler(num_frames, rng=rng, fps=24.0)
        assert idx.dtype == np.int64 and len(idx) == 8
        assert idx.min() >= 0 and idx.max() < num_frames


def test_dense_sampler_clip_counts():
    s = DenseSampler(4, 2, num_clips=3)
    assert len(s(100)) == 12 and s.clips(False) == 3
    assert len(s(100, rng=np.random.default_rng(0))) == 4 and s.clips(True) == 1


def test_invalid_arguments():
    with pytest.raises(ValueError, match="0 frames"):
        dense_indices(0, 4)
    with pytest.raises(ValueError):
        segment_indices(10, 0)
    with pytest.raises(ValueError):
        fps_indices(10, 0.0)
