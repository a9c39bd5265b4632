"""The on-disk search index: SQLite rows + a FAISS vector file + JPEG thumbnails.

Layout of an index folder::

    INDEX_DIR/
      index.db          SQLite: meta (settings, model), videos (one row per file), windows (one row per
                        window with its normalised embedding as float32 bytes)
      vectors.faiss     FAISS index over the window embeddings, ids = window ids
      vectors.json      which index kind, the database generation it was built from, measured recall
      thumbs/<id>.jpg   middle frame of each window

SQLite is the source of truth: every video is written in one transaction
(its video row, all its window rows and embeddings), so a run killed at any
moment leaves each video either fully indexed or absent, and a rerun finishes
the rest. The FAISS file is derived from the database and rebuilt at the end
of every run; ``vectors.json`` records the database *generation* it reflects,
so a reader notices a file left stale by an interrupted run and rebuilds it in
memory rather than returning rows that no longer exist.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError

DB_NAME = "index.db"
VECTORS_NAME = "vectors.faiss"
VECTORS_META = "vectors.json"
THUMBS = "thumbs"
SCHEMA_VERSION = 2
# Version 1 recorded size and mtime but not which file (device, inode) was indexed; 'internvideo index' adds the
# two columns in place (no re-embedding), a reader asks for that run.
_MIGRATE_1_TO_2 = ("ALTER TABLE videos ADD COLUMN dev INTEGER", "ALTER TABLE videos ADD COLUMN ino INTEGER")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,          -- relative to the indexed folder, '/'-separated
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    dev INTEGER,                        -- st_dev and st_ino of the file indexed: the server serves only that file
    ino INTEGER,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error TEXT,
    duration REAL,
    fps REAL,
    model_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused, so a served id never points at another video
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start REAL NOT NULL,
    end REAL NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_video ON windows(video_id);
CREATE VIEW IF NOT EXISTS window_rows AS
    SELECT w.id, w.video_id, v.path, w.start, w.end, v.size, v.mtime_ns, v.model_id
    FROM windows w JOIN videos v ON v.id = w.video_id;
"""


class SearchIndexError(UserError):
    """A search index that cannot be used as asked; the message says why and what to do."""


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's class and weights: two models embed alike only if these match."""
    h = hashlib.blake2b(digest_size=8)
    h.update(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class VideoRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    status: str
    error: str | None
    dev: int | None = None
    ino: int | None = None


@dataclasses.dataclass(frozen=True)
class WindowRow:
    """One window of one video, as search results report it."""

    id: int
    video_id: int
    video: str  # relative path
    start: float
    end: float


class Store:
    """The SQLite side of an index folder (see the module docstring)."""

    def __init__(self, index_dir: str | os.PathLike, *, create: bool = False) -> None:
        self.dir = Path(index_dir)
        db = self.dir / DB_NAME
        if not db.exists():
            if not create:
                raise SearchIndexError(f"{self.dir}: not a search index (no {DB_NAME}); build one with "
                                       "'internvideo index FOLDER --out INDEX_DIR'")
            self.dir.mkdir(parents=True, exist_ok=True)
        # One connection per thread would be tidier, but the server reads only; check_same_thread=False lets
        # FastAPI's thread pool share this read connection (SQLite serialises access itself).
        self.db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        if create:
            self.db.execute("PRAGMA journal_mode = WAL")
            fresh = self.get("schema") is None
            if self.get("schema") == 1:
                with self.transaction() as tx:
                    for statement in _MIGRATE_1_TO_2:
                        tx.execute(statement)
                    tx.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (json.dumps(SCHEMA_VERSION),))
            self.db.executescript(_SCHEMA)
            if fresh:
                self.set("schema", SCHEMA_VERSION)
                self.set("generation", 0)
        schema = self.get("schema")
        if schema == 1:
            raise SearchIndexError(f"{db}: an index of an older version, which does not record which file was "
                                   "indexed; run 'internvideo index FOLDER --out INDEX_DIR' once to upgrade it "
                                   "(nothing is embedded again)")
        if schema != SCHEMA_VERSION:
            raise SearchIndexError(f"{db}: index schema {schema!r}, this version reads {SCHEMA_VERSION}; rebuild it "
                                   "with 'internvideo index ... --overwrite'")

    def close(self) -> None:
        self.db.close()

    # -------------------------------------------------------------------- meta

    def get(self, key: str, default: Any = None) -> Any:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return default
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def generation(self) -> int:
        return int(self.get("generation", 0))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change; it also bumps the generation so the vector file is known to be stale."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself after some errors (a full disk among them); a second ROLLBACK would then
            # fail with "no transaction is active" and hide the real error.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # -------------------------------------------------------------------- videos and windows

    def videos(self) -> dict[str, VideoRow]:
        rows = self.db.execute("SELECT id, path, size, mtime_ns, status, error, dev, ino FROM videos").fetchall()
        return {r[1]: VideoRow(*r) for r in rows}

    def window_ids_of(self, video_ids: Sequence[int]) -> list[int]:
        out: list[int] = []
        for chunk in _chunks(list(video_ids), 500):
            marks = ",".join("?" * len(chunk))
            out += [r[0] for r in self.db.execute(f"SELECT id FROM windows WHERE video_id IN ({marks})", chunk)]
        return out

    def replace_video(self, path: str, size: int, mtime_ns: int, model_id: str, *, windows: Sequence[tuple[float, float]]
                      = (), embeddings: np.ndarray | None = None, error: str | None = None, duration: float | None
                      = None, fps: float | None = None, dev: int | None = None, ino: int | None = None) -> list[int]:
        """Write one video's rows (replacing any earlier ones) atomically; returns the new window ids in order."""
        if error is None and (embeddings is None or len(embeddings) != len(windows) or not len(windows)):
            raise ValueError(f"{path}: need one embedding per window")
        if error is None and not np.isfinite(embeddings).all():
            raise ValueError(f"{path}: non-finite embeddings are never stored")
        with self.transaction() as db:
            db.execute("DELETE FROM videos WHERE path = ?", (path,))
            cur = db.execute("INSERT INTO videos (path, size, mtime_ns, dev, ino, status, error, duration, fps, "
                             "model_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (path, size, mtime_ns, dev, ino, "error" if error else "ok", error, duration, fps,
                              model_id))
            video_id = cur.lastrowid
            ids = []
            if error is None:
                vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
                for (start, end), vec in zip(windows, vectors):
                    cur = db.execute("INSERT INTO windows (video_id, start, end, embedding) VALUES (?, ?, ?, ?)",
                                     (video_id, float(start), float(end), vec.tobytes()))
                    ids.append(cur.lastrowid)
        return ids

    def next_window_ids(self, count: int) -> list[int]:
        """The ids the next ``count`` inserted windows will get (AUTOINCREMENT: max ever used + 1, ...)."""
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'windows'").fetchone()
        first = (row[0] if row else 0) + 1
        return list(range(first, first + count))

    def remove_videos(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self.transaction() as db:
            for chunk in _chunks(list(paths), 500):
                db.execute(f"DELETE FROM videos WHERE path IN ({','.join('?' * len(chunk))})", chunk)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """All window ids ``(N,)`` int64 and embeddings ``(N, D)`` float32, in id order."""
        dim = int(self.get("dim") or 1)  # an index that never stored a window has no dimension yet
        rows = self.db.execute("SELECT id, embedding FROM windows ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        x = np.empty((len(rows), dim), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            x[i] = np.frombuffer(blob, dtype=np.float32)
        return ids, x

    def count_windows(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM windows").fetchone()[0])

    def windows(self, ids: Sequence[int]) -> dict[int, WindowRow]:
        out: dict[int, WindowRow] = {}
        for chunk in _chunks([int(i) for i in ids], 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(f"SELECT id, video_id, path, start, end FROM window_rows WHERE id IN ({marks})", chunk):
                out[r[0]] = WindowRow(*r)
        return out

    def has_window(self, window_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM windows WHERE id = ?", (int(window_id),)).fetchone() is not None

    def set_identity(self, path: str, dev: int, ino: int) -> None:
        """Record which file (device, inode) a row of an upgraded version-1 index was built from."""
        self.db.execute("UPDATE videos SET dev = ?, ino = ? WHERE path = ?", (dev, ino, path))

    def video_record(self, video_id: int) -> VideoRow | None:
        """An indexed (readable) video's row; None for an unknown id."""
        row = self.db.execute("SELECT id, path, size, mtime_ns, status, error, dev, ino FROM videos "
                              "WHERE id = ? AND status = 'ok'", (int(video_id),)).fetchone()
        return None if row is None else VideoRow(*row)

    def failures(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT path, error FROM videos WHERE status = 'error' "
                                                      "ORDER BY path")]

    def thumb_path(self, window_id: int) -> Path:
        return self.dir / THUMBS / f"{int(window_id)}.jpg"


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
