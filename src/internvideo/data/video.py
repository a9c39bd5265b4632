"""Frame-accurate video decoding (and writing) with PyAV.

Two functions form the contract the rest of the library relies on:

* :func:`probe` reads a container header and says how many frames a video has,
  its frame rate, size and duration.
* :func:`read_frames` returns the frames at the requested indices as one uint8
  array ``(N, H, W, 3)`` in the order asked (repeats allowed).

"Frame ``i``" always means the ``i``-th frame in *presentation* order, the
order a player shows them. Decoders receive packets in *decode* order, which
differs from presentation order as soon as a stream has B-frames, so an index
cannot be turned into a file position by arithmetic. Instead we demux the
stream once (cheap: no decoding) and record every packet's timestamp and
keyframe flag. Sorting those timestamps gives the presentation order, so frame
``i`` is identified by its timestamp, and every decoded frame is checked by its
timestamp before it is returned. That keeps the result exact for B-frames, long
GOPs, open GOPs and variable frame rate, in every container FFmpeg demuxes.
The timestamp table is cached per process (keyed by path, size and mtime), so
a dataset that reads the same file every epoch scans it once per worker.

Decoding only what is needed: for each wanted frame we know the keyframe it
must be decoded from. When that keyframe lies further ahead than
``SEEK_PENALTY_FRAMES`` frames of the current decoder position, we seek to it;
otherwise decoding straight through is cheaper than flushing the decoder and
decoding a keyframe again. A 16-frame clip from a two-hour film therefore costs
a few GOPs, not the whole film.

Nothing is shared between calls: each call opens its own container, so the
functions are safe in forked or spawned ``DataLoader`` workers, and memory is
bounded by the frames asked for plus one GOP inside FFmpeg.

Files whose packets carry no usable timestamps (some AVI files) fall back to
decoding from the start and counting frames, which is exact but slower.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import functools
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
import av
import numpy as np

from ..errors import UserError

__all__ = ["VideoError", "VideoInfo", "probe", "read_frames", "write_video", "SEEK_PENALTY_FRAMES"]

#: Decoding this many frames costs about as much as one seek (decoder flush,
#: demuxer repositioning and decoding the keyframe again). Wanted frames whose
#: keyframe is closer than this to the decoder's position are reached by
#: decoding straight through.
SEEK_PENALTY_FRAMES = 12

# FFmpeg happily "decodes" some non-video files as video: plain text becomes an
# ANSI-art stream of the tty demuxer. Those are never what a user meant.
_NOT_VIDEO_CODECS = frozenset({"ansi", "text", "bintext", "xbin", "idf"})

PathLike = str | os.PathLike


class VideoError(UserError):
    """A video file could not be read; the message names the file and the problem."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video stream.

    ``num_frames`` comes from the container header when it states one and from
    counting the stream's packets otherwise (Matroska/WebM never state it).
    ``fps`` is the average frame rate (frames / duration) for variable-rate video.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str


# ----------------------------------------------------------------------------- opening


def _open(path: PathLike) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a clear error."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(errno.ENOENT, "video file not found", p)
    if os.path.isdir(p):
        raise VideoError(p, "is a directory, not a video file")
    if os.path.getsize(p) == 0:
        raise VideoError(p, "file is empty (0 bytes)")
    try:
        return av.open(p, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise VideoError(p, f"not a readable video or media file ({reason})") from e


def _video_stream(container: av.container.InputContainer, path: PathLike) -> av.video.stream.VideoStream:
    """The first real video stream (cover-art pictures attached to audio files don't count)."""
    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        codec = stream.codec_context.name
        if codec in _NOT_VIDEO_CODECS:
            raise VideoError(path, f"not a video: FFmpeg read it as {container.format.name!r} with codec {codec!r}")
        return stream
    kinds = sorted({s.type for s in container.streams}) or ["none"]
    raise VideoError(path, f"no video stream (streams found: {', '.join(kinds)})")


def _configure_decoder(stream: av.video.stream.VideoStream, threads: int) -> None:
    ctx = stream.codec_context
    ctx.thread_count = threads
    ctx.thread_type = "SLICE" if threads == 1 else "AUTO"


# ----------------------------------------------------------------------------- frame table


@dataclasses.dataclass(frozen=True)
class _FrameTable:
    """Timestamps of every packet of the video stream, from one demux pass.

    Attributes are indexed by *presentation* index unless named ``*_by_decode``.
    ``pts`` is ``None`` when the packets carry no usable timestamps; then only
    ``num_frames`` is meaningful and frames are found by counting.
    """

    num_frames: int
    truncated: bool
    pts: np.ndarray | None  # (N,) int64, ascending
    decode_pos: np.ndarray | None  # (N,) decode position of each presentation index
    pts_by_decode: np.ndarray | None  # (N,) int64
    seek_ts_by_decode: np.ndarray | None  # (N,) timestamp to seek to, to land at that packet
    keyframes: tuple[int, ...]  # decode positions of keyframes, ascending

    @functools.cached_property
    def index_of_pts(self) -> dict[int, int]:
        return {int(t): i for i, t in enumerate(self.pts)} if self.pts is not None else {}

    @functools.cached_property
    def decode_pos_of_pts(self) -> dict[int, int]:
        return {int(t): i for i, t in enumerate(self.pts_by_decode)} if self.pts_by_decode is not None else {}

    def start_keyframe(self, index: int) -> int:
        """Position (in ``keyframes``) of the keyframe to start decoding from for frame ``index``."""
        d = int(self.decode_pos[index])
        k = max(bisect.bisect_right(self.keyframes, d) - 1, 0)
        # Open GOP: a frame shown before its GOP's keyframe may reference the
        # previous GOP, so decoding has to start one keyframe earlier.
        if k > 0 and self.pts[index] < self.pts_by_decode[self.keyframes[k]]:
            k -= 1
        return k


def _scan(path: str) -> _FrameTable:
    """Demux (without decoding) the whole video stream and record packet timestamps."""
    pts: list[int | None] = []
    dts: list[int | None] = []
    keyframes: list[int] = []
    truncated = False
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # PyAV's end-of-stream marker
                    continue
                if packet.is_corrupt:  # a packet cut short by the end of the file
                    truncated = True
                    break
                if packet.is_discard:  # outside the edit list: the decoder drops it
                    continue
                if packet.is_keyframe:
                    keyframes.append(len(pts))
                pts.append(packet.pts)
                dts.append(packet.dts)
        except av.FFmpegError:
            truncated = True
    n = len(pts)
    if n == 0:
        return _FrameTable(0, truncated, None, None, None, None, ())
    usable = all(t is not None for t in pts) and len(set(pts)) == n and keyframes and keyframes[0] == 0
    if not usable:
        return _FrameTable(n, truncated, None, None, None, None, tuple(keyframes))
    pts_dec = np.asarray(pts, dtype=np.int64)
    # Seek by the smaller of pts and dts: demuxers index by one or the other,
    # and seeking backward from the smaller one can only land on this packet or earlier.
    seek_ts = np.asarray([p if d is None else min(p, d) for p, d in zip(pts, dts, strict=True)], dtype=np.int64)
    order = np.argsort(pts_dec, kind="stable")
    return _FrameTable(n, truncated, pts_dec[order], order, pts_dec, seek_ts, tuple(keyframes))


@functools.lru_cache(maxsize=128)
def _cached_scan(path: str, size: int, mtime_ns: int) -> _FrameTable:
    return _scan(path)


def _frame_table(path: PathLike) -> _FrameTable:
    p = os.fspath(path)
    st = os.stat(p)
    return _cached_scan(os.path.realpath(p), st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------- probe


def _header_count_is_reliable(format_name: str) -> bool:
    """MP4/MOV frame counts come from the sample table the demuxer itself reads
    packets from, so they are right unless the file is cut short. Other
    containers state counts in free-standing header fields (AVI's dwLength is
    often wrong) or not at all (Matroska, WebM), so their packets are counted."""
    return "mp4" in format_name.split(",") or "mov" in format_name.split(",")


def probe(path: PathLike, *, exact: bool = False) -> VideoInfo:
    """Read a video's header: frame count, frame rate, size and duration.

    The frame count comes from the MP4/MOV sample table when there is one and
    otherwise from counting the stream's packets (one demux pass, no decoding,
    cached per process). ``exact=True`` counts packets for MP4 too, which also
    catches files truncated after their header was written.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: the file is empty, not a media file, or has no video stream.
    """
    p = os.fspath(path)
    with _open(p) as container:
        stream = _video_stream(container, p)
        ctx = stream.codec_context
        width, height, codec = ctx.width, ctx.height, ctx.name
        container_format = container.format.name
        header_frames = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
    trusted = header_frames > 0 and not exact and _header_count_is_reliable(container_format)
    num_frames = header_frames if trusted else _frame_table(p).num_frames
    if num_frames == 0:
        raise VideoError(p, "video stream has no frames")
    fps = float(rate) if rate else (num_frames / duration if duration > 0 else 0.0)
    if duration <= 0 and fps > 0:
        duration = num_frames / fps
    if fps <= 0 and duration > 0:
        fps = num_frames / duration
    return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height, duration=duration, codec=codec)


# ----------------------------------------------------------------------------- reading


class _Fallback(Exception):
    """Timestamps turned out unreliable; decode from the start and count instead."""


def _to_rgb(frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
    if short_side is None:
        return frame.to_ndarray(format="rgb24")
    w, h = frame.width, frame.height
    if min(w, h) == short_side:
        return frame.to_ndarray(format="rgb24")
    nw, nh = _scaled_size(w, h, short_side)
    return frame.to_ndarray(format="rgb24", width=nw, height=nh, interpolation="BILINEAR")


def _scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size with the given short side; even, so chroma-subsampled conversions stay exact."""
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _decode_packet(stream: av.video.stream.VideoStream, packet: av.Packet | None) -> list[av.VideoFrame]:
    try:
        return stream.codec_context.decode(packet)
    except av.error.EOFError:
        return []
    except av.FFmpegError:
        # A damaged packet: skip it. The decoder conceals the damage in frames
        # that reference it (right frame, degraded pixels, as any player shows);
        # a wanted frame that never comes out is reported as an error.
        return []


class _SeekingDecoder:
    """Decode the wanted frames of one open container, seeking when it pays."""

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 table: _FrameTable, wanted: Sequence[int], short_side: int | None) -> None:
        self.container, self.stream, self.table = container, stream, table
        self.wanted = set(wanted)
        self.order = sorted(wanted)
        self.short_side = short_side
        self.found: dict[int, np.ndarray] = {}
        self.packets: Iterator[av.Packet] | None = None
        self.pos = -1  # decode position of the last packet fed to the decoder
        self.last_out = -1  # presentation index of the last frame the decoder emitted
        # Per-packet skip decisions are only safe when packets decode in order on one thread.
        self.skip_unwanted = stream.codec_context.thread_count == 1
        self.skip_mode = "DEFAULT"

    def run(self) -> dict[int, np.ndarray]:
        for target in self.order:
            if target in self.found:
                continue
            k = self.table.start_keyframe(target)
            if self.packets is None or self.table.keyframes[k] > self.pos + SEEK_PENALTY_FRAMES:
                self._seek(k)
            self._decode_until(target)
        return self.found

    def _seek(self, k: int) -> None:
        """Position the demuxer on keyframe ``keyframes[k]`` or an earlier packet.

        Demuxers index by pts (Matroska) or by something closer to dts (MP4),
        so we try the keyframe's pts first, then its smaller dts, then earlier
        keyframes, and check where each seek really landed.
        """
        table = self.table
        goal = table.keyframes[k]
        candidates = [int(table.pts_by_decode[goal]), int(table.seek_ts_by_decode[goal])]
        candidates += [int(table.seek_ts_by_decode[table.keyframes[kk]]) for kk in range(k - 1, -1, -1)]
        tried: set[int] = set()
        for ts in candidates:
            if ts in tried:
                continue
            tried.add(ts)
            try:
                self.container.seek(ts, backward=True, any_frame=False, stream=self.stream)
            except av.FFmpegError:
                continue
            self.stream.codec_context.flush_buffers()
            packets = self.container.demux(self.stream)
            first = next(packets, None)
            if first is None or first.pts is None:
                continue
            landed = table.decode_pos_of_pts.get(int(first.pts))
            if landed is None or landed > goal or not first.is_keyframe:
                continue
            self.packets = _chain(first, packets)
            self.pos = landed - 1
            self.last_out = -1
            return
        raise _Fallback

    def _decode_until(self, target: int) -> None:
        assert self.packets is not None
        while target not in self.found:
            packet = next(self.packets, None)
            if packet is None:
                break
            if packet.size and packet.pts is not None:
                pos = self.table.decode_pos_of_pts.get(int(packet.pts))
                if pos is None:
                    raise _Fallback
                self.pos = pos
            elif packet.size:
                raise _Fallback
            if packet.size and self.skip_unwanted:
                self._set_skip(int(packet.pts))
            for frame in _decode_packet(self.stream, packet if packet.size else None):
                self._take(frame)
            if self.last_out > target and target not in self.found:
                break  # decoder moved past the target without emitting it
        if target not in self.found:
            # Either the file ends early or the frame was not decodable from
            # where we started; decoding from the very start settles it.
            raise _Fallback

    def _set_skip(self, pts: int) -> None:
        """Let the decoder drop this packet's frame if it is unwanted and no other frame references it.

        Skipping non-reference frames cannot change any other frame (that is
        what non-reference means), and with B-frames it saves a large share
        of the decoding when clips take every 2nd-4th frame.
        """
        index = self.table.index_of_pts.get(pts)
        wanted = index in self.wanted and index not in self.found
        mode = "DEFAULT" if wanted else "NONREF"
        if mode != self.skip_mode:
            self.stream.codec_context.skip_frame = mode
            self.skip_mode = mode

    def _take(self, frame: av.VideoFrame) -> None:
        if frame.pts is None:
            raise _Fallback
        index = self.table.index_of_pts.get(int(frame.pts))
        if index is None:
            raise _Fallback
        self.last_out = index
        if index in self.wanted and index not in self.found:
            self.found[index] = _to_rgb(frame, self.short_side)


def _chain(first: av.Packet, rest: Iterator[av.Packet]) -> Iterator[av.Packet]:
    yield first
    yield from rest


def _decode_counting(path: str, wanted: Sequence[int], threads: int, short_side: int | None) -> dict[int, np.ndarray]:
    """Decode from the first frame, numbering frames as the decoder emits them."""
    wanted_set, last = set(wanted), max(wanted)
    found: dict[int, np.ndarray] = {}
    count = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        _configure_decoder(stream, threads)
        try:
            for packet in container.demux(stream):
                for frame in _decode_packet(stream, packet if packet.size else None):
                    if count in wanted_set:
                        found[count] = _to_rgb(frame, short_side)
                    count += 1
                if count > last:
                    break
        except av.FFmpegError:
            pass  # a damaged tail; whatever was decoded before it is good
    missing = sorted(wanted_set - found.keys())
    if missing:
        raise VideoError(path, f"video ends or breaks off after {count} decodable frames; frame {missing[0]} was "
                               "requested (file truncated or corrupt)")
    return found


def read_frames(path: PathLike, indices: Sequence[int] | np.ndarray, *, threads: int = 1,
                short_side: int | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` (presentation order) as uint8 RGB ``(N, H, W, 3)``.

    Args:
        path: a video file in any container/codec FFmpeg decodes.
        indices: frame indices, in the order they should be returned; repeats
            are decoded once and copied.
        threads: decoder threads. The default of 1 suits ``DataLoader``
            workers, which already use every core; raise it for one-off reads.
        short_side: if given, frames are scaled (by swscale, during colour
            conversion) so their shorter side has this length. Much cheaper
            than converting full-size frames and resizing them afterwards.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: unreadable file, no video stream, or a requested frame
            that the file does not have or cannot decode (e.g. truncated).
        ValueError: a negative index.
    """
    p = os.fspath(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and int(idx.min()) < 0:
        raise ValueError(f"negative frame index {int(idx.min())} requested from {p}")
    with _open(p) as container:
        stream = _video_stream(container, p)
        _configure_decoder(stream, threads)
        table = _frame_table(p)
        if idx.size == 0:
            w, h = stream.codec_context.width, stream.codec_context.height
            if short_side is not None and min(w, h) != short_side:
                w, h = _scaled_size(w, h, short_side)
            return np.zeros((0, h, w, 3), dtype=np.uint8)
        if table.num_frames == 0:
            cut = " (file truncated)" if table.truncated else ""
            raise VideoError(p, f"video stream has no readable frames{cut}")
        top = int(idx.max())
        if top >= table.num_frames:
            cut = " (file truncated)" if table.truncated else ""
            raise VideoError(p, f"frame {top} requested but the video has only {table.num_frames} readable frames{cut}")
        wanted = np.unique(idx).tolist()
        found: dict[int, np.ndarray] | None = None
        if table.pts is not None:
            try:
                found = _SeekingDecoder(container, stream, table, wanted, short_side).run()
            except _Fallback:
                found = None
    if found is None:
        found = _decode_counting(p, wanted, threads, short_side)
    return np.stack([found[int(i)] for i in idx])


# ----------------------------------------------------------------------------- writing


def write_video(
    path: PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    fps: float | Fraction = 8,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    bit_rate: int | None = None,
) -> None:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` into a video file.

    The container comes from the file extension (.mp4, .mkv, .webm, .avi, ...).
    ``options`` go to the encoder (e.g. ``{"g": "4", "bf": "2"}`` for a 4-frame
    GOP with two B-frames, or x264's ``{"crf": "18"}``). ``pts`` sets each
    frame's presentation time in units of ``time_base`` (default ``1/fps``),
    which is how variable-frame-rate test videos are made.
    """
    frames = list(frames)
    if not frames:
        raise ValueError(f"no frames to write to {os.fspath(path)}")
    height, width = frames[0].shape[:2]
    rate = Fraction(fps).limit_denominator(100000)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        tb = time_base or (1 / rate)
        stream.codec_context.time_base = tb
        stream.codec_context.thread_count = 1  # deterministic output, and cheap for tiny frames
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array, dtype=np.uint8), format="rgb24")
            frame.pts = int(pts[i]) if pts is not None else i
            frame.time_base = tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
