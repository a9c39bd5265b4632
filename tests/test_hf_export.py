"""Hugging Face round trip: our VideoMAE -> transformers directory (same outputs) -> ours (bit-exact); hub ids."""
from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import internvideo
from internvideo.checkpoints import CheckpointError
from internvideo.checkpoints.export import export_hf
from internvideo.checkpoints.hub import HubError, parse_hub_id
from internvideo.errors import UserError
from internvideo.models.videomae import tube_mask

from test_videomae import randomise

REL = 1e-5


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    rel = ((ours - ref).abs().max() / ref.abs().max()).item()
    assert rel <= REL, rel


def _video(model, batch=2, seed=1):
    c = model.config
    return torch.randn(batch, 3, c.num_frames, c.img_size, c.img_size, generator=torch.Generator().manual_seed(seed))


def _same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert type(a) is type(b) and a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("kw", [dict(), dict(use_mean_pooling=False, qkv_bias=False, num_frames=2, tubelet_size=1)])
def test_classifier_exports_to_transformers_and_back(tmp_path, kw):
    names = tuple(f"class {i}" for i in range(10))
    model = randomise(internvideo.create_model("videomae_tiny", head_norm_eps=1e-5, class_names=names,
                                               mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), frame_interval=2, **kw))
    export_hf(model, tmp_path / "hf")
    ref = transformers.AutoModelForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(ref).__name__ == "VideoMAEForVideoClassification"
    assert ref.config.id2label[3] == "class 3" and ref.config.label2id["class 9"] == 9
    v = _video(model)
    with torch.no_grad():
        _close(model(v), ref(v.permute(0, 2, 1, 3, 4)).logits)
    pre = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert list(pre.image_mean) == [0.5] * 3 and list(pre.image_std) == [0.25] * 3
    assert pre.crop_size["height"] == model.config.img_size
    back = internvideo.load_model(tmp_path / "hf")
    _same_model(model, back.eval())
    with torch.no_grad():
        assert torch.equal(model(v), back(v))
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "VideoMAEForVideoClassification" in card and "class 3" in card and "frame_interval | 2" in card


def test_pretraining_model_exports_to_transformers_and_back(tmp_path):
    model = randomise(internvideo.create_model("videomae_tiny_pretrain", head_norm_eps=1e-5))
    export_hf(model, tmp_path / "hf")
    ref = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "hf").eval()
    v = _video(model)
    mask = tube_mask(2, model.config.grid, 0.75, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = model(v, mask), ref(v.permute(0, 2, 1, 3, 4), bool_masked_pos=mask)
    _close(ours["pred"], theirs.logits)
    _close(ours["loss"], theirs.loss)
    back = internvideo.load_model(tmp_path / "hf").eval()
    _same_model(model, back)
    with torch.no_grad():
        assert torch.equal(back(v, mask)["loss"], ours["loss"])


def test_export_states_where_transformers_differs(tmp_path, caplog):
    # The official head LayerNorm eps (1e-6) has no place in HF's VideoMAE (1e-5): said, and restored on import.
    model = randomise(internvideo.create_model("videomae_tiny"))
    export_hf(model, tmp_path / "hf")
    assert "head_norm_eps=1e-06" in caplog.text
    back = internvideo.load_model(tmp_path / "hf").eval()
    _same_model(model, back)


def test_export_refuses_what_transformers_cannot_express(tmp_path):
    model = internvideo.create_model("videomae_tiny", init_values=0.1)
    with pytest.raises(CheckpointError, match="init_values"):
        export_hf(model, tmp_path / "hf")


def test_multimodal_export_is_ours_with_a_model_card(tmp_path):
    model = randomise(internvideo.create_model("internvideo_mm_tiny"))
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "best"
    internvideo.save_model(model, ckpt)
    (ckpt / "best.json").write_text(json.dumps({"step": 40, "metric": "top1", "value": 87.5}))
    (run / "config.yaml").write_text("data:\n  train: world/train.txt\n")
    (run / "summary.json").write_text(json.dumps({"steps": 40, "best": 87.5, "metric": "top1"}))
    from internvideo.cli import main
    assert main(["export", "hf", str(ckpt), str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "best top1: 87.5 (step 40)" in card and "world/train.txt" in card and "library_name: internvideo" in card
    _same_model(model, internvideo.load_model(tmp_path / "out"))


# ----------------------------------------------------------------------------- hub ids


def _cache(tmp_path, source, repo="org/tiny-videomae", commit="0" * 40, ref="main"):
    """A Hugging Face cache directory as snapshot_download leaves it, holding ``source``'s files."""
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in source.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (folder / "refs").mkdir()
    (folder / "refs" / ref).write_text(commit)
    return tmp_path / "hub"


def test_hub_id_loads_from_the_cache_offline(tmp_path, monkeypatch):
    model = randomise(internvideo.create_model("videomae_tiny", head_norm_eps=1e-5))
    export_hf(model, tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_CACHE", str(_cache(tmp_path, tmp_path / "hf")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _same_model(model, internvideo.load_model("hf:org/tiny-videomae").eval())
    _same_model(model, internvideo.load_model("hf:org/tiny-videomae@main").eval())
    # every --model option takes one
    from internvideo.tasks.common import load_model_arg
    _same_model(model, load_model_arg("hf:org/tiny-videomae").eval())


def test_missing_hub_id_offline_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="hf download org/missing --revision v2") as e:
        internvideo.load_model("hf:org/missing@v2")
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    from internvideo.cli import main
    assert main(["predict", "x.mp4", "--model", "hf:org/missing"]) == 2


@pytest.mark.parametrize("bad", ["hf:noslash", "hf:org/name@", "hf:/name"])
def test_malformed_hub_ids(bad):
    with pytest.raises(HubError, match="hf:ORG/NAME"):
        parse_hub_id(bad)


def test_push_exports_and_uploads(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw))

        def upload_folder(self, *, repo_id, folder_path, commit_message):
            from pathlib import Path
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = randomise(internvideo.create_model("videomae_tiny", head_norm_eps=1e-5))
    internvideo.save_model(model, tmp_path / "model")
    from internvideo.cli import main
    assert main(["push", str(tmp_path / "model"), "org/tiny", "--private"]) == 0
    assert calls[0] == ("create", "org/tiny", {"private": True, "exist_ok": True})
    assert calls[1][:3] == ("upload", "org/tiny", ["README.md", "config.json", "model.safetensors",
                                                   "preprocessor_config.json"])
    assert capsys.readouterr().out.strip() == "https://huggingface.co/org/tiny/commit/abc"
    assert main(["push", str(tmp_path / "model"), "not a repo"]) == 2
