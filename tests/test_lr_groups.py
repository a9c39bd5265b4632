"""Per-parameter-group lr multipliers (``optim.lr_groups``): grouping, errors, and the one training loop using them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import internvideo
from internvideo.train import param_groups, train
from internvideo.train.config import ConfigError, load_config

sys.path.insert(0, str(Path(__file__).parent))
from trainworld import make_train_world  # noqa: E402


def test_longest_prefix_wins_and_the_rest_keep_the_base_lr():
    model = internvideo.create_model("internvideo_mm_tiny")
    groups = param_groups(model, 0.1, None, {"visual.": 0.004, "visual.dec.": 2.0, "logit_scale": 0.5})
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["visual.blocks.0.attn.qkv.weight"])] == 0.004
    assert scale[id(named["visual.dec.0.mlp.fc1.weight"])] == 2.0
    assert scale[id(named["logit_scale"])] == 0.5
    assert scale[id(named["text.blocks.0.attn.qkv.weight"])] == 1.0
    # weight decay still follows the parameter, not the lr group
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(named["visual.blocks.0.attn.qkv.bias"])] == 0.0
    assert decay[id(named["visual.blocks.0.attn.qkv.weight"])] == 0.1


def test_a_prefix_matching_nothing_is_an_error():
    model = internvideo.create_model("internvideo_mm_tiny")
    with pytest.raises(ConfigError, match=r"optim.lr_groups: prefix 'visul\.' matches no trainable parameter.*"
                                          r"caption\., logit_scale\., text\., visual\."):
        param_groups(model, 0.1, None, {"visul.": 0.1})
    with pytest.raises(ConfigError, match=r"optim.lr_groups\['text.'\]: must be >= 0"):
        load_config(None, ["optim.lr_groups={text.: -1}"])
    cfg = load_config(None, ["optim.lr_groups={text.: 4e-3}"])  # YAML reads 4e-3 as a string; coerced
    assert cfg.optim.lr_groups == {"text.": 0.004}


def test_the_training_loop_applies_the_multipliers(tmp_path):
    world = make_train_world(tmp_path / "world", n=8)
    torch.manual_seed(0)
    start = internvideo.create_model("internvideo_mm_tiny", caption_layers=0, num_frames=4, sampling="uniform")
    internvideo.save_model(start, tmp_path / "start")
    cfg = load_config(None, [
        "objective=contrastive", "model.name=internvideo_mm_tiny", f"model.pretrained={tmp_path / 'start'}",
        "model.overrides={caption_layers: 0, num_frames: 4, sampling: uniform}", f"data.root={world}",
        "data.train=train.jsonl", "data.hflip=false", "data.num_workers=0", f"run.out_dir={tmp_path / 'run'}",
        "run.batch_size=4", "run.max_steps=2", "run.progress=false", "optim.scale_lr=false", "optim.lr=1e-3",
        "optim.lr_groups={text.: 0.0, logit_scale: 0.0}"])
    result = train(cfg)
    after = load_file(str(result.checkpoint / "model.safetensors"))
    before = start.state_dict()
    text = [k for k in before if k.startswith("text.")]
    assert text and all(torch.equal(after[k], before[k]) for k in text)  # lr x 0: not one step taken
    assert torch.equal(after["logit_scale"], before["logit_scale"])
    assert not torch.equal(after["visual.blocks.0.attn.qkv.weight"], before["visual.blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("name", ["msrvtt", "msvd", "lsmdc", "didemo", "activitynet", "vatex"])
def test_retrieval_recipes_put_every_parameter_at_lr_times_coef(name):
    # The official CLIP4Clip fork keeps the whole model under "clip.", so all of it trains at lr * coef_lr.
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "retrieval" / f"{name}.yaml")
    coef = set(cfg.optim.lr_groups.values())
    assert len(coef) == 1
    model = internvideo.create_model("internvideo_mm_tiny", caption_layers=0)
    groups = param_groups(model, cfg.optim.weight_decay, None, cfg.optim.lr_groups)
    assert {g["lr_scale"] for g in groups} == coef
