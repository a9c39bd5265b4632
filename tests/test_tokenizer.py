"""CLIP tokenizer: ids against Hugging Face's CLIPTokenizer built from the same vocabulary file."""
from __future__ import annotations


import pytest
import torch

from internvideo.tokenizer import ClipTokenizer, bytes_to_unicode, clean_text, get_tokenizer

AWKWARD = [
    "a photo of a dog",
    "Café naïve résumé Ångström façade",  # accents (composed and decomposed below)
    "Cafe\u0301 nai\u0308ve",
    "party time 🎉🐶👍🏽 woo!!!",  # emoji, skin-tone modifier
    "日本語のテキスト 中文字幕 한국어",  # CJK
    "It's what we're doing, they'll see; I'd've",  # contractions
    "numbers 1234567 and 3.14159, 2nd place",
    "   lots \t of\n\n whitespace   ",
    "UPPER lower MiXeD",
    "punctuation... (brackets) [more] {curly} <angle> @#$%^&*",
    "",
]
HTML = {
    "Tom &amp; Jerry": "Tom & Jerry",
    "&lt;3 &quot;quoted&quot; &#39;single&#39;": "<3 \"quoted\" 'single'",
    "double &amp;amp; escaped": "double & escaped",
}


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return get_tokenizer("clip")


def _hf_ids(hf_tok, text: str, length: int = 77) -> list[int]:
    return hf_tok(text, truncation=True, max_length=length)["input_ids"]


def _ours(tok, text: str) -> list[int]:
    row = tok([text])[0].tolist()
    return row[: row.index(tok.eot_token_id) + 1]


def test_vocabulary_layout(tok):
    assert tok.vocab_size == 49408
    assert (tok.sot_token_id, tok.eot_token_id) == (49406, 49407)
    assert len(bytes_to_unicode()) == 256 and len(set(bytes_to_unicode().values())) == 256
    # Ids CLIP users know by heart.
    assert _ours(tok, "a photo of a dog") == [49406, 320, 1125, 539, 320, 1929, 49407]


@pytest.mark.parametrize("text", AWKWARD)
def test_ids_match_hf_clip_tokenizer(tok, hf_tok, text):
    # HF skips OpenAI's ftfy/HTML clean-up, so it is given the cleaned text; on these strings that is only NFC
    # and whitespace folding, which HF's normaliser does as well.
    assert _ours(tok, text) == _hf_ids(hf_tok, clean_text(text))
    assert _ours(tok, text) == _hf_ids(hf_tok, text)


@pytest.mark.parametrize("raw,plain", list(HTML.items()))
def test_html_entities_are_unescaped(tok, hf_tok, raw, plain):
    assert _ours(tok, raw) == _ours(tok, plain) == _hf_ids(hf_tok, plain)


def test_layout_padding_and_truncation(tok, hf_tok):
    long = " ".join(f"word{i}" for i in range(200))
    out = tok(["", "a dog", long])
    assert out.shape == (3, 77) and out.dtype == torch.long
    assert out[0, :2].tolist() == [49406, 49407] and not out[0, 2:].any()  # empty string: start, end, zeros
    assert out[1, 4:].eq(0).all()
    assert out[2, 0] == 49406 and out[2, -1] == 49407  # truncated, end token kept last
    assert out[2].tolist() == _hf_ids(hf_tok, long)
    assert (out.argmax(-1) == torch.tensor([1, 3, 76])).all()  # EOT pooling finds the end token
    assert tok("a dog", context_length=8).shape == (1, 8)


def test_literal_special_token_maps_to_its_id(tok, hf_tok):
    row = tok(["<|endoftext|> literal special"])[0].tolist()
    ids = _hf_ids(hf_tok, "<|endoftext|> literal special")
    assert row[: len(ids)] == ids and ids[1] == tok.eot_token_id


def test_decode_round_trip(tok):
    text = "Café au lait 🐶 with 2 friends"
    assert tok.decode(tok([text])[0]) == clean_text(text)
    assert tok.batch_decode(tok(["a", "b c"])) == ["a", "b c"]


def test_unknown_tokenizer_name():
    with pytest.raises(ValueError, match="clip"):
        get_tokenizer("bert")
