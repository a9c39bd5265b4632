"""The demo's figures: VideoMAE reconstructions and text-to-video retrieval examples."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import probe, read_frames
from ..models.videomae import tube_mask, unpatchify
from .reconstruction import reconstruct, clip_dataset

# ----------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reconstruction_figure(model: nn.Module, test_list: str | os.PathLike, path: str | os.PathLike, *,
                          seed: int = 0, num_clips: int = 4, mask_ratio: float | None = None) -> Path:
    """VideoMAE reconstructions of test clips (one per class): input / mask / prediction / pasted.

    Four rows per clip: the input, the masked input (hidden patches grey), the
    model's prediction of the hidden patches alone (visible ones black), and
    that prediction pasted into the visible patches. A model trained with ``norm_pix_loss``
    predicts per-patch standardised pixels; those are shown de-normalised with
    each hidden patch's true mean and std (said in the figure title), plain-pixel
    models are shown as predicted.
    """
    model = model.eval()
    c = model.config
    mask_ratio = c.mask_ratio if mask_ratio is None else mask_ratio
    dataset = clip_dataset(model, test_list)
    picks, seen = [], set()
    for i, sample in enumerate(dataset.samples):
        if sample.label not in seen:
            seen.add(sample.label)
            picks.append(i)
        if len(picks) == num_clips:
            break
    video = torch.stack([dataset[i]["video"] for i in picks])
    mask = tube_mask(len(picks), c.grid, mask_ratio, generator=torch.Generator().manual_seed(seed))
    pixels, recon = reconstruct(model, video, mask)
    masked, alone = pixels.clone(), torch.zeros_like(pixels)
    alone[mask] = recon[mask]
    masked[mask] = 0.5
    rows = [("input", pixels), (f"mask {mask_ratio * 100:.0f} %", masked),
            ("predicted", alone), ("pasted", recon)]
    clips = [(name, unpatchify(x, tuple(video.shape), c.patch_size, c.tubelet_size).clamp(0, 1)) for name, x in rows]

    plt = _pyplot()
    t = video.shape[2]
    per = len(rows)
    fig, axes = plt.subplots(per * len(picks), t, figsize=(t * 0.9, per * len(picks) * 0.95), squeeze=False)
    for k, i in enumerate(picks):
        label = dataset.classes[dataset.samples[i].label] if dataset.classes else str(dataset.samples[i].label)
        for r, (name, clip) in enumerate(clips):
            for f in range(t):
                ax = axes[per * k + r, f]
                ax.imshow(clip[k, :, f].permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if f == 0:
                    ax.set_ylabel(name, fontsize=7)
                if r == 0 and f == 0:
                    ax.set_title(f"test clip: {label}", fontsize=8, loc="left")
    how = ("hidden patches de-normalised with their true mean/std" if c.norm_pix_loss
           else "plain-pixel predictions of the hidden patches, visible patches as input")
    fig.suptitle(f"VideoMAE reconstructions ({how}); frames left to right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def retrieval_figure(emb, world: Path, path: str | os.PathLike, num_queries: int = 4, top: int = 3) -> Path:
    """Text-to-video retrieval examples: each query caption with its top videos (first / middle / last frame).

    A green frame marks the clip the caption was written for.
    """
    sim = emb.text @ emb.video.t()
    owners = emb.caption_to_video
    num_videos = len(emb.videos)
    queries = []
    for v in np.linspace(0, num_videos - 1, num_queries).round().astype(int):
        queries.append(int(np.flatnonzero(owners == v)[0]))  # the first caption of evenly spaced clips
    plt = _pyplot()
    fig, axes = plt.subplots(len(queries), top, figsize=(top * 2.6, len(queries) * 1.25), squeeze=False)
    for row, q in enumerate(queries):
        best = torch.topk(sim[q], top)
        for col, (score, v) in enumerate(zip(best.values.tolist(), best.indices.tolist())):
            n = probe(emb.videos[v]).num_frames
            frames = read_frames(emb.videos[v], [0, n // 2, n - 1])
            strip = np.concatenate([np.pad(f, ((0, 0), (0, 2), (0, 0)), constant_values=255) for f in frames], 1)
            ax = axes[row, col]
            ax.imshow(strip, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            correct = v == owners[q]
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if correct else "lightgray")
                spine.set_linewidth(3 if correct else 1)
            ax.set_xlabel(f"#{col + 1}  cos {score:.2f}" + ("  (match)" if correct else ""), fontsize=7)
        axes[row, 0].set_title(f'"{emb.captions[q]}"', fontsize=8, loc="left")
    fig.suptitle("Text-to-video retrieval on the test split: top-3 clips per query (first / middle / last frame)",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


