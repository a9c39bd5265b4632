"""CLIP's byte-level BPE tokenizer, id-for-id with the tokenizer CLIP was trained with.

The vocabulary is OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (shipped in
``internvideo/assets`` with its MIT notice, since no model hub can be reached).
Text clean-up follows OpenAI's reference tokenizer, which both CLIP and
InternVideo were trained with: ``ftfy.fix_text``, HTML entities unescaped
(twice, for doubly-escaped scraped captions), whitespace folded to single
spaces, lower-casing. The splitting and byte-pair merges run in Hugging Face
``tokenizers`` (Rust), so batches of captions tokenise fast.

Output is CLIP's layout: ``<start_of_text> ... <end_of_text>`` then zeros up to
``context_length`` (77). Over-long text is truncated keeping the end token last,
so EOT pooling (``argmax`` over ids, EOT being the largest id) always finds it.

Hugging Face's ``CLIPTokenizer`` does the same splitting and merges but skips the
ftfy/HTML clean-up and pads with the end token instead of zeros; ids agree on
any text the clean-up leaves unchanged.
"""
from __future__ import annotations

import functools
import gzip
import html
import re
from importlib import resources
from pathlib import Path
from typing import Sequence

import ftfy
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
# How OpenAI cut the merge list: 49152 BPE symbols minus the 256 byte symbols and the 2 specials.
NUM_MERGES = 49152 - 256 - 2
# Words, single digits, runs of other non-space symbols, and English contractions: CLIP's splitting rule.
SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_WHITESPACE = re.compile(r"\s+")


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte → printable-character table of byte-level BPE (GPT-2/CLIP).

    Bytes that are already printable (and not space) stand for themselves; the
    rest are moved to code points from 256 on, in byte order. Dict order matters:
    it is the order of the first 256 vocabulary entries.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def clean_text(text: str) -> str:
    """OpenAI's clean-up: mojibake fixes, HTML entities, folded whitespace, lower case."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def read_bpe_merges(path: str | Path | None = None) -> list[tuple[str, str]]:
    """The merge list from CLIP's vocabulary file (the packaged copy by default)."""
    if path is None:
        data = resources.files("internvideo").joinpath("assets", BPE_FILE).read_bytes()
    else:
        data = Path(path).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    # Line 0 is a version header; OpenAI kept only the first NUM_MERGES merges.
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{path or BPE_FILE}: not a CLIP BPE merge file (expected {NUM_MERGES} 'a b' lines)")
    return merges  # type: ignore[return-value]


def build_vocab(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary: bytes, bytes ending a word (``</w>``), one entry per merge, then the two specials."""
    symbols = list(bytes_to_unicode().values())
    entries = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
    return {s: i for i, s in enumerate(entries)}


class ClipTokenizer:
    """``list[str] -> LongTensor (B, context_length)`` with CLIP's ids.

    ``tokenizer(["a dog", "a cat"])`` gives start id, tokens, end id, zero padding.
    ``encode`` gives the bare ids of one text and ``decode`` turns ids back into
    (cleaned) text, dropping specials and padding.
    """

    def __init__(self, bpe_path: str | Path | None = None, context_length: int = 77):
        merges = read_bpe_merges(bpe_path)
        self.encoder = build_vocab(merges)
        self.decoder = {i: s for s, i in self.encoder.items()}
        self.byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        self.context_length = context_length
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]
        self.vocab_size = len(self.encoder)
        bpe = models.BPE(vocab=self.encoder, merges=list(merges), end_of_word_suffix="</w>",
                         continuing_subword_prefix="", fuse_unk=False, dropout=None)
        self._backend = Tokenizer(bpe)
        # Clean-up runs in Python (ftfy has no Rust counterpart); the backend only splits and merges.
        self._backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
            # use_regex=False: CLIP splits once, with the pattern above, not again with GPT-2's rule.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        # The literal special strings map to their ids, as in the reference tokenizer.
        self._backend.add_special_tokens([SOT_TOKEN, EOT_TOKEN])

    def encode(self, text: str) -> list[int]:
        """Ids of one text without start/end tokens or padding."""
        return self._backend.encode(clean_text(text), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        cleaned = [clean_text(t) for t in texts]
        return [e.ids for e in self._backend.encode_batch(cleaned, add_special_tokens=False)]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """Tokenise to ``LongTensor (B, context_length)``; a single string gives ``B = 1``."""
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        if length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {length}")
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for row, ids in enumerate(self.encode_batch(texts)):
            ids = [self.sot_token_id, *ids[: length - 2], self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of one id sequence; stops at the end token, skips the start token."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        pieces = []
        for i in ids:
            if i == self.eot_token_id:
                break
            if i != self.sot_token_id:
                pieces.append(self.decoder[int(i)])
        data = bytes(self.byte_decoder[c] for c in "".join(pieces))
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def batch_decode(self, ids: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in ids]

    def __repr__(self) -> str:
        return f"ClipTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"


@functools.lru_cache(maxsize=4)
def _cached(context_length: int) -> ClipTokenizer:
    return ClipTokenizer(context_length=context_length)


def get_tokenizer(name: str = "clip", context_length: int = 77) -> ClipTokenizer:
    """The tokenizer of a model family; ``"clip"`` (every InternVideo-MM model) is the only one."""
    if name.lower() not in ("clip", "internvideo_mm") and not name.lower().startswith("internvideo_mm"):
        raise ValueError(f"unknown tokenizer {name!r}; available: 'clip' (also accepted: internvideo_mm_* model names)")
    return _cached(context_length)


__all__ = ["ClipTokenizer", "bytes_to_unicode", "build_vocab", "clean_text", "get_tokenizer", "read_bpe_merges"]
