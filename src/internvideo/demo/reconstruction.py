"""What the masked autoencoder predicts for the hidden patches, and how much of their content it recovers.

Used by the reconstruction figure and by claim (b) of the demo: on test clips
with the model's own tube masking, the mean squared error (0-1 pixels) of the
prediction on the hidden patches against a flat prediction (every hidden patch
the mean colour of the visible patches of its time slice: what a model that
"predicts grey" scores), on all hidden patches and on the quarter of them
with the most pixel variance: the patches that hold the shape's outline rather
than the smooth background.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..data import VideoClassificationDataset, recipe_view
from ..models.videomae import reconstruction_target, tube_mask

__all__ = ["clip_dataset", "reconstruct", "reconstruction_errors"]


def clip_dataset(model: nn.Module, test_list: str | os.PathLike) -> VideoClassificationDataset:
    """The model's own clips of a list (its frames, size and normalisation), unaugmented."""
    return VideoClassificationDataset(test_list, recipe_view(model.input_recipe()), training=False)


@torch.no_grad()
def reconstruct(model: nn.Module, video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels, predicted)``, both ``(B, N, D)`` patches in 0-1 pixels; ``predicted`` is meaningful where
    ``mask`` is True. A ``norm_pix_loss`` model's standardised prediction is mapped back with each hidden patch's
    true mean and std (the only way to show it as pixels)."""
    c = model.config
    pred = model(video, mask)["pred"].float()
    pixels = reconstruction_target(video, c.patch_size, c.tubelet_size, False, c.mean, c.std)
    b, _, dim = pixels.shape
    if c.norm_pix_loss:
        hidden = pixels[mask].reshape(b, -1, dim // 3, 3)
        pred = pred.reshape(hidden.shape) * (hidden.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6) \
            + hidden.mean(dim=-2, keepdim=True)
    predicted = pixels.clone()
    predicted[mask] = pred.reshape(-1, dim)
    return pixels, predicted


@torch.no_grad()
def reconstruction_errors(model: nn.Module, test_list: str | os.PathLike, *, seed: int = 0,
                          batch_size: int = 32) -> dict[str, float]:
    """Hidden-patch MSE of ``model`` and of the flat prediction, on all hidden patches and on the content ones."""
    model = model.eval()
    c = model.config
    if c.norm_pix_loss:
        raise ValueError("reconstruction_errors measures plain-pixel models (norm_pix_loss=False): a norm_pix_loss "
                         "prediction becomes pixels only with each hidden patch's true mean and std")
    t, h, w = c.grid
    dataset = clip_dataset(model, test_list)
    generator = torch.Generator().manual_seed(seed)
    errors, flat, spread = [], [], []
    for start in range(0, len(dataset), batch_size):
        video = torch.stack([dataset[i]["video"] for i in range(start, min(start + batch_size, len(dataset)))])
        mask = tube_mask(len(video), c.grid, c.mask_ratio, generator=generator)
        pixels, predicted = reconstruct(model, video, mask)
        b, _, dim = pixels.shape
        # Flat prediction: per time slice, the mean colour of the visible patches.
        patches = pixels.reshape(b, t, h * w, dim // 3, 3)
        visible = (~mask).reshape(b, t, h * w, 1, 1).float()
        colour = (patches * visible).sum(dim=(2, 3), keepdim=True) / (visible.sum(dim=(2, 3), keepdim=True)
                                                                      * patches.shape[3])
        baseline = colour.expand_as(patches).reshape(b, -1, dim)
        errors.append(((predicted - pixels) ** 2).mean(dim=-1)[mask])
        flat.append(((baseline - pixels) ** 2).mean(dim=-1)[mask])
        spread.append(pixels.reshape(b, -1, dim // 3, 3).var(dim=2).mean(dim=-1)[mask])
    errors, flat, spread = torch.cat(errors), torch.cat(flat), torch.cat(spread)
    content = spread >= spread.quantile(0.75)
    return {"mse_hidden": float(errors.mean()), "baseline_mse_hidden": float(flat.mean()),
            "mse_content": float(errors[content].mean()), "baseline_mse_content": float(flat[content].mean()),
            "hidden_patches": int(errors.numel()), "content_patches": int(content.sum()), "clips": len(dataset)}
