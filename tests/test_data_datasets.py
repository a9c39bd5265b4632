"""Annotation readers (with their error messages) and the torch Datasets."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_helpers import write_file
from internvideo.data import (AnnotationError, DenseSampler, EvalTransformConfig, SegmentSampler, SkipLog,
                              TrainTransformConfig, VideoClassificationDataset, VideoError, VideoTextDataset,
                              View, build_eval_transform, build_train_transform, collate_videos, read_activitynet,
                              read_ava_groundtruth, read_classes, read_classification_list, read_msrvtt, read_qa,
                              read_video_text, write_video_text)
from internvideo.errors import UsageError

# ----------------------------------------------------------------------------- readers


def test_classification_list(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("# comment\nvideos/a b.mp4 3\n\n/abs/c.mp4 0\nd.mp4 -1\n")
    samples = read_classification_list(f)
    assert [(s.path, s.label) for s in samples] == [
        (str(tmp_path / "videos/a b.mp4"), 3), ("/abs/c.mp4", 0), (str(tmp_path / "d.mp4"), -1)]
    assert read_classification_list(f, root="/data")[0].path == "/data/videos/a b.mp4"


@pytest.mark.parametrize("content,line,words", [
    ("a.mp4 1\nb.mp4\n", 2, "expected '<video path> <label index>'"),
    ("a.mp4 1\nb.mp4 x\n", 2, "label must be an integer"),
    ("a.mp4 -2\n", 1, "label must be >= 0"),
])
def test_classification_list_errors_name_file_and_line(tmp_path, content, line, words):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(AnnotationError) as info:
        read_classification_list(f)
    assert str(info.value).startswith(f"{f}:{line}: ") and words in str(info.value)
    assert info.value.line == line


def test_classes(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("moving left\nmoving right\n\n")
    assert read_classes(f) == ["moving left", "moving right"]
    f.write_text("a\n\nb\n")
    with pytest.raises(AnnotationError, match=r"classes.txt:2: empty class name"):
        read_classes(f)


def test_video_text_jsonl(tmp_path):
    f = tmp_path / "captions.jsonl"
    f.write_text('{"video": "v1.mp4", "caption": "one"}\n{"video": "v2.mp4", "caption": ["a", "b"]}\n'
                 '{"image": "i.png", "caption": "pic"}\n')
    samples = read_video_text(f)
    assert [s.captions for s in samples] == [("one",), ("a", "b"), ("pic",)]
    assert samples[2].video == str(tmp_path / "i.png")
    out = tmp_path / "again.jsonl"
    write_video_text(samples, out, root=tmp_path)
    assert read_video_text(out) == samples


@pytest.mark.parametrize("line,words", [
    ('{"video": "v.mp4"', "not valid JSON"),
    ('["v.mp4", "text"]', "expected a JSON object"),
    ('{"caption": "x"}', '"video" must be a non-empty string (missing)'),
    ('{"video": "v.mp4", "caption": []}', '"caption" must be a non-empty string or a non-empty list'),
    ('{"video": "v.mp4", "caption": ["ok", 3]}', '"caption" must be'),
])
def test_video_text_errors(tmp_path, line, words):
    f = tmp_path / "c.jsonl"
    f.write_text('{"video": "ok.mp4", "caption": "fine"}\n' + line + "\n")
    with pytest.raises(AnnotationError) as info:
        read_video_text(f)
    assert str(info.value).startswith(f"{f}:2: ") and words in str(info.value)


def test_msrvtt_json_and_csv(tmp_path):
    data = {"videos": [{"video_id": "video0", "split": "train"}, {"video_id": "video10", "split": "train"},
                       {"video_id": "video2", "split": "test"}],
            "sentences": [{"video_id": "video10", "caption": "x", "sen_id": 0},
                          {"video_id": "video0", "caption": "a man sings", "sen_id": 1},
                          {"video_id": "video0", "caption": "someone sings", "sen_id": 2},
                          {"video_id": "video2", "caption": "a cat", "sen_id": 3}]}
    j = tmp_path / "MSRVTT_data.json"
    j.write_text(json.dumps(data))
    train = read_msrvtt(j, tmp_path / "videos", split="train")
    assert [s.video for s in train] == [str(tmp_path / "videos/video0.mp4"), str(tmp_path / "videos/video10.mp4")]
    assert train[0].captions == ("a man sings", "someone sings")
    assert len(read_msrvtt(j, "videos")) == 3
    c = tmp_path / "MSRVTT_JSFUSION_test.csv"
    c.write_text("key,vid_key,video_id,sentence\nret0,msr7579,video7579,a girl wearing red top\n"
                 "ret1,msr7725,video7725,young people sit around\n")
    rows = read_msrvtt(c, "/v")
    assert [(s.video, s.captions) for s in rows] == [("/v/video7579.mp4", ("a girl wearing red top",)),
                                                     ("/v/video7725.mp4", ("young people sit around",))]
    c.write_text("key,video\nret0,video1\n")
    with pytest.raises(AnnotationError, match="lacks column"):
        read_msrvtt(c, "/v")
    data["sentences"][1] = {"video_id": "video0"}
    j.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"sentences\[1\]"):
        read_msrvtt(j, "/v")


def test_activitynet(tmp_path):
    f = tmp_path / "anet.json"
    good = {"database": {"v1": {"duration": 12.5, "subset": "training",
                                "annotations": [{"segment": [1.0, 4.5], "label": "growing"}]}}}
    f.write_text(json.dumps(good))
    video = read_activitynet(f)["v1"]
    assert (video.duration, video.subset, video.segments[0].start, video.segments[0].label) == \
        (12.5, "training", 1.0, "growing")
    good["database"]["v1"]["annotations"].append({"segment": [5.0, 2.0], "label": "x"})
    f.write_text(json.dumps(good))
    with pytest.raises(AnnotationError, match=r"database/v1/annotations\[1\]/segment.*start <= end"):
        read_activitynet(f)
    f.write_text('{"database": {"v1": {"duration": "long"}}}')
    with pytest.raises(AnnotationError, match="database/v1/duration: must be a number"):
        read_activitynet(f)
    f.write_text('{"database": \n{oops}')
    with pytest.raises(AnnotationError, match=r"anet.json:2: not valid JSON"):
        read_activitynet(f)


def test_ava_csv(tmp_path):
    f = tmp_path / "ava.csv"
    f.write_text("vid,0.5,0.1,0.2,0.3,0.4,7,0\nvid,1.0,0,0,1,1,2,1\n")
    boxes = read_ava_groundtruth(f)
    assert boxes[0].box == (0.1, 0.2, 0.3, 0.4) and (boxes[0].action_id, boxes[1].person_id) == (7, 1)


@pytest.mark.parametrize("row,words", [
    ("vid,1.0,0,0,1.5,1,2,1", "box"),
    ("vid,0.5,0.1,0.2,0.3", "expected 8 columns"),
    ("vid,soon,0.1,0.2,0.3,0.4,7,0", "timestamp must be a number"),
])
def test_ava_csv_errors(tmp_path, row, words):
    f = tmp_path / "ava.csv"
    f.write_text("vid,0.5,0.1,0.2,0.3,0.4,7,0\n" + row + "\n")
    with pytest.raises(AnnotationError, match=rf"ava.csv:2: {words}"):
        read_ava_groundtruth(f)


def test_qa(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"video": "v.mp4", "question": "what colour?", "answer": "red", "candidates": ["blue", "red"]}\n'
                 '{"video": "v.mp4", "question": "what?", "answer": "free text"}\n')
    first, second = read_qa(f)
    assert first.candidates == ("blue", "red") and second.candidates is None
    f.write_text('{"video": "v.mp4", "question": "q", "answer": "red", "candidates": ["blue"]}\n')
    with pytest.raises(AnnotationError, match=r"qa.jsonl:1: answer 'red' is not among the candidates"):
        read_qa(f)


# ----------------------------------------------------------------------------- datasets


def _views(size=32):
    train = build_train_transform(TrainTransformConfig(img_size=size, hflip=False))
    evaluate = build_eval_transform(EvalTransformConfig(img_size=size))
    return train, evaluate


def test_classification_dataset_two_views_from_one_decode(data_world):
    train_t, _ = _views(24)
    views = [View(DenseSampler(4, 2), train_t, name="mae"),
             View(SegmentSampler(3), train_t, name="clip")]
    ds = VideoClassificationDataset(data_world.root / "train.txt", views, training=True, seed=1)
    assert ds.classes is not None and ds.classes[0] == "moving left"  # classes.txt found beside the list
    item = ds[0]
    assert item["mae"].shape == (3, 4, 24, 24) and item["clip"].shape == (3, 3, 24, 24)
    assert item["label"] == ds.samples[0].label and item["skipped"] == []
    again = ds[0]
    assert torch.equal(item["mae"], again["mae"])  # same seed, epoch and index -> same sample
    ds.set_epoch(1)
    assert not torch.equal(item["mae"], ds[0]["mae"])


def test_eval_multi_clip_three_crop(data_world):
    transform = build_eval_transform(EvalTransformConfig(img_size=24, crop="three"))
    ds = VideoClassificationDataset(data_world.root / "test.txt", View(DenseSampler(4, 1, num_clips=2), transform))
    item = ds[0]
    assert item["video"].shape == (6, 3, 4, 24, 24)  # 2 clips x 3 crops
    assert torch.equal(item["video"], ds[0]["video"])


def test_video_text_dataset_captions(data_world):
    _, eval_t = _views()
    path = data_world.root / "captions_train.jsonl"
    train = VideoTextDataset(path, View(SegmentSampler(4), eval_t), training=True)
    evaluate = VideoTextDataset(path, View(SegmentSampler(4), eval_t))
    captions = train.samples[0].captions
    picked = set()
    for epoch in range(12):
        train.set_epoch(epoch)
        picked.add(train[0]["caption"])
    assert picked <= set(captions) and len(picked) > 1  # a random caption per epoch in training
    assert evaluate[0]["caption"] == captions[0] and evaluate[0]["captions"] == list(captions)


def test_images_are_one_frame_videos(data_world):
    _, eval_t = _views()
    ds = VideoTextDataset(data_world.root / "image_text.jsonl", View(DenseSampler(4, 2), eval_t))
    item = ds[0]
    assert item["video"].shape == (3, 4, 32, 32)
    assert torch.equal(item["video"][:, 0], item["video"][:, 3])


def _corrupt_list(data_world, tmp_path):
    (tmp_path / "broken.mp4").write_text("not a video at all")
    (tmp_path / "empty.mp4").touch()
    lines = (data_world.root / "train.txt").read_text().splitlines()[:6]
    rows = [f"{data_world.root / line.split()[0]} {line.split()[1]}" for line in lines]
    rows[1] = f"{tmp_path / 'broken.mp4'} 0"
    rows[4] = f"{tmp_path / 'empty.mp4'} 1"
    rows.append(f"{tmp_path / 'missing.mp4'} 2")
    f = tmp_path / "list.txt"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_strict_raises_and_eval_is_strict_by_default(data_world, tmp_path):
    f = _corrupt_list(data_world, tmp_path)
    _, eval_t = _views()
    with pytest.raises(VideoError, match="broken.mp4"):
        VideoClassificationDataset(f, View(DenseSampler(4, 1), eval_t))[1]
    with pytest.raises(VideoError, match="broken.mp4"):
        VideoClassificationDataset(f, View(DenseSampler(4, 1), eval_t), training=True, strict=True)[1]


def test_dataloader_with_two_workers_skips_and_summarises(data_world, tmp_path, caplog):
    f = _corrupt_list(data_world, tmp_path)
    train_t, _ = _views()
    ds = VideoClassificationDataset(f, View(DenseSampler(4, 1), train_t), training=True, seed=0)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_videos)
    skips = SkipLog()
    seen = 0
    with caplog.at_level(logging.WARNING, logger="internvideo.data"):
        for batch in skips.track(loader):
            assert batch["video"].shape[1:] == (3, 4, 32, 32)
            assert batch["label"].dtype == torch.long
            seen += len(batch["label"])
    assert seen == len(ds) == 7
    summary = skips.summary()
    bad = {str(tmp_path / n) for n in ("broken.mp4", "empty.mp4", "missing.mp4")}
    assert set(summary.videos) == bad
    assert summary.count >= 3
    assert "empty (0 bytes)" in summary.videos[str(tmp_path / "empty.mp4")][1]
    assert str(summary).startswith(f"{summary.count} unreadable video(s) skipped (3 distinct)")
    assert any("unreadable video(s) skipped" in r.getMessage() for r in caplog.records)
    skips.reset()
    assert skips.summary().count == 0 and str(skips.summary()) == "no unreadable videos skipped"


def test_collate_videos():
    items = [{"video": torch.zeros(3, 2, 4, 4), "label": 1, "caption": "a", "skipped": [("x", "bad")], "w": 0.5},
             {"video": torch.ones(3, 2, 4, 4), "label": 2, "caption": "b", "skipped": [], "w": 1.0}]
    batch = collate_videos(items)
    assert batch["video"].shape == (2, 3, 2, 4, 4) and batch["label"].tolist() == [1, 2]
    assert batch["caption"] == ["a", "b"] and batch["skipped"] == [("x", "bad")]
    assert batch["w"].dtype == torch.float32


def test_views_need_distinct_names(data_world):
    with pytest.raises(ValueError, match="distinct names"):
        VideoClassificationDataset(data_world.root / "train.txt", [View(DenseSampler()), View(SegmentSampler())])


def test_too_many_bad_videos_in_a_row(tmp_path):
    (tmp_path / "bad.mp4").write_text("nope")
    f = tmp_path / "all_bad.txt"
    f.write_text("bad.mp4 0\n")
    ds = VideoClassificationDataset(f, View(DenseSampler(2, 1)), training=True, max_replacements=3)
    with pytest.raises(VideoError, match="3 replacement videos were all unreadable"):
        ds[0]


def test_dataset_items_are_reproducible_regardless_of_workers(data_world):
    train_t, _ = _views(16)
    ds = VideoClassificationDataset(data_world.root / "train.txt", View(DenseSampler(4, 1), train_t), training=True)
    direct = torch.stack([ds[i]["video"] for i in range(4)])
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_videos)
    assert torch.equal(next(iter(loader))["video"], direct)
    np.testing.assert_array_equal(direct.shape, (4, 3, 4, 16, 16))


def test_fps_view_and_decode_time_resize(data_world):
    from internvideo.data import FpsSampler

    ds = VideoTextDataset(data_world.root / "captions_val.jsonl", View(FpsSampler(target_fps=4.0, max_frames=6)),
                          decode_short_side=16)
    item = ds[0]
    assert item["video"].shape == (3, 6, 16, 16)  # 1 s at 8 fps -> 4 frames at 4 fps, padded to 6
    assert item["video"].dtype == torch.float32 and 0 <= item["video"].min() and item["video"].max() <= 1
    assert torch.equal(item["video"][:, 3], item["video"][:, 5])  # padding repeats the last frame


def test_unknown_label_is_left_out_of_training_not_the_last_class(tmp_path, caplog):
    from internvideo.data.labels import merge_label_sets

    lst = write_file(tmp_path / "named/train.txt", "a.mp4 0\nb.mp4 1\nc.mp4 -1\n")
    write_file(tmp_path / "named/classes.txt", "jump\nrun\n")
    with caplog.at_level("WARNING"):
        names, samples = merge_label_sets([(lst, None)])
    # Before: c.mp4 was trained as names[-1] == "run".
    assert names == ["jump", "run"] and [s.label for s in samples] == [0, 1]
    assert "1 training line(s) labelled -1" in caplog.text


def test_unnamed_labels_keep_their_numbers(tmp_path):
    from internvideo.data.labels import merge_label_sets

    labels = [9, 3, 7, 8, 0, 6, 2, 5, -1]
    lst = write_file(tmp_path / "train.txt", "".join(f"v{i}.mp4 {y}\n" for i, y in enumerate(labels)))
    names, samples = merge_label_sets([(lst, None)])
    # Before: ['9', '3', '7', '8', '0', '6', '2', '5', '-1'] and scrambled indices.
    assert names == [str(i) for i in range(10)]
    assert [s.label for s in samples] == labels[:-1]


def test_label_beyond_classes_names_file_and_line(tmp_path):
    from internvideo.data import AnnotationError
    from internvideo.data.labels import merge_label_sets

    lst = write_file(tmp_path / "train.txt", "a.mp4 0\n\nb.mp4 2\n")
    write_file(tmp_path / "classes.txt", "jump\nrun\n")
    with pytest.raises(AnnotationError, match=r"train\.txt:3: label 2 is out of range: there are 2 classes"):
        merge_label_sets([(lst, None)])


def test_utf8_bom_is_stripped_from_lists_and_classes(tmp_path):
    from internvideo.data import read_classes, read_classification_list

    lst = write_file(tmp_path / "l.txt", "\ufeffvideos/a.mp4 0\n".encode())
    cls = write_file(tmp_path / "c.txt", "\ufeffjump\nrun\n".encode())
    # Before: the first path started with U+FEFF (file not found) and the first class name silently did too.
    assert read_classification_list(lst)[0].path == str(tmp_path / "videos/a.mp4")
    assert read_classes(cls) == ["jump", "run"]


# ----------------------------------------------------------------------------- recipe -> view


def _recipe(sampling: str = "dense"):
    from internvideo.recipe import InputRecipe

    return InputRecipe(8, 2, sampling, 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def test_recipe_view_picks_the_sampler_of_each_sampling():
    from internvideo.data import UniformSampler, recipe_view
    from internvideo.recipe import SAMPLINGS

    assert SAMPLINGS == ("dense", "segment", "uniform")
    assert recipe_view(_recipe()).sampler == DenseSampler(8, 2)
    assert recipe_view(_recipe(), num_clips=3, layout="mmaction").sampler == \
        DenseSampler(8, 2, num_clips=3, layout="mmaction")
    assert recipe_view(_recipe("segment")).sampler == SegmentSampler(8)
    assert recipe_view(_recipe("uniform")).sampler == UniformSampler(8)
    with pytest.raises(UsageError, match="one clip"):
        recipe_view(_recipe("segment"), num_clips=2)
    with pytest.raises(UsageError, match="num_crops"):
        recipe_view(_recipe(), num_crops=2)
    assert recipe_view(_recipe(), name="mm_video").name == "mm_video"


def test_recipe_view_transforms_take_the_recipes_size_and_statistics():
    from internvideo.data import TrainTransformConfig, build_eval_transform, build_train_transform, recipe_view

    frames = np.random.default_rng(0).integers(0, 256, (8, 40, 56, 3), dtype=np.uint8)
    r = _recipe()
    centre = recipe_view(r, short_side=36).transform(frames)
    torch.testing.assert_close(centre, build_eval_transform(EvalTransformConfig(
        img_size=32, short_side=36, mean=r.mean, std=r.std))(frames), rtol=0, atol=0)
    assert recipe_view(r, num_crops=3).transform(frames).shape == (3, 3, 8, 32, 32)
    # training: the augmentation's own size and statistics give way to the recipe's
    augment = TrainTransformConfig(img_size=224, hflip=False, randaugment=None, random_erasing=0.0)
    out = recipe_view(r, augment=augment).transform(frames, np.random.default_rng(1))
    expected = build_train_transform(TrainTransformConfig(img_size=32, hflip=False, randaugment=None,
                                                          random_erasing=0.0, mean=r.mean, std=r.std))
    torch.testing.assert_close(out, expected(frames, np.random.default_rng(1)), rtol=0, atol=0)
    assert out.shape == (3, 8, 32, 32)
