"""WebDataset shards: writing (round trip, resume, unreadable inputs), streaming (the same items as a file list,
rank x worker split, exact resume), bad shards, repeated views and dying loader workers."""
from __future__ import annotations

import io
import json
import os
import signal
import tarfile
from pathlib import Path

import pytest
import torch

from internvideo.data import DenseSampler, VideoClassificationDataset, VideoTextDataset, View, collate_videos
from internvideo.data import read_classification_list
from internvideo.data import shards as shards_mod
from internvideo.data.shards import ShardError, ShardStream, expand_shards, read_index, write_shards
from internvideo.data.transforms import TrainTransformConfig, build_train_transform
from internvideo.data.workers import WorkerDied, WorkerWatch
from internvideo.errors import UserError
from trainworld import make_train_world

N = 24


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_train_world(tmp_path_factory.mktemp("shard_world"), n=N, bad=1, size=32, frames=8)


@pytest.fixture(scope="module")
def sharded(world, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shards")
    return out, write_shards(world / "train.txt", out, shard_size="16kB")


def _pattern(out: Path, index: dict) -> str:
    return f"{out}/{{000000..{len(index['shards']) - 1:06d}}}.tar"


def _view() -> View:
    return View(DenseSampler(4, 2), build_train_transform(TrainTransformConfig(img_size=24)))


def _ids(stream: ShardStream, workers: int, batch: int) -> list[list[int]]:
    loader = torch.utils.data.DataLoader(stream, batch_size=batch, num_workers=workers, collate_fn=collate_videos,
                                         multiprocessing_context="fork" if workers else None)
    return [b["index"].tolist() for b in loader]


# ----------------------------------------------------------------------------- writing


def test_round_trip_keeps_every_video_and_label(world, sharded):
    out, index = sharded
    samples = read_classification_list(world / "train.txt")
    assert index["complete"] and index["samples"] == N and len(index["shards"]) > 2
    assert [s["path"] for s in index["skipped"]] == [str(world / "broken0.mp4")]  # listed, not in any shard
    assert index["classes"] == ["moving left", "moving right"] and index["num_classes"] == 2
    seen = []
    for shard in index["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            names = tar.getnames()
            assert len(names) == 2 * shard["samples"]
            for name in names:
                if name.endswith(".json"):
                    meta = json.loads(tar.extractfile(name).read())
                    video = tar.extractfile(name.replace(".json", ".mp4")).read()
                    seen.append((meta["id"], meta["label"], video))
    assert len(seen) == N
    for (vid, label, video), sample in zip(seen, samples, strict=False):
        assert vid == Path(sample.path).name and label == sample.label
        assert video == Path(sample.path).read_bytes()  # the bytes as they were, no re-encoding
    assert read_index(out).counts == tuple(s["samples"] for s in index["shards"])


def test_interrupted_sharding_resumes(world, sharded, tmp_path, monkeypatch):
    out, whole = sharded
    calls = {"n": 0}
    real = shards_mod.probe

    def dies_midway(path, **kw):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(shards_mod, "probe", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        write_shards(world / "train.txt", tmp_path, shard_size="16kB")
    partial = json.loads((tmp_path / "shards.json").read_text())
    assert not partial["complete"] and 0 < len(partial["shards"]) < len(whole["shards"])
    with pytest.raises(ShardError, match="did not finish"):
        read_index(tmp_path)
    monkeypatch.setattr(shards_mod, "probe", real)
    resumed = write_shards(world / "train.txt", tmp_path, shard_size="16kB")
    assert [(s["name"], s["samples"]) for s in resumed["shards"]] == [(s["name"], s["samples"]) for s in whole["shards"]]
    assert resumed["skipped"] == whole["skipped"] and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ShardError, match="other inputs or settings"):
        write_shards(world / "train.txt", tmp_path, shard_size="32kB")


def test_shard_command(world, tmp_path, capsys):
    from internvideo.cli import main

    assert main(["shard", str(world / "train.jsonl"), "--out", str(tmp_path), "--shuffle-seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "24 samples in 1 shard(s)" in printed and "{000000..000000}.tar" in printed
    index = read_index(tmp_path)
    assert index.kind == "video_text" and index.total == N
    assert main(["shard", str(world / "train.txt"), "--out", str(tmp_path / "b"), "--shard-size", "lots"]) == 2
    assert "--shard-size" in capsys.readouterr().err


# ----------------------------------------------------------------------------- reading


def test_stream_items_equal_the_file_list_items(world, sharded):
    """Same sampler, transform and per-sample random draws as the list (positions = list lines here)."""
    out, index = sharded
    listed = VideoClassificationDataset(world / "train.txt", _view(), training=True, seed=5)
    listed.set_epoch(1)
    stream = ShardStream(*reversed(expand_shards(_pattern(out, index))),
                         VideoClassificationDataset([], _view(), training=True, seed=5), batch=4, seed=5)
    stream.inner.set_epoch(1)
    stream.set_epoch(1)
    items = list(stream)
    assert len(items) == len(stream) == N
    for item in items:
        ref = listed[item["index"]]
        assert item["label"] == ref["label"]
        assert torch.equal(item["video"], ref["video"])


@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_and_workers_cover_each_sample_once_per_epoch(sharded, workers):
    out, index = sharded
    urls_index = expand_shards(_pattern(out, index))
    orders = []
    for epoch in (0, 1):
        everything = []
        for rank in (0, 1):
            stream = ShardStream(urls_index[1], urls_index[0], VideoClassificationDataset([], _view(), training=True),
                                 batch=3, rank=rank, world=2, num_workers=workers, shuffle_buffer=4)
            stream.set_epoch(epoch)
            batches = _ids(stream, workers, 3)
            assert len(batches) * 3 == len(stream)  # every rank the same number of batches
            everything += [i for b in batches for i in b]
        assert len(everything) == len(set(everything)) == N - stream.dropped
        orders.append(everything)
    assert orders[0] != orders[1]  # a new shard order and shuffle each epoch


def test_resumed_stream_continues_exactly(sharded):
    out, index = sharded
    urls_index = expand_shards(_pattern(out, index))

    def stream():
        s = ShardStream(urls_index[1], urls_index[0], VideoClassificationDataset([], _view(), training=True),
                        batch=2, num_workers=2, shuffle_buffer=5)
        return s

    whole = stream()
    whole.set_epoch(3)
    reference = _ids(whole, 2, 2)
    for consumed in (1, 4, 7):
        resumed = stream()
        resumed.set_epoch(3, consumed)
        assert _ids(resumed, 2, 2) == reference[consumed:]


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _bad_set(folder: Path, world: Path, members: dict[str, bytes], count: int = 2) -> tuple[ShardIndex, list[str]]:
    folder.mkdir()
    _tar(folder / "000000.tar", members)
    (folder / "shards.json").write_text(json.dumps({
        "format": shards_mod.FORMAT, "complete": True, "kind": "classification", "classes": None, "num_classes": 2,
        "shards": [{"name": "000000.tar", "samples": count}]}))
    return expand_shards(str(folder / "000000.tar"))


ShardIndex = shards_mod.ShardIndex


@pytest.mark.parametrize("case", ["truncated", "cut_in_last_header", "no_video", "no_label", "short"])
def test_bad_shards_are_one_line_errors(world, sharded, tmp_path, case):
    video = (world / "clip000.mp4").read_bytes()
    out, index = sharded
    if case in ("truncated", "cut_in_last_header"):
        data = (out / "000000.tar").read_bytes()
        # cut_in_last_header: inside the header of the shard's last member, so the last sample reads as a
        # complete one without its video and the sample count still matches the index
        with tarfile.open(out / "000000.tar") as tar:
            last = tar.getmembers()[-1].offset
        cut = len(data) // 2 + 100 if case == "truncated" else last + 100
        (tmp_path / "t").mkdir()
        (tmp_path / "t" / "000000.tar").write_bytes(data[:cut])
        (tmp_path / "t" / "shards.json").write_text(json.dumps({
            "format": shards_mod.FORMAT, "complete": True, "kind": "classification", "classes": None,
            "num_classes": 2, "shards": [index["shards"][0]]}))
        idx, urls = expand_shards(str(tmp_path / "t" / "000000.tar"))
        expected = "000000.tar: (unreadable shard|ends after)"
    else:
        members = {"a.mp4": video, "a.json": b'{"label": 1}', "b.mp4": video, "b.json": b'{"label": 0}'}
        if case == "no_video":
            del members["b.mp4"]
            expected = "sample b has no video member"
        elif case == "no_label":
            members["b.json"] = b'{"id": "b"}'
            expected = 'sample b \\(b\\): its JSON has no "label"'
        idx, urls = _bad_set(tmp_path / "s", world, members, count=3 if case == "short" else 2)
        if case == "short":
            expected = "ends after 2 sample\\(s\\) but the index lists 3"
    stream = ShardStream(urls, idx, VideoClassificationDataset([], _view(), training=True), batch=1, num_workers=1,
                         shuffle_buffer=0)
    stream.set_epoch(0)
    with pytest.raises(ShardError, match=expected) as err:
        _ids(stream, 1, 1)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_pattern_must_match_the_index(sharded):
    out, index = sharded
    with pytest.raises(ShardError, match="names 1 shard"):
        expand_shards(str(out / "000000.tar"))
    with pytest.raises(ShardError, match="no shard index"):
        expand_shards(str(out.parent / "nowhere" / "{000000..000001}.tar"))


def test_video_text_shards_feed_a_video_text_dataset(world, tmp_path):
    index = write_shards(world / "train.jsonl", tmp_path)
    stream = ShardStream(*reversed(expand_shards(_pattern(tmp_path, index))),
                         VideoTextDataset([], _view(), training=True), batch=4)
    stream.set_epoch(0)
    items = list(stream)
    captions = [json.loads(line)["caption"] for line in (world / "train.jsonl").read_text().splitlines()]
    assert sorted(i["caption"] for i in items) == sorted(captions)


# ----------------------------------------------------------------------------- repeats and workers


def test_repeated_views_differ_and_decode_once(world, monkeypatch):
    from internvideo.data import datasets

    calls = []
    real = datasets.read_frames
    monkeypatch.setattr(datasets, "read_frames", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    ds = VideoClassificationDataset(world / "train.txt", _view(), training=True, seed=1)
    ds.repeats = 3
    item = ds[2]
    assert len(calls) == 1 and isinstance(item, list) and len(item) == 3
    assert not torch.equal(item[0]["video"], item[1]["video"]) and not torch.equal(item[1]["video"], item[2]["video"])
    assert {v["label"] for v in item} == {ds.samples[2].label}
    again = ds[2]
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(item, again, strict=True))  # a function of the sample
    batch = collate_videos([item, ds[3]])
    assert batch["video"].shape[0] == 6 and batch["index"].tolist() == [2, 2, 2, 3, 3, 3]


class _Crashes(torch.utils.data.Dataset):
    def __init__(self, world: Path):
        self.inner = VideoClassificationDataset(world / "train.txt", View(DenseSampler(2, 1)))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            from internvideo.data.workers import note_decoding

            note_decoding(self.inner.videos[i])
            os.kill(os.getpid(), signal.SIGKILL)  # as a decoder crash would
        return self.inner[i]


def test_a_dying_worker_is_reported_with_its_video(world):
    watch = WorkerWatch(1)
    loader = torch.utils.data.DataLoader(_Crashes(world), batch_size=1, num_workers=1, collate_fn=collate_videos,
                                         multiprocessing_context="fork")
    with pytest.raises(WorkerDied, match=r"clip002\.mp4"):
        for _ in watch.iterate(loader):
            pass


def test_config_checks_repeats_against_the_batch():
    from internvideo.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="multiple of data.repeats"):
        load_config(None, ["data.repeats=3", "run.batch_size=8"])
    cfg = load_config(None, ["data.repeats=2", "run.batch_size=8", "data.prefetch_factor=4",
                             "data.persistent_workers=true", "data.shards=x/{0..1}.tar"])
    assert cfg.data.repeats == 2 and cfg.data.prefetch_factor == 4
