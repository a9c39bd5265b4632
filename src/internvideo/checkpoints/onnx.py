"""ONNX export for deployment: the VideoMAE classifier, and a video-language model's video and text encoders.

The graph is captured with ``torch.export`` (the maintained path; TorchScript
tracing is deprecated) and written by ``torch.onnx.export(..., dynamo=True)``
with a dynamic batch dimension. The tokenizer stays in Python: the text graph
takes token ids ``(B, context_length)``. Each file is checked with
onnxruntime against torch on a batch of another size than the one exported
(so the dynamic batch is exercised too). Needs the ``[export]`` extra.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch
from torch import nn

from ..extras import require
from ..models.protocols import VideoClassifier, VideoLanguageModel
from .base import CheckpointError

log = logging.getLogger(__name__)

#: onnxruntime must agree with torch to this relative difference (max |a-b| / max |b|)
TOLERANCE = 1e-4

__all__ = ["TOLERANCE", "OnnxMismatch", "export_onnx", "onnx_parts", "relative_difference"]


class OnnxMismatch(CheckpointError):
    """onnxruntime's output differs from torch's beyond :data:`TOLERANCE` (a bug of the exporter, reported)."""


class _Call(nn.Module):
    """One method of a model as ``forward`` (torch.export captures ``forward``)."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def onnx_parts(model: nn.Module) -> dict[str, tuple[nn.Module, torch.Tensor, str, str]]:
    """``part -> (module, example input, input name, output name)`` for each graph ``model`` exports to."""
    c = model.config
    if isinstance(model, VideoLanguageModel):
        video = torch.randn(1, 3, c.num_frames, c.img_size, c.img_size)
        ids = torch.zeros(1, getattr(c, "context_length", 77), dtype=torch.long)
        ids[0, :3] = torch.tensor([49406, 320, 49407])  # start, a word, end: a real prompt's layout
        return {"video": (_Call(model, "encode_video"), video, "video", "video_embedding"),
                "text": (_Call(model, "encode_text"), ids, "input_ids", "text_embedding")}
    if isinstance(model, VideoClassifier) and isinstance(model.head, nn.Linear):
        video = torch.randn(1, getattr(c, "in_chans", 3), c.num_frames, c.img_size, c.img_size)
        return {"classifier": (model, video, "video", "logits")}
    raise CheckpointError(f"ONNX export covers video classifiers and video-language models; {type(model).__name__} "
                          "is neither (a pretraining model: fine-tune or export its encoder as a classifier)")


def relative_difference(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12))


def _paths(out: Path, parts: list[str]) -> dict[str, Path]:
    if len(parts) == 1:
        return {parts[0]: out}
    stem = out.with_suffix("") if out.suffix == ".onnx" else out
    return {p: stem.with_name(f"{stem.name}.{p}.onnx") for p in parts}


def export_onnx(model: nn.Module, out: str | os.PathLike, *, opset: int = 18, check: bool = True
                ) -> dict[Path, float | None]:
    """Write ``model``'s graph(s); returns ``path -> relative difference onnxruntime vs torch`` (None: unchecked).

    A classifier writes ``out``; a video-language model ``OUT.video.onnx`` and ``OUT.text.onnx``.
    """
    require("onnx", "export", "ONNX export")
    require("onnxscript", "export", "ONNX export")
    model = model.eval().float()
    parts = onnx_parts(model)
    paths = _paths(Path(out), list(parts))
    results: dict[Path, float | None] = {}
    batch = torch.export.Dim("batch", min=1, max=1024)
    for part, (module, example, in_name, out_name) in parts.items():
        path = paths[part]
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset, input_names=[in_name],
                                        output_names=[out_name], dynamic_shapes=({0: batch},), verbose=False)
        program.save(str(path))
        results[path] = _check(module, example, path) if check else None
    return results


@contextlib.contextmanager
def _quiet_exporter():
    # The exporter logs one warning per torchvision op it skips (torchvision is not a dependency here).
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check(module: nn.Module, example: torch.Tensor, path: Path) -> float:
    ort = require("onnxruntime", "export", "checking an ONNX export")
    # Another batch size than exported: the batch dimension must really be dynamic.
    g = torch.Generator().manual_seed(0)
    if example.dtype == torch.long:
        x = example.repeat(2, 1)
        x[1, 1:3] = torch.tensor([1000, 49407])
    else:
        x = torch.randn((2, *example.shape[1:]), generator=g)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = module(x)
    diff = relative_difference(got, ref)
    if got.shape != ref.shape or not diff <= TOLERANCE:
        raise OnnxMismatch(f"{path}: onnxruntime output {tuple(got.shape)} differs from torch {tuple(ref.shape)} by "
                           f"{diff:.2e} relative (allowed {TOLERANCE:g})")
    return diff
