"""Training from shards: a run on 2 ranks (gloo) x 2 loader workers, SIGKILLed and resumed, consumes exactly the
sample ids of an uninterrupted run, step by step; each epoch covers every sample once (up to the even split)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from internvideo.data.shards import write_shards
from trainworld import make_train_world

ROOT = Path(__file__).resolve().parents[1]
N, STEPS_PER_EPOCH = 24, 6  # 24 samples / (2 ranks x 2 workers x batch 2) -> 3 batches a worker, 6 a rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(shards: str, out: Path, ids: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    ids.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1",
           "IDS_DIR": str(ids), "KILL_AT": str(kill_at)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(ROOT / "tests" / "shardrun.py"), "objective=mae", "model.name=videomae_tiny_pretrain",
           f"data.shards={shards}", "data.num_workers=2", "data.shuffle_buffer=3", "model.overrides.frame_interval=3",
           "model.overrides.mask_ratio=0.75", f"run.out_dir={out}", "run.batch_size=2", "run.epochs=2",
           "run.save_every=3", "run.progress=false", "run.log_every=1", "optim.scale_lr=false"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _rows(path: Path) -> list[list[int]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # three 2-process launches: ~1 min on 2 free cores
def test_killed_and_resumed_stream_matches_uninterrupted(tmp_path):
    world = make_train_world(tmp_path / "world", n=N, size=32, frames=8)
    index = write_shards(world / "train.txt", tmp_path / "shards", shard_size="12kB")
    shards = f"{tmp_path / 'shards'}/{{000000..{len(index['shards']) - 1:06d}}}.tar"

    done = _launch(shards, tmp_path / "ref", tmp_path / "ref_ids")
    assert done.returncode == 0, done.stderr[-3000:]
    ref = [_rows(tmp_path / "ref_ids" / f"rank{r}.jsonl") for r in (0, 1)]
    assert [len(r) for r in ref] == [2 * STEPS_PER_EPOCH] * 2
    for epoch in (0, 1):
        ids = [i for r in ref for b in r[epoch * STEPS_PER_EPOCH:(epoch + 1) * STEPS_PER_EPOCH] for i in b]
        assert sorted(ids) == list(range(N))  # every sample exactly once per epoch (24 split evenly: none left out)

    killed = _launch(shards, tmp_path / "run", tmp_path / "killed_ids", kill_at=11)
    assert killed.returncode != 0
    latest = max(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_???????"))
    saved = int(latest.removeprefix("step_"))
    assert saved == 9  # mid-epoch (epoch 1, 3 batches in: an odd number, so the workers' turns rotate)
    resumed = _launch(shards, tmp_path / "run", tmp_path / "resumed_ids")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for r in (0, 1):
        before = _rows(tmp_path / "killed_ids" / f"rank{r}.jsonl")[:saved]
        after = _rows(tmp_path / "resumed_ids" / f"rank{r}.jsonl")
        assert before + after == ref[r], r


def test_classify_trains_from_shards_with_repeated_views(tmp_path):
    """The one loop reads shards (no data.train: classes from the index) and counts repeated views as samples."""
    from internvideo.train import train
    from internvideo.train.config import load_config

    world = make_train_world(tmp_path / "world", n=8, size=32, frames=8)
    index = write_shards(world / "train.txt", tmp_path / "shards", shard_size="12kB")
    cfg = load_config(None, [
        "objective=classify", "model.name=videomae_tiny",
        f"data.shards={tmp_path / 'shards'}/{{000000..{len(index['shards']) - 1:06d}}}.tar",
        "data.num_workers=0", "data.repeats=2", "data.hflip=false", "model.overrides.frame_interval=3",
        f"run.out_dir={tmp_path / 'run'}", "run.batch_size=4", "run.progress=false", "run.log_every=1"])
    result = train(cfg)
    assert result.steps == 4  # 8 videos x 2 views = 16 samples per epoch, 4 per step
    assert result.model.config.num_classes == 2 and result.model.config.class_names == ("moving left",
                                                                                        "moving right")
