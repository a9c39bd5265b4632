"""Video transforms: shapes, layouts, and one set of random parameters per clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvideo.data import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, EvalTransformConfig, MixupCutmix,
                              TrainTransformConfig, build_eval_transform, build_train_transform)
from internvideo.data.transforms import (CenterCrop, Compose, MultiScaleCrop, Normalize, RandAugment, RandomErasing,
                                         RandomHorizontalFlip, RandomResizedCrop, ResizeShortSide, ThreeCrop, as_float,
                                         to_cthw)


def _frames(t=6, h=48, w=80, seed=0) -> np.ndarray:
    """Decoder-layout clip whose frames are one image plus a per-frame brightness offset."""
    base = np.random.default_rng(seed).integers(20, 200, (h, w, 3))
    return np.stack([base + 5 * k for k in range(t)]).astype(np.uint8)


def test_layout_conversion():
    frames = _frames()
    x = to_cthw(frames)
    assert x.shape == (3, 6, 48, 80) and x.dtype == torch.uint8
    assert torch.equal(x[:, 2], torch.from_numpy(frames[2]).permute(2, 0, 1))
    assert to_cthw(x) is x
    with pytest.raises(ValueError, match="T, H, W, C"):
        to_cthw(np.zeros((4, 4, 4)))


@pytest.mark.parametrize("cfg", [TrainTransformConfig(img_size=32), TrainTransformConfig.pretrain(img_size=32),
                                 TrainTransformConfig(img_size=32, hflip=False, randaugment=None, mean=CLIP_MEAN,
                                                      std=CLIP_STD)])
def test_train_pipeline_uses_one_set_of_parameters_per_clip(cfg):
    """With identical frames in, every output frame must be identical (same crop/flip/augment/erase)."""
    transform = build_train_transform(cfg)
    frames = np.repeat(_frames(1), 5, axis=0)
    rng = np.random.default_rng(0)
    for _ in range(15):
        out = transform(frames, rng)
        assert out.shape == (3, 5, 32, 32) and out.dtype == torch.float32
        assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-5)


def test_geometric_transforms_apply_the_same_box_to_different_frames():
    """Frames differ by a constant offset; after a crop + resize + flip the offset must stay constant."""
    frames = _frames(6)
    transform = Compose([RandomResizedCrop(24), RandomHorizontalFlip()])
    rng = np.random.default_rng(1)
    for _ in range(10):
        out = transform(frames, rng)
        assert out.dtype == torch.uint8  # crops and resizes stay uint8
        diff = out[:, 3].float() - out[:, 0].float()
        assert torch.allclose(diff, torch.full_like(diff, 15.0), atol=1.01)  # uint8 resize rounds


def test_crops_keep_uint8_until_resampling():
    x = to_cthw(_frames())
    assert CenterCrop(40)(x).dtype == torch.uint8
    assert CenterCrop(40)(x).shape == (3, 6, 40, 40)
    assert ResizeShortSide(24)(x).shape == (3, 6, 24, 40) and ResizeShortSide(24)(x).dtype == torch.uint8
    assert ResizeShortSide(24)(as_float(x)).dtype == torch.float32
    assert MultiScaleCrop(32)(x, np.random.default_rng(0)).shape == (3, 6, 32, 32)


def test_three_crop_covers_the_long_side():
    x = to_cthw(_frames(h=40, w=100))
    crops = ThreeCrop(40)(x)
    assert crops.shape == (3, 3, 6, 40, 40)
    assert torch.equal(crops[0], x[..., :40]) and torch.equal(crops[2], x[..., 60:])
    tall = ThreeCrop(40)(to_cthw(_frames(h=100, w=40)))
    assert tall.shape == (3, 3, 6, 40, 40)


def test_eval_pipelines():
    frames = _frames(h=60, w=90)
    out = build_eval_transform(EvalTransformConfig(img_size=32))(frames)
    assert out.shape == (3, 6, 32, 32)
    three = build_eval_transform(EvalTransformConfig(img_size=32, crop="three"))(frames)
    assert three.shape == (3, 3, 6, 32, 32)
    assert torch.equal(build_eval_transform(EvalTransformConfig(img_size=32))(frames), out)  # deterministic


def test_normalize_constants():
    grey = torch.full((3, 2, 4, 4), 0.5)
    out = Normalize()(grey)
    assert torch.equal(grey, torch.full((3, 2, 4, 4), 0.5))  # input untouched
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(out[:, 0, 0, 0], expected)
    assert torch.allclose(Normalize()(torch.full((3, 1, 1, 1), 128, dtype=torch.uint8))[:, 0, 0, 0],
                          (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor([0.229, 0.224, 0.225]))


def test_flip_is_switchable():
    x = to_cthw(_frames())
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x), x.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)


def test_randaugment_spec_and_every_op():
    ra = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert (ra.magnitude, ra.num_ops, ra.magnitude_std) == (7.0, 4, 0.5)
    with pytest.raises(ValueError, match="rand-"):
        RandAugment.from_string("auto-m7")
    with pytest.raises(ValueError, match="unknown"):
        RandAugment.from_string("rand-m7-q3")
    x = torch.rand(3, 4, 20, 28)
    x[:, 1:] = x[:, :1]
    for name in RandAugment().ops:
        out = RandAugment(magnitude=9, num_ops=1, prob=1.0, magnitude_std=0, ops=(name,))(x, np.random.default_rng(0))
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, name
        assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6), name


def test_random_erasing_is_one_static_box():
    x = torch.zeros(3, 5, 32, 32)
    out = RandomErasing(prob=1.0)(x, np.random.default_rng(0))
    erased = out != 0
    assert erased.any()
    assert torch.equal(erased, erased[:, :1].expand_as(erased))
    assert torch.equal(out, out[:, :1].expand_as(out))


def test_mixup_cutmix_targets():
    video = torch.randn(4, 3, 2, 16, 16)
    labels = torch.tensor([0, 1, 2, 3])
    plain = MixupCutmix(5, mixup_alpha=0, cutmix_alpha=0, label_smoothing=0.1)
    same, targets = plain(video, labels)
    assert same is video
    assert torch.allclose(targets[0], torch.tensor([0.92, 0.02, 0.02, 0.02, 0.02]))
    rng = np.random.default_rng(0)
    mixup = MixupCutmix(5, mixup_alpha=1.0, cutmix_alpha=0)
    mixed, soft = mixup(video, labels, rng)
    assert torch.allclose(soft.sum(1), torch.ones(4))
    lam = (soft[0, 0].item() - 0.02) / 0.9  # smoothed one-hot: 0.92 on the label, 0.02 elsewhere
    assert torch.allclose(mixed, lam * video + (1 - lam) * video.flip(0), atol=1e-5)
    assert soft[0, 3].item() == pytest.approx(0.02 + 0.9 * (1 - lam), abs=1e-5)
    cutmix = MixupCutmix(5, mixup_alpha=0, cutmix_alpha=1.0, label_smoothing=0.0)
    for _ in range(5):
        mixed, soft = cutmix(video, labels, rng)
        from_partner = mixed != video
        assert torch.equal(from_partner[:, :, :1].expand_as(from_partner), from_partner)  # same box every frame
        area = from_partner[0, 0, 0].float().mean().item()
        assert soft[0, 3].item() == pytest.approx(area, abs=1e-6)  # lam corrected to the pasted area
    a = MixupCutmix(5)(video, labels, np.random.default_rng(7))
    b = MixupCutmix(5)(video, labels, np.random.default_rng(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        plain(video[0], labels)


def test_zero_std_in_a_transform_is_a_clear_error():
    from internvideo.data.transforms import Normalize

    with pytest.raises(ValueError, match="positive std"):
        Normalize(std=(0.0, 0.0, 0.0))
