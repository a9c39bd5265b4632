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
("which way does the square move?") can be answered. This is ``head="cross"``,
our design, trained on a frozen backbone.

``head="vtc_cap"`` is the official head (``clip_qa_type=vtc_cap``:
OpenGVLab/InternVideo InternVideo1/Downstream/multi-modalities-downstream/
CoTrain/modules/clip_module.py builds it, objectives.compute_openend_vqa runs
it): the caption decoder reads the question (text-encoder tokens) against the
video, its state at the question's end token is concatenated with the video
feature and the question's end-token feature, both before the projections
(the official code sets ``visual_proj`` and ``text_projection`` to None), and
an MLP (dropout, Linear(hs, 2hs), LayerNorm, GELU, dropout, Linear(2hs,
answers)) with ``hs = vision_width + 2 * text_width`` scores the answers. The
official recipe fine-tunes everything, the MLP at 10x the lr
(``configs/qa/msrvtt_qa.yaml``). It needs a backbone with a caption decoder.
Ours is the official head over our caption decoder, which is not the official
decoder's architecture (see :mod:`.caption`), and takes the decoder's
normalised final states where the official takes them before its predictor.
"""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..errors import UsageError
from ..recipe import InputRecipe
from .layers import CrossBlock, init_weights
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
    # "cross": our cross-attention head (fields above); "vtc_cap": the official head (module docstring)
    head: Literal["cross", "vtc_cap"] = "cross"
    cls_dropout: float = 0.5  # vtc_cap: the official clip_cls_dropout

    def __post_init__(self) -> None:
        if self.head not in ("cross", "vtc_cap"):
            raise ValueError(f"QA head must be 'cross' or 'vtc_cap', not {self.head!r}")
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


class VtcCapHead(nn.Module):
    """The official ``vqa_classifier`` MLP over ``[decoder end-token state, video feature, question feature]``."""

    def __init__(self, config: VideoQAConfig, text_width: int, vision_width: int):
        super().__init__()
        if not config.answers:
            raise ValueError("a QA head needs an answer vocabulary (config.answers)")
        self.config = config
        hs = vision_width + 2 * text_width
        self.mlp = nn.Sequential(nn.Dropout(config.cls_dropout), nn.Linear(hs, hs * 2), nn.LayerNorm(hs * 2),
                                 nn.GELU(), nn.Dropout(config.cls_dropout), nn.Linear(hs * 2, len(config.answers)))
        # objectives.init_weights: Linear N(0, 0.02) with zero bias, LayerNorm 1 / 0
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


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
        if config.head == "vtc_cap":
            if self.backbone.caption is None:
                raise UsageError("the vtc_cap QA head reads the caption decoder: the backbone has none "
                                 "(caption_layers=0); use a backbone trained with captioning, or head='cross'")
            self.head: nn.Module = VtcCapHead(config, bc.text_width, bc.vision_width)
            # The official code deletes the two projections and the decoder's predictor: unused here, so frozen.
            for module in (self.backbone.visual.proj, self.backbone.text.proj, self.backbone.caption.head):
                module.requires_grad_(False)
            self.backbone.logit_scale.requires_grad_(False)
        else:
            self.head = VideoQAHead(config, bc.text_width, bc.vision_width, bc.norm_eps)

    @property
    def answers(self) -> tuple[str, ...]:
        return self.config.answers

    def input_recipe(self) -> InputRecipe:
        """The backbone's clips."""
        return self.backbone.input_recipe()

    def encode(self, video: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(question tokens, padding, video tokens)`` from the backbone, plus, for ``vtc_cap``, the video
        feature before the projection ``(B, vision_width)``."""
        feats = self.backbone.visual.forward_features(video)
        out = (self.backbone.text.forward_tokens(ids), question_padding(ids), feats.tokens)
        if self.config.head == "vtc_cap":
            out += (self.backbone.visual.pool(feats, project=False),)
        return out

    def forward_head(self, question: torch.Tensor, padding: torch.Tensor, video: torch.Tensor,
                     video_feature: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.head == "cross":
            return self.head(question, padding, video)
        if video_feature is None:
            raise ValueError("the vtc_cap head needs the video feature (the fourth output of encode)")
        return self.head(self.vtc_cap_features(question, padding, video, video_feature))

    def vtc_cap_features(self, question: torch.Tensor, padding: torch.Tensor, video: torch.Tensor,
                         video_feature: torch.Tensor) -> torch.Tensor:
        """``[decoder state at the end token, video feature, question end-token feature]`` ``(B, hs)``."""
        caption = self.backbone.caption
        rows = torch.arange(question.shape[0], device=question.device)
        end = (~padding).sum(dim=1) - 1
        # The decoder is causal: its state at the end token is the same with or without the positions after it.
        states = caption.features(question, caption.pool_video(video.flatten(1, 2)))
        return torch.cat([states[rows, end], video_feature, question[rows, end]], dim=-1)

    def forward(self, video: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_head(*self.encode(video, ids))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)



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

__all__ = ["MODEL_CLASSES", "VideoQA", "VideoQAConfig", "VideoQAHead", "VtcCapHead", "answer_vocabulary",
           "normalize_answer", "question_padding"]
