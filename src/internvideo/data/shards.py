"""WebDataset tar shards: writing them from a list, and streaming them into training.

At scale, reading one file per clip at random from a shared filesystem is the
bottleneck; reading a few large tar files front to back is not. A shard holds
samples as the WebDataset convention has them: members ``KEY.mp4`` (the video
file's bytes, as they were: no re-encoding) and ``KEY.json`` (``{"id", "label"
| "caption", "duration", "num_frames", "fps"}``). ``shards.json`` beside them
is the index: sample counts per shard and in all, the class names, the inputs
skipped as unreadable.

* :func:`write_shards` (``internvideo shard``) copies the videos of a
  classification list or video-text JSON lines into shards. Each input is
  probed first; unreadable ones are listed in the index and skipped. A
  finished shard is renamed into place and recorded in the index, so an
  interrupted run resumes after the last finished shard.
* :class:`ShardStream` reads them for training with the same samplers and
  transforms as file lists (it drives the training set an objective built).

Exact split and exact resume. For each epoch the shard order is a permutation
of ``(seed, epoch)``; the samples of that order are cut into one contiguous
range per reader (``rank x worker``), equal in length and a whole number of
batches (the few samples beyond are dropped for that epoch, like
``drop_last``). A reader opens only the shards its range touches, passes the
samples through a shuffle buffer seeded by ``(seed, epoch, reader)`` and
decodes after the buffer. With every reader yielding the same number of
batches, ``DataLoader`` takes them round-robin, so the number of batches a rank
has consumed says how many each of its readers has; a resumed stream replays
its reader's byte stream and buffer without decoding up to that point and
continues with the next sample. Per-sample randomness comes from the sample's
position in the shard set, exactly as a file list uses its line number.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import multiprocessing
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError, UserError
from .datasets import ClassificationSample, VideoClassificationDataset, VideoTextSample, read_classes
from .datasets import read_classification_list, video_dataset_of
from .datasets import read_video_text
from .video import PathLike, VideoError, probe
from .workers import note_decoding

__all__ = ["ShardError", "ShardIndex", "ShardStream", "write_shards", "read_index", "expand_shards", "INDEX_NAME",
           "VIDEO_EXTENSIONS"]

log = logging.getLogger("internvideo.data")

INDEX_NAME = "shards.json"
FORMAT = "internvideo-webdataset"
#: Member suffixes read as the sample's video.
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov", "m4v", "mpg", "mpeg", "ogv", "gif")


class ShardError(UserError):
    """A shard, its index or one of its samples is unusable; the message names the shard (and sample).

    Raised in a loader worker, it reaches the main process re-wrapped by
    ``DataLoader`` with the worker's traceback; the original one line is kept.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


# ----------------------------------------------------------------------------- the index


@dataclasses.dataclass(frozen=True)
class ShardIndex:
    """``shards.json``: the shards (file name, sample count) in order and what the samples are."""

    folder: Path
    names: tuple[str, ...]
    counts: tuple[int, ...]
    kind: str  # "classification" or "video_text"
    classes: tuple[str, ...] | None
    num_classes: int | None
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts)

    def first(self, shard: int) -> int:
        """Position of the first sample of shard ``shard`` in the whole set (its per-sample random key)."""
        return sum(self.counts[:shard])


def read_index(path: PathLike) -> ShardIndex:
    """The index of a shard folder (``path`` is the folder, its ``shards.json`` or a shard pattern in it)."""
    p = Path(path)
    if p.suffix != ".json":
        p = (p if p.is_dir() else p.parent) / INDEX_NAME
    if not p.exists():
        raise ShardError(f"{p}: no shard index (write shards with `internvideo shard`, which writes {INDEX_NAME} "
                         "beside them)")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ShardError(f"{p}: not an internvideo shard index (expected \"format\": \"{FORMAT}\")")
    if not data.get("complete"):
        raise ShardError(f"{p}: sharding did not finish ({len(data.get('shards', []))} shards written); run "
                         "`internvideo shard` again with the same arguments to resume it")
    shards = data["shards"]
    return ShardIndex(p.parent, tuple(s["name"] for s in shards), tuple(int(s["samples"]) for s in shards),
                      data["kind"], tuple(data["classes"]) if data.get("classes") else None, data.get("num_classes"),
                      tuple((s["path"], s["reason"]) for s in data.get("skipped", [])))


def expand_shards(pattern: str) -> tuple[ShardIndex, list[str]]:
    """``"shards/{000000..000127}.tar"`` -> (the index beside them, the shard URLs in index order).

    The pattern (brace-expanded as WebDataset does) must name exactly the
    shards of the index, so that an epoch is the index's sample count.
    """
    import braceexpand

    urls = list(braceexpand.braceexpand(pattern))
    local = "://" not in pattern
    index = read_index(Path(urls[0]).parent if local else Path(pattern.split("://", 1)[1]).parent)
    by_name = {os.path.basename(u): u for u in urls}
    missing = [n for n in index.names if n not in by_name]
    extra = sorted(set(by_name) - set(index.names))
    if missing or extra:
        raise ShardError(f"data.shards: {pattern!r} names {len(urls)} shard(s) but {index.folder / INDEX_NAME} lists "
                         f"{len(index.names)}" + (f"; missing {missing[:3]}" if missing else "")
                         + (f"; not in the index {extra[:3]}" if extra else ""))
    if local:
        absent = [u for u in urls if not os.path.exists(u)]
        if absent:
            raise ShardError(f"data.shards: {len(absent)} shard file(s) of {pattern!r} do not exist: {absent[:3]}")
    return index, [by_name[n] for n in index.names]


# ----------------------------------------------------------------------------- writing


def _read_inputs(annotation: PathLike, root: PathLike | None) -> tuple[str, list[tuple[str, dict]]]:
    """(kind, [(video path, JSON fields)]) from a classification list or video-text JSON lines."""
    name = os.fspath(annotation)
    if name.endswith((".jsonl", ".json")):
        return "video_text", [(s.video, {"caption": list(s.captions)}) for s in read_video_text(annotation, root)]
    return "classification", [(s.path, {"label": s.label}) for s in read_classification_list(annotation, root)]


def _parse_size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, KeyError):
        raise UsageError(f"--shard-size: expected a size such as 1GB, 500MB or 1048576, got {text!r}") from None


def write_shards(annotation: PathLike, out: PathLike, *, root: PathLike | None = None,
                 shard_size: int | str = "1GB", shuffle_seed: int | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Copy the videos of ``annotation`` into WebDataset shards in ``out``; returns the index written.

    ``shuffle_seed`` shuffles the samples once before sharding (so each shard
    mixes classes); ``None`` keeps the list's order. A shard closes before a
    sample would take it past ``shard_size`` bytes. Rerunning with the same
    arguments after an interruption continues after the last finished shard.
    """
    import webdataset as wds

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size_limit = _parse_size(shard_size)
    kind, inputs = _read_inputs(annotation, root if root is not None else
                                os.path.dirname(os.path.abspath(os.fspath(annotation))))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(inputs))
        inputs = [inputs[i] for i in order]
    settings = {"source": os.path.abspath(os.fspath(annotation)), "shuffle_seed": shuffle_seed,
                "shard_size": size_limit, "inputs": len(inputs)}
    classes = None
    if kind == "classification":
        guess = Path(annotation).with_name("classes.txt")
        classes = read_classes(guess) if guess.exists() else None
    index_path = out / INDEX_NAME
    state: dict[str, Any] = {"format": FORMAT, "version": 1, "complete": False, **settings, "kind": kind,
                             "classes": classes, "shards": [], "skipped": [], "next_input": 0}
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if {k: old.get(k) for k in settings} != settings:
            raise ShardError(f"{index_path}: written from other inputs or settings "
                             f"({ {k: old.get(k) for k in settings} }); use another --out folder")
        if old.get("complete"):
            return old
        state = old
        log.info("resuming after %d finished shard(s)", len(state["shards"]))
    for stale in out.glob("*.tar.tmp"):
        stale.unlink()

    def save() -> None:
        tmp = index_path.with_name(INDEX_NAME + ".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, index_path)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(inputs), initial=state["next_input"], desc="sharding", unit="video")
    position = sum(s["samples"] for s in state["shards"])
    i = state["next_input"]
    while i < len(inputs):
        name = f"{len(state['shards']):06d}.tar"
        tmp = out / (name + ".tmp")
        count, skipped = 0, []
        with wds.TarWriter(str(tmp)) as sink:
            while i < len(inputs):
                path, fields = inputs[i]
                try:
                    info = probe(path, exact=True)
                    size = os.path.getsize(path)
                except (VideoError, OSError) as e:
                    reason = e.problem if isinstance(e, VideoError) else (e.strerror or str(e))
                    log.warning("skipping unreadable video %s: %s", path, reason)
                    skipped.append({"path": path, "reason": reason})
                    i += 1
                    if bar is not None:
                        bar.update(1)
                    continue
                if count and sink.tarstream.fileobj.tell() + size > size_limit:
                    break
                ext = Path(path).suffix.lower().lstrip(".") or "mp4"
                ext = ext if ext in VIDEO_EXTENSIONS else "mp4"
                sample_id = os.path.relpath(path, root) if root is not None else Path(path).name
                meta = {"id": sample_id, **fields, "duration": info.duration, "num_frames": info.num_frames,
                        "fps": info.fps}
                with open(path, "rb") as f:
                    sink.write({"__key__": f"{position + count:09d}", ext: f.read(), "json": meta})
                count += 1
                i += 1
                if bar is not None:
                    bar.update(1)
        if count:
            os.replace(tmp, out / name)
            state["shards"].append({"name": name, "samples": count, "bytes": (out / name).stat().st_size})
            position += count
        else:
            tmp.unlink()
        state["skipped"] += skipped
        state["next_input"] = i
        save()
    if bar is not None:
        bar.close()
    if kind == "classification":
        labels = [f["label"] for _, f in inputs]
        state["num_classes"] = len(classes) if classes else (max(labels) + 1 if labels else 0)
    state["samples"] = position
    state["complete"] = True
    save()
    return state


# ----------------------------------------------------------------------------- reading


def _has_end_marker(url: str) -> bool:
    """Whether a local tar file ends with the two zero blocks every complete tar has (``tarfile`` treats a header
    cut short as the end, so a shard cut inside its last sample reads as a shorter, valid one). Streams and
    compressed shards cannot be checked this way and count as complete."""
    path = url[len("file:"):] if url.startswith("file:") else url
    if not path.endswith(".tar") or not os.path.isfile(path) or os.path.getsize(path) < 1024:
        return True
    with open(path, "rb") as f:
        f.seek(-1024, os.SEEK_END)
        return not any(f.read(1024))


def _slot_ranges(counts: Sequence[int], order: Sequence[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """(shard, skip, take) covering positions ``[start, stop)`` of the samples in shard order ``order``."""
    out, pos = [], 0
    for shard in order:
        n = counts[shard]
        lo, hi = max(start, pos), min(stop, pos + n)
        if lo < hi:
            out.append((shard, lo - pos, hi - lo))
        pos += n
        if pos >= stop:
            break
    return out


class _Current:
    """Stands in for a dataset's ``videos`` / ``samples`` list: holds the one sample being made."""

    def __init__(self, length: int) -> None:
        self.length, self.key, self.value = length, -1, None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if index != self.key:
            raise IndexError(f"sample {index} is not the one being streamed ({self.key})")
        return self.value


class ShardStream(torch.utils.data.IterableDataset):
    """Training items from shards, made by ``dataset`` (the objective's training set) as it makes them from lists.

    ``dataset`` is a map-style dataset wrapping a :class:`VideoDataset`
    (e.g. the loop's seeded wrapper around an objective's training set); for
    each sample the stream puts the sample's video and annotation in place of
    the dataset's lists and asks it for item ``position``, so samplers,
    transforms, masks and per-sample seeds are the ones a file list gets.
    ``batch`` is the micro-batch in items; an epoch is the index's sample count
    split evenly across ``world`` ranks and ``num_workers`` loader workers.
    """

    def __init__(self, urls: Sequence[str], index: ShardIndex, dataset: Any, *, batch: int, rank: int = 0,
                 world: int = 1, num_workers: int = 0, seed: int = 0, shuffle_buffer: int = 128,
                 labels_required: bool = True, tmp_dir: str | None = None) -> None:
        self.urls, self.index, self.dataset = list(urls), index, dataset
        self.inner = video_dataset_of(dataset)
        self.strict = self.inner.strict
        self.batch, self.rank, self.world, self.workers = batch, rank, world, num_workers
        self.seed, self.shuffle_buffer, self.labels_required = seed, shuffle_buffer, labels_required
        self.tmp_dir = tmp_dir
        # Shared with loader workers forked from this process, so persistent workers see each new epoch.
        self._position = multiprocessing.RawArray(ctypes.c_longlong, 2)  # epoch, batches already consumed
        self.per_reader = index.total // (world * max(num_workers, 1)) // batch * batch
        if self.per_reader == 0:
            raise ShardError(f"{index.folder / INDEX_NAME}: {index.total} samples cannot give every one of "
                             f"{world} rank(s) x {max(num_workers, 1)} loader worker(s) a batch of {batch}")

    def __len__(self) -> int:
        """Items per epoch on this rank."""
        return self.per_reader * max(self.workers, 1)

    @property
    def dropped(self) -> int:
        """Samples left out of each epoch (a different few every epoch) to split the rest evenly."""
        return self.index.total - self.per_reader * self.world * max(self.workers, 1)

    def set_epoch(self, epoch: int, start_batches: int = 0) -> None:
        """Stream epoch ``epoch`` after the first ``start_batches`` micro-batches this rank has consumed."""
        self._position[0], self._position[1] = epoch, start_batches

    def shard_order(self, epoch: int) -> list[int]:
        return np.random.default_rng([self.seed, epoch, 0x5A4D]).permutation(len(self.urls)).tolist()

    def reader_plan(self, epoch: int, reader: int) -> list[tuple[int, int, int]]:
        """(shard, samples to skip, samples to take) of reader ``rank * workers + worker`` in ``epoch``."""
        return _slot_ranges(self.index.counts, self.shard_order(epoch), reader * self.per_reader,
                            (reader + 1) * self.per_reader)

    # -- reading raw samples
    def _raw(self, plan: list[tuple[int, int, int]]) -> Iterator[tuple[int, str, dict]]:
        """(position in the shard set, shard name, sample members) in plan order."""
        from webdataset import tarfile_samples

        for shard, skip, take in plan:
            url, first = self.urls[shard], self.index.first(shard)
            want, listed = skip + take, self.index.counts[shard]
            # A tar cut short ends with a sample whose members are partly missing, and the reader cannot tell:
            # a sample is passed on only once the next one has started (or the shard ended with every sample it
            # lists), so a truncated shard is reported as such rather than as a sample without its video.
            seen, pending, ended = 0, None, True
            try:
                for sample in tarfile_samples([{"url": url}]):
                    if pending is not None:
                        yield pending
                        pending = None
                    if seen >= want:
                        ended = False
                        break
                    if seen >= skip:
                        pending = (first + seen, url, sample)
                    seen += 1
            except ShardError:
                raise
            except Exception as e:  # noqa: BLE001 - tarfile, gzip and URL openers raise many kinds
                raise ShardError(f"{url}: unreadable shard after {seen} sample(s) ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:200]})") from e
            if ended and (seen < want or seen != listed):
                raise ShardError(f"{url}: ends after {seen} sample(s) but the index lists {listed} "
                                 "(truncated or replaced shard; write the shards again)")
            if ended and not _has_end_marker(url):  # cut inside the last sample: the count alone still matches
                raise ShardError(f"{url}: ends after {seen - 1} complete sample(s), inside the last one, without "
                                 "the tar end-of-archive blocks (truncated shard; write the shards again)")
            if pending is not None:
                yield pending

    def _shuffled(self, raw: Iterator, rng: np.random.Generator) -> Iterator:
        if self.shuffle_buffer <= 1:
            yield from raw
            return
        buf: list = []
        for item in raw:
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], item = item, buf[j]
            yield item
        rng.shuffle(buf)
        yield from buf

    # -- making items
    def _record(self, url: str, sample: dict, video: str) -> ClassificationSample | VideoTextSample:
        key = sample.get("__key__")
        if "json" not in sample:
            raise ShardError(f"{url}: sample {key} has no .json member")
        try:
            meta = json.loads(sample["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ShardError(f"{url}: sample {key}: its .json is not valid JSON ({e})") from None
        if isinstance(self.inner, VideoClassificationDataset):
            label = meta.get("label")
            if label is None and self.labels_required:
                raise ShardError(f"{url}: sample {key} ({meta.get('id', '?')}): its JSON has no \"label\"")
            if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
                raise ShardError(f"{url}: sample {key}: \"label\" must be an integer, got {label!r}")
            return ClassificationSample(video, -1 if label is None else label)
        captions = meta.get("caption")
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
            raise ShardError(f"{url}: sample {key} ({meta.get('id', '?')}): its JSON needs \"caption\" (a string or "
                             "a list of strings)")
        return VideoTextSample(video, tuple(captions))

    def _make(self, position: int, url: str, sample: dict, tmp: str) -> dict:
        exts = [e for e in VIDEO_EXTENSIONS if e in sample]
        if not exts:
            raise ShardError(f"{url}: sample {sample.get('__key__')} has no video member (one of "
                             f"{', '.join('.' + e for e in VIDEO_EXTENSIONS[:5])}, ...)")
        video = os.path.join(tmp, f"{sample['__key__']}.{exts[0]}")
        record = self._record(url, sample, video)
        with open(video, "wb") as f:
            f.write(sample[exts[0]])
        note_decoding(f"{url}: sample {sample['__key__']}")
        try:
            self.inner.videos = _Current(self.index.total)
            self.inner.samples = _Current(self.index.total)
            self.inner.videos.key = self.inner.samples.key = position
            self.inner.videos.value, self.inner.samples.value = video, record
            self.inner.strict = True  # replacements are the stream's business (below)
            item = self.dataset[position]
        finally:
            os.unlink(video)
        for view in item if isinstance(item, list) else [item]:
            view["path"] = f"{os.path.basename(url)}/{sample['__key__']}"
        return item

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        if (info.num_workers if info is not None else 0) != self.workers:
            raise RuntimeError(f"ShardStream was planned for {self.workers} loader workers, runs in "
                               f"{info.num_workers if info else 0}")
        epoch, start = int(self._position[0]), int(self._position[1])
        # DataLoader asks its workers round-robin, worker 0 first, and with equal lengths reader r made batches
        # r, r + W, ... of this rank. Resuming after `start` batches, worker 0 must make batch `start`, so the
        # workers take the readers' parts rotated by `start`.
        role = (worker + start) % max(self.workers, 1)
        reader = self.rank * max(self.workers, 1) + role
        consumed = len(range(role, start, max(self.workers, 1))) * self.batch
        rng = np.random.default_rng([self.seed, epoch, reader, 0x5B])
        items = self._shuffled(self._raw(self.reader_plan(epoch, reader)), rng)
        last_good: tuple[int, str, dict] | None = None
        pending: list[tuple[int, str, str]] = []  # unreadable samples waiting for a replacement
        tmp = tempfile.mkdtemp(prefix="internvideo-shard-", dir=self.tmp_dir)
        try:
            for n, (position, url, sample) in enumerate(items):
                if n < consumed:
                    continue  # replayed: read, never decoded
                try:
                    item = self._make(position, url, sample, tmp)
                except (VideoError, FileNotFoundError) as e:
                    if self.strict:
                        raise
                    reason = e.problem if isinstance(e, VideoError) else "file not found"
                    name = f"{os.path.basename(url)}/{sample.get('__key__')}"
                    log.warning("skipping unreadable video %s: %s", name, reason)
                    if last_good is None:
                        pending.append((position, name, reason))
                        continue
                    item = self._replacement(position, last_good, tmp, [(name, reason)])
                else:
                    last_good = (position, url, sample)
                    for p, name, reason in pending:  # the first readable sample stands in for the ones before it
                        yield self._replacement(p, last_good, tmp, [(name, reason)])
                    pending = []
                yield item
            if pending:
                raise ShardError(f"every sample of this reader's share was unreadable (first: {pending[0][1]}: "
                                 f"{pending[0][2]})")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _replacement(self, position: int, good: tuple[int, str, dict], tmp: str,
                     skipped: list[tuple[str, str]]) -> dict:
        # The readable sample again, with the unreadable one's random draws, so counts and seeds stay put.
        _, url, sample = good
        item = self._make(position, url, sample, tmp)
        (item[0] if isinstance(item, list) else item)["skipped"] = skipped
        return item
