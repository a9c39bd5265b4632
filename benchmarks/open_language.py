"""Measure the open-understanding tasks on the synthetic world (captioning, open-ended QA, open-set recognition).

A development script until the demo rows exist: it decodes the world once into a frame cache,
trains a tiny multimodal model (video-text contrastive + caption loss) from it, then freezes it and
runs the three task APIs with their baselines. Usage::

    PYTHONPATH=src python -m benchmarks.open_language WORLD_DIR [--steps 600] [--out results.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from internvideo.data import VideoDataset, read_classification_list, read_qa, read_video_text
from internvideo.losses import ClipLoss, caption_loss
from internvideo.models.qa import VideoQA, VideoQAConfig
from internvideo.models.caption import caption_targets
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from internvideo.tasks import common
from internvideo.tasks.caption import evaluate_caption
from internvideo.tasks.openset import evaluate_openset_features
from internvideo.tasks.qa import answer_vocabulary, evaluate_qa, qa_features
from internvideo.tokenizer import get_tokenizer
from internvideo.train.heads import fit_openset_head, train_qa_head


def frames(model, videos):
    ds = VideoDataset(videos, common.eval_view(model), training=False, strict=True)
    out, _ = common.map_views(model, lambda x: x, ds, batch_size=64, device=torch.device("cpu"), progress=False)
    return out[:, 0]


def _batch_ids(ids: torch.Tensor) -> torch.Tensor:
    """Captions cut at the batch's longest one: the LM head over 49k tokens dominates every step."""
    return ids[:, : int((ids != 0).sum(dim=1).max())]


def train_backbone(world: Path, steps: int, batch: int, seed: int, known_only: bool = False) -> InternVideoMM:
    """Video-text contrastive training of the tiny multimodal model (its caption decoder left untouched)."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(NAMED_CONFIGS["internvideo_mm_tiny"][1], caption_layers=2)
    model = InternVideoMM(cfg)
    samples = read_video_text(world / "captions_train.jsonl")
    if known_only:
        keep = {s.path for s in read_classification_list(world / "openset_train.txt")}
        samples = [s for s in samples if s.video in keep]
    clips = frames(model, [s.video for s in samples])
    tok = get_tokenizer("clip")
    ids = [tok(list(s.captions)) for s in samples]
    params = [p for n, p in model.named_parameters() if not n.startswith("caption.")]
    optim = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    clip_loss = ClipLoss()
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        rows = torch.randperm(len(samples), generator=g)[:batch].tolist()
        # No flips or crops: a horizontal flip would swap left and right.
        text = _batch_ids(torch.stack([ids[r][int(torch.randint(len(ids[r]), (1,), generator=g))] for r in rows]))
        loss = clip_loss(model.encode_video(clips[rows]), model.encode_text(text), model.logit_scale)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"contrastive step {step} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return model.eval()


def train_decoder(model: InternVideoMM, world: Path, steps: int, batch: int, seed: int, lr: float = 2e-3) -> None:
    """The caption decoder on the frozen encoders (video tokens and caption encodings computed once)."""
    samples = read_video_text(world / "captions_train.jsonl")
    clips = frames(model, [s.video for s in samples])
    tok = get_tokenizer("clip")
    with torch.no_grad():
        video_tokens = torch.cat([model.forward_features(clips[i:i + 64]) for i in range(0, len(clips), 64)])
        ids = tok([c for s in samples for c in s.captions])
        ids = ids[:, : int((ids != 0).sum(dim=1).max())]
        text_tokens = model.text.forward_tokens(ids)
    owner = torch.tensor([i for i, s in enumerate(samples) for _ in s.captions])
    optim = torch.optim.AdamW(model.caption.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    model.caption.train()
    t0 = time.perf_counter()
    for step in range(steps):
        rows = torch.randperm(len(ids), generator=g)[:batch]
        length = int((ids[rows] != 0).sum(dim=1).max())
        b_ids = ids[rows, :length]
        logits = model.caption(text_tokens[rows, :length - 1], model.caption.pool_video(video_tokens[owner[rows]]))
        loss = caption_loss(logits, caption_targets(b_ids), pad_id=None)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"caption step {step} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("world", type=Path)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--caption-steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--qa-epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--save", type=Path, default=None, help="save the contrastive backbone here")
    p.add_argument("--load", type=Path, default=None, help="start from this saved backbone (no training)")
    p.add_argument("--parts", default="caption,qa,openset")
    p.add_argument("--qa-lr", type=float, default=1e-3)
    p.add_argument("--caption-lr", type=float, default=2e-3)
    args = p.parse_args()
    torch.set_num_threads(1)
    w = args.world
    results = {}
    t0 = time.perf_counter()
    from internvideo.factory import load_model, save_model

    if args.load:
        model = load_model(args.load).eval()
    else:
        model = train_backbone(w, args.steps, args.batch, args.seed)
        if args.save:
            save_model(model, args.save)
    results["backbone_seconds"] = time.perf_counter() - t0
    parts = set(args.parts.split(","))
    if "caption" in parts:
        t = time.perf_counter()
        train_decoder(model, w, args.caption_steps, args.batch, args.seed, lr=args.caption_lr)
        results["decoder_seconds"] = time.perf_counter() - t

    if "caption" in parts:
        t = time.perf_counter()
        for name, opts in (("greedy", {}), ("beam3", {"strategy": "beam", "num_beams": 3})):
            r = evaluate_caption(model, w / "captions_test.jsonl", progress=False, max_len=20,
                                 train=w / "captions_train.jsonl" if not opts else None, **opts)
            results[f"caption_{name}"] = {k: r[k] for k in ("bleu4", "cider", "num_videos")} | {
                "baseline": r.get("baseline"), "examples": r["examples"][:3]}
        results["caption_seconds"] = time.perf_counter() - t

    if "qa" in parts:
        t = time.perf_counter()
        train_qa = read_qa(w / "qa_train.jsonl")
        qa = VideoQA(VideoQAConfig(answers=answer_vocabulary([s.answer for s in train_qa], 1500), width=128,
                                   heads=4, layers=2), backbone=model)
        feats, _, _ = qa_features(qa, train_qa, progress=False)
        fit = train_qa_head(qa, train_qa, features=feats, epochs=args.qa_epochs, lr=args.qa_lr, progress=False)
        r = evaluate_qa(qa, w / "qa_test.jsonl", train=train_qa, progress=False)
        results["qa"] = {k: r[k] for k in ("accuracy", "per_type", "num_questions", "baseline")} | {
            "train_loss": fit["losses"][-1]}
        results["qa_seconds"] = time.perf_counter() - t

    if "openset" in parts:
        t = time.perf_counter()
        splits: dict[str, dict] = {"embedding": {}, "frames": {}}
        for split in ("train", "val", "test"):
            samples = read_classification_list(w / f"openset_{split}.txt")
            clips = frames(model, [s.path for s in samples])
            labels = np.asarray([s.label for s in samples])
            with torch.no_grad():
                feats = model.visual.forward_features(clips)
                # Frame order kept: each frame's projected CLS token, concatenated.
                per_frame = model.visual.proj(model.visual.ln_post(feats.tokens[:, :, 0])).flatten(1)
                splits["embedding"][split] = (model.visual.pool(feats).numpy(), labels)
                splits["frames"][split] = (per_frame.numpy(), labels)
        for name, sp in splits.items():
            r = evaluate_openset_features(sp["train"], sp["val"], sp["test"], fit=fit_openset_head, hidden=128)
            results[f"openset_{name}"] = r["scores"]
        results["openset_seconds"] = time.perf_counter() - t
    text = json.dumps(results, indent=1, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
