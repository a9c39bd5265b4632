"""Readers of MSVD, LSMDC, DiDeMo, ActivityNet Captions and VATEX on tiny fixtures in the official split layouts
(OpenGVLab/InternVideo InternVideo1/Downstream/Video-Text-Retrieval/dataloaders/dataloader_*_retrieval.py)."""
from __future__ import annotations

import json
import pickle

import pytest

from internvideo.errors import MissingFile, UsageError

from internvideo.data import (
    AnnotationError, read_activitynet_captions, read_didemo, read_lsmdc, read_msvd, read_vatex,
)


def test_msvd(tmp_path):
    (tmp_path / "test_list.txt").write_text("vidA\nvidB\n")
    captions = {"vidA": [["a", "man", "sings"], ["someone", "sings"]], "vidB": [["a", "cat"]], "vidC": [["x"]]}
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(captions, protocol=2))
    samples = read_msvd(tmp_path, "test", video_dir="/videos")
    assert [(s.video, s.captions) for s in samples] == [
        ("/videos/vidA.avi", ("a man sings", "someone sings")), ("/videos/vidB.avi", ("a cat",))]
    (tmp_path / "train_list.txt").write_text("vidA\nvidZ\n")
    with pytest.raises(AnnotationError, match=r"raw-captions\.pkl: no captions for 'vidZ' of .*train_list\.txt"):
        read_msvd(tmp_path, "train")


def test_lsmdc_clip_folders_and_blank_lines(tmp_path, caplog):
    rows = ["0001_Movie_A_00.00.01.000-00.00.02.000\t1\t2\t1\t2\tSomeone opens a door.",
            "0001_Movie_A_00.00.01.000-00.00.02.000\t1\t2\t1\t2\tHe walks in.",
            "0002_Movie_B_00.01.00.000-00.01.03.000\t1\t2\t1\t2\t  "]
    (tmp_path / "LSMDC16_challenge_1000_publictect.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING"):
        samples = read_lsmdc(tmp_path, "test")
    assert len(samples) == 1
    assert samples[0].video == str(tmp_path / "0001_Movie_A" / "0001_Movie_A_00.00.01.000-00.00.02.000.avi")
    assert samples[0].captions == ("Someone opens a door.", "He walks in.")
    assert "1 empty caption(s), 1 video(s) left without a caption" in caplog.text
    (tmp_path / "LSMDC16_annos_val.csv").write_text("clip\tonly three\tfields\n")
    with pytest.raises(AnnotationError, match=r"LSMDC16_annos_val\.csv:1: expected 6 tab-separated fields"):
        read_lsmdc(tmp_path, "val")


def test_lsmdc_train_leaves_out_the_official_hundred(tmp_path):
    rows = [f"0001_M_{i:06d}\t0\t1\t0\t1\tsentence {i}" for i in range(58310)]
    (tmp_path / "LSMDC16_annos_training.csv").write_text("\n".join(rows) + "\n")
    samples = read_lsmdc(tmp_path, "train")
    assert len(samples) == 58310 - 100
    kept = {s.captions[0] for s in samples}
    assert "sentence 58199" in kept and "sentence 58200" not in kept and "sentence 58299" not in kept
    assert "sentence 58300" in kept


def test_didemo_paragraphs(tmp_path, caplog):
    (tmp_path / "test_list.txt").write_text("v1\nv2\nv3\n")
    data = [{"video": "v1", "description": "a dog runs", "times": [[0, 0]]},
            {"video": "v2", "description": "not listed? no, listed", "times": [[1, 1]]},
            {"video": "v1", "description": "  ", "times": [[1, 1]]},
            {"video": "v1", "description": "it stops", "times": [[2, 2]]},
            {"video": "v9", "description": "not in the list", "times": [[0, 0]]}]
    (tmp_path / "test_data.json").write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        samples = read_didemo(tmp_path, "test")
    assert [(s.video, s.captions) for s in samples] == [
        (str(tmp_path / "v1.mp4"), ("a dog runs it stops",)), (str(tmp_path / "v2.mp4"), ("not listed? no, listed",))]
    assert "left out 1 empty sentence(s)" in caplog.text and "1 listed video(s) without annotations" in caplog.text


def test_activitynet_captions_paragraphs(tmp_path):
    (tmp_path / "val_ids.json").write_text(json.dumps(["v_a", "v_b", "v_a", "v_missing"]))
    (tmp_path / "val_1.json").write_text(json.dumps({
        "v_a": {"duration": 10.0, "timestamps": [[0, 4], [4, 10]], "sentences": ["A man cooks. ", " He eats."]},
        "v_b": {"duration": 5.0, "timestamps": [[0, 5]], "sentences": ["A girl dances."]}}))
    samples = read_activitynet_captions(tmp_path, "val", video_dir="/an")
    assert [(s.video, s.captions) for s in samples] == [("/an/v_a.mp4", ("A man cooks. He eats.",)),
                                                        ("/an/v_b.mp4", ("A girl dances.",))]
    (tmp_path / "train_ids.json").write_text(json.dumps(["v_a"]))
    (tmp_path / "train.json").write_text(json.dumps({"v_a": {"sentences": "one string"}}))
    with pytest.raises(AnnotationError, match=r"train\.json: v_a: expected a list of sentences"):
        read_activitynet_captions(tmp_path, "train")


def test_vatex_lists_and_paths(tmp_path):
    (tmp_path / "test_list.txt").write_text("id1\nid2\n")
    (tmp_path / "vatex_validation_v1.0.json").write_text(json.dumps([
        {"videoID": "id1", "enCap": ["one", "uno"], "chCap": ["..."]},
        {"videoID": "id2", "enCap": ["two"], "path": "clips/id2.webm"},
        {"videoID": "id3", "enCap": ["three"]}]))
    for split in ("val", "test"):  # both read the test list and the validation file, as the official loader
        samples = read_vatex(tmp_path, split)
        assert [(s.video, s.captions) for s in samples] == [
            (str(tmp_path / "id1.mp4"), ("one", "uno")), (str(tmp_path / "clips/id2.webm"), ("two",))]
    (tmp_path / "train_list.txt").write_text("id1\n")
    with pytest.raises(MissingFile, match="vatex_training_v1.0.json"):
        read_vatex(tmp_path, "train")
    with pytest.raises(UsageError, match="split must be one of train, val, test"):
        read_vatex(tmp_path, "dev")
