"""Cross-model attention over two frozen backbones."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import internvideo
from internvideo.train.config import load_config
from internvideo.models.fusion import CMAFusion, FusionConfig
from internvideo.train import param_groups, train

sys.path.insert(0, str(Path(__file__).parent))
from trainworld import make_train_world  # noqa: E402
from test_train import tiny  # noqa: E402


def backbones():
    torch.manual_seed(0)
    mae = internvideo.create_model("videomae_tiny", num_classes=0).eval()
    mm = internvideo.create_model("internvideo_mm_tiny").eval()
    return mae, mm


def make(num_layers=2, **kw):
    mae, mm = backbones()
    cfg = FusionConfig(num_classes=5, width=32, num_layers=num_layers, num_heads=4, **kw)
    torch.manual_seed(1)
    return CMAFusion(cfg, mae, mm), mae, mm


def clip(batch=2):
    g = torch.Generator().manual_seed(3)
    return torch.randn(batch, 3, 4, 32, 32, generator=g), torch.randn(batch, 3, 4, 32, 32, generator=g)


def test_fresh_fusion_is_late_fusion():
    model, mae, mm = make()
    v, mv = clip()
    with torch.no_grad():
        expected = torch.cat([mae.forward_head(mae.forward_features(v), pre_logits=True), mm.encode_video(mv)], -1)
        torch.testing.assert_close(model.embed(v, mv), expected)
        # The gates are what makes it so: opening them changes the representation.
        model.gate_a.fill_(0.5)
        model.a_reads_m[0].gate_attn.fill_(0.5)
        assert not torch.allclose(model.embed(v, mv), expected)


def test_backbones_frozen_and_only_fusion_trains():
    model, mae, mm = make()
    before = {k: v.clone() for k, v in list(mae.state_dict().items()) + [("mm." + k, v) for k, v in mm.state_dict().items()]}
    groups = param_groups(model, weight_decay=1e-3, layer_decay=None)
    in_opt = {id(p) for g in groups for p in g["params"]}
    backbone_ids = {id(p) for p in list(mae.parameters()) + list(mm.parameters())}
    assert in_opt and not (in_opt & backbone_ids)
    assert in_opt == {id(p) for n, p in model.named_parameters() if not n.startswith(("mae.", "mm."))}
    opt = torch.optim.AdamW(groups, lr=1e-2)
    model.train()
    assert not mae.training and not mm.training
    v, mv = clip()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(v, mv), torch.tensor([1, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in list(mae.parameters()) + list(mm.parameters()))
    after = {k: v for k, v in list(mae.state_dict().items()) + [("mm." + k, v) for k, v in mm.state_dict().items()]}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.gate_a.item() != 0.0  # the gates did move


def test_cached_features_give_the_same_logits():
    model, _, _ = make()
    model.eval()
    v, mv = clip()
    with torch.no_grad():
        live = model(v, mv)
        feats = model.backbone_features(v, mv)
        cached = model.forward_features_cached({k: x.clone() for k, x in feats.items()})
    torch.testing.assert_close(cached, live)


@pytest.mark.parametrize("streams, layers, dim", [("mae", 0, 64), ("mm", 0, 32), ("both", 0, 96), ("both", 1, 96)])
def test_ablation_variants(streams, layers, dim):
    model, _, _ = make(num_layers=layers, streams=streams)
    v, mv = clip()
    assert model.embed(v, mv).shape == (2, dim)
    assert model(v).shape == (2, 5)  # one view: the multimodal view is derived from the clip


def test_fusion_objective_trains_through_the_loop_and_cache_matches(tmp_path):
    world = make_train_world(tmp_path / "w", n=8)
    mae, mm = backbones()
    internvideo.save_model(mae, tmp_path / "mae")
    internvideo.save_model(mm, tmp_path / "mm")
    base = tiny(world, tmp_path / "run", "fusion", "unused", "run.epochs=6", "optim.lr=1e-2",
                f"model.mae_backbone={tmp_path / 'mae'}", f"model.mm_backbone={tmp_path / 'mm'}",
                "model.overrides={width: 32, num_heads: 4, head_dropout: 0.0}",
                "optim.weight_decay=0.001", "data.scale=[0.5, 1.0]")
    result = train(load_config(None, base))
    losses = [r["loss"] for r in result.history if r["kind"] == "train"]
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    saved = internvideo.load_model(result.checkpoint)
    assert isinstance(saved, CMAFusion)
    cached = train(load_config(None, base[:-1] + ["run.epochs=1", f"run.out_dir={tmp_path / 'cached'}",
                                                  f"fusion.feature_cache={tmp_path / 'cache'}", "data.scale=[0.5, 1.0]"]))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 8
    assert cached.steps == 2


def test_ablation_table(tmp_path):
    from internvideo.experiments.fusion_ablation import Variant, run_fusion_ablation

    world = make_train_world(tmp_path / "w", n=8)
    mae, mm = backbones()
    internvideo.save_model(mae, tmp_path / "mae")
    internvideo.save_model(mm, tmp_path / "mm")
    variants = (Variant("mae alone", "mae", 0), Variant("CMA, L=1", "both", 1))
    report = run_fusion_ablation(tmp_path / "mae", tmp_path / "mm", world, "train.txt", "val.txt", tmp_path / "abl",
                                 variants=variants, epochs=1, batch_size=4, width=32, progress=False,
                                 extra=["data.num_workers=0", "data.hflip=false"])
    assert [r["variant"] for r in report["rows"]] == ["mae alone", "CMA, L=1"]
    assert all(0.0 <= r["top1"] <= r["top5"] <= 100.0 for r in report["rows"])
    assert report["chance_top1"] == 50.0
    assert "| CMA, L=1 |" in (tmp_path / "abl" / "ablation.md").read_text()
    assert len(list((tmp_path / "abl" / "feature_cache").glob("*.safetensors"))) == 8  # built once, shared
