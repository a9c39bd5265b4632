"""Checkpoints: our own format refused without its config, heads never guessed, corrupt and hostile files."""
from __future__ import annotations

import pytest
import torch


def test_our_weights_without_config_are_refused(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError, save_model

    save_model(internvideo.create_model("videomae_tiny"), tmp_path / "ckpt")
    (tmp_path / "ckpt/config.json").unlink()
    # Before: detected as an official VideoMAE (1 head, 224 px, 16 frames) and evaluated without a word.
    with pytest.raises(CheckpointError, match="model.safetensors without its config.json"):
        internvideo.load_model(tmp_path / "ckpt")


def test_head_count_is_never_guessed_from_shapes(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError

    model = internvideo.create_model("videomae_tiny")  # width 64: no official size
    torch.save(model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="number of attention heads cannot be read.*num_heads="):
        internvideo.load_model(tmp_path / "w.pth")
    loaded = internvideo.load_model(tmp_path / "w.pth", num_heads=4, img_size=32, num_frames=4)
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(video), model.eval()(video))


def test_pretrained_of_another_family_is_an_error(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError, save_model

    save_model(internvideo.create_model("internvideo_mm_tiny"), tmp_path / "mm")
    # Before: "pretrained" with 0 of 32 tensors matched, a warning, and training from random weights.
    with pytest.raises(CheckpointError, match="fills only 0 of the 32 tensors.*allow_partial"):
        internvideo.create_model("videomae_tiny", pretrained=tmp_path / "mm")
    internvideo.create_model("videomae_tiny", pretrained=tmp_path / "mm", allow_partial=True)
    save_model(internvideo.create_model("videomae_tiny_pretrain"), tmp_path / "mae")
    internvideo.create_model("videomae_tiny", pretrained=tmp_path / "mae")  # the usual pretrain -> fine-tune


def test_truncated_safetensors_names_the_file(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError, save_model

    save_model(internvideo.create_model("videomae_tiny"), tmp_path / "ckpt")
    weights = tmp_path / "ckpt/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"ckpt/model\.safetensors: not a readable safetensors file"):
        internvideo.load_model(tmp_path / "ckpt")


class _Hostile:
    def __reduce__(self):
        import os

        return (os.system, ("echo hostile > /dev/null",))


def test_hostile_pickle_refusal_says_it_holds_code(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError

    torch.save({"model": {"w": _Hostile()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as e:
        internvideo.load_model(tmp_path / "evil.pth")
    assert "contains pickled code" in str(e.value) and "nothing in it ran" in str(e.value)
    assert "allow_torchscript" not in str(e.value)  # before: wrong advice for a pickle
