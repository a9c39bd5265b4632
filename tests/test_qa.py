"""Open-ended video QA: importers, answer vocabulary and normalisation, accuracy, the head learning motion."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from internvideo.data import AnnotationError, QASample, read_qa
from internvideo.models.qa import VideoQA, VideoQAConfig, VideoQAHead, question_padding
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from internvideo.tasks.qa import (answer_vocabulary, evaluate_qa, most_frequent_answer, normalize_answer, qa_accuracy,
                                  qa_features)
from internvideo.tasks.common import WrongModelError
from internvideo.train.heads import train_qa_head
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)

TINY = NAMED_CONFIGS["internvideo_mm_tiny"][1]


def test_jsonl_types_and_empty_question(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"video": "a.mp4", "question": "what colour?", "answer": "Red ", "type": "colour"}\n'
                 '{"video": "b.mp4", "question": "who?", "answer": "man"}\n')
    first, second = read_qa(f)
    assert (first.video, first.type, first.answer) == (str(tmp_path / "a.mp4"), "colour", "Red ")
    assert second.type is None and second.candidates is None
    f.write_text('{"video": "a.mp4", "question": "fine?", "answer": "yes"}\n{"video": "a.mp4", "question": "  ", '
                 '"answer": "red"}\n')
    with pytest.raises(AnnotationError, match=r"qa.jsonl:2: field \"question\" must be a non-empty string"):
        read_qa(f)


def test_msrvtt_msvd_importer(tmp_path):
    f = tmp_path / "test_qa.json"
    f.write_text(json.dumps([{"id": 0, "video_id": 7010, "question": "what is a man doing?", "answer": "Singing"},
                             {"id": 1, "video_id": 7011, "question": "Who talks?", "answer": "woman"},
                             {"id": 2, "video_id": 7011, "question": "is it sunny?", "answer": "yes"}]))
    samples = read_qa(f)
    assert [s.video for s in samples] == [str(tmp_path / "video7010.mp4"), str(tmp_path / "video7011.mp4")] * 1 + \
        [str(tmp_path / "video7011.mp4")]
    assert [s.type for s in samples] == ["what", "who", "other"]
    msvd = read_qa(f, root="/clips", video_template="vid{}.avi")
    assert msvd[0].video == "/clips/vid7010.avi"
    f.write_text(json.dumps([{"video_id": 1, "question": "", "answer": "x"}]))
    with pytest.raises(AnnotationError, match=r"test_qa.json: \[0\]: field \"question\""):
        read_qa(f)
    f.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(AnnotationError, match="expected a JSON list"):
        read_qa(f)


def test_tgif_frameqa_importer(tmp_path):
    f = tmp_path / "Test_frameqa_question.csv"
    f.write_text("gif_name\tquestion\tanswer\tvid_id\tkey\ttype\n"
                 "tumblr_abc\twhat is the man holding\tguitar\tgif1\t1\t0\n"
                 "tumblr_def\thow many dogs run\ttwo\tgif2\t2\t1\n")
    a, b = read_qa(f)
    assert (a.video, a.answer, a.type) == (str(tmp_path / "tumblr_abc.gif"), "guitar", "object")
    assert b.type == "number"
    f.write_text("gif_name,question,answer\nx,y,z\n")
    with pytest.raises(AnnotationError, match="lacks column"):
        read_qa(f)


def test_answer_vocabulary_and_normalisation():
    answers = ["Red", " red", "blue", "GREEN ", "blue", "green", "left", "red"]
    assert normalize_answer("  Moving LEFT ") == "moving left"
    assert answer_vocabulary(answers, 3) == ("red", "blue", "green")  # 3, 2, 2 (blue seen before green)
    assert answer_vocabulary(answers) == ("red", "blue", "green", "left")
    assert most_frequent_answer([QASample("v", "q", a) for a in answers]) == "red"
    with pytest.raises(ValueError, match="top_k"):
        answer_vocabulary(answers, 0)


def test_accuracy_by_hand_with_types_and_out_of_vocabulary():
    samples = [QASample("v", "q", "Red", type="colour"), QASample("v", "q", "blue", type="colour"),
               QASample("v", "q", "left", type="motion"), QASample("v", "q", "zebra", type="motion")]
    # The last answer is outside any vocabulary: whatever the model says, it is wrong.
    r = qa_accuracy(["red ", "green", "left", "red"], samples)
    assert r["accuracy"] == 50.0 and r["per_type"] == {"colour": 50.0, "motion": 50.0}
    assert r["type_counts"] == {"colour": 2, "motion": 2}
    assert "per_type" not in qa_accuracy(["a"], [QASample("v", "q", "a")])


def _moving_dots(n: int, seed: int, frames: int = 3, positions: int = 5, dim: int = 8):
    """Video tokens of a dot moving left or right: per frame, the token at the dot's position is marked.

    Summed over frames, both directions light the same tokens: only the frame order tells them apart.
    """
    pos_code = torch.randn(positions, dim, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    video = pos_code.expand(n, frames, positions, dim).clone()
    starts = torch.randint(0, positions - frames + 1, (n,), generator=g)
    for i in range(n):
        for t in range(frames):
            video[i, t, starts[i] + (t if labels[i] else frames - 1 - t)] += 3.0
    return video, labels


@pytest.mark.parametrize("time_embedding", [True, False])
def test_head_learns_direction_only_from_frame_order(time_embedding):
    torch.manual_seed(0)
    head = VideoQAHead(VideoQAConfig(answers=("left", "right"), width=32, heads=4, layers=1, dropout=0.0), 8, 8)
    if not time_embedding:  # the control: without it the frames are an unordered set of tokens
        head.time_embed.data.zero_()
        head.time_embed.requires_grad_(False)
    question = torch.randn(1, 3, 8).expand(128, -1, -1)
    padding = torch.zeros(128, 3, dtype=torch.bool)
    video, labels = _moving_dots(128, seed=1)
    optim = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(head(question, padding, video), labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
    test_video, test_labels = _moving_dots(64, seed=2)
    with torch.no_grad():
        acc = (head(question[:64], padding[:64], test_video).argmax(-1) == test_labels).float().mean().item()
    if time_embedding:
        assert acc > 0.75, acc
    else:
        assert acc < 0.65, acc


def test_padding_is_ignored():
    torch.manual_seed(0)
    head = VideoQAHead(VideoQAConfig(answers=("a", "b", "c"), width=16, heads=2, layers=2, dropout=0.0), 8, 8).eval()
    ids = torch.tensor([[49406, 320, 1929, 49407, 0, 0]])
    padding = question_padding(ids)
    assert padding.tolist() == [[False, False, False, False, True, True]]
    q, v = torch.randn(1, 6, 8), torch.randn(1, 2, 3, 8)
    other = q.clone()
    other[:, 4:] = torch.randn(1, 2, 8) * 10  # whatever sits at padded positions
    torch.testing.assert_close(head(q, padding, v), head(other, padding, v))


@pytest.fixture(scope="module")
def qa_model():
    torch.manual_seed(0)
    backbone = InternVideoMM(dataclasses.replace(TINY, caption_layers=0)).eval()
    return backbone


def test_evaluate_on_the_world_with_missing_videos(data_world, qa_model, tmp_path):
    root = data_world.root
    train = read_qa(root / "qa_train.jsonl")
    test = read_qa(root / "qa_test.jsonl")
    test.append(QASample(str(tmp_path / "gone.mp4"), "what shape is it?", "circle", type="shape"))
    model = VideoQA(VideoQAConfig(answers=answer_vocabulary([s.answer for s in train], 1000), width=32, heads=2,
                                  layers=1), backbone=qa_model)
    feats, keep, skipped = qa_features(model, train, progress=False)
    assert not skipped and len(keep) == len(train) and feats.video_tokens.shape[:2] == (len(set(s.video for s in train)),
                                                                                          TINY.num_frames)
    fit = train_qa_head(model, train, features=feats, epochs=8, batch_size=32, lr=3e-3, progress=False)
    assert fit["losses"][-1] < fit["losses"][0]
    result = evaluate_qa(model, test, train=train, progress=False)
    assert result["num_skipped"] == 1 and result["skipped"][0]["reason"] == "file not found"
    assert result["num_questions"] == len(test) - 1
    assert set(result["per_type"]) == {"colour", "shape", "size", "action", "motion"}
    assert result["baseline"]["name"].startswith("always")
    assert 0 <= result["accuracy"] <= 100
    with pytest.raises(WrongModelError, match="VideoQA"):
        evaluate_qa(qa_model, test)


def test_saved_config_round_trip():
    cfg = VideoQAConfig(answers=("x", "y"), backbone=dataclasses.asdict(TINY))
    assert cfg.backbone == TINY and cfg.answers == ("x", "y")
    with pytest.raises(ValueError, match="repeated"):
        VideoQAConfig(answers=("x", "x"))
