"""ONNX export: onnxruntime agrees with torch (<= 1e-4 relative) for the classifier and both multimodal encoders."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import internvideo
from internvideo.checkpoints import CheckpointError
from internvideo.checkpoints.onnx import export_onnx, relative_difference
from internvideo.cli import main
from internvideo.extras import MissingExtra
from internvideo.tokenizer import get_tokenizer

from test_videomae import randomise


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def test_classifier_onnx_matches_torch_at_any_batch(tmp_path, capsys):
    model = randomise(internvideo.create_model("videomae_tiny"))
    internvideo.save_model(model, tmp_path / "model")
    assert main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "cls.onnx")]) == 0
    assert "max relative difference" in capsys.readouterr().out
    for batch in (1, 3):
        x = torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            assert relative_difference(_run(tmp_path / "cls.onnx", x), model(x)) <= 1e-4


@pytest.mark.slow  # two torch.export captures: about a minute on 2 cores
def test_multimodal_encoders_onnx_match_torch(tmp_path):
    model = randomise(internvideo.create_model("internvideo_mm_tiny"))
    report = export_onnx(model, tmp_path / "mm.onnx")
    assert sorted(p.name for p in report) == ["mm.text.onnx", "mm.video.onnx"]
    ids = get_tokenizer("clip", context_length=model.config.context_length)(["a person waving", "jumping", "x"])
    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert relative_difference(_run(tmp_path / "mm.text.onnx", ids), model.encode_text(ids)) <= 1e-4
        assert relative_difference(_run(tmp_path / "mm.video.onnx", video), model.encode_video(video)) <= 1e-4


def test_pretraining_model_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="neither"):
        export_onnx(internvideo.create_model("videomae_tiny_pretrain"), tmp_path / "x.onnx")


def test_missing_export_extra_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # importing it now raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'internvideo\[export\]'"):
        export_onnx(internvideo.create_model("videomae_tiny"), tmp_path / "x.onnx")
    assert main(["export", "onnx", "videomae_tiny", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "internvideo: error: ONNX export needs onnxscript, which is not installed: pip install " \
                      "'internvideo[export]'"


@pytest.mark.slow  # one torch.export capture and a few timed calls
def test_benchmark_script_records_both_runtimes(tmp_path):
    import json
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a top-level folder
    from benchmarks import bench_onnx

    assert bench_onnx.main(["--quick", "--reps", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "onnx-quick.json").read_text())
    row = results["cases"]["videomae_tiny"]
    assert set(row["median_s"]) == {"torch", "onnxruntime"} and row["onnx_vs_torch_max_rel_diff"] <= 1e-4
    assert results["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
