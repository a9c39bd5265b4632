"""internvideo predict: classifier top-k, zero-shot through eval zeroshot's protocol, timelines, unreadable videos."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import internvideo
from internvideo.cli import main
from internvideo.errors import UsageError
from internvideo.data import probe, read_classes, read_classification_list
from internvideo.tasks import common, zeroshot
from internvideo.tasks.predict import predict_videos


@pytest.fixture(scope="module")
def world(data_world):
    return data_world.root


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, world):
    torch.manual_seed(0)
    names = tuple(read_classes(world / "classes.txt"))
    model = internvideo.create_model("videomae_tiny", num_frames=4, class_names=names).eval()
    path = tmp_path_factory.mktemp("cls") / "model"
    internvideo.save_model(model, path)
    return model, path


def _videos(world, n=3):
    return [str(world / s.path) for s in read_classification_list(world / "val.txt")[:n]]


def test_classifier_top_k_matches_its_logits(world, classifier, capsys):
    model, path = classifier
    videos = _videos(world)
    assert main(["predict", *videos, "--model", str(path), "--top-k", "3", "--json", "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["video"] for r in rows] == videos
    # the reference: the model's own eval clip of each video, softmaxed
    view = common.eval_view(model)
    for r, v in zip(rows, videos):
        from internvideo.data import read_frames
        frames = read_frames(v, view.sampler(probe(v).num_frames))
        with torch.no_grad():
            p = model(view.transform(frames, None)[None]).softmax(-1)[0]
        top = p.topk(3)
        assert [t["label"] for t in r["top"]] == [model.config.class_names[i] for i in top.indices]
        np.testing.assert_allclose([t["percent"] for t in r["top"]], 100 * top.values.numpy(), rtol=1e-4)


def test_zero_shot_uses_the_eval_zeroshot_protocol(world, tmp_path):
    torch.manual_seed(1)
    model = internvideo.create_model("internvideo_mm_tiny").eval()
    names = read_classes(world / "classes.txt")
    samples = read_classification_list(world / "val.txt")[:4]
    logits, _, _ = zeroshot.zeroshot_scores(model, samples, names, root=world, progress=False)
    result = predict_videos(model, [str(world / s.path) for s in samples], labels=names, top_k=len(names),
                            progress=False)
    for row, (video, [pred]) in zip(logits, result.videos.items()):
        expected = torch.from_numpy(row[0]).softmax(-1)
        got = dict(pred.top)
        np.testing.assert_allclose([got[n] for n in names], 100 * expected.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(UsageError, match="--labels"):
        predict_videos(model, [str(world / samples[0].path)], progress=False)


def test_timeline_and_unreadable_videos(world, classifier, tmp_path, capsys):
    _, path = classifier
    long = world / "localization" / sorted(p.name for p in (world / "localization").glob("*.mp4"))[0]
    info = probe(long)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    args = ["predict", str(long), str(broken), str(tmp_path / "missing.mp4"), "--model", str(path),
            "--every", "1", "--json", "--no-progress"]
    assert main(args) == 2  # two videos could not be read
    out, err = capsys.readouterr()
    [row] = [json.loads(line) for line in out.splitlines()]
    starts = [w["start"] for w in row["timeline"]]
    assert starts[0] == 0 and len(starts) == int(info.num_frames // round(info.fps))
    assert all(b["start"] == pytest.approx(a["end"]) for a, b in zip(row["timeline"], row["timeline"][1:]))
    assert all(w["label"] == w["top"][0]["label"] for w in row["timeline"])
    assert "broken.mp4" in err and "missing.mp4: file not found" in err and "2 of 3 videos" in err
    # the plain-text timeline: one line per window
    assert main(["predict", str(long), "--model", str(path), "--every", "1", "--no-progress"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(starts)


def test_predict_refuses_a_model_without_classes(world, tmp_path):
    model = internvideo.create_model("videomae_tiny_pretrain")
    with pytest.raises(common.WrongModelError):
        predict_videos(model, _videos(world, 1), progress=False)
    cls = internvideo.create_model("videomae_tiny")
    with pytest.raises(UsageError, match="2 names; the classifier has 10"):
        predict_videos(cls, _videos(world, 1), labels=["a", "b"], progress=False)
