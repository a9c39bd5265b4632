"""Video transforms on torch tensors, with one set of random parameters per clip.

Layout rule: a **numpy** array is the decoder's layout ``(T, H, W, C)`` uint8
(what :func:`~internvideo.data.read_frames` returns); a **tensor** is the
model's layout ``(C, T, H, W)``. :class:`Compose` accepts either and every
transform returns ``(C, T, H, W)`` (or ``(V, C, T, H, W)`` after
:class:`ThreeCrop`: channels are always dimension ``-4``).

Values are uint8 (0-255) or float (0-1) until :class:`Normalize`. Crops and
resizes keep uint8 (torch's uint8 resize is about ten times faster than on
floats), so a 1280x720 clip is cut down to 224 px before it is ever converted
to float; colour operations and RandAugment return float.

Randomness: every random transform takes ``rng``, a :class:`numpy.random.Generator`,
and draws its parameters from it **once per clip**, so every frame gets the
same crop, flip, augmentation sequence and erased box (a motion cue must not
be destroyed by per-frame jitter). Without ``rng`` a fresh unseeded generator
is used; datasets always pass a seeded one for reproducibility.

Nothing here is copied from torchvision/timm; the recipes (RandAugment's op
list and magnitudes, mixup/cutmix, random erasing) follow the papers and the
settings VideoMAE and UniFormerV2 report.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..constants import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD",
    "to_cthw", "as_float", "resize", "Compose", "ResizeShortSide", "CenterCrop", "ThreeCrop", "RandomResizedCrop",
    "MultiScaleCrop", "RandomHorizontalFlip", "Normalize", "RandAugment", "RandomErasing", "MixupCutmix",
    "TrainTransformConfig", "EvalTransformConfig", "build_train_transform", "build_eval_transform",
]


Rng = np.random.Generator | None
Transform = Callable[..., torch.Tensor]


def _rng(rng: Rng) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))


# ----------------------------------------------------------------------------- basics


def to_cthw(video: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Decoder output ``(T, H, W, C)`` numpy -> ``(C, T, H, W)`` tensor (a view, no copy).

    Tensors are assumed to be in model layout already and pass through.
    """
    if isinstance(video, torch.Tensor):
        return video
    array = np.asarray(video)
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"expected a (T, H, W, C) array from the decoder, got shape {array.shape}")
    return torch.from_numpy(array).permute(3, 0, 1, 2)


def as_float(video: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float32 0-1; float tensors are returned unchanged."""
    if video.dtype == torch.uint8:
        # Contiguous (C, T, H, W): channel-broadcast ops on the decoder's channels-last
        # strides run about three times slower.
        return video.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return video if video.is_floating_point() else video.float()


def _frames(video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """View ``(..., C, T, H, W)`` as an image batch ``(N, C, H, W)`` with N = frames.

    For decoder output this is a view with channels-last strides, the memory
    layout torch's fast uint8 resize path wants.
    """
    *lead, c, t, h, w = video.shape
    batch = video.reshape(-1, c, t, h, w).transpose(1, 2).reshape(-1, c, h, w)
    return batch, (*lead, c, t)


def _unframes(batch: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    *lead, c, t = shape
    h, w = batch.shape[-2:]
    return batch.reshape(-1, t, c, h, w).transpose(1, 2).reshape(*lead, c, t, h, w)


def resize(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of the last two dims to ``size = (h, w)``.

    uint8 stays uint8: torch resizes channels-last uint8 frames about ten times
    faster than floats, and rounding to integers loses nothing the decoder had.
    """
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    batch, shape = _frames(video)
    if batch.dtype == torch.uint8:
        batch = batch.contiguous(memory_format=torch.channels_last)
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    else:
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    return _unframes(out, shape)


def _crop(video: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return video[..., top:top + height, left:left + width]


class Compose:
    """Apply transforms in order, passing the same ``rng`` to each; accepts decoder arrays."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, video: np.ndarray | torch.Tensor, rng: Rng = None) -> torch.Tensor:
        out = to_cthw(video)
        for t in self.transforms:
            out = t(out, rng)
        return out

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"


# ----------------------------------------------------------------------------- geometry


@dataclasses.dataclass
class ResizeShortSide:
    """Scale so the shorter side equals ``size``, keeping the aspect ratio.

    The longer side becomes ``int(size * long / short)`` (truncated), as in the
    official VideoMAE test loader, so three-crop offsets land on the same pixels
    (340 x 256 -> 297 x 224, not 298).
    """

    size: int

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        h, w = video.shape[-2:]
        if h <= w:
            out = (self.size, max(1, int(self.size * w / h)))
        else:
            out = (max(1, int(self.size * h / w)), self.size)
        return resize(video, out)


@dataclasses.dataclass
class CenterCrop:
    """Crop the central ``size x size`` square (after :class:`ResizeShortSide` for testing).

    Offsets ``int(round((side - size) / 2))`` (Python rounding, halves to even),
    as the official VideoMAE single-view loader and torchvision do.
    """

    size: int

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        h, w = video.shape[-2:]
        ch, cw = min(self.size, h), min(self.size, w)
        return _crop(video, int(round((h - ch) / 2)), int(round((w - cw) / 2)), ch, cw)


@dataclasses.dataclass
class ThreeCrop:
    """Three ``size x size`` crops along the longer side (start, middle, end) -> ``(3, C, T, H, W)``.

    The standard multi-view test for video classification: together the crops
    cover the whole frame after resizing its short side to ``size``. Offsets
    along the longer side ``L`` are ``int(i * (L - size) / 2)`` for i = 0, 1, 2,
    the official VideoMAE test loader's (mmaction2's ``ThreeCrop`` puts the
    last crop at ``2 * ((L - size) // 2)``, one pixel short when ``L - size``
    is odd, and orders them left, right, middle; the average over crops is the
    same either way).
    """

    size: int

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        h, w = video.shape[-2:]
        s = min(self.size, h, w)
        if w >= h:
            boxes = [((h - s) // 2, x) for x in (0, (w - s) // 2, w - s)]
        else:
            boxes = [(y, (w - s) // 2) for y in (0, (h - s) // 2, h - s)]
        return torch.stack([_crop(video, top, left, s, s) for top, left in boxes])


@dataclasses.dataclass
class RandomResizedCrop:
    """Crop a random area fraction ``scale`` with aspect ``ratio``, resize to ``size x size``.

    Falls back to a central crop of the clamped aspect ratio when ten tries
    find no box that fits (very elongated frames).
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        w, h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
        w, h = min(w, width), min(h, height)
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        top, left, h, w = self.box(*video.shape[-2:], _rng(rng))
        return resize(_crop(video, top, left, h, w), (self.size, self.size))


@dataclasses.dataclass
class MultiScaleCrop:
    """VideoMAE pre-training crop: a side from ``scales`` of the short side, at a fixed grid position.

    Crop width and height are picked independently from ``short_side * scales``
    (differing by at most ``max_distort`` steps, so aspect stays moderate), the
    crop is placed at one of 13 grid positions (corners, centre, edge middles,
    quarter points), then resized to ``size x size``.
    """

    size: int
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1

    def box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        base = min(height, width)
        sides = [int(base * s) for s in self.scales]
        pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]
        ch, cw = pairs[int(rng.integers(len(pairs)))]
        ys, xs = (height - ch) / 4, (width - cw) / 4
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners and centre
                (0, 2), (4, 2), (2, 0), (2, 4),  # edge middles
                (1, 1), (1, 3), (3, 1), (3, 3)]  # quarter points
        gy, gx = grid[int(rng.integers(len(grid)))]
        return int(gy * ys), int(gx * xs), ch, cw

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        top, left, h, w = self.box(*video.shape[-2:], _rng(rng))
        return resize(_crop(video, top, left, h, w), (self.size, self.size))


@dataclasses.dataclass
class RandomHorizontalFlip:
    """Mirror the whole clip with probability ``p``.

    Leave it out for direction-sensitive data (Something-Something, or the
    synthetic world's "moving left"/"moving right"): flipping swaps the labels.
    """

    p: float = 0.5

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        return video.flip(-1) if _rng(rng).random() < self.p else video


@dataclasses.dataclass
class Normalize:
    """``(x - mean) / std`` per channel, on 0-1 floats (uint8 input is scaled first)."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise ValueError(f"normalisation needs one mean and one positive std per channel; got mean={self.mean}, "
                             f"std={self.std} (the model's config fields mean/std)")

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        # One conversion and two in-place passes: x * (1 / (255 std)) - mean / std for uint8.
        to_unit = 1 / 255 if video.dtype == torch.uint8 else 1.0
        scale = torch.tensor([to_unit / s for s in self.std], dtype=torch.float32).view(-1, 1, 1, 1)
        shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)], dtype=torch.float32)
        shift = shift.view(-1, 1, 1, 1)
        if video.dtype == torch.uint8:
            out = video.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale)
        else:
            out = video.float().mul(scale)  # never modify the caller's tensor
        return out.sub_(shift)


# ----------------------------------------------------------------------------- RandAugment


def _gray(batch: torch.Tensor) -> torch.Tensor:
    """Luma of an ``(N, 3, H, W)`` batch, keeping a channel dim."""
    r, g, b = batch[:, 0:1], batch[:, 1:2], batch[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (other + factor * (image - other)).clamp_(0.0, 1.0)


def _affine(batch: torch.Tensor, theta: list[list[float]], fill: float = 0.5) -> torch.Tensor:
    """Resample every frame with the same 2x3 matrix (normalised coordinates), grey outside."""
    mat = torch.tensor(theta, dtype=batch.dtype).unsqueeze(0).expand(batch.shape[0], 2, 3)
    grid = F.affine_grid(mat, list(batch.shape), align_corners=False)
    return F.grid_sample(batch - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False).add_(fill)


def _per_channel(batch: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(C, N*H*W)``: one row of values per channel, for clip-wide statistics."""
    return batch.transpose(0, 1).reshape(batch.shape[1], -1)


def _auto_contrast(batch: torch.Tensor, _: float) -> torch.Tensor:
    lo, hi = torch.aminmax(_per_channel(batch), dim=1)
    lo, hi = lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1)
    scale = torch.where(hi > lo, 1.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    return ((batch - lo) * scale).clamp_(0.0, 1.0)


def _equalize(batch: torch.Tensor, _: float) -> torch.Tensor:
    """Histogram equalisation per channel, one histogram for the whole clip."""
    q = (batch * 255).round_().long().clamp_(0, 255)
    out = torch.empty_like(batch)
    for c, values in enumerate(_per_channel(q)):
        hist = torch.bincount(values, minlength=256).double()
        if int((hist > 0).sum()) <= 1:  # a flat channel has nothing to equalise
            out[:, c] = batch[:, c]
            continue
        cdf = hist.cumsum(0)
        first = cdf[hist > 0][0]
        lut = ((cdf - first) / (cdf[-1] - first)).clamp_(0, 1).to(batch.dtype)
        out[:, c] = lut[q[:, c]]
    return out


def _posterize(batch: torch.Tensor, level: float) -> torch.Tensor:
    bits = 8 - int(round(4 * level))
    shift = 8 - bits
    q = (batch * 255).round_().to(torch.int32)
    return ((q >> shift) << shift).to(batch.dtype).div_(255.0)


def _solarize(batch: torch.Tensor, level: float) -> torch.Tensor:
    threshold = 1.0 - level
    return torch.where(batch >= threshold, 1.0 - batch, batch)


def _solarize_add(batch: torch.Tensor, level: float) -> torch.Tensor:
    return torch.where(batch < 0.5, (batch + 0.43 * level).clamp_(0.0, 1.0), batch)


def _sharpness(batch: torch.Tensor, factor: float) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=batch.dtype) / 13.0
    c = batch.shape[1]
    smooth = F.conv2d(batch, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
    smooth[..., 0, :], smooth[..., -1, :] = batch[..., 0, :], batch[..., -1, :]
    smooth[..., :, 0], smooth[..., :, -1] = batch[..., :, 0], batch[..., :, -1]
    return _blend(batch, smooth, factor)


def _rotate(batch: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    h, w = batch.shape[-2:]
    return _affine(batch, [[math.cos(a), -math.sin(a) * h / w, 0.0], [math.sin(a) * w / h, math.cos(a), 0.0]])


def _shear_x(batch: torch.Tensor, s: float) -> torch.Tensor:
    h, w = batch.shape[-2:]
    return _affine(batch, [[1.0, s * h / w, 0.0], [0.0, 1.0, 0.0]])


def _shear_y(batch: torch.Tensor, s: float) -> torch.Tensor:
    h, w = batch.shape[-2:]
    return _affine(batch, [[1.0, 0.0, 0.0], [s * w / h, 1.0, 0.0]])


def _translate_x(batch: torch.Tensor, fraction: float) -> torch.Tensor:
    return _affine(batch, [[1.0, 0.0, 2.0 * fraction], [0.0, 1.0, 0.0]])


def _translate_y(batch: torch.Tensor, fraction: float) -> torch.Tensor:
    return _affine(batch, [[1.0, 0.0, 0.0], [0.0, 1.0, 2.0 * fraction]])


def _factor(level: float, sign: float) -> float:
    """Enhancement factor for colour/contrast/brightness/sharpness: 1 = unchanged."""
    return 1.0 + sign * 0.9 * level


# name -> (function on an (N, C, H, W) batch, level in [0, 1] and random sign -> argument)
_OPS: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], Callable[[float, float], float]]] = {
    "AutoContrast": (_auto_contrast, lambda level, sign: 0.0),
    "Equalize": (_equalize, lambda level, sign: 0.0),
    "Rotate": (_rotate, lambda level, sign: sign * 30.0 * level),
    "Posterize": (_posterize, lambda level, sign: level),
    "Solarize": (_solarize, lambda level, sign: level),
    "SolarizeAdd": (_solarize_add, lambda level, sign: level),
    "Color": (lambda b, f: _blend(b, _gray(b), f), _factor),
    "Contrast": (lambda b, f: _blend(b, _gray(b).mean(), f), _factor),
    "Brightness": (lambda b, f: _blend(b, torch.zeros(()), f), _factor),
    "Sharpness": (_sharpness, _factor),
    "ShearX": (_shear_x, lambda level, sign: sign * 0.3 * level),
    "ShearY": (_shear_y, lambda level, sign: sign * 0.3 * level),
    "TranslateX": (_translate_x, lambda level, sign: sign * 0.45 * level),
    "TranslateY": (_translate_y, lambda level, sign: sign * 0.45 * level),
}


@dataclasses.dataclass
class RandAugment:
    """RandAugment for video: ``num_ops`` ops drawn once per clip and applied to every frame.

    ``magnitude`` is on RandAugment's 0-10 scale; with ``magnitude_std`` > 0 each
    op's magnitude is jittered by a normal draw. Each drawn op is applied with
    probability ``prob``. Magnitudes are "increasing": a larger magnitude is
    always a stronger change (e.g. posterize keeps fewer bits).
    :meth:`from_string` reads timm-style specs such as ``"rand-m7-n4-mstd0.5-inc1"``
    (VideoMAE fine-tuning).
    """

    magnitude: float = 9.0
    num_ops: int = 2
    magnitude_std: float = 0.5
    prob: float = 0.5
    ops: tuple[str, ...] = tuple(_OPS)

    @classmethod
    def from_string(cls, spec: str) -> RandAugment:
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment spec must start with 'rand-', got {spec!r}")
        kwargs: dict[str, float] = {}
        for part in parts[1:]:
            m = re.fullmatch(r"([a-z]+)([0-9.]+)", part)
            if m is None:
                raise ValueError(f"cannot read {part!r} in RandAugment spec {spec!r}")
            key, value = m.group(1), float(m.group(2))
            if key == "m":
                kwargs["magnitude"] = value
            elif key == "n":
                kwargs["num_ops"] = int(value)
            elif key == "mstd":
                kwargs["magnitude_std"] = value
            elif key == "p":
                kwargs["prob"] = value
            elif key != "inc":  # magnitudes always increase here
                raise ValueError(f"unknown RandAugment field {key!r} in {spec!r}")
        return cls(**kwargs)  # type: ignore[arg-type]

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        rng = _rng(rng)
        batch, shape = _frames(as_float(video))
        for name in rng.choice(self.ops, size=self.num_ops, replace=True):
            if rng.random() >= self.prob:
                continue
            m = self.magnitude + (rng.normal(0.0, self.magnitude_std) if self.magnitude_std > 0 else 0.0)
            level = min(max(m, 0.0), 10.0) / 10.0
            sign = 1.0 if rng.random() < 0.5 else -1.0
            fn, argument = _OPS[str(name)]
            batch = fn(batch, argument(level, sign))
        return _unframes(batch, shape)


# ----------------------------------------------------------------------------- erasing and mixing


@dataclasses.dataclass
class RandomErasing:
    """With probability ``prob``, replace one box by Gaussian noise, identical in every frame.

    Applied after :class:`Normalize`, so N(0, 1) noise matches the data's scale.
    The box covers an area fraction in ``scale`` with aspect ratio in ``ratio``.
    """

    prob: float = 0.25
    scale: tuple[float, float] = (0.02, 1 / 3)
    ratio: tuple[float, float] = (0.3, 3.3)

    def __call__(self, video: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        rng = _rng(rng)
        if rng.random() >= self.prob:
            return video
        video = as_float(video)
        h, w = video.shape[-2:]
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = h * w * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                out = video.clone()
                noise_shape = (*video.shape[:-3], 1, eh, ew)  # one static patch for all frames
                out[..., top:top + eh, left:left + ew] = torch.randn(noise_shape, generator=_torch_generator(rng))
                return out
        return video


class MixupCutmix:
    """Batch-level mixup / cutmix with label smoothing, for ``(B, C, T, H, W)`` clips.

    Each call mixes the batch with its reverse (sample ``i`` with ``B-1-i``)
    using one ``lam`` for the batch: with probability ``prob`` it mixes at all,
    choosing cutmix with probability ``switch_prob`` when both are enabled
    (alpha > 0). Cutmix pastes the same box in every frame and corrects ``lam``
    to the pasted area. Returns the mixed clips and soft targets
    ``(B, num_classes)`` that sum to 1, ready for a soft-target cross-entropy.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def smooth_one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        off = self.label_smoothing / self.num_classes
        targets = torch.full((labels.shape[0], self.num_classes), off, dtype=torch.float32)
        return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - self.label_smoothing + off)

    def __call__(self, video: torch.Tensor, labels: torch.Tensor,
                 rng: Rng = None) -> tuple[torch.Tensor, torch.Tensor]:
        if video.ndim != 5:
            raise ValueError(f"MixupCutmix expects (B, C, T, H, W) clips, got shape {tuple(video.shape)}")
        rng = _rng(rng)
        targets = self.smooth_one_hot(labels)
        use_mixup, use_cutmix = self.mixup_alpha > 0, self.cutmix_alpha > 0
        if not (use_mixup or use_cutmix) or rng.random() >= self.prob:
            return video, targets
        cutmix = use_cutmix and (not use_mixup or rng.random() < self.switch_prob)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        partner = video.flip(0)
        if cutmix:
            h, w = video.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            mixed = video.clone()
            mixed[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            mixed = video * lam + partner * (1.0 - lam)
        return mixed, targets * lam + targets.flip(0) * (1.0 - lam)


# ----------------------------------------------------------------------------- recipes


@dataclasses.dataclass
class TrainTransformConfig:
    """Training augmentation recipe. Defaults are VideoMAE's fine-tuning recipe.

    Use :meth:`pretrain` for VideoMAE pre-training (multi-scale crop only, no
    flip, as the official code) and set ``mean``/``std`` to :data:`CLIP_MEAN`/:data:`CLIP_STD` for
    CLIP-initialised models. Set ``hflip=False`` for direction-sensitive data.
    """

    img_size: int = 224
    crop: Literal["random_resized", "multi_scale"] = "random_resized"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    multi_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1  # multi_scale: scale steps between crop width and height (mmaction max_wh_scale_gap)
    hflip: bool = True
    randaugment: str | None = "rand-m7-n4-mstd0.5-inc1"
    random_erasing: float = 0.25
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @classmethod
    def pretrain(cls, img_size: int = 224, **overrides: object) -> TrainTransformConfig:
        fields = dict(img_size=img_size, crop="multi_scale", hflip=False, randaugment=None, random_erasing=0.0)
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]


@dataclasses.dataclass
class EvalTransformConfig:
    """Test-time recipe: resize the short side, then one centre crop or three crops."""

    img_size: int = 224
    short_side: int | None = None  # defaults to img_size
    crop: Literal["center", "three"] = "center"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def build_train_transform(cfg: TrainTransformConfig | None = None) -> Compose:
    """Crop (+resize) -> flip -> RandAugment -> normalise -> random erasing.

    RandAugment runs after the crop, on ``img_size`` frames, which is far
    cheaper than augmenting full-resolution frames and differs only in where
    geometric ops fill borders.
    """
    cfg = cfg or TrainTransformConfig()
    steps: list[Transform] = []
    if cfg.crop == "random_resized":
        steps.append(RandomResizedCrop(cfg.img_size, cfg.scale, cfg.ratio))
    elif cfg.crop == "multi_scale":
        steps.append(MultiScaleCrop(cfg.img_size, cfg.multi_scales, cfg.max_distort))
    else:
        raise ValueError(f"crop must be 'random_resized' or 'multi_scale', not {cfg.crop!r}")
    if cfg.hflip:
        steps.append(RandomHorizontalFlip())
    if cfg.randaugment:
        steps.append(RandAugment.from_string(cfg.randaugment))
    steps.append(Normalize(cfg.mean, cfg.std))
    if cfg.random_erasing > 0:
        steps.append(RandomErasing(cfg.random_erasing))
    return Compose(steps)


def build_eval_transform(cfg: EvalTransformConfig | None = None) -> Compose:
    """Resize short side -> centre crop (``(C, T, H, W)``) or three crops (``(3, C, T, H, W)``) -> normalise."""
    cfg = cfg or EvalTransformConfig()
    if cfg.crop not in ("center", "three"):
        raise ValueError(f"crop must be 'center' or 'three', not {cfg.crop!r}")
    crop: Transform = CenterCrop(cfg.img_size) if cfg.crop == "center" else ThreeCrop(cfg.img_size)
    return Compose([ResizeShortSide(cfg.short_side or cfg.img_size), crop, Normalize(cfg.mean, cfg.std)])
