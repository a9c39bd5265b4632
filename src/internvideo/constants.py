"""Constants shared by models, data and tasks (one place, so they cannot drift apart)."""
from __future__ import annotations

#: Normalisation of VideoMAE and other ImageNet-initialised encoders (per RGB channel, on [0, 1] pixels).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Normalisation of OpenAI CLIP and the CLIP-initialised InternVideo multimodal encoder.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD"]
