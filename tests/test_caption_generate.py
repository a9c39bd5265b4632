"""Caption generation: key/value caching, greedy and beam search, and CLIP BPE decoding."""
from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from internvideo.models.caption import beam_search, greedy_search
from internvideo.models.layers import Attention, KVCache
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from internvideo.tokenizer import get_tokenizer
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)

TINY = NAMED_CONFIGS["internvideo_mm_tiny"][1]


def _ending_model(seed: int = 0) -> InternVideoMM:
    """A random tiny model whose decoder ends its captions after a few tokens (the end logit depends on the prefix)."""
    torch.manual_seed(seed)
    model = InternVideoMM(TINY).eval()
    with torch.no_grad():
        model.caption.head.bias[TINY.eot_token_id] = model.caption.head.bias.max() - 1.0
        model.caption.head.weight[TINY.eot_token_id] *= 20
    return model


def _video(b: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_cached_attention_matches_full_causal_attention():
    torch.manual_seed(0)
    attn = Attention(16, 2, bias="qkv").eval()
    x = torch.randn(2, 7, 16)
    full = attn(x, is_causal=True)
    cache = KVCache()
    # A prompt of 3 positions, then one position at a time, then a chunk of 2 (the masked multi-row case).
    parts = [attn(x[:, :3], is_causal=True, cache=cache)]
    parts += [attn(x[:, i:i + 1], is_causal=True, cache=cache) for i in (3, 4)]
    parts.append(attn(x[:, 5:], is_causal=True, cache=cache))
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-6, rtol=1e-5)
    assert len(cache) == 7
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.k[0], cache.k[1])
    with pytest.raises(ValueError, match="self-attention"):
        attn(x, context=x, cache=KVCache())


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_cached_and_uncached_decoding_give_the_same_tokens(strategy):
    model, video = _ending_model(), _video(4)
    cached = model.generate(video, max_len=12, strategy=strategy, num_beams=3)
    plain = model.generate(video, max_len=12, strategy=strategy, num_beams=3, use_cache=False)
    assert torch.equal(cached, plain)
    ended = (cached == TINY.eot_token_id).any(dim=1)
    assert ended.all() and cached.shape[1] >= 3, cached  # words, then the end token
    assert (cached[:, 0] == TINY.sot_token_id).all()


def test_beam_width_one_is_greedy_and_wider_beams_score_at_least_as_well():
    model, video = _ending_model(), _video(4, seed=5)
    greedy = model.generate(video, max_len=10)
    assert torch.equal(model.generate(video, max_len=10, strategy="beam", num_beams=1, length_penalty=0.7), greedy)
    assert torch.equal(model.generate_caption(video, max_len=10), greedy)

    def logprob(ids: torch.Tensor) -> list[float]:
        pooled = model.caption.pool_video(model.visual.forward_features(video).tokens.flatten(1, 2))
        logits = model.caption(model.text.forward_tokens(ids[:, :-1]), pooled).log_softmax(-1)
        picked = logits.gather(-1, ids[:, 1:, None])[..., 0]
        real = torch.zeros_like(ids[:, 1:], dtype=torch.bool)
        for i, row in enumerate(ids.tolist()):
            n = row.index(TINY.eot_token_id) if TINY.eot_token_id in row else len(row) - 1
            real[i, :n] = True
        return (picked * real).sum(1).tolist()

    with torch.no_grad():
        beam = model.generate(video, max_len=10, strategy="beam", num_beams=4, length_penalty=0.0)
        # With no length penalty and early stopping, the best of 4 finished beams is never worse than greedy
        # when greedy ends within max_len.
        for g, b, gi in zip(logprob(greedy), logprob(beam), greedy.tolist()):
            if TINY.eot_token_id in gi:
                assert b >= g - 1e-4


class MarkovStepper:
    """A toy model: next-token log-probabilities depend on the previous token only (rows = videos)."""

    def __init__(self, table: torch.Tensor, rows: int):
        self.table, self.last = table, None
        self.rows = torch.arange(rows)

    def step(self, new_ids):
        self.last = new_ids[:, -1]
        return self.table[self.rows, self.last]

    def reorder(self, index):
        self.rows = self.rows[index]


def _brute_force(table: torch.Tensor, video: int, start: int, end: int, max_len: int, alpha: float) -> list[int]:
    """Every token sequence of up to max_len tokens: those ending with ``end`` and the unfinished ones of max_len."""
    vocab = table.shape[-1]
    best, best_score = None, -math.inf
    logp = table.log_softmax(-1)
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(vocab), repeat=n):
            if end in seq[:-1] or (n < max_len and seq[-1] != end):
                continue
            prev, total = start, 0.0
            for tok in seq:
                total += float(logp[video, prev, tok])
                prev = tok
            score = total / n ** alpha
            if score > best_score:
                best, best_score = list(seq), score
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_beam_search_as_wide_as_the_space_finds_the_best_sequence(alpha):
    vocab, start, end, max_len, videos = 4, 0, 3, 4, 3
    table = torch.randn(videos, vocab, vocab, generator=torch.Generator().manual_seed(7)) * 2
    # So wide that nothing is pruned and early stopping never triggers before max_len.
    out = beam_search(MarkovStepper(table.log_softmax(-1), videos), videos, start, end, max_len,
                      torch.device("cpu"), num_beams=vocab ** max_len, length_penalty=alpha)
    for v in range(videos):
        row = out[v, 1:].tolist()
        expected = _brute_force(table, v, start, end, max_len, alpha)
        assert row[:len(expected)] == expected and not any(row[len(expected):])
    greedy = greedy_search(MarkovStepper(table.log_softmax(-1), videos), videos, start, end, max_len,
                           torch.device("cpu"))
    one = beam_search(MarkovStepper(table.log_softmax(-1), videos), videos, start, end, max_len, torch.device("cpu"),
                      num_beams=1, length_penalty=alpha)
    assert torch.equal(greedy, one)


def test_generate_rejects_unknown_strategy_and_missing_decoder():
    with pytest.raises(ValueError, match="strategy"):
        _ending_model().generate(_video(1), strategy="sample")
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="caption decoder"):
        InternVideoMM(dataclasses.replace(TINY, caption_layers=0)).generate(_video(1))


@pytest.mark.parametrize("text", [
    "a small red circle slides to the left", "It's what we're doing, they'll see", "numbers 1234567 and 3.14159",
    "Café naïve résumé", "party time 🎉🐶👍🏽 woo!!!", "日本語のテキスト 中文字幕", "punctuation... (brackets) @#$%^&*",
])
def test_decode_matches_hf_clip_tokenizer(hf_tok, text):
    tok = get_tokenizer("clip")
    ids = tok([text])[0]
    expected = hf_tok.decode(ids[: ids.tolist().index(tok.eot_token_id) + 1].tolist(), skip_special_tokens=True,
                             clean_up_tokenization_spaces=False)
    assert tok.decode(ids) == expected
    # Zero padding after the end token (CLIP's layout) is not text; batch_decode does every row.
    assert tok.batch_decode(torch.stack([ids, ids])) == [expected, expected]


def test_decode_of_random_ids_matches_hf(hf_tok):
    """What a poorly trained decoder emits: any ids, including byte pieces that are not valid UTF-8 alone."""
    tok = get_tokenizer("clip")
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ids = torch.randint(0, tok.sot_token_id, (12,), generator=g).tolist()
        assert tok.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_closed_vocabulary_decoding_emits_only_allowed_tokens(strategy):
    model, video = _ending_model(), _video(3)
    allowed = torch.tensor([320, 1929, 2368, 3309])
    ids = model.generate(video, max_len=8, strategy=strategy, num_beams=2, allowed_tokens=allowed)
    body = ids[:, 1:]
    ok = torch.isin(body, torch.cat([allowed, torch.tensor([TINY.eot_token_id, 0])]))
    assert ok.all() and torch.isin(body, allowed).any(), ids


def _closed_model(vocab, seed: int = 0) -> InternVideoMM:
    torch.manual_seed(seed)
    model = InternVideoMM(dataclasses.replace(TINY, caption_vocab=tuple(vocab))).eval()
    with torch.no_grad():  # end within a few tokens, as _ending_model does
        end = model.config.caption_vocab.index(TINY.eot_token_id)
        model.caption.head.bias[end] = model.caption.head.bias.max() - 1.0
        model.caption.head.weight[end] *= 20
    return model


def test_closed_caption_vocabulary_head_targets_and_decoding():
    vocab = [1929, 320, 2368, 3309, 320]
    model = _closed_model(vocab)
    assert model.config.caption_vocab == (320, 1929, 2368, 3309, TINY.eot_token_id)  # sorted, unique, end added
    assert model.caption.head.out_features == 5
    ids = torch.tensor([[TINY.sot_token_id, 2368, 320, 777, TINY.eot_token_id, 0]])
    out = model(_video(1), ids)
    assert out["caption_logits"].shape == (1, 5, 5)
    # Targets are head rows; a token outside the vocabulary (777) and the padding after the end are ignored.
    assert out["caption_targets"].tolist() == [[2, 0, -100, 4, -100]]
    for strategy in ("greedy", "beam"):
        cached = model.generate(_video(3), max_len=8, strategy=strategy, num_beams=2)
        uncached = model.generate(_video(3), max_len=8, strategy=strategy, num_beams=2, use_cache=False)
        assert torch.equal(cached, uncached)
        body = cached[:, 1:]
        assert torch.isin(body, torch.tensor([*model.config.caption_vocab, 0])).all(), cached


def test_closed_caption_vocabulary_survives_save_and_load(tmp_path):
    from internvideo.factory import load_model, save_model

    model = _closed_model([320, 1929])
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.caption_vocab == model.config.caption_vocab
    assert torch.equal(loaded.generate(_video(2), max_len=6), model.generate(_video(2), max_len=6))


def test_closed_caption_vocabulary_rejects_ids_outside_clip():
    with pytest.raises(ValueError, match="caption_vocab"):
        dataclasses.replace(TINY, caption_vocab=(5, TINY.vocab_size))
