"""The evaluation tasks end to end: recognition (multi-view, linear probe), zero-shot, retrieval, multiple choice.

Stand-in models that read a video's mean colour (``eval_standins``) make every
number predictable; a last test runs the real tiny models through each task.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import internvideo
from data_helpers import write_file
from eval_standins import NAMES, ColourClassifier, ColourCLIP, HashText, nan_classifier_features
from internvideo.data import VideoTextSample
from internvideo.tasks import (
    EVAL_COMMANDS, DEFAULT_TEMPLATES, evaluate_multiple_choice, evaluate_recognition, evaluate_retrieval,
    evaluate_zeroshot, linear_probe, multiple_choice, recognition, retrieval, zeroshot_classifier,
)
from internvideo.errors import UsageError
from internvideo.tasks.common import WrongModelError
from internvideo.tasks.metrics import NonFiniteError, average_views

QUIET = dict(progress=False)


def test_recognition_single_and_multi_view(colours):
    model = ColourClassifier()
    one = evaluate_recognition(model, colours["list"], **QUIET)
    assert one["top1"] == 100.0 and one["mean_class_acc"] == 100.0 and one["num_samples"] == 8
    assert one["views"] == "1x1" and one["chance"] == 25.0
    logits, labels = recognition.recognition_scores(model, colours["list"], num_clips=2, num_crops=3, batch_size=4,
                                                    **QUIET)
    assert logits.shape == (8, 6, 4)  # 2 clips x 3 crops per video
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    multi = evaluate_recognition(model, colours["list"], num_clips=2, num_crops=3, batch_size=4, **QUIET)
    assert multi["views"] == "2x3" and multi["num_views"] == 6 and multi["top1"] == 100.0
    # The reported numbers come from the softmax average of the views.
    probs = average_views(logits)
    assert multi["top5"] == 100.0 and np.allclose(probs.sum(1), 1.0)
    assert "top-1" in recognition.results_table(multi)


def test_recognition_view_averaging_is_softmax(colours, monkeypatch):
    # Feed fixed per-view logits where the softmax average and the logit average disagree.
    fixed = np.array([[[0.0, 10.0, -9, -9], [2.0, 0.0, -9, -9], [2.0, 0.0, -9, -9]]] * 8)
    labels = np.zeros(8, dtype=np.int64)
    monkeypatch.setattr(recognition, "recognition_scores", lambda *a, **k: (fixed, labels))
    assert evaluate_recognition(ColourClassifier(), colours["list"])["top1"] == 100.0


def test_linear_probe_on_frozen_features(colours):
    result = linear_probe(ColourClassifier(), colours["list"], colours["list"], **QUIET)
    assert result["task"] == "linear_probe"
    assert result["top1"] == 100.0 and result["feature_dim"] == 3 and result["num_train"] == 8


def test_zeroshot_prompt_averaging():
    model = HashText()
    templates = ["a video of {}.", "{} happening", "look: {}"]
    weights = zeroshot_classifier(model, ["running", "jumping"], templates, **QUIET)
    tok = internvideo.get_tokenizer("clip")
    for c, name in enumerate(["running", "jumping"]):
        per_prompt = F.normalize(model.encode_text(tok([t.replace("{}", name) for t in templates])), dim=-1)
        expected = F.normalize(per_prompt.mean(0), dim=-1)
        torch.testing.assert_close(weights[c], expected)
    assert torch.allclose(weights.norm(dim=-1), torch.ones(2))
    # One template: the class embedding is just that prompt's normalised embedding.
    single = zeroshot_classifier(model, ["running"], ["a video of {}."], **QUIET)
    torch.testing.assert_close(single[0], F.normalize(model.encode_text(tok(["a video of running."]))[0], dim=-1))


def test_zeroshot_recognition(colours, tmp_path):
    model = ColourCLIP()
    result = evaluate_zeroshot(model, colours["list"], **QUIET)  # classes.txt next to the list
    assert result["top1"] == 100.0 and result["num_templates"] == len(DEFAULT_TEMPLATES)
    template_file = tmp_path / "templates.txt"
    template_file.write_text("# my prompts\na {} clip\nall {}\n")
    result = evaluate_zeroshot(model, colours["list"], NAMES, template_file, **QUIET)
    assert result["top1"] == 100.0 and result["num_templates"] == 2
    # Shuffled class names: every video now gets the wrong name.
    result = evaluate_zeroshot(model, colours["list"], NAMES[1:] + NAMES[:1], **QUIET)
    assert result["top1"] == 0.0
    (tmp_path / "bad.txt").write_text("no placeholder\n")
    with pytest.raises(UsageError, match="needs a"):
        evaluate_zeroshot(model, colours["list"], NAMES, tmp_path / "bad.txt", **QUIET)
    with pytest.raises(WrongModelError, match="video-language"):
        evaluate_zeroshot(ColourClassifier(), colours["list"], **QUIET)


def test_retrieval_both_directions_with_several_captions(colours):
    result = evaluate_retrieval(ColourCLIP(), colours["captions"], dsl=True, chunk_size=3, **QUIET)
    assert result["num_videos"] == 8 and result["num_captions"] == 16
    # Two videos per colour look alike: a caption finds its own video or its same-colour twin first.
    t2v, v2t = result["t2v"], result["v2t"]
    assert t2v["num_queries"] == 16 and v2t["num_queries"] == 8
    assert t2v["R@5"] == 100.0 and t2v["MdR"] <= 2
    assert v2t["R@5"] == 100.0
    assert set(result["dsl"]) == {"t2v", "v2t"}
    assert "DSL t2v" in retrieval.results_table(result)


def test_retrieval_merges_records_of_the_same_video(colours):
    root = colours["list"].parent
    samples = [VideoTextSample(str(root / "videos/red_0.mp4"), ("a red video",)),
               VideoTextSample(str(root / "videos/blue_0.mp4"), ("a blue video",)),
               VideoTextSample(str(root / "videos/red_0.mp4"), ("something red",))]
    emb = retrieval.retrieval_embeddings(ColourCLIP(), samples, **QUIET)
    assert len(emb.videos) == 2 and emb.caption_to_video.tolist() == [0, 0, 1]
    assert emb.captions == ["a red video", "something red", "a blue video"]
    result = retrieval.metrics_from_embeddings(emb)
    assert result["t2v"]["R@1"] == 100.0 and result["v2t"]["R@1"] == 100.0
    assert torch.allclose(emb.video.norm(dim=-1), torch.ones(2))


def test_multiple_choice(colours, tmp_path):
    result = evaluate_multiple_choice(ColourCLIP(), colours["mc"], **QUIET)
    assert result["accuracy"] == 100.0 and result["num_questions"] == 8
    assert result["chance"] == pytest.approx(100 / 3) and result["mean_answer_rank"] == 1.0
    # A candidate identical to the answer ties with it: counted wrong. Unequal candidate counts are fine.
    root = colours["list"].parent
    lines = [{"video": str(root / "videos/red_0.mp4"), "question": "", "answer": "all red",
              "candidates": ["all red", "quite red", "all blue"]},
             {"video": str(root / "videos/blue_0.mp4"), "question": "", "answer": "all blue",
              "candidates": ["all green", "all blue"]}]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = evaluate_multiple_choice(ColourCLIP(), path, **QUIET)
    assert result["accuracy"] == 50.0 and result["num_candidates"] == 3
    assert result["chance"] == pytest.approx((100 / 3 + 50) / 2)
    assert "multiple choice" in multiple_choice.results_table(result)


def test_cli_pairs_write_json(colours, tmp_path):
    model_dir = tmp_path / "mae"
    internvideo.save_model(internvideo.create_model("videomae_tiny", num_classes=4), model_dir)
    for name in ("recognition", "linear-probe"):
        help_text, add_arguments, main = EVAL_COMMANDS[name]
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        out = tmp_path / f"{name}.json"
        argv = ["--model", str(model_dir), "--data", str(colours["list"]), "--out", str(out), "--no-progress"]
        if name == "linear-probe":
            argv += ["--train", str(colours["list"])]
        assert main(parser.parse_args(argv)) == 0
        saved = json.loads(out.read_text())
        assert saved["num_samples"] == 8 and 0 <= saved["top1"] <= 100 and saved["model"] == str(model_dir)


def test_real_tiny_models_run_every_task(colours, tmp_path):
    from internvideo.models.fusion import CMAFusion, FusionConfig
    from internvideo.tasks import extract_features

    torch.manual_seed(0)
    mae = internvideo.create_model("videomae_tiny", num_classes=4)
    assert evaluate_recognition(mae, colours["list"], num_clips=2, num_crops=3, **QUIET)["num_samples"] == 8
    mm = internvideo.create_model("internvideo_mm_tiny")
    assert 0 <= evaluate_zeroshot(mm, colours["list"], **QUIET)["top1"] <= 100
    assert evaluate_retrieval(mm, colours["captions"], dsl=True, **QUIET)["dsl"]["t2v"]["num_queries"] == 16
    assert evaluate_multiple_choice(mm, colours["mc"], **QUIET)["num_questions"] == 8
    # The fusion model takes VideoMAE clips; its features are the unified representation its head reads.
    fusion = CMAFusion(FusionConfig(num_classes=4, width=32, num_layers=1, num_heads=4, cma="gated"),
                       internvideo.create_model("videomae_tiny", num_classes=0), mm)
    assert evaluate_recognition(fusion, colours["list"], **QUIET)["num_samples"] == 8
    summary = extract_features(fusion, colours["list"], tmp_path / "fused", **QUIET)
    assert summary["extracted"] == 8
    assert np.load(tmp_path / "fused/videos/red_0.npy").shape == (64 + 32,)  # [VideoMAE pooled, mm embedding]


def _nan_classifier() -> ColourClassifier:
    model = ColourClassifier()
    model.centres[0, 0] = float("nan")  # one NaN weight in the "head"
    return model


def test_recognition_with_nan_weight_fails_then_scores_zero(colours):
    with pytest.raises(NonFiniteError, match="8 of 8 test videos gave non-finite"):
        evaluate_recognition(_nan_classifier(), colours["list"], **QUIET)
    result = evaluate_recognition(_nan_classifier(), colours["list"], allow_nonfinite=True, **QUIET)
    assert result["top1"] == 0.0 and result["num_nonfinite"] == 8  # was 100 %
    assert evaluate_recognition(ColourClassifier(), colours["list"], **QUIET)["num_nonfinite"] == 0


def test_linear_probe_with_nan_features_fails(colours):
    with pytest.raises(NonFiniteError, match="training videos"):
        linear_probe(nan_classifier_features(), colours["list"], colours["list"], **QUIET)


class _NaNCLIP(ColourCLIP):
    def encode_video(self, video):
        out = super().encode_video(video)
        return out + self.bad  # one NaN in the "projection"

    def __init__(self):
        super().__init__()
        self.bad = torch.tensor([float("nan"), 0.0, 0.0])


def test_zeroshot_and_retrieval_with_nan_projection(colours):
    with pytest.raises(NonFiniteError, match="8 of 8 test videos"):
        evaluate_zeroshot(_NaNCLIP(), colours["list"], colours["classes"], **QUIET)
    zs = evaluate_zeroshot(_NaNCLIP(), colours["list"], colours["classes"], allow_nonfinite=True, **QUIET)
    assert zs["top1"] == 0.0 and zs["num_nonfinite"] == 8
    with pytest.raises(NonFiniteError, match="8 of 8 videos"):
        evaluate_retrieval(_NaNCLIP(), colours["captions"], **QUIET)
    r = evaluate_retrieval(_NaNCLIP(), colours["captions"], dsl=True, allow_nonfinite=True, **QUIET)
    assert r["t2v"]["R@1"] == 0.0 and r["v2t"]["R@1"] == 0.0  # was 100 % both ways
    assert r["dsl"]["t2v"]["R@1"] == 0.0 and r["num_nonfinite"] == {"videos": 8, "captions": 0}


def test_recognition_maps_labels_by_the_saved_class_names(colours, tmp_path):
    from internvideo.data import read_classes
    from internvideo.tasks.recognition import align_labels, classification_dataset

    model = ColourClassifier()
    names = read_classes(colours["classes"])
    # A test list written against another classes.txt order: labels are indices into *that* file.
    root = colours["list"].parent
    order = names[::-1]
    lines = [f"{root}/videos/{n}_0.mp4 {order.index(n)}" for n in names]
    write_file(tmp_path / "rev/test.txt", "\n".join(lines) + "\n")
    write_file(tmp_path / "rev/classes.txt", "\n".join(order) + "\n")
    model.config.class_names = tuple(names)  # as a checkpoint of `internvideo train` stores them
    assert evaluate_recognition(model, tmp_path / "rev/test.txt", **QUIET)["top1"] == 100.0
    model.config.class_names = None  # without names the list's indices are trusted (and are wrong here)
    assert evaluate_recognition(model, tmp_path / "rev/test.txt", **QUIET)["top1"] == 0.0
    ds = classification_dataset(model, tmp_path / "rev/test.txt")
    with pytest.raises(UsageError, match="not among the model's"):
        align_labels(ds, ("red", "green"))


def test_duplicate_lines_are_counted_once_and_reported(colours, tmp_path):
    from internvideo.tasks import recognition, retrieval

    lines = colours["list"].read_text().splitlines()
    dup = write_file(colours["list"].parent / "dup.txt", "\n".join(lines + lines[:3]) + "\n")  # 11 lines, 8 videos
    result = evaluate_recognition(ColourClassifier(), dup, **QUIET)
    assert result["num_samples"] == 8 and result["num_duplicates"] == 3  # before: 11 samples
    assert "duplicate lines dropped" in recognition.results_table(result)
    clash = write_file(colours["list"].parent / "clash.txt", lines[0] + "\n" + lines[0].rsplit(" ", 1)[0] + " 3\n")
    with pytest.raises(UsageError, match="is listed with labels 0 and 3"):
        evaluate_recognition(ColourClassifier(), clash, **QUIET)

    records = colours["captions"].read_text().splitlines()
    dup_caps = write_file(colours["list"].parent / "dup.jsonl", "\n".join(records + records[:2]) + "\n")
    r = evaluate_retrieval(ColourCLIP(), dup_caps, **QUIET)
    assert r["num_captions"] == 16 and r["num_duplicates"] == 4  # before: 20 caption queries
    assert "duplicate pairs dropped" in retrieval.results_table(r)


def test_multiple_choice_with_nan_projection_fails(colours):
    from internvideo.tasks import evaluate_multiple_choice

    with pytest.raises(NonFiniteError, match="8 of 8 questions"):
        evaluate_multiple_choice(_NaNCLIP(), colours["mc"], **QUIET)
    result = evaluate_multiple_choice(_NaNCLIP(), colours["mc"], allow_nonfinite=True, **QUIET)
    assert result["accuracy"] == 0.0 and result["chance"] == pytest.approx(100 / 3)
