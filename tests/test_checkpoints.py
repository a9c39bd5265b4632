"""Checkpoints: our own format refused without its config, heads never guessed, corrupt and hostile files."""
from __future__ import annotations

import json

import pytest
import torch

import internvideo


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


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    mae = internvideo.save_model(internvideo.create_model("videomae_tiny", num_classes=3, img_size=32, num_frames=4),
                                 base / "mae")
    mm = internvideo.save_model(internvideo.create_model("internvideo_mm_tiny"), base / "mm")
    return {"mae": mae, "mm": mm}


def _edited(src, dest, edit):
    """A copy of checkpoint ``src`` whose config.json went through ``edit(meta)`` (or is ``edit`` when bytes)."""
    import shutil

    shutil.copytree(src, dest)
    cfg = dest / "config.json"
    if isinstance(edit, bytes):
        cfg.write_bytes(edit)
    else:
        meta = json.loads(cfg.read_text())
        edit(meta)
        cfg.write_text(json.dumps(meta))
    return dest


def _load_error(path) -> str:
    from internvideo.checkpoints import CheckpointError

    with pytest.raises(CheckpointError) as e:
        internvideo.load_model(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("which, fields", [("mae", ["img_size"]), ("mae", ["num_frames"]),
                                           ("mae", ["img_size", "num_frames"]), ("mae", ["sampling", "mean"]),
                                           ("mm", ["vision_layers"]), ("mm", ["std"])])
def test_a_missing_config_field_is_an_error_naming_it(tiny_dirs, tmp_path, which, fields):
    """Before: img_size/num_frames fell back to 224 px / 16 frames and the demo classifier scored 0 %."""
    path = _edited(tiny_dirs[which], tmp_path / "ckpt", lambda m: [m["config"].pop(f) for f in fields])
    message = _load_error(path)
    assert "missing" in message and all(repr(f) in message for f in fields)


def test_naming_only_fields_may_be_missing(tiny_dirs, tmp_path):
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt", lambda m: m["config"].pop("class_names"))
    assert internvideo.load_model(path).config.img_size == 32


@pytest.mark.parametrize("field", ["num_frame", "imgsize", "Img_size"])
def test_an_unknown_config_field_is_an_error(tiny_dirs, tmp_path, field):
    """Before: a misspelt field only warned, and its default was used."""
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt", lambda m: m["config"].update({field: 4}))
    assert f"unknown VideoMAEConfig field(s) {field!r}" in _load_error(path)


def test_a_known_rename_is_read_under_its_new_name(tiny_dirs, tmp_path):
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt",
                   lambda m: m["config"].update(all_frames=m["config"].pop("num_frames")))
    assert internvideo.load_model(path).config.num_frames == 4
    both = _edited(tiny_dirs["mae"], tmp_path / "both", lambda m: m["config"].update(all_frames=4))
    assert "both 'all_frames' and 'num_frames'" in _load_error(both)


@pytest.mark.parametrize("field, value, needle", [
    ("num_frames", "4", "expected an integer, got a string"),
    ("num_frames", 4.0, "expected an integer, got a number"),
    ("num_frames", True, "expected an integer, got true/false"),
    ("mean", "abc", "expected a list"),
    ("mean", [0.5, "x", 0.5], "field 'mean'[1]: expected a number"),
    ("mean", [0.5, 0.5], "expected 3 values"),
    ("sampling", "random", "'random' is not one of"),
    ("qkv_bias", "yes", "expected true/false"),
    ("mlp_ratio", float("nan"), "finite"),
])
def test_wrong_config_types_and_enum_values_are_one_line_errors(tiny_dirs, tmp_path, field, value, needle):
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt", lambda m: m["config"].update({field: value}))
    message = _load_error(path)
    assert needle in message and repr(field) in message


@pytest.mark.parametrize("content, needle", [
    (b"[1, 2, 3]", "expected a JSON object at the top level, got list"),
    (b'"videomae"', "expected a JSON object at the top level, got str"),
    (b"null", "expected a JSON object at the top level"),
    (b'{"format": "internvideo", "class": "VideoMAEClassifier", "config": [1]}', "expected a JSON object of VideoMAEConfig"),
    (b'{"format": "internvideo", "class": "VideoMAEClassifier"}', "no 'config'"),
    (b'{"format": "internvideo", ', "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not valid UTF-8"),
])
def test_a_config_json_that_is_not_a_config_object_is_named(tiny_dirs, tmp_path, content, needle):
    assert needle in _load_error(_edited(tiny_dirs["mae"], tmp_path / "ckpt", content))


def test_config_errors_print_one_line_through_the_cli(tiny_dirs, tmp_path, capsys):
    from internvideo.cli import main

    path = _edited(tiny_dirs["mm"], tmp_path / "ckpt", lambda m: m["config"].pop("img_size"))
    code = main(["index", str(tmp_path), "--model", str(path), "--out", str(tmp_path / "idx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("internvideo: error:")
    assert "missing InternVideoMMConfig field(s) 'img_size'" in err
