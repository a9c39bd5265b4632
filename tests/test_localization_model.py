"""ActionFormer-style localizer: local attention, NMS / Soft-NMS against naive loops, targets, losses, masks."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from internvideo.models.layers import Attention, Block, local_attention

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's benchmarks/ folder
# Line-by-line Python loops of ActionFormer's C++ nms_1d / softnms kernels (shared with the benchmark).
from benchmarks.bench_localization import python_nms, python_soft_nms  # noqa: E402
from internvideo.models.localization import (
    ActionLocalizer, LocalizerConfig, batched_nms, diou_loss_1d, fuse_video_scores, grid_to_seconds, nms_1d,
    seconds_to_grid, segment_voting, sigmoid_focal_loss, soft_nms_1d,
)

TINY = dict(input_dim=12, num_classes=3, embed_dim=16, num_heads=2, head_dim=16, arch=(2, 1, 3), window=5,
            regression_range=((0, 4), (4, 8), (8, 16), (16, 10000)), max_seq_len=64)


# ----------------------------------------------------------------------------- attention


def banded_reference(q, k, v, window, key_mask):
    n = q.shape[2]
    i = torch.arange(n)
    allowed = ((i[:, None] - i[None, :]).abs() <= window // 2)[None, None] & key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@pytest.mark.parametrize("n,window", [(7, 3), (40, 19), (64, 5), (100, 33), (16, 64)])
def test_local_attention_equals_banded_full_attention(n, window):
    torch.manual_seed(n)
    q, k, v = torch.randn(3, 2, 2, n, 8).unbind(0)
    lengths = torch.tensor([n, max(1, n - 5)])
    key_mask = torch.arange(n)[None] < lengths[:, None]
    ours = local_attention(q, k, v, window, key_mask)
    ref = banded_reference(q, k, v, window, key_mask)
    for b, length in enumerate(lengths):  # padded queries may differ (they only have to stay finite)
        torch.testing.assert_close(ours[b, :, :length], ref[b, :, :length], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ours).all()


def test_attention_window_and_key_mask_options():
    torch.manual_seed(0)
    x = torch.randn(2, 30, 16)
    key_mask = torch.arange(30)[None] < torch.tensor([[30], [21]])
    local = Attention(16, 2, bias="qkv", window=7).eval()
    full = Attention(16, 2, bias="qkv").eval()
    full.load_state_dict(local.state_dict())
    i = torch.arange(30)
    band = ((i[:, None] - i[None, :]).abs() <= 3)[None, None]
    ref = full(x, attn_mask=band & key_mask[:, None, None, :])
    got = local(x, key_mask=key_mask)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :21], ref[1, :21], atol=1e-5, rtol=1e-5)
    # key_mask in global mode is the broadcast attn_mask
    torch.testing.assert_close(full(x, key_mask=key_mask), full(x, attn_mask=key_mask[:, None, None, :]))
    # gradients through padded rows stay finite
    blk = Block(16, 2, qkv_bias="qkv", window=7)
    xg = x.clone().requires_grad_()
    blk(xg, key_mask=key_mask).sum().backward()
    assert torch.isfinite(xg.grad).all()


# ----------------------------------------------------------------------------- ActionFormer's conv attention


def _layer_norm(x, norm):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + norm.eps) * norm.weight + norm.bias


def hand_conv_attention(blk, x, mask):
    """ActionFormer's TransformerBlock (MaskedMHCA / LocalMaskedMHCA, eval) written out position by position."""
    b_, t_, dim = x.shape
    s, kernel = blk.stride, blk.query_conv.kernel_size[0]
    heads, hd = blk.attn.num_heads, dim // blk.attn.num_heads
    radius = blk.attn.window // 2 if blk.attn.window else t_
    w, bias = blk.attn.qkv.weight, blk.attn.qkv.bias
    out = torch.zeros(b_, t_ // s, dim, dtype=x.dtype)
    for b in range(b_):
        h = _layer_norm(x[b], blk.norm1)  # padded positions too: the reference convolves them
        n_out = t_ // s
        keep = [bool(mask[b, i * s]) for i in range(n_out)]  # nearest-neighbour downsampling of the mask
        qkv = []
        for j, (conv, norm) in enumerate([(blk.query_conv, blk.query_norm), (blk.key_conv, blk.key_norm),
                                          (blk.value_conv, blk.value_norm)]):
            rows = []
            for i in range(n_out):  # depthwise conv, stride s, padding kernel // 2 with zeros
                acc = torch.zeros(dim, dtype=x.dtype)
                for tap in range(kernel):
                    src = i * s - kernel // 2 + tap
                    if 0 <= src < t_:
                        acc = acc + conv.weight[:, 0, tap] * h[src]
                rows.append(acc * keep[i])
            qkv.append(_layer_norm(torch.stack(rows), norm) @ w[j * dim:(j + 1) * dim].T + bias[j * dim:(j + 1) * dim])
        q, k, v = qkv
        att = torch.zeros(n_out, dim, dtype=x.dtype)
        for i in [i for i in range(n_out) if keep[i]]:  # padded queries' outputs are zeroed below
            keys = [j for j in range(n_out) if keep[j] and abs(i - j) <= radius]
            for head in range(heads):
                c = slice(head * hd, (head + 1) * hd)
                p = torch.softmax(torch.stack([q[i, c] @ k[j, c] for j in keys]) / hd ** 0.5, 0)
                att[i, c] = sum(pj * v[j, c] for pj, j in zip(p, keys))
        m = torch.tensor(keep, dtype=x.dtype)[:, None]
        y = (att @ blk.attn.proj.weight.T + blk.attn.proj.bias) * m
        if s > 1:  # max-pool, kernel s + 1, stride s, padding (s + 1) // 2 (padding never wins a max)
            lo = [i * s - (s + 1) // 2 for i in range(n_out)]
            skip = torch.stack([torch.stack([x[b, src] for src in range(lo[i], lo[i] + s + 1) if 0 <= src < t_]).amax(0)
                                for i in range(n_out)])
        else:
            skip = x[b]
        z = skip * m + blk.gamma_1 * y
        hidden = F.gelu(_layer_norm(z, blk.norm2) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)
        out[b] = z + blk.gamma_2 * (hidden @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias) * m
    return out


@pytest.mark.parametrize("stride,window", [(2, 3), (2, -1), (1, 5)])
def test_conv_attention_block_matches_hand_computation(stride, window):
    from internvideo.models.localization import ConvAttentionBlock

    torch.manual_seed(stride * 10 + window)
    blk = ConvAttentionBlock(8, 2, stride=stride, window=window, init_values=1e-4).double().eval()
    with torch.no_grad():  # every parameter away from its init, LayerNorm biases and layer scales included
        for p in blk.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.ndim == 1 and p.numel() == 8 else 0.0))
    lengths = torch.tensor([12, 7])  # 7: odd, so a strided window reaches past the end
    mask = torch.arange(12)[None] < lengths[:, None]
    x = torch.randn(2, 12, 8, dtype=torch.float64) * mask[..., None]
    got, got_mask = blk(x, mask)
    assert got.shape == (2, 12 // stride, 8) and torch.equal(got_mask, mask[:, ::stride])
    torch.testing.assert_close(got, hand_conv_attention(blk, x, mask), atol=1e-10, rtol=1e-10)
    assert (got[~got_mask] == 0).all()
    with pytest.raises(ValueError, match="stride"):
        ConvAttentionBlock(8, 2, stride=3)


@pytest.mark.parametrize("downsample", ["attention", "maxpool"])
def test_pyramid_levels_masks_and_gradients(downsample):
    torch.manual_seed(0)
    model = ActionLocalizer(LocalizerConfig(**TINY, downsample=downsample))
    feats, mask = model.pad([torch.randn(37, 12), torch.randn(21, 12), torch.randn(64, 12)])
    out = model(feats, mask)
    ref = mask[:, None].float()
    for level, (logits, offsets, m) in enumerate(zip(out["cls_logits"], out["offsets"], out["masks"])):
        n = 64 >> level
        assert logits.shape == (3, n, 3) and offsets.shape == (3, n, 2) and m.shape == (3, n)
        # ActionFormer downsamples the mask by nearest-neighbour interpolation
        assert torch.equal(m, F.interpolate(ref, size=n, mode="nearest")[:, 0].bool())
        ref = m[:, None].float()
        assert m.sum(1).tolist() == [-(-length // 2 ** level) for length in (37, 21, 64)]
        assert (logits[~m] == 0).all() and (offsets[~m] == 0).all()
    names = {name for name, _ in model.named_parameters()}
    assert any("query_conv" in name for name in names) == (downsample == "attention")
    loss = model.loss(out, [torch.tensor([[3.0, 9.0], [20.0, 34.0]]), torch.tensor([[0.0, 20.0]]),
                            torch.tensor([[40.0, 63.0]])], [torch.tensor([0, 1]), torch.tensor([2]), torch.tensor([1])])
    loss["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.startswith(("stem", "branch")) and "norm" not in name:
            assert p.grad.abs().sum() > 0, name  # every block's weights (convs included) get a signal


def test_downsample_is_validated():
    with pytest.raises(ValueError, match="downsample must be 'attention'"):
        LocalizerConfig(**TINY, downsample="conv")


# ----------------------------------------------------------------------------- NMS against naive loops


def naive_nms(segs, scores, thr):
    return python_nms(segs, scores, thr)


def naive_soft_nms(segs, scores, sigma, min_score):
    return python_soft_nms(segs, scores, sigma, min_score, len(scores))


def random_segments(n, seed, span=100.0):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, span, n)
    segs = np.stack([start, start + rng.uniform(0.5, 20, n)], 1)
    scores = rng.permutation(n) / n * 0.9 + 0.05 + rng.uniform(0, 1e-4, n)  # distinct
    return torch.tensor(segs, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_naive_loop(seed):
    segs, scores = random_segments(300, seed)
    for thr in (0.1, 0.5, 0.9):
        keep = nms_1d(segs, scores, thr).tolist()
        assert keep == naive_nms(segs.tolist(), scores.tolist(), thr)
        assert nms_1d(segs, scores, thr, max_num=7).tolist() == keep[:7]


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_nms_matches_naive_loop(seed):
    segs, scores = random_segments(250, seed)
    for sigma, min_score in ((0.5, 1e-3), (0.8, 0.05)):
        idx, new = soft_nms_1d(segs, scores, sigma=sigma, min_score=min_score)
        ref = naive_soft_nms(segs.tolist(), scores.tolist(), sigma, min_score)
        assert idx.tolist() == [i for i, _ in ref]
        np.testing.assert_allclose(new.numpy(), [s for _, s in ref], rtol=1e-5)
        idx5, new5 = soft_nms_1d(segs, scores, sigma=sigma, min_score=min_score, max_num=5)
        assert idx5.tolist() == idx.tolist()[:5]
        assert (new[1:] <= new[:-1]).all()  # taken scores never increase


def test_multiclass_batched_nms_is_per_class_nms():
    segs, scores = random_segments(200, 5)
    labels = torch.tensor(np.random.default_rng(5).integers(0, 4, 200))
    for method in ("soft", "hard"):
        got_segs, got_scores, got_labels = batched_nms(segs, scores, labels, method=method, iou_threshold=0.3,
                                                       sigma=0.5, min_score=1e-3, max_num=1000, multiclass=True)
        expect = []
        for c in range(4):
            where = torch.nonzero(labels == c).flatten()
            if method == "soft":
                ref = naive_soft_nms(segs[where].tolist(), scores[where].tolist(), 0.5, 1e-3)
                expect += [(int(where[i]), s) for i, s in ref]
            else:
                expect += [(int(where[i]), float(scores[where[i]])) for i in
                           naive_nms(segs[where].tolist(), scores[where].tolist(), 0.3)]
        expect.sort(key=lambda x: -x[1])
        assert got_scores.tolist() == pytest.approx([s for _, s in expect], rel=1e-5)
        assert got_labels.tolist() == [int(labels[i]) for i, _ in expect]
        torch.testing.assert_close(got_segs, segs[[i for i, _ in expect]])
        # the global cap keeps the best max_num
        capped = batched_nms(segs, scores, labels, method=method, iou_threshold=0.3, max_num=9)[1]
        torch.testing.assert_close(capped, got_scores[:9])


def test_voting_fusion_and_time_conversion():
    kept = torch.tensor([[0.0, 10.0]])
    segs = torch.tensor([[0.0, 10.0], [1.0, 11.0], [50.0, 60.0]])
    scores = torch.tensor([0.6, 0.2, 0.9])
    # [1, 11] overlaps [0, 10] by 9/11 >= .7: weighted mean (.6 * [0,10] + .2 * [1,11]) / .8
    torch.testing.assert_close(segment_voting(kept, segs, scores, 0.7), torch.tensor([[0.25, 10.25]]))
    s, sc, lab = fuse_video_scores(segs[:2], scores[:2], torch.tensor([0.1, 0.8, 0.5]), top_k=2)
    assert lab.tolist() == [1, 1, 2, 2]
    torch.testing.assert_close(sc, torch.tensor([0.48, 0.16, 0.3, 0.1]).sqrt())
    t = torch.tensor([0.0, 3.0])
    sec = grid_to_seconds(t, feat_stride=4, window_frames=16, fps=8)
    torch.testing.assert_close(sec, torch.tensor([1.0, 2.5]))
    torch.testing.assert_close(seconds_to_grid(sec, 4, 16, 8), t)


# ----------------------------------------------------------------------------- losses and targets


def test_focal_and_diou_losses_by_hand():
    logits, targets = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    p = torch.sigmoid(logits)
    by_hand = (0.25 * (1 - p[0]) ** 2 * -torch.log(p[0])) + (0.75 * p[1] ** 2 * -torch.log(1 - p[1]))
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), by_hand)
    assert diou_loss_1d(torch.tensor([[2.0, 3.0]]), torch.tensor([[2.0, 3.0]])).item() == pytest.approx(0.0)
    # pred [-1, 1] vs gt [-2, 2] around the same point: IoU .5, same centre
    assert diou_loss_1d(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]])).item() == pytest.approx(0.5)
    # pred [0, 2] vs gt [-2, 0]: IoU 0, centres 2 apart in an enclosing length 4 -> 1 + (2/4)^2
    assert diou_loss_1d(torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])).item() == pytest.approx(1.25)


def test_targets_center_sampling_and_ranges():
    model = ActionLocalizer(LocalizerConfig(**TINY))
    pts = model.points([16, 8, 4, 2], torch.device("cpu"))
    segs = torch.tensor([[2.0, 5.0], [8.0, 15.0]])
    cls, reg = model.targets(pts, segs, torch.tensor([0, 2]))
    pos = {(int(p[3]), int(p[0])): int(cls[i].argmax()) for i, p in enumerate(pts) if cls[i].sum() > 0}
    # action 0 [2, 5]: level 0 (radius 1.5) -> t in {3, 4} (reach 2 <= 4); at level 1 t=4 has reach 2 < 4.
    # action 1 [8, 15]: level 0 -> t in {11, 12} (reach 4, the range's top); level 1 (radius 3) -> {10, 12, 14}
    # (reach 5, 4, 6 in [4, 8]); level 2: t=12 has reach 4 < 8.
    assert pos == {(1, 3): 0, (1, 4): 0, (1, 11): 2, (1, 12): 2, (2, 10): 2, (2, 12): 2, (2, 14): 2}
    i = next(i for i, p in enumerate(pts) if int(p[3]) == 2 and int(p[0]) == 10)
    torch.testing.assert_close(reg[i], torch.tensor([1.0, 2.5]))  # (10 - 8, 15 - 10) / stride 2


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("downsample", ["attention", "maxpool"])
def test_forward_shapes_padding_invariance_and_loss(downsample):
    torch.manual_seed(0)
    model = ActionLocalizer(LocalizerConfig(**TINY, downsample=downsample)).eval()
    a, b = torch.randn(37, 12), torch.randn(64, 12)
    feats, mask = model.pad([a, b])
    assert feats.shape == (2, 64, 12) and mask.sum(1).tolist() == [37, 64]
    out = model(feats, mask)
    assert [x.shape[1] for x in out["cls_logits"]] == [64, 32, 16, 8]
    alone = model(*model.pad([a]))
    for level in range(4):
        n = int(alone["masks"][level][0].sum())
        torch.testing.assert_close(out["cls_logits"][level][0, :n], alone["cls_logits"][level][0, :n],
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["offsets"][level][0, :n], alone["offsets"][level][0, :n], atol=1e-5, rtol=1e-4)
    model.train()
    losses = model.loss(model(feats, mask), [torch.tensor([[3.0, 9.0], [20.0, 30.0]]), torch.zeros(0, 2)],
                        [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long)])
    assert losses["num_pos"] > 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    segs, scores, labels = model.eval().predict(model(feats, mask), 0)
    assert segs.shape[1] == 2 and (scores[1:] <= scores[:-1]).all() and labels.max() < 3
    with pytest.raises(ValueError, match="width 5"):
        model(torch.zeros(1, 64, 5))
    with pytest.raises(ValueError, match="multiple of 8"):
        model(torch.zeros(1, 60, 12))


# ----------------------------------------------------------------------------- learning on separable sequences


def separable_world(root, num_videos=32, length=64, dim=16, num_classes=3, seed=0):
    """Feature files where each action instance adds its class prototype over its span (features at 1 fps)."""
    import json

    rng = np.random.default_rng(seed)
    protos = rng.normal(0, 1, (num_classes, dim)) * 2.0
    database = {}
    (root / "feats").mkdir(parents=True)
    for i in range(num_videos):
        feats = rng.normal(0, 1, (length, dim)).astype(np.float32)
        anns, cursor = [], int(rng.integers(2, 8))
        while cursor < length - 8:
            n = int(rng.integers(4, 14))
            end = min(cursor + n, length - 1)
            c = int(rng.integers(num_classes))
            feats[cursor:end] += protos[c]
            # feature t is centred at t + 0.5 s (window 1 frame, stride 1, 1 fps)
            anns.append({"segment": [float(cursor), float(end)], "label": f"c{c}"})
            cursor = end + int(rng.integers(3, 10))
        np.save(root / "feats" / f"v{i}.npy", feats)
        database[f"v{i}"] = {"duration": float(length), "subset": "validation" if i % 4 == 3 else "training",
                             "annotations": anns}
    (root / "gt.json").write_text(json.dumps({"database": database}))
    return root / "gt.json", root / "feats"


def test_localizer_learns_separable_instances(tmp_path):
    from internvideo.data.localization import FeatureSequenceDataset, collate_sequences
    from internvideo.tasks.localization import evaluate_localization

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only contend on a shared machine
    gt, feats = separable_world(tmp_path)
    opts = dict(feat_stride=1, window_frames=1, fps=1)
    train = FeatureSequenceDataset(gt, feats, subset="training", training=True, max_seq_len=64, **opts)
    val = FeatureSequenceDataset(gt, feats, subset="validation", classes=train.classes, **opts)
    model = ActionLocalizer(LocalizerConfig(**{**TINY, "input_dim": 16, "drop": 0.0, "drop_path": 0.0,
                                               "init_loss_norm": 20}))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True, collate_fn=collate_sequences)
    first = None
    for _ in range(10):
        for batch in loader:
            out = model(*model.pad(batch["feats"]))
            loss = model.loss(out, batch["segments"], batch["labels"])
            opt.zero_grad()
            loss["loss"].backward()
            opt.step()
            first = first if first is not None else loss["loss"].item()
    assert loss["loss"].item() < 0.5 * first
    results = evaluate_localization(model, val, tiou_thresholds=(0.3, 0.4, 0.5, 0.6, 0.7),
                                    pred_out=tmp_path / "pred.json")
    torch.set_num_threads(threads)
    print("separable sequences: average mAP %.1f, random segments %.1f" % (results["average_mAP"],
                                                                          results["chance_average_mAP"]))
    assert results["average_mAP"] > 60.0
    assert results["average_mAP"] > 5 * results["chance_average_mAP"]
    from internvideo.tasks.localization import evaluate_detections
    assert evaluate_detections(gt, tmp_path / "pred.json", subset="validation",
                               tiou_thresholds=(0.3, 0.4, 0.5, 0.6, 0.7))["average_mAP"] == \
        pytest.approx(results["average_mAP"])


def test_localization_benchmark_quick(tmp_path):
    from benchmarks.bench_localization import main

    assert main(["--quick", "--threads", "1", "--out", str(tmp_path / "loc.json")]) == 0
    import json

    r = json.loads((tmp_path / "loc.json").read_text())
    assert {"soft_nms", "soft_nms_multiclass", "soft_nms_uncapped_one_class", "nms"} <= set(r["nms"])
    assert r["training"][0]["steps_per_s"] > 0


@pytest.mark.slow
def test_pyramid_downsampling_benchmark_quick(tmp_path):
    """The comparison script end to end on a tiny world (world, random-weight VideoMAE features, both modes)."""
    import json

    from benchmarks.pyramid_downsampling import main

    threads = torch.get_num_threads()
    try:
        assert main(["--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "p.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    r = json.loads((tmp_path / "p.json").read_text())
    assert {run["mode"] for run in r["runs"]} == {"attention", "maxpool"}
    assert all(0 <= run["average_mAP"] <= 100 for run in r["runs"])
    assert r["fixed_batch_step"]["attention_ms"] > 0 and r["machine"]["cpu_capability"]
