"""Small, exactly predictable models and videos for the evaluation-harness tests.

Videos are flat colours (one colour per class), so a "model" that looks at the
mean colour of its input is right on every video, and every metric of the
harness has a known value. The stand-ins follow the model contract of the
library (``config.num_frames/img_size/context_length``, ``forward``,
``forward_features``/``forward_head``, ``encode_video``/``encode_text``/``logit_scale``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

import internvideo
from internvideo.data import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, write_video
from internvideo.recipe import InputRecipe, recipe_of

COLOURS: dict[str, tuple[int, int, int]] = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230),
                                            "yellow": (235, 225, 30)}
NAMES = list(COLOURS)


@dataclasses.dataclass
class StandInConfig:
    num_frames: int = 4
    img_size: int = 32
    context_length: int = 77
    frame_interval: int = 4
    sampling: str = "dense"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def recipe(self) -> InputRecipe:
        return recipe_of(self)


def _normalised(rgb: tuple[int, int, int], mean, std) -> torch.Tensor:
    return (torch.tensor(rgb, dtype=torch.float32) / 255 - torch.tensor(mean)) / torch.tensor(std)


class ColourClassifier(nn.Module):
    """A "VideoMAE classifier": logits = minus squared distance of the clip's mean colour to each class colour."""

    def __init__(self) -> None:
        super().__init__()
        self.config = StandInConfig()
        centres = torch.stack([_normalised(c, IMAGENET_MEAN, IMAGENET_STD) for c in COLOURS.values()])
        self.register_buffer("centres", centres)
        self.head = nn.Identity()  # a head exists: features are "pre-logits"

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        return video.flatten(2).transpose(1, 2)  # every pixel of every frame is a "token" (B, N, 3)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = tokens.mean(dim=1)
        return pooled if pre_logits else -torch.cdist(pooled, self.centres) ** 2

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))

    def input_recipe(self) -> InputRecipe:
        return self.config.recipe()


class ColourCLIP(nn.Module):
    """A "video-language model" in a 3-d space: a video embeds as its mean (CLIP-normalised) colour and a
    text as the sum of the colours it names (looked up by CLIP token id)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = StandInConfig(sampling="segment", mean=CLIP_MEAN, std=CLIP_STD)
        tok = internvideo.get_tokenizer("clip")
        table = torch.zeros(49408, 3)
        for name, rgb in COLOURS.items():
            ids = tok([name])[0]
            table[int(ids[1])] = _normalised(rgb, CLIP_MEAN, CLIP_STD)  # ids[0] is <start_of_text>
        self.words = nn.Embedding.from_pretrained(table)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(50.0))))

    def input_recipe(self) -> InputRecipe:
        return self.config.recipe()

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        return video.mean(dim=(2, 3, 4))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        # A text naming no colour gets a tiny generic vector rather than zero (normalising zero is undefined).
        return self.words(ids).sum(dim=1) + 1e-3


class HashText(nn.Module):
    """A text encoder with arbitrary (but fixed) embeddings, for checking prompt averaging."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.config = StandInConfig()
        g = torch.Generator().manual_seed(0)
        self.words = nn.Embedding.from_pretrained(torch.randn(49408, dim, generator=g))
        self.logit_scale = nn.Parameter(torch.tensor(0.0))

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        return video.mean(dim=(1, 2, 3, 4))[:, None].expand(-1, self.words.embedding_dim)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.words(ids).sum(dim=1)


def colour_clip(rgb: tuple[int, int, int], frames: int = 8, width: int = 40, height: int = 32) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, dtype=np.uint8), (frames, height, width, 3)).copy()


def make_colour_set(root: Path, per_class: int = 2) -> dict[str, Path]:
    """Flat-colour videos plus a classification list, classes.txt, video-text JSONL and multiple choice."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "videos").mkdir(exist_ok=True)
    rows, captions, mc = [], [], []
    for label, (name, rgb) in enumerate(COLOURS.items()):
        for k in range(per_class):
            video = f"videos/{name}_{k}.mp4"
            shade = tuple(int(np.clip(c + 8 * k, 0, 255)) for c in rgb)
            write_video(root / video, colour_clip(shade), fps=8)
            rows.append(f"{video} {label}")
            captions.append({"video": video, "caption": [f"a {name} video", f"something {name}"]})
            others = [n for n in NAMES if n != name]
            mc.append({"video": video, "question": "which colour?", "answer": f"all {name}",
                       "candidates": [f"all {o}" for o in others[:2]] + [f"all {name}"]})
    (root / "test.txt").write_text("\n".join(rows) + "\n")
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    (root / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
    (root / "mc.jsonl").write_text("".join(json.dumps(m) + "\n" for m in mc))
    return {"list": root / "test.txt", "classes": root / "classes.txt", "captions": root / "captions.jsonl",
            "mc": root / "mc.jsonl"}


def nan_classifier_features() -> ColourClassifier:
    """A colour classifier whose features are all NaN (a broken model)."""
    model = ColourClassifier()
    model.forward_features = lambda video: torch.full((video.shape[0], 4, 3), float("nan"))
    return model


def localization_files(tmp_path, gt_segments=((1.0, 3.0),), pred=None):
    """ActivityNet-style ground truth and predictions for ``eval localization``; returns their paths."""
    gt = {"database": {"v1": {"duration": 10.0, "subset": "validation",
                              "annotations": [{"segment": list(s), "label": "jump"} for s in gt_segments]}}}
    results = pred if pred is not None else {"v1": [{"label": "jump", "score": 0.9, "segment": [1.0, 3.0]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps({"results": results}))
    return tmp_path / "gt.json", tmp_path / "pred.json"
