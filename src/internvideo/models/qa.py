"""Open-ended video question answering over the multimodal model.

The paper fine-tunes InternVideo-MM for open-ended QA as a classification over
the most frequent answers of the training split. Here the question is
encoded by the model's text encoder (per-token features), the video by its
video encoder (last-layer tokens of every frame); a stack of the shared
:class:`~internvideo.models.layers.CrossBlock` s, the caption decoder's path
(self-attention over the question, then cross-attention to the video, MLP),
lets every question token read the video. The question tokens are then
mean-pooled over the real (non-padding) positions and a linear classifier
scores the answer vocabulary (``config.answers``).

The video encoder attends within each frame only, so the video tokens say
*where* things are in a frame but not *when*; a learnable per-frame time
embedding is added before the cross-attention so that questions about motion
("which way does the square move?") can be answered.
"""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import CrossBlock, init_weights
from ..recipe import InputRecipe
from .video_clip import InternVideoMM, InternVideoMMConfig


@dataclass
class VideoQAConfig:
    answers: tuple[str, ...] = ()  # the answer vocabulary, most frequent first (index = class)
    width: int = 256
    heads: int = 4
    layers: int = 2
    mlp_ratio: float = 4.0
    max_frames: int = 64
    dropout: float = 0.1
    backbone: InternVideoMMConfig = field(default_factory=InternVideoMMConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):  # read back from a checkpoint's config.json
            self.backbone = InternVideoMMConfig(**self.backbone)
        self.answers = tuple(self.answers)
        if len(set(self.answers)) != len(self.answers):
            raise ValueError("the answer vocabulary has repeated answers")


class VideoQAHead(nn.Module):
    """``question tokens (B, L, text_width)``, ``padding (B, L)``, ``video tokens (B, T, N, vision_width)`` -> logits."""

    def __init__(self, config: VideoQAConfig, text_width: int, vision_width: int, norm_eps: float = 1e-5):
        super().__init__()
        if not config.answers:
            raise ValueError("a QA head needs an answer vocabulary (config.answers)")
        c = self.config = config
        self.text_proj = nn.Linear(text_width, c.width)
        self.video_proj = nn.Linear(vision_width, c.width)
        self.time_embed = nn.Parameter(torch.zeros(c.max_frames, c.width))
        self.blocks = nn.ModuleList(
            CrossBlock(c.width, c.heads, c.mlp_ratio, qkv_bias="qkv", drop=c.dropout, norm_eps=norm_eps,
                       self_attn=True)
            for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width, eps=norm_eps)
        self.classifier = nn.Linear(c.width, len(c.answers))
        self.apply(init_weights)
        nn.init.normal_(self.time_embed, std=0.02)

    def forward(self, question: torch.Tensor, padding: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames exceed the QA head's max_frames={self.config.max_frames}")
        context = self.video_proj(video) + self.time_embed[:t, None].to(video.dtype)
        context = context.reshape(b, -1, context.shape[-1])
        x = self.text_proj(question)
        keep = ~padding
        # Padding keys are hidden from every query; (B, 1, 1, L) broadcasts over heads and query rows.
        mask = keep[:, None, None, :]
        for blk in self.blocks:
            x = blk(x, context, attn_mask=mask)
        x = self.norm(x)
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled)


def question_padding(ids: torch.Tensor) -> torch.Tensor:
    """True after each question's end token (the largest id), CLIP's zero padding."""
    end = ids.argmax(dim=-1, keepdim=True)
    return torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) > end


class VideoQA(nn.Module):
    """A multimodal backbone plus a :class:`VideoQAHead`: ``forward(video, question_ids) -> (B, num_answers)``.

    ``encode(video, ids)`` gives the head's inputs, so a frozen backbone's
    outputs can be computed once and the head trained on them
    (``forward_head``). Pass a trained ``backbone`` to start from it; otherwise
    one is built from ``config.backbone`` (loading a saved QA model).
    """

    config_class = VideoQAConfig

    def __init__(self, config: VideoQAConfig, backbone: InternVideoMM | None = None):
        super().__init__()
        if backbone is not None:
            config = dataclasses.replace(config, backbone=backbone.config)
        self.backbone = backbone if backbone is not None else InternVideoMM(config.backbone)
        self.config = config
        bc = self.backbone.config
        self.head = VideoQAHead(config, bc.text_width, bc.vision_width, bc.norm_eps)

    @property
    def answers(self) -> tuple[str, ...]:
        return self.config.answers

    def input_recipe(self) -> InputRecipe:
        """The backbone's clips."""
        return self.backbone.input_recipe()

    def encode(self, video: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(question tokens, padding, video tokens)`` from the backbone."""
        return (self.backbone.text.forward_tokens(ids), question_padding(ids),
                self.backbone.visual.forward_features(video).tokens)

    def forward_head(self, question: torch.Tensor, padding: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.head(question, padding, video)

    def forward(self, video: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_head(*self.encode(video, ids))



def normalize_answer(answer: str) -> str:
    """The official normalisation: lower case, surrounding whitespace stripped."""
    return answer.strip().lower()


def answer_vocabulary(answers: Sequence[str], top_k: int = 1500) -> tuple[str, ...]:
    """The ``top_k`` most frequent normalised answers, most frequent first (ties: first seen first)."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    counts = collections.Counter(normalize_answer(a) for a in answers)
    if not counts:
        raise ValueError("no training answers to build the answer vocabulary from")
    # Counter.most_common keeps insertion order among equal counts.
    return tuple(a for a, _ in counts.most_common(top_k))


MODEL_CLASSES: dict[str, type[nn.Module]] = {"VideoQA": VideoQA}

__all__ = ["MODEL_CLASSES", "VideoQA", "VideoQAConfig", "VideoQAHead", "answer_vocabulary", "normalize_answer",
           "question_padding"]
