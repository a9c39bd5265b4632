"""A dataset of precomputed features: what frozen backbones give for each sample, computed once."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .datasets import collate_videos

FeatureFn = Callable[[dict], dict[str, torch.Tensor]]


class FeatureCache(torch.utils.data.Dataset):
    """One safetensors file per sample (its features and label), written atomically; existing files are reused."""

    def __init__(self, files: list[Path]):
        self.files = files

    @classmethod
    @torch.no_grad()
    def build(cls, features: FeatureFn, dataset: torch.utils.data.Dataset, directory: str | Path, batch_size: int,
              progress: bool = False) -> FeatureCache:
        """``features(batch) -> {name: (B, ...)}`` over every item of ``dataset`` (evaluation views)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = [directory / f"{i:07d}.safetensors" for i in range(len(dataset))]
        todo = [i for i, f in enumerate(files) if not f.exists()]
        if todo:
            sub = torch.utils.data.Subset(dataset, todo)
            loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, collate_fn=collate_videos)
            done = 0
            for batch in tqdm(loader, desc="feature cache", unit="batch", disable=not progress):
                feats = features(batch)
                for j in range(len(batch["label"])):
                    item = {k: v[j].clone() for k, v in feats.items()}  # own storage: features may alias
                    item["label"] = batch["label"][j]
                    tmp = files[todo[done]].with_suffix(".tmp")
                    save_file(item, str(tmp))
                    tmp.replace(files[todo[done]])
                    done += 1
        return cls(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        item = load_file(str(self.files[index]))
        item["label"] = int(item["label"])
        return item


__all__ = ["FeatureCache"]
