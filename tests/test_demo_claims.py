"""The demo's claim rows: verdicts from the measured numbers, and the reconstruction measure behind claim (b)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from internvideo.data import write_video
from internvideo.demo.reconstruction import reconstruction_errors
from internvideo.demo.report import claims, claims_markdown
from internvideo.factory import create_model
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)


def _results(mae_init=40.0, scratch=35.0, fused=60.0, late=58.0, mm=50.0, zeroshot=25.0, t2v=20.0, v2t=5.0,
             uncertainty=65.0, msp=70.0):
    top1 = lambda v, **kw: {"top1": v, "chance": 10.0, **kw}  # noqa: E731
    return {"recognition_videomae": top1(scratch, init="from scratch"),
            "recognition_videomae_compare": top1(mae_init, init="from the MAE weights"),
            "recognition_multimodal": top1(mm), "recognition_fused": top1(fused),
            "recognition_late_fusion": top1(late), "zeroshot": top1(zeroshot),
            "retrieval": {"t2v": {"R@1": t2v}, "v2t": {"R@1": v2t}, "chance_R@1": 0.33},
            "reconstruction": {"mse_hidden": 0.01, "baseline_mse_hidden": 0.02, "mse_content": 0.03,
                               "baseline_mse_content": 0.04},
            "openset": {"num_known_classes": 8, "scores": {
                "uncertainty": {"auroc": uncertainty, "closed_set_accuracy": 90.0},
                "msp": {"auroc": msp, "closed_set_accuracy": 90.0}}}}


def test_verdicts_follow_the_numbers():
    shown = {c["claim"][:3]: c["shown"] for c in claims(_results())}
    # the bounds: 0.03 / 0.04 = 75 % for (b), AUROC 65 % for (e)
    assert shown == {"(a)": True, "(b)": True, "(c)": True, "(d)": True, "(e)": True}
    failing = _results(mae_init=30.0, late=61.0, zeroshot=19.9, v2t=3.2, msp=64.9)
    failing["reconstruction"]["mse_content"] = 0.0301
    assert not any(c["shown"] for c in claims(failing))
    # (c) also fails when a single stream is as good as the fusion.
    assert not claims(_results(mm=60.0))[2]["shown"]
    text = "\n".join(claims_markdown(claims(failing)))
    assert text.count("**not shown**") == 5 and "from the MAE 30.0 %, from scratch 35.0 %" in text
    # (e) needs both scores: a good MSP does not make up for a chance-level EDL uncertainty.
    assert not claims(_results(uncertainty=50.0, msp=90.0))[4]["shown"]
    assert "EDL uncertainty 50.0 %, max softmax 90.0 %" in claims(_results(uncertainty=50.0, msp=90.0))[4]["evidence"]


def test_claims_without_their_numbers_are_left_out():
    results = _results()
    del results["recognition_videomae_compare"], results["reconstruction"], results["openset"]
    assert [c["claim"][:3] for c in claims(results)] == ["(c)", "(d)"]


def test_flat_prediction_is_exact_on_flat_clips(tmp_path):
    """On single-colour clips every hidden patch is its frame's visible colour: the baseline's error is ~0,
    and a random-weight MAE's is not (so the comparison can tell a model from the flat guess)."""
    lines = []
    for i, rgb in enumerate([(200, 30, 30), (30, 200, 60), (40, 40, 220)]):
        frames = np.broadcast_to(np.array(rgb, np.uint8), (16, 32, 32, 3)).copy()
        write_video(tmp_path / f"v{i}.mp4", frames, fps=8)
        lines.append(f"v{i}.mp4 {i}")
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    model = create_model("videomae_tiny_pretrain", num_frames=8, frame_interval=2, img_size=32, mask_ratio=0.75,
                         norm_pix_loss=False)
    r = reconstruction_errors(model, tmp_path / "test.txt", batch_size=2)
    assert r["clips"] == 3 and r["hidden_patches"] == 3 * 4 * 12  # 4 time slices of a 4 x 4 grid, 12 hidden
    assert r["content_patches"] >= r["hidden_patches"] // 4
    assert r["baseline_mse_hidden"] < 1e-4 and r["mse_hidden"] > 100 * r["baseline_mse_hidden"]


def test_norm_pix_models_are_refused():
    model = create_model("videomae_tiny_pretrain", num_frames=8, frame_interval=2, img_size=32, norm_pix_loss=True)
    with pytest.raises(ValueError, match="norm_pix_loss"):
        reconstruction_errors(model, "unused.txt")
