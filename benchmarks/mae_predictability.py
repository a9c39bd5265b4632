"""How much of a tube-masked clip can be recovered from its visible tubes at all? (docs/demo.md, check 9)

No learning: every hidden patch is filled with the nearest visible pixel of the same frame (nearest-neighbour
inpainting) and scored, in 0-1 pixels, against the flat prediction that claim (b) of the demo uses (each hidden
patch the mean colour of its frame's visible patches), on all hidden patches and on the quarter with the most
pixel variance (the shape patches). If local continuation cannot beat the flat prediction, a masked autoencoder
has little to learn from the visible tubes at that patch size, whatever its budget.

    python -m benchmarks.mae_predictability WORLD [--patch 8 4] [--mask-ratio 0.75] [--clips 150]

WORLD: a folder written by ``make_world`` (e.g. ``demo_out/world``); the clips of ``val.txt``, 8 frames every 2
(the demo VideoMAE's input), one tube mask per clip (the same mask for every frame, as VideoMAE's tubes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from internvideo.data import read_classification_list, read_frames
from internvideo.models.videomae import tube_mask


def predictability(world: Path, patch: int, mask_ratio: float, clips: int, seed: int = 0) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    nearest, flat, spread = [], [], []
    for sample in read_classification_list(world / "val.txt")[:clips]:
        video = np.asarray(read_frames(world / sample.path, list(range(0, 16, 2))), np.float32) / 255.0
        _, size, _, _ = video.shape
        grid = size // patch
        hidden = tube_mask(1, (1, grid, grid), mask_ratio, generator=generator)[0].reshape(grid, grid).numpy()
        pixels_hidden = np.kron(hidden, np.ones((patch, patch), bool))
        rows, cols = ndimage.distance_transform_edt(pixels_hidden, return_distances=False, return_indices=True)
        for frame in video:
            filled, colour = frame[rows, cols], frame[~pixels_hidden].mean(0)
            for y, x in zip(*np.nonzero(hidden)):
                box = (slice(y * patch, (y + 1) * patch), slice(x * patch, (x + 1) * patch))
                truth = frame[box]
                nearest.append(((filled[box] - truth) ** 2).mean())
                flat.append(((colour - truth) ** 2).mean())
                spread.append(truth.reshape(-1, 3).var(0).mean())
    nearest_, flat_, spread_ = np.array(nearest), np.array(flat), np.array(spread)
    content = spread_ >= np.quantile(spread_, 0.75)
    return {"patch": patch, "mask_ratio": mask_ratio, "hidden_patches": int(len(flat_)),
            "nearest_mse": float(nearest_.mean()), "flat_mse": float(flat_.mean()),
            "ratio": float(nearest_.mean() / flat_.mean()),
            "nearest_mse_content": float(nearest_[content].mean()), "flat_mse_content": float(flat_[content].mean()),
            "ratio_content": float(nearest_[content].mean() / flat_[content].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("--patch", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--clips", type=int, default=150)
    args = ap.parse_args()
    for patch in args.patch:
        print(json.dumps(predictability(args.world, patch, args.mask_ratio, args.clips)))


if __name__ == "__main__":
    main()
