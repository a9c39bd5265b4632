"""The benchmark cases: our models and the HF transformers references, built from the same weights.

Every reference model is created once with random weights and saved with
``save_pretrained`` into a work directory; the reference then loads it with
``from_pretrained`` and ours through our converter (``internvideo.load_model``
or the CLIP state-dict converter), so both run identical weights in every
process, memory children included.

Sizes: ``full`` is the paper's shapes (ViT-B/16; VideoMAE 16x224, the
multimodal video encoder 8x224); ``small`` is a tiny version that runs in
seconds on a CPU, for tests and ``--quick``.

FLOPs are counted analytically (matmuls and the two attention matmuls, 2 per
multiply-add; norms and activations are not counted); a training step counts
3x the forward, the usual convention (recomputation is not counted).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from .common import Runner

# transformers is the reference and a test dependency, not a library one: imported where used.


@dataclass(frozen=True)
class Size:
    img: int
    patch: int
    frames: int  # VideoMAE clip length
    width: int
    depth: int
    heads: int
    dec_width: int
    dec_depth: int
    dec_heads: int
    num_classes: int
    clip_frames: int  # multimodal encoder clip length
    global_layers: int  # its global spatiotemporal blocks
    tubelet: int = 2
    mask_ratio: float = 0.9


SIZES = {
    "full": Size(img=224, patch=16, frames=16, width=768, depth=12, heads=12, dec_width=384, dec_depth=4,
                 dec_heads=6, num_classes=400, clip_frames=8, global_layers=4),
    "small": Size(img=32, patch=8, frames=4, width=64, depth=2, heads=4, dec_width=32, dec_depth=1, dec_heads=2,
                  num_classes=10, clip_frames=4, global_layers=1),
}


@dataclass(frozen=True)
class Variant:
    """One implementation: ``impl`` is ``ref``, ``ours`` or ``ours_full``.

    ``ours_full`` is the multimodal encoder with its video modules (more work than the reference).
    """

    name: str
    impl: str
    bf16_weights: bool = False  # model and input cast to bf16 instead of autocast
    compile: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    precision: str  # fp32 | bf16 (bf16: autocast unless the variant casts its weights)
    batch: int
    variants: tuple[Variant, ...]
    size: str = "full"

    @property
    def dims(self) -> Size:
        return SIZES[self.size]

    @property
    def flops(self) -> float:
        return FLOPS[self.group](self.dims, self.batch)

    def extra_flops(self, variant: Variant) -> float | None:
        """FLOPs of a variant that computes more than the reference (the full multimodal encoder)."""
        if variant.impl == "ours_full":
            return clip_flops(self.dims, self.batch, video_modules=True)
        return None


class Workspace:
    """The directory of saved reference models, the size and the device of one run."""

    def __init__(self, root: Path, device: torch.device):
        self.root = Path(root)
        self.device = device

    def hf_dir(self, name: str, size: str, build: Callable[[], torch.nn.Module]) -> Path:
        path = self.root / f"{size}-{name}"
        if not (path / "config.json").exists():
            model = build()
            randomise(model)
            model.save_pretrained(path)
        return path


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Variance-preserving random weights.

    A fresh HF model has weights of std 0.02, so its attention is nearly
    uniform and bf16 errors look smaller than on trained weights. Scaling
    matrices by 1/sqrt(fan_in) keeps activations at unit scale and gives
    attention logits of std ~1, a more honest test of low precision.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g)
                if isinstance(module, torch.nn.LayerNorm):
                    p.copy_(1.0 + 0.1 * noise if name == "weight" else 0.1 * noise)
                elif p.ndim >= 2:
                    p.copy_(noise / p[0].numel() ** 0.5)
                else:
                    p.copy_(0.02 * noise)


def video(batch: int, frames: int, img: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, img, img, generator=g)


# ----------------------------------------------------------------------------- FLOPs

def block_flops(tokens: int, width: int, hidden: int, keys: int | None = None, query_tokens: int | None = None
                ) -> float:
    """One transformer block: q/k/v, output projection, MLP and the two attention matmuls.

    ``query_tokens``/``keys`` describe cross-attention (queries from a short
    sequence, keys and values from ``keys`` tokens); by default self-attention.
    """
    q = tokens if query_tokens is None else query_tokens
    kv = tokens if keys is None else keys
    linear = 2 * width * width * (q + 2 * kv + q) + 2 * q * 2 * width * hidden
    return linear + 4 * q * kv * width


def videomae_inference_flops(s: Size, batch: int) -> float:
    n = (s.frames // s.tubelet) * (s.img // s.patch) ** 2
    patch_dim = 3 * s.tubelet * s.patch ** 2
    per_clip = (2 * n * patch_dim * s.width + s.depth * block_flops(n, s.width, 4 * s.width)
                + 2 * s.width * s.num_classes)
    return batch * per_clip


def visible_tokens(s: Size) -> tuple[int, int]:
    """(visible, total) tokens per clip under VideoMAE's tube mask."""
    t, hw = s.frames // s.tubelet, (s.img // s.patch) ** 2
    return (hw - int(s.mask_ratio * hw)) * t, hw * t


def videomae_pretrain_flops(s: Size, batch: int) -> float:
    """Forward + backward of the useful work: the encoder sees visible tokens only, the decoder all of them."""
    vis, n = visible_tokens(s)
    patch_dim = 3 * s.tubelet * s.patch ** 2
    forward = (2 * vis * patch_dim * s.width + s.depth * block_flops(vis, s.width, 4 * s.width)
               + 2 * vis * s.width * s.dec_width + s.dec_depth * block_flops(n, s.dec_width, 4 * s.dec_width)
               + 2 * (n - vis) * s.dec_width * patch_dim)
    return 3 * batch * forward


def clip_flops(s: Size, batch: int, video_modules: bool = False) -> float:
    """CLIP's ViT on every frame and the projection.

    With ``video_modules``, also InternVideo's local temporal and global spatiotemporal modules.
    """
    t, hw, d = s.clip_frames, (s.img // s.patch) ** 2, s.width
    total = t * (2 * hw * 3 * s.patch ** 2 * d + s.depth * block_flops(1 + hw, d, 4 * d))
    if not video_modules:
        return batch * (total + t * 2 * d * 512)  # every frame's CLS is projected, then averaged
    r = int(d // 1.5)
    # two local modules per block on the patch tokens: 1x1 down, depthwise temporal k=3, 1x1 up
    total += 2 * s.depth * t * hw * (4 * d * r + 2 * 3 * r)
    # global blocks: 3x3x3 depthwise position conv, then one query reading all t * (1 + hw) tokens
    total += s.global_layers * (t * hw * 2 * 27 * d + block_flops(0, d, 4 * d, keys=t * (1 + hw), query_tokens=1))
    return batch * (total + 2 * d * 512)  # one projected video embedding


FLOPS: dict[str, Callable[[Size, int], float]] = {
    "videomae_inference": videomae_inference_flops,
    "videomae_pretrain": videomae_pretrain_flops,
    "clip_video": clip_flops,
}


# ----------------------------------------------------------------------------- runners

def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def inference_runner(call: Callable[[], torch.Tensor], autocast: bool, device: torch.device, how: str,
                     **state) -> Runner:
    def run(amp: bool = autocast) -> torch.Tensor:
        with torch.inference_mode(), _autocast(device, amp):
            return call()

    return Runner(run=run, output=lambda: run().float(), how=how,
                  fp32_output=(lambda: run(False).float()) if autocast else None, state=state)


def train_runner(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], autocast: bool,
                 device: torch.device, how: str) -> Runner:
    """A pretraining step: forward, backward, AdamW.

    The fused AdamW kernel, for both implementations: it is what HF's Trainer
    uses by default (torch >= 2.8), and on CPU it is ~6x faster than the
    multi-tensor one (0.05 vs 0.29 s per step for ViT-B's 94 M parameters on one
    core), which would otherwise be a large, identical share of both times.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)

    def step() -> None:
        with _autocast(device, autocast):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def loss(amp: bool = autocast) -> torch.Tensor:
        with torch.no_grad(), _autocast(device, amp):
            return loss_fn().detach().float().reshape(1)

    return Runner(run=step, output=loss, how=how, fp32_output=(lambda: loss(False)) if autocast else None,
                  state={"model": model, "opt": opt})


def _how(case: Case, v: Variant) -> str:
    if case.precision == "fp32":
        words = "fp32"
    elif v.bf16_weights:
        words = "bf16 weights"
    else:
        words = "bf16 autocast"
    return words + (" + torch.compile" if v.compile else "")


def _prepare(model: torch.nn.Module, case: Case, v: Variant, ws: Workspace) -> torch.nn.Module:
    model = model.to(ws.device)
    if v.bf16_weights:
        model = model.to(torch.bfloat16)
    return model


def _maybe_compile(fn: Callable, v: Variant) -> Callable:
    return torch.compile(fn) if v.compile else fn


def _videomae_hf_config(s: Size, **kw):
    import transformers as hf
    return hf.VideoMAEConfig(
        image_size=s.img, patch_size=s.patch, num_frames=s.frames, tubelet_size=s.tubelet, hidden_size=s.width,
        num_hidden_layers=s.depth, num_attention_heads=s.heads, intermediate_size=4 * s.width,
        decoder_hidden_size=s.dec_width, decoder_num_hidden_layers=s.dec_depth,
        decoder_num_attention_heads=s.dec_heads, decoder_intermediate_size=4 * s.dec_width, **kw)


def build_videomae_inference(case: Case, v: Variant, ws: Workspace) -> Runner:
    import transformers as hf

    import internvideo
    s = case.dims
    path = ws.hf_dir("videomae-cls", case.size, lambda: hf.VideoMAEForVideoClassification(
        _videomae_hf_config(s, num_labels=s.num_classes)))
    x = video(case.batch, s.frames, s.img).to(ws.device)
    amp = case.precision == "bf16" and not v.bf16_weights
    if v.impl == "ref":
        model = _prepare(hf.VideoMAEForVideoClassification.from_pretrained(path), case, v, ws).eval()
        x = x.transpose(1, 2).contiguous()  # HF reads (B, T, C, H, W); converted outside the timing
        fwd = _maybe_compile(model, v)
        return inference_runner(lambda: fwd(x).logits, amp, ws.device, _how(case, v), model=model)
    model = _prepare(internvideo.load_model(path), case, v, ws).eval()
    if v.bf16_weights:
        x = x.to(torch.bfloat16)
    fwd = _maybe_compile(model, v)
    return inference_runner(lambda: fwd(x), amp, ws.device, _how(case, v), model=model)


def build_videomae_pretrain(case: Case, v: Variant, ws: Workspace) -> Runner:
    import transformers as hf

    import internvideo
    from internvideo.models.videomae import tube_mask
    s = case.dims
    path = ws.hf_dir("videomae-pre", case.size, lambda: hf.VideoMAEForPreTraining(_videomae_hf_config(s)))
    x = video(case.batch, s.frames, s.img).to(ws.device)
    grid = (s.frames // s.tubelet, s.img // s.patch, s.img // s.patch)
    mask = tube_mask(case.batch, grid, s.mask_ratio, torch.Generator().manual_seed(1)).to(ws.device)
    amp = case.precision == "bf16"
    if v.impl == "ref":
        model = _prepare(hf.VideoMAEForPreTraining.from_pretrained(path), case, v, ws).train()
        x = x.transpose(1, 2).contiguous()
        fwd = _maybe_compile(model, v)
        return train_runner(model, lambda: fwd(x, bool_masked_pos=mask).loss, amp, ws.device, _how(case, v))
    model = _prepare(internvideo.load_model(path), case, v, ws).train()
    fwd = _maybe_compile(model, v)
    return train_runner(model, lambda: fwd(x, mask)["loss"], amp, ws.device, _how(case, v))


def _clip_hf_config(s: Size):
    import transformers as hf
    return hf.CLIPVisionConfig(hidden_size=s.width, intermediate_size=4 * s.width, num_hidden_layers=s.depth,
                               num_attention_heads=s.heads, image_size=s.img, patch_size=s.patch,
                               projection_dim=512)


def build_clip_video(case: Case, v: Variant, ws: Workspace) -> Runner:
    """HF's CLIP vision tower on every frame, embeddings averaged, against our video encoder.

    ``ours`` is our encoder without video modules: the same computation, checked
    to match. ``ours_full`` is InternVideo's encoder with its local temporal
    modules and global blocks (more FLOPs, reported separately), loaded from the
    same CLIP weights as InternVideo initialises from them.
    """
    import transformers as hf

    from internvideo.checkpoints.clip import convert_hf_clip_state_dict
    from internvideo.models.video_clip import InternVideoMM, InternVideoMMConfig, VideoEncoder
    s = case.dims
    path = ws.hf_dir("clip-vision", case.size, lambda: hf.CLIPVisionModelWithProjection(_clip_hf_config(s)))
    b, t = case.batch, s.clip_frames
    x = video(b, t, s.img).to(ws.device)
    amp = case.precision == "bf16" and not v.bf16_weights
    if v.impl == "ref":
        model = _prepare(hf.CLIPVisionModelWithProjection.from_pretrained(path), case, v, ws).eval()
        frames = x.transpose(1, 2).reshape(b * t, 3, s.img, s.img).contiguous()
        fwd = _maybe_compile(model, v)
        return inference_runner(lambda: fwd(pixel_values=frames).image_embeds.view(b, t, -1).mean(1), amp,
                                ws.device, _how(case, v), model=model)
    full = v.impl == "ours_full"
    cfg = InternVideoMMConfig(img_size=s.img, patch_size=s.patch, num_frames=t, vision_width=s.width,
                              vision_layers=s.depth, vision_heads=s.heads, embed_dim=512, act="quick_gelu",
                              norm_eps=1e-5, use_local=full, num_global_layers=s.global_layers if full else 0)
    model = VideoEncoder(cfg)
    weights = convert_hf_clip_state_dict(load_file(str(path / "model.safetensors")))
    visual = {k.removeprefix("visual."): w for k, w in weights.items() if k.startswith("visual.")}
    missing, unexpected = model.load_state_dict(visual, strict=False)
    new = tuple(p.removeprefix("visual.") for p in InternVideoMM.NEW_PARAMETER_PREFIXES)
    bad = [k for k in missing if not k.startswith(new)]
    if unexpected or bad:
        raise RuntimeError(f"CLIP weights did not fit our encoder: missing {bad}, unexpected {unexpected}")
    model = _prepare(model, case, v, ws).eval()
    if v.bf16_weights:
        x = x.to(torch.bfloat16)
    fwd = _maybe_compile(model, v)
    return inference_runner(lambda: fwd(x), amp, ws.device, _how(case, v), model=model)


BUILDERS: dict[str, Callable[[Case, Variant, Workspace], Runner]] = {
    "videomae_inference": build_videomae_inference,
    "videomae_pretrain": build_videomae_pretrain,
    "clip_video": build_clip_video,
}

_GROUP_TITLES = {
    "videomae_inference": "VideoMAE {vit} inference, {frames}x{img}",
    "videomae_pretrain": "VideoMAE {vit} pretraining step (fwd + bwd + AdamW, 90 % tube mask), {frames}x{img}",
    "clip_video": "Multimodal video encoder {vit}, {clip_frames}x{img}, vs HF's CLIP vision tower per frame",
}


def group_title(group: str, size: str) -> str:
    s = SIZES[size]
    vit = "ViT-B/16" if size == "full" else f"ViT {s.width} wide x {s.depth} layers /{s.patch} (small)"
    return _GROUP_TITLES[group].format(vit=vit, frames=s.frames, clip_frames=s.clip_frames, img=s.img)

REF, OURS = Variant("ref", "ref"), Variant("ours", "ours")


def cpu_cases(size: str = "full") -> list[Case]:
    """The CPU suite: every group in fp32 and bf16, batch 1 and 4 (the small size uses batch 1 and 2)."""
    batches = (1, 4) if size == "full" else (1, 2)
    bf16_weights = Variant("ours_bf16_weights", "ours", bf16_weights=True)
    full_encoder = Variant("ours_full", "ours_full")
    cases = []
    for batch in batches:
        for precision in ("fp32", "bf16"):
            extra = (bf16_weights,) if precision == "bf16" else ()
            cases.append(Case(f"videomae_infer_{precision}_b{batch}", "videomae_inference", precision, batch,
                              (REF, OURS) + extra, size))
    for batch in batches:
        for precision in ("fp32", "bf16"):
            cases.append(Case(f"videomae_pretrain_{precision}_b{batch}", "videomae_pretrain", precision, batch,
                              (REF, OURS), size))
    for precision in ("fp32", "bf16"):
        cases.append(Case(f"clip_video_{precision}_b1", "clip_video", precision, 1, (REF, OURS, full_encoder), size))
    return cases
