"""The official InternVideo / AlphAction AVA input and box handling, and AVA-Kinetics.

Each official formula is written out here again from the official code
(``Spatial-Temporal-Action-Localization``: AlphAction's ``BoxList``, ``Resize``,
``batch_different_videos``, ``interpolate_pos_embed_online``) in its own
conventions (inclusive pixel boxes), and compared with ours.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from internvideo import create_model
from internvideo.data import make_world
from internvideo.data.ava import (
    AVADataset, AVADetection, BoxTransform, KineticsClip, collate_ava, extend_boxes, group_keyframes,
    index_kinetics_clips, random_aug_boxes, read_ava_kinetics, short_side_size,
)
from internvideo.data.datasets import AnnotationError
from internvideo.errors import UserError
from internvideo.tasks.ava import detect
from internvideo.train import train
from internvideo.train.config import load_config

RECIPES = Path(__file__).resolve().parents[1] / "configs" / "ava"


# ----------------------------------------------------------------------------- official formulas, restated


def official_get_size(h, w, size):
    """AlphAction Resize.get_size, returning (h, w) (the already-sized case as intended)."""
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def official_extend(box_inclusive, scale, width, height):
    """BoxList.extend + clip_to_image on inclusive pixel boxes."""
    x1, y1, x2, y2 = box_inclusive
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    pw, ph = scale[0] * bw / 2, scale[1] * bh / 2
    out = [x1 - pw, y1 - ph, x2 + pw, y2 + ph]
    return [min(max(out[0], 0), width - 1), min(max(out[1], 0), height - 1),
            min(max(out[2], 0), width - 1), min(max(out[3], 0), height - 1)]


def official_random_aug(box_inclusive, u, width, height, extent=(0.2, 0.1, 0.1, 0.05)):
    """BoxList.random_aug with the four uniform draws given (as U(a, b) = a + u * (b - a))."""
    x_out, x_in, y_out, y_in = extent
    x1, y1, x2, y2 = box_inclusive
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    nx1 = x1 + bw * (-x_out + u[0] * (x_in + x_out))
    ny1 = y1 + bh * (-y_out + u[1] * (y_in + y_out))
    nx2 = x2 + bw * (-x_in + u[2] * (x_out + x_in))
    ny2 = y2 + bh * (-y_in + u[3] * (y_out + y_in))
    nx1, ny1 = min(max(nx1, 0), width - 2), min(max(ny1, 0), height - 2)
    nx2 = max(min(nx2, width - 1), nx1 + 1)
    ny2 = max(min(ny2, height - 1), ny1 + 1)
    return [nx1, ny1, nx2, ny2]


class _Draws:
    """An rng whose uniform() hands out given unit draws, so both sides use the same numbers."""

    def __init__(self, units):
        self.units = list(units)

    def uniform(self, lo, hi, n):
        out = np.array([lo + self.units.pop(0) * (hi - lo) for _ in range(n)])
        return out


# ----------------------------------------------------------------------------- sizes and boxes


@pytest.mark.parametrize("h,w", [(360, 640), (480, 360), (256, 455), (720, 1280), (300, 300), (256, 200)])
def test_short_side_size_is_the_official_resize(h, w):
    assert short_side_size(h, w, 256) == official_get_size(h, w, 256)


def test_extend_is_the_official_extension():
    width, height = 455, 256
    for box in ([40.0, 30.0, 99.0, 200.0], [0.0, 5.0, 454.0, 255.0], [400.0, 0.0, 450.0, 20.0]):
        x1, y1, x2, y2 = official_extend(box, (0.1, 0.05), width, height)
        want = [x1 / width, y1 / height, (x2 + 1) / width, (y2 + 1) / height]  # continuous, fractions
        frac = [box[0] / width, box[1] / height, (box[2] + 1) / width, (box[3] + 1) / height]
        np.testing.assert_allclose(extend_boxes(np.array([frac]), (0.1, 0.05))[0], want, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_random_aug_is_the_official_jitter(seed):
    rng = np.random.default_rng(seed)
    width = height = 224
    x1, y1 = rng.uniform(-20, 200, 2).clip(0)
    box = [x1, y1, min(x1 + rng.uniform(1, 120), 223), min(y1 + rng.uniform(1, 120), 223)]  # inclusive
    u = rng.random(4)
    want = official_random_aug(box, u, width, height)
    frac = np.array([[box[0] / width, box[1] / height, (box[2] + 1) / width, (box[3] + 1) / height]])
    got = random_aug_boxes(frac, width, height, _Draws(u), (0.2, 0.1, 0.1, 0.05))[0] * [width, height, width, height]
    np.testing.assert_allclose(got, [want[0], want[1], want[2] + 1, want[3] + 1], atol=1e-3)


def _painted(h, w, box, t=2):
    frame = np.zeros((t, h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    frame[:, round(y1 * h):round(y2 * h), round(x1 * w):round(x2 * w)] = 255
    return frame


def _check_box_on_pixels(img, box):
    h, w = img.shape
    x1, y1, x2, y2 = box * np.array([w, h, w, h])
    cy, cx = np.arange(h) + 0.5, np.arange(w) + 0.5
    inside = np.ix_((cy > y1 + 1.5) & (cy < y2 - 1.5), (cx > x1 + 1.5) & (cx < x2 - 1.5))
    assert img[inside].size and (img[inside] > 0.9).all()
    outside_rows = (cy < y1 - 1.5) | (cy > y2 + 1.5)
    outside_cols = (cx < x1 - 1.5) | (cx > x2 + 1.5)
    assert (img[outside_rows] < 0.1).all() and (img[:, outside_cols] < 0.1).all()


def test_keep_aspect_test_frames_keep_their_ratio_and_pad_to_patches():
    h, w, box = 40, 72, (0.25, 0.2, 0.5, 0.8)
    tf = BoxTransform(16, keep_aspect=True, short_side=24, pad_to=8, mean=(0, 0, 0), std=(1, 1, 1))
    video, boxes, kept = tf(_painted(h, w, box), np.array([box]))
    assert short_side_size(h, w, 24) == (24, 43)
    assert video.shape == (3, 2, 24, 48) and kept.tolist() == [True]  # 43 -> padded to 48
    assert torch.all(video[..., 43:] == 0)  # padding is zeros after normalisation, as the official collate
    np.testing.assert_allclose(boxes[0], [0.25 * 43 / 48, 0.2, 0.5 * 43 / 48, 0.8], rtol=1e-6)
    _check_box_on_pixels(video[0, 0].numpy(), boxes[0])


@pytest.mark.parametrize("seed", range(6))
def test_keep_aspect_training_window_follows_the_box(seed):
    h, w, box = 40, 72, (0.4, 0.2, 0.6, 0.8)
    tf = BoxTransform(24, training=True, keep_aspect=True, short_side=30, scale=(1.0, 1.0), flip=0.5,
                      mean=(0, 0, 0), std=(1, 1, 1))
    video, boxes, kept = tf(_painted(h, w, box), np.array([box]), np.random.default_rng(seed))
    assert video.shape == (3, 2, 24, 24)
    if kept[0]:
        _check_box_on_pixels(video[0, 0].numpy(), boxes[0])


def test_collate_pads_to_the_largest_and_boxes_keep_their_pixels():
    tf = BoxTransform(16, keep_aspect=True, short_side=16, pad_to=8, mean=(0, 0, 0), std=(1, 1, 1))
    items = []
    for i, (h, w, box) in enumerate([(32, 64, (0.5, 0.25, 0.75, 0.75)), (32, 32, (0.125, 0.125, 0.625, 0.875))]):
        video, boxes, _ = tf(_painted(h, w, box), np.array([box]))
        items.append({"video": video, "boxes": torch.from_numpy(boxes), "labels": torch.zeros(1, 3),
                      "source_boxes": torch.tensor([box]), "scores": torch.ones(1), "video_id": str(i),
                      "timestamp": 0.0, "index": i})
    batch = collate_ava(items)
    assert batch["video"].shape == (2, 3, 2, 16, 32)
    assert torch.all(batch["video"][1, ..., 16:] == 0)
    for k in range(2):
        _check_box_on_pixels(batch["video"][k, 0, 0].numpy(), batch["rois"][k, 1:].numpy())


# ----------------------------------------------------------------------------- model on non-square clips


def official_online_pos(table, orig, new):
    """interpolate_pos_embed_online of modeling_finetune.py on the (t, h*w, D) reshaped table."""
    t, d = table.shape[1] // (orig[0] * orig[1]), table.shape[-1]
    x = table.reshape(t, orig[0], orig[1], d).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=new, mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(1, -1, d)


def test_detector_takes_aspect_kept_clips_with_the_official_position_table():
    torch.manual_seed(0)
    model = create_model("videomae_tiny_ava", num_frames=4, frame_interval=2, head_dropout=0.0).eval()
    video = torch.randn(2, 3, 4, 32, 56)  # grid 2 x 4 x 7 instead of 2 x 4 x 4
    got = model.embed_tokens(video)
    want = model.patch_embed(video) + official_online_pos(model.pos_embed, (4, 4), (4, 7))
    torch.testing.assert_close(got, want)
    rois = torch.tensor([[0, 0.1, 0.1, 0.5, 0.9], [1, 0.5, 0.2, 1.0, 1.0], [1, 0.0, 0.0, 0.3, 0.3]])
    logits = model(video, rois)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    square = torch.randn(1, 3, 4, 32, 32)  # the configured size: the table as it is
    torch.testing.assert_close(model.embed_tokens(square), model.patch_embed(square) + model.pos_embed)
    with pytest.raises(ValueError, match="token grid"):
        model(torch.randn(1, 3, 6, 32, 56), rois[:1])  # another frame count stays an error


def test_box_score_multiplies_the_detector_score(tmp_path):
    class Fixed(torch.nn.Module):
        def forward(self, video, rois):
            return torch.zeros(len(rois), 2)  # sigmoid 0.5 everywhere

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"video": torch.zeros(3, 2, 8, 8), "boxes": torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1.0]]),
                    "labels": torch.zeros(2, 2), "source_boxes": torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1.0]]),
                    "scores": torch.tensor([0.9, 0.8]), "video_id": "v", "timestamp": 1.0, "index": 0}

    plain = detect(Fixed(), Items())
    scaled = detect(Fixed(), Items(), box_score=True)
    assert [d.score for d in plain] == [0.5] * 4
    assert [round(d.score, 6) for d in scaled] == [0.45, 0.45, 0.4, 0.4]
    assert all(isinstance(d, AVADetection) for d in scaled)


def test_frame_shift_moves_the_sampled_frames(tmp_path):
    ds = AVADataset([], tmp_path, 3, BoxTransform(8), clip_len=16, frame_interval=4, frame_shift=1)
    idx = ds.frame_indices(100, 1000)
    assert idx[8] == 101 and idx[0] == 69 and idx[-1] == 129  # keyframe neighbours -31 .. +29, as the official


# ----------------------------------------------------------------------------- AVA-Kinetics


YTID = "a_b-C9xyZ12"  # YouTube ids hold '_' and '-': the clip name is split at its last two '_'


@pytest.fixture(scope="module")
def ak_root(tmp_path_factory):
    """A tiny AVA-Kinetics in the official layout: AVA part (the synthetic world) plus
    ``ava_kinetics_v1_0/kinetics_{train,val}_v1.0.csv`` and Kinetics clips ``<class>/<ytid>_<start>_<end>.mp4``."""
    world = make_world(tmp_path_factory.mktemp("ak_world"), num_videos=10, seed=3, size=32, num_frames=8,
                       num_long=1, num_ava=4, num_images=2)
    ava = world.root / "ava"
    videos = ava / "kinetics_videos" / "some_class"
    videos.mkdir(parents=True)
    ann = ava / "ava_kinetics_v1_0"
    ann.mkdir()
    sources = sorted(ava.glob("ava_*.mp4"))
    train_rows, val_rows = [], []
    for i, src in enumerate(sources[:3]):
        ytid = YTID if i == 0 else f"kin{i:08d}"
        start = 10 * (i + 1)
        shutil.copy(src, videos / f"{ytid}_{start:06d}_{start + 10:06d}.mp4")
        rows = train_rows if i < 2 else val_rows
        rows.append(f"{ytid},{start + 5},0.1,0.2,0.45,0.9,{i + 1}")
        rows.append(f"{ytid},{start + 5},0.55,0.2,0.95,0.9,{i + 4}")
    (ann / "kinetics_train_v1.0.csv").write_text("\n".join(train_rows) + "\n", encoding="utf-8")
    (ann / "kinetics_val_v1.0.csv").write_text("\n".join(val_rows) + "\n", encoding="utf-8")
    return ava


def test_kinetics_clips_are_indexed_and_rows_find_their_clip(ak_root):
    index = index_kinetics_clips(ak_root / "kinetics_videos")
    assert YTID in index and index[YTID][0].start == 10 and index[YTID][0].end == 20
    rows, clips, skipped = read_ava_kinetics(ak_root / "ava_kinetics_v1_0" / "kinetics_train_v1.0.csv", index, 10)
    assert len(rows) == 4 and skipped == 0 and len(clips) == 2
    assert rows[0].video_id == YTID and rows[0].person_id == -1 and rows[0].action_id == 1
    clip = clips[(YTID, 15.0)]
    assert clip.frame(15, 16) == 8  # int((15 - 10) / 10 * 16), the official relative position
    assert KineticsClip(Path("x"), 10, 20).frame(19.99, 16) == 15


@pytest.mark.parametrize("row,message", [
    (f"{YTID},15,0.1,0.2,0.45,0.9,11", "unknown action id 11"),
    (f"{YTID},15,0.1,0.2,0.45,0.9", "expected 8 columns"),
    (f"{YTID},15,0.1,0.2,0.45,zero,1", "y2 must be a number"),
    (f"{YTID},25,0.1,0.2,0.45,0.9,1", "no Kinetics clip of a_b-C9xyZ12 holds second 25"),
    ("nosuchvideo,15,0.1,0.2,0.45,0.9,1", "no Kinetics clip of nosuchvideo"),
])
def test_bad_kinetics_rows_name_file_and_line(ak_root, tmp_path, row, message):
    index = index_kinetics_clips(ak_root / "kinetics_videos")
    path = tmp_path / "kinetics_train_v1.0.csv"
    path.write_text(f"{YTID},15,0.1,0.2,0.45,0.9,1\n{row}\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_ava_kinetics(path, index, 10)
    text = str(info.value)
    assert isinstance(info.value, AnnotationError) and "\n" not in text
    assert text.startswith(f"{path}:2: ") and message in text


def test_missing_kinetics_clips_can_be_skipped_and_counted(ak_root, tmp_path):
    index = index_kinetics_clips(ak_root / "kinetics_videos")
    path = tmp_path / "k.csv"
    path.write_text(f"{YTID},15,0.1,0.2,0.45,0.9,1\ngone0000000,3,0.1,0.2,0.45,0.9,1\n{YTID},15\n", encoding="utf-8")
    rows, clips, skipped = read_ava_kinetics(path, index, 10, missing="skip")
    assert len(rows) == 1 and skipped == 1 and list(clips) == [(YTID, 15.0)]


def test_kinetics_keyframes_load_as_clips(ak_root):
    index = index_kinetics_clips(ak_root / "kinetics_videos")
    rows, clips, _ = read_ava_kinetics(ak_root / "ava_kinetics_v1_0" / "kinetics_train_v1.0.csv", index, 10)
    ds = AVADataset(group_keyframes(rows), ak_root, 10, BoxTransform(32), clip_len=4, frame_interval=2, clips=clips)
    assert len(ds) == 2 and not ds.skipped
    item = ds[0]
    assert item["video"].shape == (3, 4, 32, 32) and item["labels"].sum() == 2


def _recipe(name, ak_root, tmp_path, extra=()):
    return load_config(RECIPES / name, [
        "model.name=videomae_tiny_ava", "model.pretrained=null", "model.overrides.num_frames=4",
        "model.overrides.frame_interval=2", "model.overrides.img_size=32", f"data.root={ak_root}",
        "data.train=ava_train.csv", "data.val=ava_val.csv", "data.num_workers=0", "ava.labels=label_map.pbtxt",
        "ava.exclude=null", "ava.proposals=null", "ava.time_offset=0", "ava.short_side=40", "run.max_steps=2",
        "run.batch_size=4", "run.precision=fp32", "run.distributed=ddp", "run.grad_checkpointing=false",
        "run.progress=false", "optim.warmup_epochs=0", f"run.out_dir={tmp_path / 'run'}", *extra])


def test_internvideo_ava_kinetics_recipe_trains(ak_root, tmp_path):
    cfg = _recipe("internvideo_ava_kinetics_vit_h.yaml", ak_root, tmp_path, [
        "ava.kinetics_train=ava_kinetics_v1_0/kinetics_train_v1.0.csv",
        "ava.kinetics_val=ava_kinetics_v1_0/kinetics_val_v1.0.csv", "ava.kinetics_videos=kinetics_videos",
        "ava.kinetics_proposals=null"])
    a = cfg.ava
    assert (a.keep_aspect, a.resize_antialias, tuple(a.box_aug), tuple(a.box_extend), a.box_score,
            a.frame_shift, a.kinetics_missing) == (True, False, (0.2, 0.1, 0.1, 0.05), (0.1, 0.05), True, 1, "skip")
    assert (cfg.optim.lr, cfg.optim.layer_decay, cfg.run.epochs) == (2.5e-4, 0.75, 30)
    assert cfg.model.overrides["aligned"] is False
    result = train(cfg)
    assert result.steps == 2 and result.metric_name == "mAP"
    evals = [h for h in result.history if h["kind"] == "eval"]
    assert evals and math.isfinite(evals[-1]["mAP"])
    # the Kinetics val keyframe is scored with AVA val: its two boxes are in the ground-truth count
    ava_only = _recipe("internvideo_ava_kinetics_vit_h.yaml", ak_root, tmp_path / "b", [
        "ava.kinetics_train=null", "ava.kinetics_val=null", "run.max_steps=1"])
    other = [h for h in train(ava_only).history if h["kind"] == "eval"]
    assert evals[-1]["num_gt"] == other[-1]["num_gt"] + 2


def test_kinetics_recipe_without_clip_folder_is_a_config_error(ak_root, tmp_path):
    cfg = _recipe("internvideo_ava_kinetics_vit_h.yaml", ak_root, tmp_path, [
        "ava.kinetics_train=ava_kinetics_v1_0/kinetics_train_v1.0.csv", "ava.kinetics_val=null",
        "ava.kinetics_videos=null"])
    with pytest.raises(UserError, match="ava.kinetics_videos"):
        train(cfg)


# ----------------------------------------------------------------------------- ACAR head


def official_acar(head, roi_feats, roi_ids, img_features):
    """ACARHead.forward / HR2O_NL.forward of modeling_finetune.py, restated in their broadcast form."""
    def hr2o(m, x):
        query = m.conv_q(x).unsqueeze(1)
        key = m.conv_k(x).unsqueeze(0)
        att = ((query * key).sum(2) / (x.shape[1] ** 0.5)).softmax(dim=1)
        virt = (att.unsqueeze(2) * m.conv_v(x).unsqueeze(0)).sum(1)
        return x + m.dp(m.conv(F.relu(m.norm(virt))))

    feats, cur = [], 0
    for idx in range(img_features.shape[0]):
        n = roi_ids[idx]
        if n == 0:
            continue
        bg = img_features[idx].unsqueeze(0).repeat((n, 1, 1, 1))
        actor = roi_feats[cur:cur + n].unsqueeze(2).unsqueeze(2).expand_as(bg)
        cur += n
        x = F.relu(head.conv2(F.relu(head.conv1(torch.cat([bg, actor], dim=1)))))
        x = head.downsample(x)
        for m in head.hr2o:
            x = hr2o(m, x)
        feats.append(F.adaptive_avg_pool2d(x, 1))
    high = torch.cat(feats, dim=0).view(sum(roi_ids), -1)
    return head.fc2(torch.cat([F.relu(head.fc1(roi_feats)), high], dim=1))


def test_acar_head_is_the_official_computation_and_trains():
    torch.manual_seed(0)
    model = create_model("videomae_tiny_ava", num_frames=4, frame_interval=2, head_dropout=0.0, head_type="acar",
                         acar_hidden=16, init_scale=1.0).eval()
    video = torch.randn(3, 3, 4, 32, 40)
    rois = torch.tensor([[0, 0.1, 0.1, 0.5, 0.9], [0, 0.5, 0.2, 1.0, 1.0], [2, 0.0, 0.0, 0.3, 0.3],
                         [2, 0.2, 0.3, 0.9, 0.8], [2, 0.6, 0.1, 0.9, 0.5]])  # clip 1 has no box
    tokens = model.forward_features(video)
    grid = model.patch_embed.grid(video.shape)
    context = model.head.context(tokens, grid)
    actors = model.head.pooled(tokens, rois, context=context)
    want = official_acar(model.head.acar, actors, [2, 0, 3], context)
    got = model(video, rois)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # each actor's scores depend on the other actors of its clip (the relation), not on other clips
    moved = rois.clone()
    moved[1, 1:] = torch.tensor([0.0, 0.0, 0.4, 0.4])
    again = model(video, moved)
    assert not torch.allclose(again[0], got[0]) and torch.allclose(again[2:], got[2:], atol=1e-6)
    model.train()
    loss = F.binary_cross_entropy_with_logits(model(video, rois), torch.ones(5, 10))
    loss.backward()
    for name in ("head.acar.conv1.weight", "head.acar.hr2o.1.conv_q.weight", "head.acar.fc2.weight",
                 "blocks.0.attn.qkv.weight"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    with pytest.raises(ValueError, match="head_type"):
        create_model("videomae_tiny_ava", head_type="nonlocal")


def test_internvideo_recipe_trains_with_the_acar_head(ak_root, tmp_path):
    cfg = _recipe("internvideo_ava22_vit_h.yaml", ak_root, tmp_path, ["model.overrides.head_type=acar",
                                                                      "model.overrides.acar_hidden=16"])
    result = train(cfg)
    assert result.steps == 2 and math.isfinite([h for h in result.history if h["kind"] == "eval"][-1]["mAP"])
