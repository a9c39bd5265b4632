"""Cross-model attention over two frozen backbones."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
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


def test_fresh_gated_fusion_is_late_fusion():
    model, mae, mm = make(cma="gated")
    v, mv = clip()
    with torch.no_grad():
        expected = torch.cat([mae.forward_head(mae.forward_features(v), pre_logits=True), mm.encode_video(mv)], -1)
        torch.testing.assert_close(model.embed(v, mv), expected)
        # The gates are what makes it so: opening them changes the representation.
        model.gate_a.fill_(0.5)
        model.a_reads_m[0].gate_attn.fill_(0.5)
        assert not torch.allclose(model.embed(v, mv), expected)


def test_gated_backbones_frozen_and_only_fusion_trains():
    model, mae, mm = make(cma="gated")
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


@pytest.mark.parametrize("cma", ["paper", "gated"])
def test_cached_features_give_the_same_logits(cma):
    model, _, _ = make(cma=cma)
    model.eval()
    v, mv = clip()
    with torch.no_grad():
        live = model(v, mv)
        feats = model.backbone_features(v, mv)
        cached = model.forward_features_cached({k: x.clone() for k, x in feats.items()})
    torch.testing.assert_close(cached, live)


@pytest.mark.parametrize("streams, layers, cma, dim", [
    ("mae", 0, "paper", 64), ("mm", 0, "paper", 32), ("both", 0, "paper", 96), ("both", 1, "gated", 96),
    ("both", 1, "paper", 64), ("both", 3, "paper", 64)])  # paper: the multimodal width (its class token)
def test_ablation_variants(streams, layers, cma, dim):
    model, _, _ = make(num_layers=layers, streams=streams, cma=cma)
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
    assert len(list((tmp_path / "cache").glob("*/*.safetensors"))) == 8  # under the backbone key
    assert cached.steps == 2


def test_ablation_table(tmp_path):
    from internvideo.experiments.fusion_ablation import Variant, run_fusion_ablation

    world = make_train_world(tmp_path / "w", n=8)
    mae, mm = backbones()
    internvideo.save_model(mae, tmp_path / "mae")
    internvideo.save_model(mm, tmp_path / "mm")
    variants = (Variant("mae alone", "mae", 0), Variant("CMA, L=1", "both", 1, "gated"))
    report = run_fusion_ablation(tmp_path / "mae", tmp_path / "mm", world, "train.txt", "val.txt", tmp_path / "abl",
                                 variants=variants, epochs=1, batch_size=4, width=32, progress=False,
                                 extra=["data.num_workers=0", "data.hflip=false"], save_scores=tmp_path / "scores")
    assert [r["variant"] for r in report["rows"]] == ["mae alone", "CMA, L=1"]
    assert all(0.0 <= r["top1"] <= r["top5"] <= 100.0 for r in report["rows"])
    assert report["chance_top1"] == 50.0
    assert "| CMA, L=1 |" in (tmp_path / "abl" / "ablation.md").read_text()
    from internvideo.tasks.common import load_scores

    files = sorted((tmp_path / "scores").glob("*.npz"))
    assert [f.stem for f in files] == ["CMA_L1", "mae_alone"]
    scores = load_scores(files[0])
    assert scores.task == "fusion" and scores.scores.shape == (len(scores.videos), 2)
    # the saved scores are the ones the in-loop evaluation reported (same views, same model)
    top1 = 100.0 * float(np.mean(scores.scores.argmax(1) == scores.labels))
    assert top1 == report["rows"][1]["top1"]
    assert len(list((tmp_path / "abl" / "feature_cache").glob("*/*.safetensors"))) == 8  # built once, shared


# ----------------------------------------------------------------------------- the paper's CMA


def test_relative_depth_pairing():
    from internvideo.models.fusion import relative_depth_layers

    assert relative_depth_layers(12, 3) == (7, 9, 11)  # depths 2/3, 5/6, 1 of ViT-B
    assert relative_depth_layers(24, 3) == (15, 19, 23)  # the same relative depths of ViT-L
    assert relative_depth_layers(32, 1) == (31,)
    model, _, _ = make(num_layers=3)
    assert model.mae_layers == relative_depth_layers(2, 2) and model.mm_layers == relative_depth_layers(4, 2) == (2, 3)
    explicit, _, _ = make(num_layers=3, mae_layers=(0, -1), mm_layers=(1, 3))
    assert explicit.mae_layers == (0, 1) and explicit.mm_layers == (1, 3)
    with pytest.raises(ValueError, match="mm_layers: 2 intermediate CMA modules"):
        make(num_layers=3, mm_layers=(1,))


def test_intermediate_tokens_equal_a_truncated_forward():
    """Tokens returned from inside one forward pass equal the output of a model cut after that block."""
    mae, mm = backbones()
    v, mv = clip()
    with torch.no_grad():
        last, layers = mae.forward_intermediates(v, [0, -1])
        torch.testing.assert_close(last, mae.forward_features(v))
        for i in (0, 1):
            cut = internvideo.create_model("videomae_tiny", num_classes=0, depth=i + 1).eval()
            cut.load_state_dict(mae.state_dict(), strict=False)
            torch.testing.assert_close(layers[i], cut.forward_features(v))  # no final norm (mean pooling)
        feats = mm.visual.forward_features(mv, return_layers=[1, 2])
        torch.testing.assert_close(feats.tokens, mm.visual.forward_features(mv).tokens)
        for i in (1, 2):
            cut = internvideo.create_model("internvideo_mm_tiny", vision_layers=i + 1, num_global_layers=0).eval()
            cut.load_state_dict(mm.state_dict(), strict=False)
            torch.testing.assert_close(feats.layers[i], cut.visual.forward_features(mv).tokens)
    with pytest.raises(ValueError, match="out of range"):
        mm.visual.forward_features(mv, return_layers=[4])


def test_paper_class_token_recomputed_from_stored_layers_is_the_encoders():
    model, mae, mm = make(num_layers=2)
    v, mv = clip()
    with torch.no_grad():
        feats = model.backbone_features(v, mv)
        torch.testing.assert_close(model.mm_class_token(feats), mm.visual.video_token(mm.visual.forward_features(mv)))


def test_paper_trainable_parameters_follow_the_papers_rule_and_frozen_stay_bit_identical():
    """Only new modules, the head and the multimodal encoder's video query train; nothing else of either backbone."""
    model, mae, mm = make(num_layers=3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    new = {n for n, p in model.named_parameters() if not n.startswith(("mae.", "mm."))}
    assert trainable == new | {"mm.visual.video_query"}
    assert {"head.weight", "cma_last.cross_attn.qkv.weight", "cma_blocks.1.mlp.fc1.weight"} <= trainable
    groups = param_groups(model, weight_decay=1e-3, layer_decay=None)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for n, p in model.named_parameters() if n in trainable}
    frozen_before = {k: t.clone() for k, t in model.state_dict().items()
                     if k.startswith(("mae.", "mm.")) and k != "mm.visual.video_query"}
    query_before = mm.visual.video_query.detach().clone()
    cma_before = model.cma_blocks[0].cross_attn.qkv.weight.detach().clone()
    opt = torch.optim.AdamW(groups, lr=1e-2)
    model.train()
    assert not mae.training and not mm.training
    v, mv = clip()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(v, mv), torch.tensor([1, 3]))
        opt.zero_grad()
        loss.backward()
        assert mm.visual.video_query.grad is not None and mm.visual.video_query.grad.abs().sum() > 0
        assert all(p.grad is None for n, p in model.named_parameters() if n.startswith(("mae.", "mm."))
                   and n != "mm.visual.video_query")
        opt.step()
    after = model.state_dict()
    changed = [k for k in frozen_before if not torch.equal(frozen_before[k], after[k])]
    assert changed == []  # bit-identical, buffers (BatchNorm statistics) included
    assert not torch.equal(mm.visual.video_query, query_before)
    assert not torch.equal(model.cma_blocks[0].cross_attn.qkv.weight, cma_before)


def test_paper_query_can_stay_frozen():
    model, _, _ = make(num_layers=2, train_mm_query=False)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(("mae.", "mm.")))


def test_paper_last_cma_reads_the_masked_encoder():
    """The class token's update depends on the masked encoder's tokens (the last CMA's keys/values)."""
    model, _, _ = make(num_layers=1)
    model.eval()
    v, mv = clip()
    with torch.no_grad():
        feats = model.backbone_features(v, mv)
        base = model.embed_features(feats)
        noise = torch.randn(feats["mae_tokens"].shape, generator=torch.Generator().manual_seed(5))
        other = dict(feats, mae_tokens=feats["mae_tokens"] + noise)  # (a constant shift would vanish in LayerNorm)
        assert not torch.allclose(model.embed_features(other), base)
        # ... and on the multimodal intermediate tokens through the intermediate CMAs (K = 3)
    model3, _, _ = make(num_layers=3)
    model3.eval()
    with torch.no_grad():
        feats = model3.backbone_features(v, mv)
        base = model3.embed_features(feats)
        key = f"mm_layer{model3.mm_layers[0]}"
        noise = torch.randn(feats[key].shape, generator=torch.Generator().manual_seed(6))
        assert not torch.allclose(model3.embed_features(dict(feats, **{key: feats[key] + noise})), base)


def test_feature_key_changes_with_any_backbone_weight_and_with_the_layers():
    model, mae, mm = make(num_layers=2)
    key = model.feature_key()
    assert make(num_layers=2)[0].feature_key() == key  # same backbones, same layers: same key
    assert make(num_layers=3)[0].feature_key() != key  # other layers
    with torch.no_grad():
        mae.blocks[1].mlp.fc2.bias[0] += 1e-6
    assert model.feature_key() != key


def test_feature_cache_is_keyed_by_backbone(tmp_path):
    """A changed backbone recomputes the cache (it used to silently reuse the old backbone's features)."""
    world = make_train_world(tmp_path / "w", n=8)
    mae, mm = backbones()
    internvideo.save_model(mae, tmp_path / "mae")
    internvideo.save_model(mm, tmp_path / "mm")
    cache = tmp_path / "cache"

    def run(out):
        args = tiny(world, tmp_path / out, "fusion", "unused", "run.epochs=1", f"model.mae_backbone={tmp_path / 'mae'}",
                    f"model.mm_backbone={tmp_path / 'mm'}", "model.overrides={width: 32, num_heads: 4, num_layers: 2}",
                    f"fusion.feature_cache={cache}")
        return train(load_config(None, args))

    run("a")
    first = sorted(p.name for p in cache.iterdir())
    assert len(first) == 1 and len(list((cache / first[0]).glob("*.safetensors"))) == 8
    stamp = {p: p.stat().st_mtime_ns for p in (cache / first[0]).iterdir()}
    run("b")  # same backbones: reused, untouched
    assert sorted(p.name for p in cache.iterdir()) == first
    assert {p: p.stat().st_mtime_ns for p in (cache / first[0]).iterdir()} == stamp
    with torch.no_grad():
        mae.blocks[0].attn.proj.weight.mul_(1.5)
    internvideo.save_model(mae, tmp_path / "mae")  # same path, other weights
    run("c")
    dirs = sorted(p.name for p in cache.iterdir())
    assert len(dirs) == 2
    new = (cache / next(d for d in dirs if d not in first))
    from safetensors.torch import load_file
    old_item = load_file(str(cache / first[0] / "0000000.safetensors"))
    new_item = load_file(str(new / "0000000.safetensors"))
    assert not torch.equal(old_item["mae_tokens"], new_item["mae_tokens"])
    torch.testing.assert_close(old_item["mm_pooled"], new_item["mm_pooled"])  # the unchanged backbone agrees


def test_paper_fusion_on_a_multimodal_classifier_backbone():
    mae, _ = backbones()
    mm = internvideo.create_model("internvideo_mm_tiny_cls", num_classes=3).eval()
    model = CMAFusion(FusionConfig(num_classes=5, width=32, num_layers=2, num_heads=4), mae, mm)
    v, mv = clip()
    assert model(v, mv).shape == (2, 5)
    late = CMAFusion(FusionConfig(num_classes=5, num_layers=0), mae, mm)
    assert late.embed(v, mv).shape == (2, 64 + 64)  # the classifier's pre-logits are vision_width wide
