"""A HAMT-style vision-language navigation agent for discrete R2R, built from the shared blocks.

Per step the agent scores the navigable neighbours of its viewpoint plus STOP
(index 0 of the logits). Its inputs:

* **instruction**: CLIP's text transformer (:class:`~.text.TextTransformer`,
  the multimodal model's text tower; its weights can be copied from an
  InternVideo-MM checkpoint and frozen), per-token features projected to the
  agent's width;
* **observation**: for each candidate the features of the discretised view it
  falls in (``(36, D)`` InternVideo view features per viewpoint) plus a
  direction embedding of ``[sin, cos]`` of its heading relative to the agent
  and of its elevation (HAMT's angle feature), a learned STOP token, and all
  36 views of the current panorama with their directions (not scored: they
  say where the agent stands);
* **history** (HAMT's contribution): one token per past step, made of the
  step's panorama (the mean of its 36 view features), the action taken (the
  chosen view's feature and direction) and a step embedding, encoded over time
  by a transformer of :class:`~.layers.Block` s behind a history [CLS] token.
  ``use_history=False`` drops it (the ablation);
* a **cross-modal transformer**: one single-stream stack of
  :class:`~.layers.Block` s over ``[text; panorama; history; STOP +
  candidates]`` with
  a modality embedding per part and padding hidden by ``key_mask`` (HAMT uses
  an LXMERT-style two-stream encoder; one stream lets every block attend
  across all three with the one block class), then a linear score per
  observation token.

Differences from HAMT, by choice: HAMT's panorama encoder is a 2-layer
transformer over the 36 views; here a history step's panorama is pooled by the
mean. The history encoder sees InternVideo's per-view features, not the
video clip of the trajectory's frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import Block, init_weights, run_blocks
from .text import TextTransformer

#: the direction feature: sin/cos of relative heading and of elevation
DIRECTION_DIM = 4


@dataclass
class VLNAgentConfig:
    feature_dim: int = 768  # D of the (36, D) view features
    width: int = 256
    heads: int = 4
    layers: int = 2  # cross-modal blocks
    history_layers: int = 2  # temporal transformer over past steps
    use_history: bool = True
    max_steps: int = 32  # history length the step embedding covers
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    feature_dropout: float = 0.3  # on the view features (HAMT: feat_dropout 0.4 on R2R)
    # the text tower: CLIP's text transformer (fields of InternVideoMMConfig's text_* by the same meaning)
    vocab_size: int = 49408
    context_length: int = 77
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    freeze_text: bool = False


class VLNAgent(nn.Module):
    """``agent(text, text_keep, cand_feat, cand_dir, cand_keep, pano_feat, pano_dir, history)``: ``(B, 1 + C)``.

    Index 0 of the scores is STOP.
    """

    config_class = VLNAgentConfig

    def __init__(self, config: VLNAgentConfig):
        super().__init__()
        c = self.config = config
        self.text = TextTransformer(vocab_size=c.vocab_size, context_length=c.context_length, width=c.text_width,
                                    layers=c.text_layers, heads=c.text_heads, embed_dim=c.text_width,
                                    mask_embedding=False)
        # The agent reads per-token features; the pooled projection stays unused, so it is not trained (an
        # optimiser state that never fills would make a checkpoint unresumable).
        self.text.proj.requires_grad_(False)
        self.text_proj = nn.Linear(c.text_width, c.width)
        self.view_proj = nn.Sequential(nn.Dropout(c.feature_dropout), nn.Linear(c.feature_dim, c.width))
        self.dir_embed = nn.Linear(DIRECTION_DIM, c.width)
        self.stop_token = nn.Parameter(torch.zeros(1, 1, c.width))
        # modality embeddings: 0 text, 1 history, 2 STOP and candidates, 3 the current panorama's views
        self.modality = nn.Parameter(torch.zeros(4, c.width))
        if c.use_history:
            self.pano_proj = nn.Sequential(nn.Dropout(c.feature_dropout), nn.Linear(c.feature_dim, c.width))
            self.step_embed = nn.Parameter(torch.zeros(c.max_steps, c.width))
            self.history_cls = nn.Parameter(torch.zeros(1, 1, c.width))
            self.history_blocks = nn.ModuleList(
                Block(c.width, c.heads, c.mlp_ratio, qkv_bias="qkv", drop=c.dropout, norm_eps=1e-5)
                for _ in range(c.history_layers))
        self.blocks = nn.ModuleList(
            Block(c.width, c.heads, c.mlp_ratio, qkv_bias="qkv", drop=c.dropout, norm_eps=1e-5)
            for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width, eps=1e-5)
        self.score = nn.Linear(c.width, 1)
        for m in (self.text_proj, self.view_proj, self.dir_embed, self.blocks, self.norm, self.score):
            m.apply(init_weights)
        for p in (self.stop_token, self.modality):
            nn.init.normal_(p, std=0.02)
        if c.use_history:
            for m in (self.pano_proj, self.history_blocks):
                m.apply(init_weights)
            nn.init.normal_(self.step_embed, std=0.02)
            nn.init.normal_(self.history_cls, std=0.02)
        if c.freeze_text:
            self.text.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_text:
            self.text.eval()  # no dropout in a frozen tower
        return self

    # -- parts
    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids (B, L)`` (CLIP tokens, zero padded) -> ``(tokens (B, L, width), keep (B, L))``; once per episode."""
        keep = torch.arange(ids.shape[1], device=ids.device)[None] <= ids.argmax(dim=-1, keepdim=True)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_text):
            tokens = self.text.forward_tokens(ids)
        return self.text_proj(tokens), keep

    def encode_history(self, pano: torch.Tensor, action_feat: torch.Tensor, action_dir: torch.Tensor,
                       keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Past steps ``(B, T, ·)`` -> ``(B, 1 + T, width)`` behind the history [CLS], and its keep mask."""
        b, t = keep.shape
        if t > self.config.max_steps:
            raise ValueError(f"{t} history steps exceed the agent's max_steps={self.config.max_steps}")
        steps = (self.pano_proj(pano) + self.view_proj(action_feat) + self.dir_embed(action_dir)
                 + self.step_embed[:t].to(pano.dtype))
        x = torch.cat([self.history_cls.expand(b, -1, -1).to(steps.dtype), steps], dim=1)
        keep = torch.cat([keep.new_ones(b, 1), keep], dim=1)
        return run_blocks(self.history_blocks, x, key_mask=keep), keep

    def forward(self, text: torch.Tensor, text_keep: torch.Tensor, cand_feat: torch.Tensor, cand_dir: torch.Tensor,
                cand_keep: torch.Tensor, pano_feat: torch.Tensor, pano_dir: torch.Tensor,
                history: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Scores of STOP and each candidate ``(B, 1 + C)``; padded candidates get -inf.

        ``pano_feat (B, 36, D)`` / ``pano_dir (B, 36, 4)``: the current panorama, every view (HAMT observes the
        non-candidate views too: they tell where the agent is, which STOP needs). ``history``: ``(pano (B, T, D),
        action_feat (B, T, D), action_dir (B, T, 4), keep (B, T))`` of the steps taken so far (T may be 0);
        ignored without ``use_history``.
        """
        b = cand_feat.shape[0]
        obs = self.view_proj(cand_feat) + self.dir_embed(cand_dir)
        obs = torch.cat([self.stop_token.expand(b, -1, -1).to(obs.dtype), obs], dim=1) + self.modality[2]
        obs_keep = torch.cat([cand_keep.new_ones(b, 1), cand_keep], dim=1)
        views = self.view_proj(pano_feat) + self.dir_embed(pano_dir) + self.modality[3]
        parts = [text + self.modality[0], views]
        keeps = [text_keep, torch.ones(views.shape[:2], dtype=torch.bool, device=views.device)]
        if self.config.use_history:
            if history is None:
                raise ValueError("this agent encodes the history: pass history (T may be 0)")
            hist, hist_keep = self.encode_history(*history)
            parts.append(hist + self.modality[1])
            keeps.append(hist_keep)
        parts.append(obs)
        keeps.append(obs_keep)
        x = run_blocks(self.blocks, torch.cat(parts, dim=1), key_mask=torch.cat(keeps, dim=1))
        logits = self.score(self.norm(x[:, -obs.shape[1]:])).squeeze(-1).float()
        return logits.masked_fill(~obs_keep, float("-inf"))


#: named agent configs (``vln`` objective ``model.name``); not in the package-wide registry, which lists video models
NAMED_CONFIGS: dict[str, tuple[type[nn.Module], VLNAgentConfig]] = {
    # tests and the synthetic world: CLIP's vocabulary with a 2-layer 64-wide text tower (internvideo_mm_tiny's)
    "vln_agent_tiny": (VLNAgent, VLNAgentConfig(width=64, heads=4, layers=2, history_layers=1, text_width=64,
                                                 text_layers=2, text_heads=4, dropout=0.0, feature_dropout=0.1)),
    # HAMT's size (768 wide, 12 heads) with the ViT-B/16 multimodal model's text tower (512, 12 layers)
    "vln_agent_base": (VLNAgent, VLNAgentConfig(width=768, heads=12, layers=4, history_layers=2, text_width=512,
                                                 text_layers=12, text_heads=8)),
}
MODEL_CLASSES: dict[str, type[nn.Module]] = {"VLNAgent": VLNAgent}

__all__ = ["DIRECTION_DIM", "MODEL_CLASSES", "NAMED_CONFIGS", "VLNAgent", "VLNAgentConfig"]
