"""The ``localize`` objective in the one training loop, and a model checkpoint round trip."""
from __future__ import annotations

import json

import pytest
import torch

import internvideo
from internvideo.train import train
from internvideo.train.config import load_config
from internvideo.errors import UsageError
from test_localization_model import separable_world


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: more threads only contend on a shared machine
    yield
    torch.set_num_threads(threads)


def test_localize_objective_trains_evaluates_and_saves(tmp_path, one_thread):
    gt, feats = separable_world(tmp_path / "world")
    cfg = load_config(None, [
        "objective=localize", "model.name=actionformer_small",
        "model.overrides={embed_dim: 16, head_dim: 16, num_heads: 2, window: 5}",
        f"data.train={gt}", f"localize.features={feats}", "localize.feat_stride=1", "localize.window_frames=1",
        "localize.fps=1", "localize.tiou=[0.3, 0.4, 0.5, 0.6, 0.7]", "data.num_workers=0",
        "optim.lr=2e-3", "optim.scale_lr=false", "optim.clip_grad=1.0", "run.batch_size=4", "run.epochs=10",
        f"run.out_dir={tmp_path / 'run'}", "run.progress=false", "run.eval_every=1000", "run.save_every=1000"])
    result = train(cfg)
    evals = [r for r in result.history if r["kind"] == "eval"]
    assert evals and evals[-1]["average_mAP"] > 50 and evals[-1]["average_mAP"] > 5 * evals[-1]["chance_average_mAP"]
    model = result.model
    assert model.config.class_names == ("c0", "c1", "c2") and model.config.input_dim == 16
    internvideo.save_model(model, tmp_path / "saved")
    loaded = internvideo.load_model(tmp_path / "saved")
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metric"] == "average_mAP"
    # the CLI runs the saved model on the features, writes an ActivityNet result file, scores it, draws a timeline
    from internvideo.cli import main
    from internvideo.tasks.localization import evaluate_detections
    pred, fig, out = tmp_path / "results.json", tmp_path / "timeline.png", tmp_path / "metrics.json"
    assert main(["eval", "localization", "--model", str(tmp_path / "saved"), "--features", str(feats), "--gt",
                 str(gt), "--subset", "validation", "--feat-stride", "1", "--window-frames", "1", "--fps", "1",
                 "--protocol", "thumos", "--pred", str(pred), "--figure", str(fig), "--out", str(out)]) == 0
    written = json.loads(pred.read_text())["results"]
    assert all(set(d) == {"label", "score", "segment"} for dets in written.values() for d in dets)
    rescored = evaluate_detections(gt, pred, subset="validation", tiou_thresholds=(0.3, 0.4, 0.5, 0.6, 0.7))
    assert rescored["average_mAP"] == pytest.approx(json.loads(out.read_text())["average_mAP"])
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_localize_objective_errors(tmp_path):
    gt, feats = separable_world(tmp_path / "world", num_videos=4)
    base = ["objective=localize", f"data.train={gt}", "localize.feat_stride=1", "localize.window_frames=1",
            "localize.fps=1", f"run.out_dir={tmp_path / 'run'}"]
    with pytest.raises(ValueError, match="localize.features"):
        train(load_config(None, base + ["model.name=actionformer_small"]))
    with pytest.raises(ValueError, match="unknown localization model 'videomae_tiny'"):
        train(load_config(None, base + ["model.name=videomae_tiny", f"localize.features={feats}"]))


@pytest.mark.slow
def test_demo_stage_runs_on_synthetic_long_videos(tmp_path, one_thread):
    from internvideo.data import make_world
    from internvideo.demo import pipeline
    from internvideo.demo.context import DemoContext
    from internvideo.demo.localization import demo_stage

    world = tmp_path / "world"
    make_world(world, num_videos=10, size=pipeline.IMG_SIZE, num_frames=pipeline.WORLD_FRAMES, num_long=8,
               num_ava=0, num_images=0)
    classifier = internvideo.create_model("videomae_tiny", **pipeline.VIDEOMAE)
    internvideo.save_model(classifier, tmp_path / "cls")
    ctx = DemoContext(world, tmp_path / "out" / "runs" / "localization", 0, False, tmp_path / "cls",
                      tmp_path / "cls", tmp_path / "cls", pipeline.IMG_SIZE, "smoke")
    rows = demo_stage(ctx)
    assert len(rows) == 1 and 0 <= rows[0]["value"] <= 100 and 0 < rows[0]["chance"] < 20
    assert (tmp_path / "out" / "localization_timeline.png").exists()
    results = json.loads((ctx.work / "results.json").read_text())["results"]
    assert set(results) == {f"long_{i:05d}" for i in (3, 7)}  # the validation videos


def test_external_class_scores_name_class_agnostic_proposals(tmp_path):
    from internvideo.data.localization import FeatureSequenceDataset
    from internvideo.models.localization import ActionLocalizer, LocalizerConfig
    from internvideo.tasks.localization import localize

    gt, feats = separable_world(tmp_path / "world", num_videos=8)
    val = FeatureSequenceDataset(gt, feats, subset="validation", class_agnostic=True, feat_stride=1,
                                 window_frames=1, fps=1)
    assert val.classes == ["action"] and {s.label for v in val.videos for s in v.segments} == {"action"}
    torch.manual_seed(0)
    model = ActionLocalizer(LocalizerConfig(input_dim=16, num_classes=1, embed_dim=16, head_dim=16, num_heads=2,
                                            arch=(2, 1, 3), window=5, max_seq_len=64, multiclass_nms=False,
                                            regression_range=((0, 4), (4, 8), (8, 16), (16, 10000))))
    plain = localize(model, val)
    names = ["c0", "c1", "c2"]
    scores = {v.video_id: [0.1, 0.9, 0.4] for v in val.videos}
    fused = localize(model, val, class_scores=scores, score_classes=names)
    assert len(fused) == 2 * len(plain) and {d.label for d in fused} == {"c1", "c2"}
    # per video: every proposal once with the best class, then once with the second (sqrt(proposal x class))
    for vid in scores:
        mine = [d for d in plain if d.video_id == vid]
        theirs = [d for d in fused if d.video_id == vid]
        expect = [("c1", (d.start, d.end), (d.score * 0.9) ** .5) for d in mine] + \
                 [("c2", (d.start, d.end), (d.score * 0.4) ** .5) for d in mine]
        assert [(d.label, (d.start, d.end)) for d in theirs] == [(c, seg) for c, seg, _ in expect]
        assert [d.score for d in theirs] == pytest.approx([s for _, _, s in expect], rel=1e-5)
    with pytest.raises(UsageError, match="names of their classes"):
        localize(model, val, class_scores=scores)
