"""RoIAlign against a slow explicit reference, gradcheck, and the AVA RoI head model."""
from __future__ import annotations

import math

import pytest
import torch

from internvideo.models.roi_head import (
    RoIActionHead, RoIHeadConfig, VideoMAEDetector, VideoMAEDetectorConfig, roi_align,
)


def _bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """One bilinear sample of ``fmap (C, H, W)``, with RoIAlign's border rules."""
    _, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(fmap.shape[0], dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(math.floor(y)), int(math.floor(x))
    if yl >= h - 1:
        yl = yh = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xl = xh = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return hy * hx * fmap[:, yl, xl] + hy * lx * fmap[:, yl, xh] + ly * hx * fmap[:, yh, xl] + ly * lx * fmap[:, yh, xh]


def reference_roi_align(features, rois, size, scale=1.0, sampling_ratio=0, aligned=True):
    """Per box, per bin, per sampling point: the textbook RoIAlign."""
    k = rois.shape[0]
    c = features.shape[1]
    out = torch.zeros(k, c, size, size, dtype=features.dtype)
    off = 0.5 if aligned else 0.0
    for r in range(k):
        b = int(rois[r, 0])
        x1, y1, x2, y2 = (float(v) * scale - off for v in rois[r, 1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / size, rh / size
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / size)
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / size)
        count = max(gy * gx, 1)
        for p in range(size):
            for q in range(size):
                acc = torch.zeros(c, dtype=features.dtype)
                for iy in range(gy):
                    y = y1 + p * bh + (iy + 0.5) * bh / gy
                    for ix in range(gx):
                        x = x1 + q * bw + (ix + 0.5) * bw / gx
                        acc = acc + _bilinear(features[b], y, x)
                out[r, :, p, q] = acc / count
    return out


def _random_rois(gen, n, h, w, k):
    rows = []
    for _ in range(k):
        b = int(torch.randint(0, n, (1,), generator=gen))
        x1, x2 = sorted((torch.rand(2, generator=gen) * (w + 4) - 2).tolist())
        y1, y2 = sorted((torch.rand(2, generator=gen) * (h + 4) - 2).tolist())
        rows.append([b, x1, y1, x2, y2])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_matches_reference_random(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 4, 7, 9, generator=gen, dtype=torch.float64)
    rois = _random_rois(gen, 3, 7, 9, 12)  # boxes reach beyond the border by up to 2 cells
    got = roi_align(feats, rois, 3, sampling_ratio=sampling_ratio, aligned=aligned)
    want = reference_roi_align(feats, rois, 3, sampling_ratio=sampling_ratio, aligned=aligned)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_roi_align_border_tiny_and_scaled_boxes():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    rois = torch.tensor([
        [0, 0.0, 0.0, 6.0, 6.0],      # the whole map
        [1, -3.0, -3.0, -1.5, -1.5],  # entirely outside: zeros
        [1, 5.5, 5.5, 8.0, 8.0],      # over the bottom-right corner
        [0, 2.3, 2.3, 2.31, 2.35],    # tiny (less than a cell)
        [1, 3.0, 1.0, 3.0, 4.0],      # zero width
        [0, 0.0, 0.0, 12.0, 12.0],    # with spatial_scale 0.5 below: the whole map again
    ], dtype=torch.float64)
    for scale in (1.0, 0.5):
        for aligned in (True, False):
            got = roi_align(feats, rois, 2, spatial_scale=scale, aligned=aligned)
            want = reference_roi_align(feats, rois, 2, scale=scale, aligned=aligned)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    out = roi_align(feats, rois, 2)
    assert torch.all(out[1] == 0)
    # half-pixel semantics: a one-cell box pooled to 1x1 is exactly that cell's value
    cell = roi_align(feats, torch.tensor([[1, 2.0, 4.0, 3.0, 5.0]], dtype=torch.float64), 1, aligned=True)
    torch.testing.assert_close(cell[0, :, 0, 0], feats[1, :, 4, 2])


def test_roi_align_each_box_reads_its_own_clip():
    feats = torch.stack([torch.full((2, 4, 4), float(i)) for i in range(5)])
    rois = torch.tensor([[i, 0.0, 0.0, 4.0, 4.0] for i in (4, 0, 3, 1, 2)])
    out = roi_align(feats, rois, 2)
    assert out[:, 0, 0, 0].tolist() == [4.0, 0.0, 3.0, 1.0, 2.0]
    assert roi_align(feats, torch.zeros(0, 5), 2).shape == (0, 2, 2, 2)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(feats, torch.tensor([[5, 0.0, 0.0, 1.0, 1.0]]), 2)


def test_roi_align_gradcheck():
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 2, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = _random_rois(gen, 2, 5, 4, 4)
    for sr, aligned in ((0, True), (2, False)):
        assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, sampling_ratio=sr, aligned=aligned), (feats,))


def _tiny_detector(**head):
    return VideoMAEDetector(VideoMAEDetectorConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                                                   num_heads=2, num_classes=5, roi_size=2, head_dropout=0.0, **head))


def test_detector_shapes_names_and_box_dependence():
    torch.manual_seed(0)
    model = _tiny_detector(init_scale=1.0).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    rois = torch.tensor([[0, 0.0, 0.0, 0.5, 0.5], [0, 0.5, 0.5, 1.0, 1.0], [1, 0.1, 0.2, 0.9, 0.6]])
    logits = model(video, rois)
    assert logits.shape == (3, 5)
    assert not torch.allclose(logits[0], logits[1])  # different boxes of one clip read different tokens
    names = {n for n, _ in model.named_parameters()}
    assert "blocks.0.attn.qkv.weight" in names and "norm.weight" in names and "head.fc.weight" in names
    # the head equals a hand-written pipeline: LayerNorm'd tokens, time mean, RoIAlign, max, linear
    tokens = model.forward_features(video)
    grid = tokens.reshape(2, 2, 4, 4, 32).mean(1).permute(0, 3, 1, 2)
    pooled = roi_align(grid, rois * torch.tensor([1.0, 4, 4, 4, 4]), 2).amax(dim=(2, 3))
    torch.testing.assert_close(logits, model.head.fc(pooled))
    agnostic = _tiny_detector(box_agnostic=True).eval()
    out = agnostic(video, rois)
    torch.testing.assert_close(out[0], out[1])  # same clip, same scores whatever the box


def test_detector_freeze_backbone_and_training_step():
    torch.manual_seed(0)
    model = _tiny_detector()
    model.freeze_backbone()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.fc.weight", "head.fc.bias"]
    video = torch.randn(2, 3, 4, 32, 32)
    rois = torch.tensor([[0, 0.0, 0.0, 0.5, 0.5], [1, 0.5, 0.5, 1.0, 1.0]])
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=5.0)
    first = None
    for _ in range(20):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(video, rois), labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.7


def test_detector_saves_loads_and_takes_videomae_weights(tmp_path):
    from internvideo import create_model, load_model, save_model

    torch.manual_seed(0)
    model = create_model("videomae_tiny_ava", init_scale=1.0).eval()
    assert model.input_recipe().num_frames == 8 and model.input_recipe().frame_interval == 2
    video = torch.randn(1, 3, 8, 32, 32)
    rois = torch.tensor([[0, 0.1, 0.1, 0.6, 0.9]])
    save_model(model, tmp_path / "det")
    torch.testing.assert_close(load_model(tmp_path / "det").eval()(video, rois), model(video, rois))
    # a VideoMAE classifier's trunk loads into the detector (head and fc_norm are the classifier's own)
    classifier = create_model("videomae_tiny", num_frames=8, frame_interval=2)
    save_model(classifier, tmp_path / "cls")
    det = create_model("videomae_tiny_ava", pretrained=str(tmp_path / "cls"))
    torch.testing.assert_close(det.blocks[1].mlp.fc2.weight, classifier.blocks[1].mlp.fc2.weight)


def test_head_rejects_wrong_token_count():
    head = RoIActionHead(8, (2, 2, 2), RoIHeadConfig(num_classes=3, roi_size=1))
    with pytest.raises(ValueError, match="expected 8 tokens"):
        head(torch.randn(1, 9, 8), torch.tensor([[0, 0.0, 0.0, 1.0, 1.0]]))


def test_init_from_classifier_makes_each_box_the_classifier():
    from internvideo import create_model

    torch.manual_seed(0)
    classifier = create_model("videomae_tiny", num_frames=4, init_scale=1.0).eval()
    det = create_model("videomae_tiny_ava", num_frames=4, use_mean_pooling=True, head_norm=True,
                       head_dropout=0.0).eval()
    det.init_from_classifier(classifier)
    video = torch.randn(2, 3, 4, 32, 32)
    # same trunk, and the box head's norm + linear are the classifier's fc_norm + head
    tokens = det.forward_features(video)
    torch.testing.assert_close(tokens, classifier.forward_features(video))
    pooled = tokens.mean(1)
    torch.testing.assert_close(det.head.fc(det.head.norm(pooled)), classifier.forward_head(tokens))
    with pytest.raises(ValueError, match="does not fit"):
        create_model("videomae_tiny_ava", num_frames=4).init_from_classifier(classifier)


def test_roi_align_benchmark_runs_and_agrees(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ``benchmarks`` is a top-level folder
    from benchmarks import bench_ava

    assert bench_ava.main(["--repeats", "1", "--out", str(tmp_path / "ava.json")]) == 0  # checks all three agree
    result = json.loads((tmp_path / "ava.json").read_text())
    assert result["roi_align"]["vectorised"]["cpu_ms"] > 0 and result["head_step"]["cpu_ms"] > 0
