"""Objective ``ava`` in the one training loop: runs, validates with frame-mAP, freezes, decays layer-wise."""
from __future__ import annotations

import math

import pytest
import torch

from internvideo import create_model, load_model, save_model
from internvideo.data import make_world
from internvideo.train import param_groups, train
from internvideo.train.config import AVASection, DataSection, ModelSection, OptimSection, RunSection, TrainConfig


@pytest.fixture(scope="module")
def ava_root(tmp_path_factory):
    world = make_world(tmp_path_factory.mktemp("ava_train_world"), num_videos=10, seed=2, size=32, num_frames=8,
                       num_long=1, num_ava=4, num_images=2)
    return world.root / "ava"


def _cfg(root, out, pretrained=None, freeze=False, steps=3):
    return TrainConfig(
        "ava", ModelSection("videomae_tiny_ava", pretrained=pretrained, overrides={"num_frames": 4, "frame_interval": 2}),
        DataSection(root=str(root), train="ava_train.csv", val="ava_val.csv", hflip=False, num_workers=0),
        OptimSection(lr=1e-3, scale_lr=False, layer_decay=0.75),
        RunSection(out_dir=str(out), max_steps=steps, epochs=100, batch_size=4, resume=False, progress=False),
        AVASection(labels="label_map.pbtxt", freeze_backbone=freeze))


def test_ava_objective_trains_and_validates(ava_root, tmp_path):
    result = train(_cfg(ava_root, tmp_path / "run"))
    assert result.steps == 3 and result.metric_name == "mAP"
    evals = [h for h in result.history if h["kind"] == "eval"]
    assert evals and 0.0 <= evals[-1]["mAP"] <= 100.0 and evals[-1]["num_gt"] > 0
    assert all(math.isfinite(h["loss"]) for h in result.history if h["kind"] == "train")
    model = load_model(result.checkpoint)
    assert type(model).__name__ == "VideoMAEDetector" and model.config.num_classes == 10


def test_frozen_backbone_trains_only_the_head(ava_root, tmp_path):
    torch.manual_seed(0)
    start = create_model("videomae_tiny_ava", num_frames=4, frame_interval=2)
    save_model(start, tmp_path / "start")
    result = train(_cfg(ava_root, tmp_path / "run", pretrained=str(tmp_path / "start"), freeze=True, steps=2))
    after = load_model(result.checkpoint).state_dict()
    before = start.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.fc.weight", "head.fc.bias"}


def test_layer_decay_groups_follow_the_blocks():
    model = create_model("videomae_tiny_ava")
    scale = {}
    for group in param_groups(model, 0.05, 0.75):
        for p in group["params"]:
            scale[id(p)] = group["lr_scale"]
    named = dict(model.named_parameters())
    depth = len(model.blocks)
    assert scale[id(named["patch_embed.proj.weight"])] == pytest.approx(0.75 ** (depth + 1))
    assert scale[id(named["blocks.0.mlp.fc1.weight"])] == pytest.approx(0.75 ** depth)
    assert scale[id(named["head.fc.weight"])] == pytest.approx(1.0)


def test_ava_objective_config_errors(ava_root, tmp_path):
    cfg = _cfg(ava_root, tmp_path / "run")
    cfg.ava.labels = ""
    with pytest.raises(ValueError, match="ava.labels"):
        train(cfg)


def _two_people(gen, n):
    """Clips with a square in each half; a person's 'action' is its colour (4 colours, the two always differ)."""
    colours = torch.tensor([[1.0, -1, -1], [-1, 1.0, -1], [-1, -1, 1.0], [1.0, 1.0, -1]])
    video = torch.randn(n, 3, 4, 32, 32, generator=gen) * 0.3
    rois, labels = [], []
    for i in range(n):
        a, b = torch.randperm(4, generator=gen)[:2].tolist()
        for j, (c, x0) in enumerate(((a, 2), (b, 18))):
            y0 = int(torch.randint(2, 18, (1,), generator=gen))
            video[i, :, :, y0:y0 + 12, x0:x0 + 12] = colours[c][:, None, None, None]
            rois.append([i, x0 / 32, y0 / 32, (x0 + 12) / 32, (y0 + 12) / 32])
            labels.append(c)
    return video, torch.tensor(rois), torch.nn.functional.one_hot(torch.tensor(labels), 4).float()


@pytest.mark.parametrize("box_agnostic", [False, True])
def test_the_head_must_read_the_box(box_agnostic):
    from internvideo.data.ava import AVABox, AVADetection
    from internvideo.tasks.ava import frame_map

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = create_model("videomae_tiny_ava", num_frames=4, num_classes=4, box_agnostic=box_agnostic,
                         head_dropout=0.0, depth=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(25):
        video, rois, labels = _two_people(gen, 8)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(video, rois), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    video, rois, labels = _two_people(torch.Generator().manual_seed(1), 32)
    with torch.no_grad():
        scores = torch.sigmoid(model.eval()(video, rois))
    truth = [AVABox(str(int(r[0])), 0.0, tuple(r[1:].tolist()), int(y.argmax()) + 1, 0) for r, y in zip(rois, labels)]
    dets = [AVADetection(str(int(r[0])), 0.0, tuple(r[1:].tolist()), c + 1, float(s[c]))
            for r, s in zip(rois, scores) for c in range(4)]
    mean_ap = frame_map(truth, dets, {1: "red", 2: "green", 3: "blue", 4: "yellow"})["mAP"]
    if box_agnostic:
        assert mean_ap < 70.0  # both people get the same scores: each is also credited with the other's colour
    else:
        assert mean_ap > 95.0


def test_internvideo_ava_recipe_trains(ava_root, tmp_path):
    """configs/ava/internvideo_ava22_vit_h.yaml on the tiny stand-in: the recipe's optimiser and schedule as read."""
    from pathlib import Path

    from internvideo.train.config import load_config

    recipe = Path(__file__).resolve().parents[1] / "configs" / "ava" / "internvideo_ava22_vit_h.yaml"
    cfg = load_config(recipe, [
        "model.name=videomae_tiny_ava", "model.pretrained=null", "model.overrides.num_frames=4",
        "model.overrides.frame_interval=2", "model.overrides.img_size=32", f"data.root={ava_root}",
        "data.train=ava_train.csv", "data.val=ava_val.csv", "data.num_workers=0", "ava.labels=label_map.pbtxt",
        "ava.exclude=null", "ava.proposals=null", "ava.time_offset=0", "ava.short_side=40", "run.max_steps=2",
        "run.batch_size=4", "run.precision=fp32", "run.distributed=ddp", "run.grad_checkpointing=false",
        "run.progress=false", f"run.out_dir={tmp_path / 'run'}"])
    assert (cfg.optim.lr, cfg.optim.layer_decay, cfg.optim.warmup_epochs, cfg.run.epochs) == (2.5e-4, 0.75, 2, 30)
    assert (cfg.ava.keep_aspect, cfg.ava.box_score, tuple(cfg.ava.box_extend)) == (True, True, (0.1, 0.05))
    assert cfg.model.overrides["mean"] == [0.4814576, 0.4546922, 0.4038435]  # official PIXEL_MEAN / 255
    cfg.optim.warmup_epochs = 0.0  # two warmup epochs would outlast the two steps (refused by the loop)
    result = train(cfg)
    assert result.steps == 2 and result.metric_name == "mAP"
