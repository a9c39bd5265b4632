"""``vln``: a HAMT-style navigation agent trained on R2R files (graphs + view features), no simulator.

``data.train`` / ``data.val`` are R2R JSON files, ``vln.connectivity`` the
folder of navigation graphs and ``vln.features`` the view features (all
relative to ``data.root``). ``model.name`` is ``vln_agent_tiny`` /
``vln_agent_base`` (:mod:`internvideo.models.vln`) or a checkpoint directory to
continue from; ``model.overrides`` sets agent fields (``use_history: false``
is the no-history ablation, ``freeze_text: true`` keeps the text tower fixed).
``feature_dim`` comes from the features. ``model.pretrained`` names an
InternVideo-MM checkpoint whose text tower initialises the agent's (the agent's
``text_width`` / ``text_layers`` / ``text_heads`` must match it).

A batch is a set of instructions. Its loss is HAMT's imitation learning in two
roll-outs: ``vln.teacher_weight`` x cross-entropy of the teacher's actions
while following them (teacher forcing), plus ``vln.sample_weight`` x the same
cross-entropy along a roll-out whose actions are sampled from the agent
(student forcing, DAgger-style: the teacher is the next viewpoint on a
shortest path to the goal from wherever the agent is, STOP at the goal). The
sampling generator is seeded by the batch's items, which the loop seeds from
(seed, epoch, index): a resumed run samples the same actions. Validation:
greedy roll-outs scored with the R2R metrics (``SR`` is the run's metric).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ...checkpoints import load_model
from ...data.vln import Episode, NavGraphs, ViewFeatures, read_episodes
from ...models import apply_overrides
from ...models.vln import NAMED_CONFIGS, VLNAgent
from ...tasks.vln import evaluate_agent, rollout, tokenize_instructions
from ..config import ConfigError, TrainConfig
from ..optim import param_groups

log = logging.getLogger("internvideo.train")


class EpisodeSet(Dataset):
    """Instructions as dataset items: ``{"index", "seed"}``; the seed is drawn from the loop's seeded RNG."""

    def __init__(self, episodes: Sequence[Episode]):
        self.episodes = list(episodes)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "seed": int(torch.randint(0, 2**62, ()).item())}


def _copy_text_tower(agent: VLNAgent, path: str) -> None:
    source = load_model(path)
    text = getattr(source, "text", None)
    if text is None:
        raise ConfigError(f"model.pretrained: {path} holds a {type(source).__name__} without a text tower; "
                          "give an InternVideo-MM checkpoint")
    own = agent.text.state_dict()
    for key, value in text.state_dict().items():
        if key not in own or key == "proj.weight":  # the agent reads token features, not the pooled projection
            continue
        if own[key].shape != value.shape:
            raise ConfigError(f"model.pretrained: {path}: text tower tensor {key} is {tuple(value.shape)}, the agent's "
                              f"{tuple(own[key].shape)}; set model.overrides text_width/text_layers/text_heads/"
                              "context_length to the checkpoint's")
        own[key] = value
    agent.text.load_state_dict(own)


class VLNObjective:
    metric_name = "SR"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        v = cfg.vln
        for key in ("connectivity", "features"):
            if not getattr(v, key):
                raise ConfigError(f"the vln objective needs vln.{key} (see docs/vln.md)")
        if not cfg.data.train:
            raise ConfigError("the vln objective needs data.train (an R2R JSON file, e.g. R2R_train.json)")
        self.graphs = NavGraphs(self._path(v.connectivity))
        self.features = ViewFeatures(self._path(v.features))
        self.train_episodes = self._episodes(cfg.data.train)
        self.val_episodes = self._episodes(cfg.data.val)[: v.val_episodes] if cfg.data.val else []
        self.model: VLNAgent | None = None
        self.ids: torch.Tensor | None = None

    def _path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() or not self.cfg.data.root else Path(self.cfg.data.root) / p

    def _episodes(self, rel: str) -> list[Episode]:
        path = self._path(rel)
        episodes = read_episodes(path)
        self.graphs.check_episodes(episodes, path)
        return episodes

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        if m.name in NAMED_CONFIGS:
            cls, base = NAMED_CONFIGS[m.name]
            model = cls(apply_overrides(base, {"feature_dim": self.features.dim, **m.overrides}, f"model {m.name!r}"))
            if m.pretrained:
                _copy_text_tower(model, m.pretrained)
        elif os.path.isdir(m.name):
            model = load_model(m.name, **m.overrides)
            if not isinstance(model, VLNAgent):
                raise ConfigError(f"model.name: {m.name} holds a {type(model).__name__}, not a navigation agent")
        else:
            raise ConfigError(f"model.name: unknown navigation agent {m.name!r}; named: {', '.join(NAMED_CONFIGS)} "
                              "(or a checkpoint directory)")
        if model.config.feature_dim != self.features.dim:
            raise ConfigError(f"vln.features: {self.features.path} holds {self.features.dim}-wide view features, the "
                              f"agent expects feature_dim={model.config.feature_dim}")
        self.ids, truncated = tokenize_instructions([e.instruction for e in self.train_episodes],
                                                    model.config.context_length)
        if truncated:
            log.warning("%s: %d of %d instructions are longer than the text encoder's %d tokens and were truncated",
                        self.cfg.data.train, truncated, len(self.train_episodes), model.config.context_length)
        self.model = model
        return model

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        return EpisodeSet(self.train_episodes), (EpisodeSet(self.val_episodes) if self.val_episodes else None)

    def collate(self, items: Sequence[dict]) -> dict:
        return {"index": torch.tensor([it["index"] for it in items]),
                "seed": torch.tensor([it["seed"] for it in items])}

    @staticmethod
    def _imitation(result) -> tuple[torch.Tensor, int]:
        total = sum(F.cross_entropy(lg, tg, reduction="sum") for lg, tg in zip(result.logits, result.targets))
        return total, sum(int(tg.numel()) for tg in result.targets)

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        index = batch["index"].cpu()
        episodes = [self.train_episodes[i] for i in index.tolist()]
        ids = self.ids[index]
        v = self.cfg.vln
        loss = torch.zeros((), device=batch["index"].device)
        logs: dict[str, float] = {}
        if v.teacher_weight > 0:
            total, n = self._imitation(rollout(model, episodes, ids, self.graphs, self.features, "teacher",
                                               v.max_steps))
            loss = loss + v.teacher_weight * total / max(n, 1)
            logs["teacher_loss"] = float(total.detach()) / max(n, 1)
        if v.sample_weight > 0:
            # one generator per batch, seeded by its items: the sampled actions survive a resume
            seed = int(sum(s * (k + 1) for k, s in enumerate(batch["seed"].tolist())) % (2**63))
            result = rollout(model, episodes, ids, self.graphs, self.features, "sample", v.max_steps,
                             generator=torch.Generator().manual_seed(seed))
            total, n = self._imitation(result)
            loss = loss + v.sample_weight * total / max(n, 1)
            logs["sample_loss"] = float(total.detach()) / max(n, 1)
            logs["sample_steps"] = n / len(episodes)
        return loss, logs

    def evaluate(self, model: nn.Module, val_set: Dataset, device: torch.device) -> dict[str, float]:
        metrics, _ = evaluate_agent(model, val_set.episodes, self.graphs, self.features, self.cfg.vln.max_steps,
                                    batch_size=self.cfg.run.batch_size)
        return {k: float(metrics[k]) for k in ("SR", "SPL", "OSR", "nDTW", "SDTW", "NE", "TL")}

    def batch_size(self, batch: dict) -> int:
        return int(batch["index"].numel())

    def param_groups(self, model: nn.Module) -> list[dict]:
        return param_groups(model, self.cfg.optim.weight_decay, None, self.cfg.optim.lr_groups)

    def on_train_mode(self, model: nn.Module) -> None:
        pass

    def start_epoch(self, train_set: Dataset, epoch: int) -> None:
        pass

    def end_epoch(self, epoch: int) -> None:
        pass


__all__ = ["EpisodeSet", "VLNObjective"]
