"""The ``openset`` and ``qa`` objectives in the one training loop, on the tiny synthetic world."""
from __future__ import annotations

from pathlib import Path

import pytest

from internvideo.factory import load_model
from internvideo.models.qa import VideoQA
from internvideo.tasks.openset import evaluate_openset
from internvideo.train import train
from internvideo.train.config import load_config
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)


def _args(world, out, objective, model, *extra):
    return [f"objective={objective}", f"model.name={model}", f"data.root={world}", "data.hflip=false",
            "data.num_workers=0", f"run.out_dir={out}", "run.batch_size=8", "run.log_every=1", "run.progress=false",
            "optim.scale_lr=false", "optim.weight_decay=0.0", "optim.lr=1e-3", *extra]


@pytest.mark.slow  # about a minute on the shared 2-core machine (two epochs with evaluation)
def test_openset_objective_trains_on_known_classes(data_world, tmp_path):
    cfg = load_config(None, _args(data_world.root, tmp_path, "openset", "videomae_tiny", "data.train=openset_train.txt",
                                  "data.val=openset_val.txt", "run.epochs=2", "openset.edl_annealing_epochs=1",
                                  "model.overrides.num_frames=4", "model.overrides.frame_interval=2"))
    result = train(cfg)
    rows = [r for r in result.history if r["kind"] == "train"]
    assert rows[0]["kl_weight"] == 0.0 and rows[-1]["kl_weight"] == 1.0  # annealed by epoch
    assert result.metric_name == "top1" and result.best_metric is not None
    evals = [r for r in result.history if r["kind"] == "eval"]
    assert 0 < evals[-1]["uncertainty"] <= 100
    model = load_model(result.checkpoint)
    assert model.config.num_classes == 8  # the world's two held-out classes are not in the head
    # `eval openset` then scores the trained head itself (its rows saved as the known labels).
    r = data_world.root
    scored = evaluate_openset(model, r / "openset_train.txt", r / "openset_val.txt", r / "openset_test.txt",
                              progress=False)
    assert scored["head"] == "model" and set(scored["scores"]) == {"uncertainty", "msp", "energy", "max_logit"}
    assert scored["num_test_unknown"] > 0


def test_openset_objective_refuses_unknown_training_videos(data_world, tmp_path):
    cfg = load_config(None, _args(data_world.root, tmp_path, "openset", "videomae_tiny", "data.train=openset_test.txt"))
    with pytest.raises(ValueError, match="known classes only"):
        train(cfg)


def test_qa_objective_trains_and_saves_a_qa_model(data_world, tmp_path):
    cfg = load_config(None, _args(data_world.root, tmp_path, "qa", "internvideo_mm_tiny", "data.train=qa_train.jsonl",
                                  "data.val=qa_val.jsonl", "run.max_steps=6", "qa.answers=20",
                                  "model.overrides.caption_layers=0"))
    result = train(cfg)
    assert result.metric_name == "accuracy" and result.best_metric is not None
    model = load_model(result.checkpoint)
    assert isinstance(model, VideoQA) and len(model.answers) == 20


def test_contrastive_caption_vocabulary_from_the_training_captions(data_world, tmp_path):
    from internvideo.data import read_video_text
    from internvideo.tokenizer import get_tokenizer

    cfg = load_config(None, _args(data_world.root, tmp_path, "contrastive", "internvideo_mm_tiny",
                                  "data.train=captions_train.jsonl", "run.max_steps=3", "model.caption_vocab=train"))
    result = train(cfg)
    captions = [c for s in read_video_text(data_world.root / "captions_train.jsonl") for c in s.captions]
    ids = get_tokenizer("clip")(captions)
    expected = sorted(set(ids[ids != 0].tolist()))  # the start and end tokens are in every caption
    model = load_model(result.checkpoint)
    assert list(model.config.caption_vocab) == expected and model.caption.head.out_features == len(expected)
    logged = [r for r in result.history if r["kind"] == "train"]
    assert all(0 < r["caption"] < 10 for r in logged)  # ln(len(expected)) at init, not ln(49408)


@pytest.mark.parametrize("objective,model,train_list,val_list", [
    ("openset", "videomae_tiny", "openset_train.txt", "openset_val.txt"),
    ("qa", "internvideo_mm_tiny", "qa_train.jsonl", "qa_val.jsonl"),
])
def test_language_objectives_honour_decode_once(data_world, tmp_path, objective, model, train_list, val_list):
    from internvideo.train.objectives import OBJECTIVES

    cfg = load_config(None, _args(data_world.root, tmp_path, objective, model, f"data.train={train_list}",
                                  f"data.val={val_list}", "data.decode_once=true"))
    obj = OBJECTIVES[objective](cfg)
    obj.build_model()
    train_set, val_set = obj.datasets()
    assert train_set.decoded is not None and val_set.decoded is train_set.decoded
    assert all(v in train_set.decoded for v in train_set.videos[:3])  # decoded up front, before any loader worker forks


def _dear_layout(world, out):
    """The synthetic world's open-set split in DEAR's layout: ucf101/ (known), hmdb51/ (unknown), each with videos/."""
    rows = {name: [line.split() for line in (world / f"openset_{name}.txt").read_text().splitlines()]
            for name in ("train", "test")}
    for dataset in ("ucf101", "hmdb51"):
        (out / dataset / "videos").mkdir(parents=True)
        for video in (world / "videos").iterdir():
            (out / dataset / "videos" / video.name).symlink_to(video)

    def write(path, items):
        path.write_text("".join(f"{p.removeprefix('videos/')} {label}\n" for p, label in items))
        return path

    return (write(out / "ucf101" / "ucf101_train_split_1_videos.txt", rows["train"]),
            write(out / "ucf101" / "ucf101_val_split_1_videos.txt", [r for r in rows["test"] if r[1] != "-1"]),
            write(out / "hmdb51" / "hmdb51_val_split_1_videos.txt", [(p, "7") for p, lb in rows["test"] if lb == "-1"]))


def test_internvideo_openset_recipe_trains_and_scores_as_dear(data_world, tmp_path):
    """configs/openset/internvideo_ucf101.yaml on a tiny stand-in: log EDL loss, no KL, SGD with step decay; then
    DEAR's evaluation: threshold from the training list, 3 crops, HMDB-style unknown list."""
    from internvideo.data import openset_test_samples

    train_list, known_test, ood = _dear_layout(data_world.root, tmp_path / "data")
    recipe = Path(__file__).resolve().parents[1] / "configs" / "openset" / "internvideo_ucf101.yaml"
    cfg = load_config(recipe, ["model.name=videomae_tiny", "model.pretrained=null", "model.overrides.num_frames=4",
                               "model.overrides.img_size=32", "model.overrides.drop_path_rate=0.0",
                               f"data.root={tmp_path / 'data' / 'ucf101' / 'videos'}", "data.num_workers=0",
                               "run.batch_size=4", "run.max_steps=3", "run.precision=fp32", "run.progress=false",
                               "run.log_every=1", "run.grad_checkpointing=false", "optim.milestones=[0.5]",
                               f"run.out_dir={tmp_path / 'run'}"])
    assert (cfg.openset.loss, cfg.openset.kl, cfg.optim.optimizer, cfg.optim.nesterov) == ("log", False, "sgd", True)
    assert cfg.model.overrides["num_frames"] == 4 and cfg.data.multi_scales == (1.0, 0.8)
    result = train(cfg)
    rows = [r for r in result.history if r["kind"] == "train"]
    assert len(rows) == 3 and all(r["kl_weight"] == 0.0 for r in rows)
    # 8 videos / batch 4 = 2 steps per epoch: milestone 0.5 epoch = step 1, so lr 1e-3 then 1e-4
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-4, 1e-4])
    model = load_model(result.checkpoint)
    scored = evaluate_openset(model, train_list, None, openset_test_samples(known_test, [ood]), head="model",
                              root=train_list.parent / "videos", threshold_from="train", num_crops=3,
                              progress=False)
    assert scored["threshold_from"] == "train" and scored["num_test_unknown"] == 2
    assert 0.0 <= scored["scores"]["uncertainty"]["auroc"] <= 100.0


def test_eval_openset_cli_runs_dears_protocol(data_world, tmp_path):
    """`internvideo eval openset --ood LIST --threshold-from train --crops 3` on DEAR's layout (no --val)."""
    import json

    from internvideo import create_model, save_model
    from internvideo.cli import main

    train_list, known_test, ood = _dear_layout(data_world.root, tmp_path / "data")
    save_model(create_model("videomae_tiny", num_classes=8, num_frames=4, frame_interval=2, img_size=32),
               tmp_path / "model")
    out = tmp_path / "metrics.json"
    assert main(["eval", "openset", "--model", str(tmp_path / "model"), "--train", str(train_list),
                 "--root", str(train_list.parent / "videos"), "--data", str(known_test), "--ood", str(ood),
                 "--threshold-from", "train", "--crops", "3", "--head", "model", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["threshold_from"] == "train" and result["head"] == "model"
    known = len(known_test.read_text().splitlines())
    assert (result["num_test_known"], result["num_test_unknown"]) == (known, 2)
