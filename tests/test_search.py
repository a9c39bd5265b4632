"""Text-to-video search: windows, stored rows against an explicit reference, incremental updates, resume after
SIGKILL, model mismatch, FAISS kinds, the CLI."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import internvideo
from internvideo.data import probe, read_frames, segment_indices
from internvideo.tasks.common import eval_view
from internvideo.search import SEARCH_TEMPLATES, Searcher, SearchIndexError, build_index
from internvideo.search import vectors
from internvideo.search.__main__ import main as search_main
from internvideo.search.index import window_bounds
from internvideo.search.store import DB_NAME, Store
from internvideo.errors import UsageError

from mm_helpers import one_thread  # noqa: F401  (autouse fixture)
from search_helpers import search_model, search_world, tiny_model_dir, video_folder  # noqa: F401

SRC = Path(__file__).resolve().parents[1] / "src"


def _index(model_dir, folder, out, **kw):
    kw.setdefault("window", 1.0)
    kw.setdefault("stride", 0.5)
    return build_index(internvideo.load_model(model_dir), folder, out, model_source=model_dir, precision="fp32",
                       progress=False, **kw)


def _rows(out: Path) -> list[tuple]:
    db = sqlite3.connect(out / DB_NAME)
    try:
        return db.execute("SELECT w.id, v.path, w.start, w.end, w.embedding FROM windows w JOIN videos v "
                          "ON v.id = w.video_id ORDER BY v.path, w.start").fetchall()
    finally:
        db.close()


# ----------------------------------------------------------------------------- windows


def test_window_bounds_hand_computed():
    # 2 fps, 2 s windows (4 frames) every 1 s (2 frames).
    assert window_bounds(10, 2.0, 2.0, 1.0) == [(0, 4), (2, 4), (4, 4), (6, 4)]
    # One frame more: the tail gets an end-aligned window.
    assert window_bounds(11, 2.0, 2.0, 1.0) == [(0, 4), (2, 4), (4, 4), (6, 4), (7, 4)]
    assert window_bounds(3, 2.0, 2.0, 1.0) == [(0, 3)]  # shorter than a window: all of it
    assert window_bounds(4, 2.0, 2.0, 1.0) == [(0, 4)]
    with pytest.raises(UsageError):
        window_bounds(10, 2.0, 0.0, 1.0)


# ----------------------------------------------------------------------------- index against a reference


def test_index_rows_match_explicit_reference(search_world, search_model, tmp_path):
    folder = video_folder(search_world, tmp_path / "videos", clips=2)
    out = tmp_path / "idx"
    summary = _index(search_model, folder, out)
    assert summary["videos"] == 3 and summary["indexed"] == 3 and summary["failed"] == []

    model = internvideo.load_model(search_model).eval()
    view = eval_view(model)
    t = model.config.num_frames
    expected = []
    for rel in ("clips/clip_00000.mp4", "clips/clip_00001.mp4", "long.mp4"):
        info = probe(folder / rel)
        length = round(1.0 * info.fps)
        step = round(0.5 * info.fps)
        starts = list(range(0, info.num_frames - length + 1, step))
        if starts[-1] + length < info.num_frames:
            starts.append(info.num_frames - length)
        for s in starts:
            frames = read_frames(folder / rel, s + segment_indices(length, t))
            with torch.no_grad():
                emb = F.normalize(model.encode_video(view.transform(frames)[None]), dim=-1)[0].numpy()
            expected.append((rel, s / info.fps, (s + length) / info.fps, emb, s + length // 2))
    rows = _rows(out)
    assert [r[1] for r in rows] == [e[0] for e in expected]
    assert [(r[2], r[3]) for r in rows] == [(e[1], e[2]) for e in expected]
    for (wid, rel, _, _, blob), (_, _, _, emb, middle) in zip(rows, expected):
        np.testing.assert_allclose(np.frombuffer(blob, dtype=np.float32), emb, atol=1e-5)
        thumb = np.asarray(Image.open(out / "thumbs" / f"{wid}.jpg").convert("RGB"), dtype=np.float32)
        frame = read_frames(folder / rel, [middle])[0].astype(np.float32)
        assert thumb.shape == frame.shape
        assert np.abs(thumb - frame).mean() < 12  # JPEG of the window's middle frame
    assert summary["windows"] == len(expected)
    assert len(list((out / "thumbs").iterdir())) == len(expected)
    db = sqlite3.connect(out / DB_NAME)
    (size, mtime, model_id), = db.execute("SELECT size, mtime_ns, model_id FROM window_rows WHERE path = "
                                          "'long.mp4' LIMIT 1").fetchall()
    st = os.stat(folder / "long.mp4")
    assert (size, mtime) == (st.st_size, st.st_mtime_ns) and len(model_id) == 16
    db.close()


def test_search_matches_brute_force_with_prompt_ensemble(search_world, search_model, tmp_path):
    folder = video_folder(search_world, tmp_path / "videos", clips=4)
    out = tmp_path / "idx"
    _index(search_model, folder, out)
    searcher = Searcher(out)
    hits = searcher.search(["a red circle", "a crimson disc"], k=5)

    model = internvideo.load_model(search_model).eval()
    tok = internvideo.get_tokenizer("clip", context_length=model.config.context_length)
    prompts = [tmpl.replace("{}", q) for q in ("a red circle", "a crimson disc") for tmpl in SEARCH_TEMPLATES]
    with torch.no_grad():
        per_prompt = F.normalize(model.encode_text(tok(prompts)), dim=-1)
    per_query = F.normalize(per_prompt.reshape(2, len(SEARCH_TEMPLATES), -1).mean(1), dim=-1)
    q = F.normalize(per_query.mean(0), dim=-1).numpy()
    rows = _rows(out)
    scores = np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows]) @ q
    order = np.argsort(-scores)[:5]
    assert [h.id for h in hits] == [rows[i][0] for i in order]
    assert [h.score for h in hits] == pytest.approx(scores[order].tolist(), abs=1e-5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    with pytest.raises(UsageError, match="empty"):
        searcher.search("   ")
    with pytest.raises(UsageError, match="k must"):
        searcher.search("x", k=0)
    searcher.close()


# ----------------------------------------------------------------------------- incremental


def test_incremental_changed_deleted_added_and_bad_files(search_world, search_model, tmp_path):
    folder = video_folder(search_world, tmp_path / "videos", clips=3, long=False)
    out = tmp_path / "idx"
    first = _index(search_model, folder, out)
    assert first["indexed"] == 3
    before = {r[1]: r[0] for r in _rows(out)}

    again = _index(search_model, folder, out)
    assert (again["indexed"], again["unchanged"], again["removed"], again["new_windows"]) == (0, 3, 0, 0)
    assert {r[1]: r[0] for r in _rows(out)} == before

    # Change one file (other content), delete one, add one good and one unreadable file.
    changed = folder / "clips" / "clip_00000.mp4"
    changed.write_bytes((search_world / "videos" / "clip_00005.mp4").read_bytes())
    (folder / "clips" / "clip_00001.mp4").unlink()
    (folder / "new.mp4").write_bytes((search_world / "videos" / "clip_00006.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    third = _index(search_model, folder, out)
    assert (third["indexed"], third["unchanged"], third["removed"]) == (2, 1, 1)
    assert [f["video"] for f in third["failed"]] == ["broken.mp4"]
    assert "broken.mp4" in third["failed"][0]["error"]
    rows = _rows(out)
    paths = sorted(r[1] for r in rows)
    assert paths == ["clips/clip_00000.mp4", "clips/clip_00002.mp4", "new.mp4"]
    after = {r[1]: r[0] for r in rows}
    assert after["clips/clip_00002.mp4"] == before["clips/clip_00002.mp4"]  # untouched file keeps its rows
    assert after["clips/clip_00000.mp4"] > max(before.values())  # re-indexed: new rows, new ids
    # The changed file's embedding is now the new content's: equal to new.mp4's (clip 5 vs clip 6 differ).
    emb = {r[1]: np.frombuffer(r[4], dtype=np.float32) for r in rows}
    fresh = tmp_path / "fresh"
    (fresh / "clips").mkdir(parents=True)
    (fresh / "clips" / "clip_00000.mp4").write_bytes(changed.read_bytes())
    _index(search_model, fresh, tmp_path / "fresh_idx")
    np.testing.assert_allclose(emb["clips/clip_00000.mp4"], np.frombuffer(_rows(tmp_path / "fresh_idx")[0][4],
                                                                           dtype=np.float32), atol=1e-6)
    assert sorted(int(p.stem) for p in (out / "thumbs").iterdir()) == sorted(after.values())
    # Unchanged bad file: listed again, not retried.
    fourth = _index(search_model, folder, out)
    assert fourth["indexed"] == 0 and [f["video"] for f in fourth["failed"]] == ["broken.mp4"]
    searcher = Searcher(out)
    assert {h.video for h in searcher.search("a shape", k=10)} == set(paths)
    searcher.close()


def test_settings_and_folder_mismatch_refused(search_world, search_model, tmp_path):
    folder = video_folder(search_world, tmp_path / "videos", clips=1, long=False)
    out = tmp_path / "idx"
    _index(search_model, folder, out)
    with pytest.raises(SearchIndexError, match=r"window: 1\.0 -> 2\.0"):
        _index(search_model, folder, out, window=2.0)
    other = video_folder(search_world, tmp_path / "other", clips=1, long=False)
    with pytest.raises(SearchIndexError, match="indexes .*videos"):
        _index(search_model, other, out)
    assert _index(search_model, folder, out, window=2.0, overwrite=True)["indexed"] == 1


# ----------------------------------------------------------------------------- model identity


def test_model_mismatch_names_both_models(search_world, search_model, tmp_path):
    folder = video_folder(search_world, tmp_path / "videos", clips=1, long=False)
    out = tmp_path / "idx"
    _index(search_model, folder, out)
    other = tiny_model_dir(tmp_path / "other_model", seed=1)
    with pytest.raises(SearchIndexError) as e:
        _index(other, folder, out)
    assert str(search_model) in str(e.value) and str(other) in str(e.value)
    with pytest.raises(SearchIndexError) as e:
        Searcher(out, other)
    assert str(search_model) in str(e.value) and str(other) in str(e.value)
    Searcher(out, search_model).close()  # the same weights from the same place are fine


# ----------------------------------------------------------------------------- resume after SIGKILL


def test_resume_after_sigkill_no_duplicates_no_lost_rows(search_world, search_model, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    data = [(search_world / "videos" / f"clip_{i:05d}.mp4").read_bytes() for i in range(10)]
    for i in range(16):
        (folder / f"v{i:02d}.mp4").write_bytes(data[i % 10])
    (folder / "long.mp4").write_bytes((search_world / "localization" / "long_00000.mp4").read_bytes())
    out = tmp_path / "idx"
    cmd = [sys.executable, "-m", "internvideo.search", "index", str(folder), "--model", str(search_model),
           "--out", str(out), "--window", "1", "--stride", "0.5", "--batch-size", "1", "--precision", "fp32",
           "--no-progress"]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / DB_NAME).exists():
                try:
                    db = sqlite3.connect(f"file:{out / DB_NAME}?mode=ro", uri=True, timeout=1)
                    done = db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
                    db.close()
                except sqlite3.OperationalError:
                    done = 0
                if done >= 3:
                    break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert 3 <= done < 17, f"the kill should land mid-run (videos committed: {done}); stderr: {proc.stderr.read()}"

    # What the killed run left is consistent: every video row has all its windows and thumbnails.
    store = Store(out)
    killed_videos = store.videos()
    assert len(killed_videos) < 17
    per_video = dict(store.db.execute("SELECT v.path, COUNT(w.id) FROM videos v LEFT JOIN windows w "
                                      "ON w.video_id = v.id GROUP BY v.id").fetchall())
    assert all(n >= 1 for n in per_video.values())
    for (wid,) in store.db.execute("SELECT id FROM windows"):
        assert store.thumb_path(wid).is_file()
    store.close()
    # Searching the half-built index works (the vector file is missing or stale: rebuilt from the rows).
    searcher = Searcher(out)
    assert len(searcher) == sum(per_video.values())
    searcher.close()

    resumed = _index(search_model, folder, out)
    assert resumed["unchanged"] == len(killed_videos) and resumed["indexed"] == 17 - len(killed_videos)
    reference = tmp_path / "reference"
    _index(search_model, folder, reference)
    got, want = _rows(out), _rows(reference)
    assert len(got) == len(want)
    assert len({(r[1], r[2]) for r in got}) == len(got)  # no duplicate windows
    assert [(r[1], r[2], r[3]) for r in got] == [(r[1], r[2], r[3]) for r in want]
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.frombuffer(a[4], np.float32), np.frombuffer(b[4], np.float32), atol=1e-5)
    assert sorted(int(p.stem) for p in (out / "thumbs").iterdir()) == sorted(r[0] for r in got)


# ----------------------------------------------------------------------------- vector indexes


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d)).astype(np.float32)
    x = centres[rng.integers(50, size=n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact_and_approximate_kinds_reach_target_recall():
    x = _clustered(4000, 32, seed=0)
    ids = np.arange(100, 4100, dtype=np.int64)
    q = _clustered(20, 32, seed=1)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    flat = vectors.build(ids, x, "flat")
    scores, found = flat.search(q, 10)
    np.testing.assert_array_equal(found, ids[truth])
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, truth, axis=1), atol=1e-5)
    for kind in ("flat16", "ivf", "hnsw"):
        vi = vectors.build(ids, x, kind, target_recall=95.0)
        assert vi.params["recall_at_10"] >= 95.0, (kind, vi.params)
        assert vectors.recall_at_k(vi.search(q, 10)[1], ids[truth]) >= 90.0, kind
    assert vectors.recall_at_k(np.array([[1, 2, 3]]), np.array([[1, 2, 4]]), k=3) == pytest.approx(200 / 3)
    big_k = flat.search(q[:1], 5000)
    assert big_k[1].shape == (1, 4000)


def test_ivf_index_saved_and_stale_vector_file_is_rebuilt(search_world, search_model, tmp_path):
    folder = video_folder(search_world, tmp_path / "videos", clips=2)
    out = tmp_path / "idx"
    summary = _index(search_model, folder, out, kind="hnsw")
    assert summary["vectors"]["kind"] == "hnsw" and summary["vectors"]["recall_at_10"] >= 95.0
    meta = json.loads((out / "vectors.json").read_text())
    assert meta["kind"] == "hnsw" and meta["ntotal"] == summary["windows"]
    # Rows removed behind the vector file's back (as an interrupted run would leave it): never returned.
    store = Store(out)
    store.remove_videos(["long.mp4"])
    store.close()
    searcher = Searcher(out)
    assert {h.video for h in searcher.search("a shape", k=50)} == {"clips/clip_00000.mp4", "clips/clip_00001.mp4"}
    searcher.close()


# ----------------------------------------------------------------------------- CLI


def test_cli_index_search_json_and_one_line_errors(search_world, search_model, tmp_path, capsys):
    folder = video_folder(search_world, tmp_path / "videos", clips=2, long=False)
    out = tmp_path / "idx"
    assert search_main(["index", str(folder), "--model", str(search_model), "--out", str(out), "--window", "1",
                        "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "windows in index" in text and f"internvideo serve {out}" in text
    assert search_main(["search", str(out), "a blue square", "-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["k"] == 2 and len(result["results"]) == 2
    assert {r["video"] for r in result["results"]} == {"clips/clip_00000.mp4", "clips/clip_00001.mp4"}
    assert search_main(["search", str(out), "a blue square"]) == 0
    assert "clips/clip_0000" in capsys.readouterr().out
    for argv, needle in [(["search", str(tmp_path / "nowhere"), "x"], "not a search index"),
                         (["search", str(out), "x", "-k", "1000"], "argument -k: expected an integer >= 1 and <= 100"),
                         (["index", str(tmp_path / "missing"), "--model", str(search_model)], "not a folder")]:
        try:
            code = search_main(argv)  # the same printer as cli.main: errors.run_command
        except SystemExit as e:  # a bad option value is refused by argparse (internvideo.argtypes), in one line
            code = e.code
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err.startswith("internvideo: error: ") and needle in err, err
    # The same commands through the main CLI.
    from internvideo.cli import main as cli_main

    assert cli_main(["search", str(out), "a blue square", "-k", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 1
    assert cli_main(["search", str(tmp_path / "nowhere"), "x"]) == 2
    assert "not a search index" in capsys.readouterr().err
    with pytest.raises(SearchIndexError, match="not a search index"):  # --debug: the traceback
        search_main(["--debug", "search", str(tmp_path / "nowhere"), "x"])


# ----------------------------------------------------------------------------- demo stage


def test_demo_stage_indexes_test_clips_and_reports_search_r1(search_world, search_model, tmp_path, capsys):
    from internvideo.demo.context import DemoContext
    from internvideo.demo.search import demo_stage

    ctx = DemoContext(search_world, tmp_path / "search", 0, False, tmp_path, tmp_path, search_model, 32, "smoke")
    rows = demo_stage(ctx)
    n = next(n for split in ("test", "val", "train") if (n := len(
        (search_world / f"captions_{split}.jsonl").read_text().splitlines())))
    (row,) = rows
    assert row["family"] == "search" and row["chance"] == pytest.approx(100.0 / min(n, 10))
    assert 0.0 <= row["value"] <= 100.0
    assert f"internvideo serve {tmp_path / 'search' / 'index'}" in capsys.readouterr().out
    searcher = Searcher(tmp_path / "search" / "index")
    assert len(searcher) == min(n, 10)  # one window per 1 s clip
    searcher.close()
