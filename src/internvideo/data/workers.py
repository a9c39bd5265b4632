"""Which video each ``DataLoader`` worker is decoding, so a worker that dies can be reported with it.

A worker killed by a signal (a decoder crash, the out-of-memory killer) takes
its Python state with it; ``DataLoader`` then only says "worker (pid N) exited
unexpectedly". :class:`WorkerWatch` keeps, in shared memory created before the
workers fork, each worker's pid and the video it started decoding last
(datasets call :func:`note_decoding`), and :meth:`WorkerWatch.iterate` turns
that error into one naming the video.
"""
from __future__ import annotations

import ctypes
import os
import multiprocessing
import re
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ..errors import UserError

__all__ = ["WorkerDied", "WorkerWatch", "note_decoding"]

_SLOT = 512  # bytes of the path kept per worker
_watch: WorkerWatch | None = None


class WorkerDied(UserError):
    """A loader worker died (a decoder crash, the out-of-memory killer); the message names the video it was decoding."""


def note_decoding(name: str) -> None:
    """Record (in a loader worker under a :class:`WorkerWatch`) that ``name`` is being decoded now."""
    info = torch.utils.data.get_worker_info()
    if _watch is None or info is None or info.id >= _watch.size:
        return
    data = name.encode("utf-8", "replace")[: _SLOT - 1]
    start = info.id * _SLOT
    _watch.paths[start:start + len(data) + 1] = data + b"\0"
    _watch.pids[info.id] = os.getpid()


class WorkerWatch:
    """Shared slots (pid, video) per loader worker; create it before the loader's workers start (fork)."""

    def __init__(self, num_workers: int) -> None:
        global _watch
        self.size = max(num_workers, 1)
        self.paths = multiprocessing.RawArray(ctypes.c_char, self.size * _SLOT)
        self.pids = multiprocessing.RawArray(ctypes.c_long, self.size)
        _watch = self

    def decoding(self, pid: int | None = None) -> list[str]:
        """What the worker with ``pid`` (or every worker) was decoding last."""
        out = []
        for i in range(self.size):
            if pid is None or self.pids[i] == pid:
                raw = bytes(self.paths[i * _SLOT:(i + 1) * _SLOT]).split(b"\0", 1)[0]
                if raw:
                    out.append(raw.decode("utf-8", "replace"))
        return out

    def iterate(self, batches: Iterable[Any]) -> Iterator[Any]:
        """``batches`` unchanged; a worker's death becomes :class:`WorkerDied` naming its video."""
        it = iter(batches)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except (RuntimeError, ConnectionError, EOFError) as e:
                # Until a dead worker is unregistered, torch's SIGCHLD handler re-raises its death wherever the
                # main thread happens to be (inside this handler too): hold SIGCHLD back until then.
                held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
                try:
                    error = self._death(it, e)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                if error is None:
                    raise
                raise error from e
            yield batch

    def _death(self, it: Any, e: Exception) -> WorkerDied | None:
        """The :class:`WorkerDied` that ``e`` (raised by the loader iterator ``it``) stands for, after shutting the
        loader's workers down; None when ``e`` is not a worker's death."""
        # torch reports a dead worker as a RuntimeError, unless the worker died mid-message: then the queue it was
        # writing to breaks first (ConnectionResetError / EOFError), possibly before the worker has finished exiting.
        try:
            dead = _dead_workers(it, wait=0.0 if isinstance(e, RuntimeError) else 2.0)
        except RuntimeError as death:  # a SIGCHLD caught before it was held back: torch's own report of the death
            e, dead = death, []
        text = str(e)
        if isinstance(e, RuntimeError):
            if "DataLoader worker" not in text or not re.search(r"exited unexpectedly|killed by signal", text):
                return None
        elif not dead:
            return None
        else:
            text = f"DataLoader worker (pid {', '.join(map(str, dead))}) exited unexpectedly"
        shutdown = getattr(it, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()
        pids = [int(p) for p in re.findall(r"\d+", (re.search(r"pid\(?s?\)?\s*([\d, ]+)", text) or
                                                    re.search(r"()", text)).group(1))]
        videos = [v for p in pids for v in self.decoding(p)] or self.decoding()
        reason = text.split(". ", 1)[0]
        return WorkerDied(f"{reason} while decoding {' or '.join(videos) if videos else 'an unknown video'}; "
                          "if a video crashes the decoder, check it with `ffprobe` and leave it out")


def _dead_workers(it: Any, wait: float) -> list[int]:
    """Pids of the loader iterator's workers that have exited, waiting up to ``wait`` seconds for one to."""
    workers = list(getattr(it, "_workers", ()))
    deadline = time.monotonic() + wait
    while True:
        dead = [w.pid for w in workers if not w.is_alive()]
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.02)
