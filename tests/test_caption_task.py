"""Captioning task: BLEU/CIDEr-D against hand and explicit computations, evaluation, the caption command."""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math

import pytest
import torch

from internvideo import cli
from internvideo.checkpoints import save_model
from internvideo.data import VideoTextSample, read_video_text
from internvideo.errors import UsageError
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from internvideo.tasks import caption as caption_task
from internvideo.tasks.common import WrongModelError
from internvideo.tasks.metrics import caption_metrics, caption_words
from internvideo.train.heads import fine_tune_decoder
from mm_helpers import eval_clip, one_thread  # noqa: F401  (autouse fixture)

TINY = NAMED_CONFIGS["internvideo_mm_tiny"][1]


def test_bleu_by_hand():
    # p1..p4 = 4/5, 3/4, 2/3, 1/2; same length, no brevity penalty: BLEU-4 = (1/5) ** (1/4).
    m = caption_metrics({"v": ["a b c d f"]}, {"v": "a b c d e"})
    assert m["bleu1"] == pytest.approx(80.0, abs=1e-5)
    assert m["bleu4"] == pytest.approx(100 * 0.2 ** 0.25, abs=1e-5)
    # A candidate of 3 words against a reference of 6: brevity penalty exp(1 - 6/3).
    short = caption_metrics({"v": ["a b c x y z"]}, {"v": "a b c"})
    assert short["bleu1"] == pytest.approx(100 * math.exp(1 - 2), abs=1e-4)


def _ngrams(words, n):
    return collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _cider_d(refs: dict, cands: dict, sigma: float = 6.0) -> float:
    """CIDEr-D from its definition (Vedantam et al. 2015, and the COCO code's choices), slowly."""
    keys = list(refs)
    log_n = math.log(len(keys))
    df = {n: collections.Counter() for n in range(1, 5)}
    for k in keys:
        for n in range(1, 5):
            df[n].update({g for r in refs[k] for g in _ngrams(r.split(), n)})

    def vec(words, n):
        counts = _ngrams(words, n)
        v = {g: c * (log_n - math.log(max(1.0, df[n][g]))) for g, c in counts.items()}
        return v, math.sqrt(sum(x * x for x in v.values()))

    total = 0.0
    for k in keys:
        c = cands[k].split()
        score = 0.0
        for r in refs[k]:
            r = r.split()
            for n in range(1, 5):
                vc, nc = vec(c, n)
                vr, nr = vec(r, n)
                dot = sum(min(vc[g], vr.get(g, 0.0)) * vr.get(g, 0.0) for g in vc)  # clipped candidate weights
                if nc and nr:
                    score += dot / (nc * nr) * math.exp(-((len(c) - len(r)) ** 2) / (2 * sigma ** 2)) / 4
        total += 10 * score / len(refs[k])
    return 100 * total / len(keys)


def test_cider_d_matches_its_definition():
    refs = {"a": ["a red ball rolls to the left", "the red circle moves left"],
            "b": ["a big blue box grows", "the blue square gets bigger", "a blue block expands"],
            "c": ["a green triangle spins clockwise", "the green triangle turns clockwise"]}
    cands = {"a": "a red ball moves left", "b": "a blue box grows bigger", "c": "the green triangle turns left"}
    assert caption_metrics(refs, cands)["cider"] == pytest.approx(_cider_d(refs, cands), rel=1e-9)


def test_words_and_input_errors():
    assert caption_words("A small, RED circle... slides!") == "a small red circle slides"
    with pytest.raises(ValueError, match="same videos"):
        caption_metrics({"a": ["x"]}, {"b": "x"})
    with pytest.raises(UsageError, match="empty reference"):
        caption_metrics({"a": ["!!"]}, {"a": "x"})


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    torch.manual_seed(0)
    model = InternVideoMM(TINY).eval()
    directory = tmp_path_factory.mktemp("captioner")
    save_model(model, directory)
    return model, directory


def test_evaluate_with_nearest_caption_baseline_and_a_missing_video(data_world, captioner, tmp_path):
    model, _ = captioner
    samples = read_video_text(data_world.root / "captions_test.jsonl")
    missing = VideoTextSample(str(tmp_path / "gone.mp4"), ("a red circle",))
    result = caption_task.evaluate_caption(model, [*samples, missing], train=samples, max_len=6, progress=False)
    assert result["num_videos"] == len(samples) and result["num_skipped"] == 1
    assert result["skipped"] == [{"video": missing.video, "reason": "file not found"}]
    assert 0 <= result["bleu4"] <= 100 and result["cider"] >= 0
    # Training set = test set: every video's nearest training video is itself, so the baseline quotes one of
    # its own references.
    assert result["baseline"]["bleu4"] == pytest.approx(100.0, abs=1e-3)
    beam = caption_task.evaluate_caption(model, samples[:2], max_len=4, strategy="beam", num_beams=2, progress=False)
    assert beam["strategy"] == "beam" and beam["num_videos"] == 2


def test_no_decoder_is_refused(data_world):
    torch.manual_seed(0)
    with pytest.raises(WrongModelError, match="caption decoder"):
        caption_task.generate_captions(InternVideoMM(dataclasses.replace(TINY, caption_layers=0)), ["x.mp4"])


def _parse(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


def test_caption_command_jsonl_and_missing_videos(data_world, captioner, tmp_path, capsys):
    _, directory = captioner
    videos = [str(data_world.root / "videos/clip_00000.mp4"), str(data_world.root / "videos/clip_00001.mp4")]
    args = _parse(caption_task.add_caption_arguments,
                  [*videos, str(tmp_path / "nope.mp4"), "--model", str(directory), "--jsonl", "--max-len", "5"])
    assert caption_task.caption_main(args) == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in lines] == videos and all(isinstance(r["caption"], str) for r in lines)
    assert "nope.mp4: file not found" in err and "1 of 3 videos skipped" in err
    with pytest.raises(SystemExit) as e:  # refused by the option's type (internvideo.argtypes), before any work
        _parse(caption_task.add_caption_arguments, [videos[0], "--model", str(directory), "--beam", "0"])
    assert e.value.code == 2 and "argument --beam: expected an integer >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["caption", videos[0], "--model", str(directory), "--beam", "0"])
    assert e.value.code == 2 and capsys.readouterr().err == (
        "internvideo: error: argument --beam: expected an integer >= 1, got '0' (see internvideo caption --help)\n")


def test_eval_caption_command(data_world, captioner, tmp_path, capsys):
    _, directory = captioner
    out = tmp_path / "r.json"
    args = _parse(caption_task.add_arguments, ["--model", str(directory), "--data",
                                               str(data_world.root / "captions_val.jsonl"), "--max-len", "4",
                                               "--beam", "2", "--out", str(out), "--no-progress"])
    assert caption_task.main(args) == 0
    assert "BLEU-4" in capsys.readouterr().out
    assert json.loads(out.read_text())["strategy"] == "beam"


def test_fine_tune_decoder_learns_the_captions_and_leaves_the_encoders(data_world):
    torch.manual_seed(0)
    model = InternVideoMM(dataclasses.replace(TINY, caption_vocab=tuple(range(320, 40000)))).eval()
    samples = read_video_text(data_world.root / "captions_train.jsonl")[:6]
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("caption.")}
    before = model.caption.head.weight.clone()
    with torch.no_grad():
        tokens = torch.cat([model.forward_features(eval_clip(model, s.video)) for s in samples])
    out = fine_tune_decoder(model, samples, video_tokens=tokens, steps=40, batch_size=8, lr=3e-3,
                                         progress=False)
    losses = out["losses"]
    assert len(losses) == 40 and out["num_captions"] == sum(len(s.captions) for s in samples)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5  # it learns the captions
    assert not torch.equal(model.caption.head.weight, before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # encoders untouched
    with pytest.raises(ValueError, match="video_tokens holds 5 videos but the training set 6"):
        fine_tune_decoder(model, samples, video_tokens=tokens[:5], steps=1, progress=False)
    # Computing the tokens itself gives the same first loss as the tokens passed in.
    torch.manual_seed(0)
    again = InternVideoMM(dataclasses.replace(TINY, caption_vocab=tuple(range(320, 40000)))).eval()
    first = fine_tune_decoder(again, samples, steps=1, batch_size=8, lr=3e-3, progress=False)
    assert first["losses"][0] == pytest.approx(losses[0], rel=1e-4)

