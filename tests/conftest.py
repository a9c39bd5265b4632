"""Shared fixtures. Data-pipeline fixtures are prefixed ``data_``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def data_world(tmp_path_factory):
    """A tiny synthetic world (30 clips of 8 frames at 32 px), built once per session."""
    from internvideo.data import make_world

    return make_world(tmp_path_factory.mktemp("data_world"), num_videos=30, seed=3, size=32, num_frames=8,
                      num_long=2, num_ava=2, num_images=4)


@pytest.fixture(scope="session")
def hf_tok(tmp_path_factory):
    """HF transformers' CLIPTokenizer over our shipped BPE vocabulary: the reference for ids and decoding."""
    import json

    transformers = pytest.importorskip("transformers")
    from internvideo.tokenizer import build_vocab, read_bpe_merges

    # HF's conversion: vocab.json = bytes, bytes + '</w>', one entry per merge, the two specials; merges.txt as is.
    merges = read_bpe_merges()
    d = tmp_path_factory.mktemp("hf_clip_tok")
    (d / "vocab.json").write_text(json.dumps(build_vocab(merges)))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return transformers.CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """The evaluation stand-ins' colour clips (tests/eval_standins.py), built once per test module."""
    from eval_standins import make_colour_set

    return make_colour_set(tmp_path_factory.mktemp("colours"))
