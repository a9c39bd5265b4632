"""The multimodal video encoder as a classifier (InternVideo's supervised branch, UniFormerV2's head)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import internvideo
from internvideo.models import NAMED_CONFIGS
from internvideo.models.video_clip import InternVideoMMClassifier
from internvideo.train import train
from internvideo.train.config import load_config

sys.path.insert(0, str(Path(__file__).parent))
from test_train import tiny  # noqa: E402
from trainworld import make_train_world  # noqa: E402


def _video(seed=1):
    return torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_released_configs_have_no_local_mhra_and_the_option_remains():
    for name in ("internvideo_mm_l14", "internvideo_mm_b16", "internvideo_mm_l14_cls", "internvideo_mm_b16_cls"):
        assert NAMED_CONFIGS[name][1].resolved_local_blocks == (), name  # UniFormerV2 "only global" (NO_LMHRA)
    assert NAMED_CONFIGS["internvideo_mm_l14_lmhra"][1].resolved_local_blocks == tuple(range(24))
    l14 = NAMED_CONFIGS["internvideo_mm_l14_cls"][1]
    assert (l14.num_classes, l14.head_dropout, l14.num_frames, l14.img_size, l14.num_global_layers) == \
        (710, 0.5, 8, 224, 4)


def test_head_is_video_token_then_norm_dropout_linear():
    torch.manual_seed(0)
    model = internvideo.create_model("internvideo_mm_tiny_cls", num_classes=5).eval()
    v = _video()
    with torch.no_grad():
        feats = model.visual.forward_features(v)
        # the video token by hand: (1 - sigmoid(balance)) * query + sigmoid(balance) * mean over frames of CLS
        w = torch.sigmoid(model.visual.balance)
        token = (1 - w) * feats.query + w * feats.tokens[:, :, 0].mean(1)
        expected = model.head(torch.nn.functional.layer_norm(token, (64,), model.fc_norm.weight, model.fc_norm.bias))
        torch.testing.assert_close(model(v), expected)
        tokens = model.forward_features(v)
        assert tokens.shape == (2, 1 + 4 * (1 + 16), 64)
        torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), model.fc_norm(token))
    model.train()
    torch.manual_seed(1)
    a, b = model(v), model(v)
    assert not torch.allclose(a, b)  # dropout 0.5 before the head in training


def test_starts_from_a_contrastive_checkpoint(tmp_path):
    torch.manual_seed(0)
    mm = internvideo.create_model("internvideo_mm_tiny").eval()
    internvideo.save_model(mm, tmp_path / "mm")
    clf = internvideo.create_model("internvideo_mm_tiny_cls", pretrained=tmp_path / "mm", num_classes=3).eval()
    v = _video()
    with torch.no_grad():
        torch.testing.assert_close(clf.forward_features(v)[:, 0], mm.visual.video_token(mm.visual.forward_features(v)))
    internvideo.save_model(clf, tmp_path / "clf")
    again = internvideo.load_model(tmp_path / "clf")
    assert isinstance(again, InternVideoMMClassifier)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(v), clf(v))


def test_classify_objective_recognition_and_extract(tmp_path):
    """The `classify` objective trains it; eval recognition and extract take it unchanged."""
    from internvideo.tasks import evaluate_recognition, extract_features

    world = make_train_world(tmp_path / "w", n=8)
    torch.manual_seed(0)
    internvideo.save_model(internvideo.create_model("internvideo_mm_tiny"), tmp_path / "mm")
    args = tiny(world, tmp_path / "run", "classify", "internvideo_mm_tiny_cls", "run.epochs=6", "optim.lr=3e-3",
                f"model.pretrained={tmp_path / 'mm'}", "model.overrides.head_dropout=0.0",
                "model.overrides.sampling=segment", "data.scale=[0.5, 1.0]")
    result = train(load_config(None, args))
    losses = [r["loss"] for r in result.history if r["kind"] == "train"]
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    model = internvideo.load_model(result.checkpoint)
    assert isinstance(model, InternVideoMMClassifier) and model.config.class_names == ("moving left", "moving right")
    quiet = dict(progress=False, batch_size=4)
    res = evaluate_recognition(model, world / "train.txt", **quiet)
    assert res["num_samples"] == 8 and 0 <= res["top1"] <= 100
    summary = extract_features(model, world / "train.txt", tmp_path / "feats", **quiet)
    assert summary["extracted"] == 8
    assert np.load(tmp_path / "feats" / "clip000.npy").shape == (64,)  # the head's pre-logits
