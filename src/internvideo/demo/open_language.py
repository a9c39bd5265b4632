"""Demo rows for open understanding and language: open-ended QA, captioning.

Both read the demo's contrastively trained multimodal model, frozen, and
train only small new parts on top of it, from clips decoded once (open-set
recognition, which fine-tunes a backbone as the paper does, is the pipeline's
``openset`` stage); the exception is the official QA head, which fine-tunes
the whole model as the official recipe does:

* **QA**, two heads: ours, a :class:`~internvideo.models.qa.VideoQA` head on the frozen video
  and question tokens (:func:`~internvideo.train.heads.fit_qa_model`), and the official ``vtc_cap``
  head trained as the official recipe does, end to end with the whole multimodal model and the head at
  10x the lr (``optim.lr_groups``), through the one training loop (objective ``qa``), scaled down to
  the demo (:data:`VTC_CAP_STEPS`, :func:`vtc_cap_config`); accuracy on ``qa_test.jsonl`` overall and
  on the motion questions (``qa_val.jsonl``'s in each row's ``val``), beside always answering the most
  frequent training answer (overall, and for the motion questions). The fine-tuned model is saved in
  ``runs/open_language/qa_vtc_cap``.
* **captioning**: the multimodal model's own caption decoder, pretrained with
  the contrastive stage (caption loss beside InfoNCE, over a closed vocabulary:
  the tokens of the training captions, a few hundred of CLIP's 49k), then
  fine-tuned alone for captioning on the frozen video tokens
  (:func:`~internvideo.train.heads.fine_tune_decoder`); captions of the test
  clips with the beam width of best validation CIDEr-D, scored with BLEU-4 and
  CIDEr-D beside the nearest-caption baseline (each test clip gets the first
  caption of its nearest training clip). The fine-tuned model is saved in
  ``runs/open_language/captioner`` (``beams.txt``: the width chosen).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from ..data import VideoDataset, read_qa, read_video_text
from ..factory import load_model, save_model
from ..models.qa import VideoQA, answer_vocabulary, question_padding
from ..tasks import common
from ..tasks.caption import nearest_captions
from ..tasks.metrics import caption_metrics
from ..tasks.qa import QAFeatures, evaluate_qa
from ..tokenizer import get_tokenizer
from ..train import TrainConfig, train
from ..train.config import DataSection, ModelSection, OptimSection, QASection, RunSection
from ..train.heads import fine_tune_decoder, fit_qa_model, seeded
from .context import DemoContext

#: (QA head epochs, caption decoder fine-tuning steps) per preset.
BUDGET = {"smoke": (1, 10), "quick": (4, 300), "default": (6, 1000)}
#: beam widths tried on the validation captions (1 = greedy)
CAPTION_BEAMS = (1, 3, 5)
#: Optimiser steps of the end-to-end ``vtc_cap`` fine-tuning per preset (official: 20 epochs; the default's 200
#: steps of 32 are 0.9 epoch of the world's 7,000 training questions: 31.5 s on an idle 2-core CPU, docs/demo.md).
VTC_CAP_STEPS = {"smoke": 2, "quick": 50, "default": 200}


def vtc_cap_config(ctx: DemoContext, backbone: torch.nn.Module, steps: int) -> TrainConfig:
    """The official ``vtc_cap`` recipe (``configs/qa/msrvtt_qa.yaml``, from OpenGVLab/InternVideo
    ``scripts/finetune_msrvttqa.sh``, ``CoTrain/config.py``, ``CoTrain/modules/cotrain_utils.py``) scaled to
    the demo. Kept: end to end, the head at 10x the lr (``lr_mult`` 10), AdamW weight decay 0.01 and betas
    (0.9, 0.98), warm-up over the first 10 % of the steps, decay to 0, head dropout 0.5, segment sampling.
    Scaled (docs/demo.md): ``steps`` steps of 32 questions instead of 20 epochs of 512 (CPU time); lr 3e-4
    instead of 1e-5 (a tiny model pretrained at 1e-3 and given 200 steps; best of 1e-4 / 3e-4 / 1e-3 on the
    validation questions); 4 frames (the demo's multimodal model), fp32 (CPU); every training answer is in the
    vocabulary (the world has far fewer than 1,500)."""
    return TrainConfig(
        "qa",
        # the contrastive model's own config, field by field (its closed caption vocabulary and input recipe)
        ModelSection("internvideo_mm_tiny", pretrained=str(ctx.mm_checkpoint),
                     overrides=dataclasses.asdict(backbone.config)),
        # no left/right flips: the world asks which way things move
        DataSection(root=str(ctx.world), train="qa_train.jsonl", short_side=ctx.img_size, hflip=False,
                    scale=(0.9, 1.0), num_workers=0, decode_once=True),
        OptimSection(lr=3e-4, lr_groups={"head.": 10.0}, weight_decay=0.01, betas=(0.9, 0.98), min_lr=0.0,
                     warmup_steps=steps // 10, scale_lr=False),
        RunSection(out_dir=str(ctx.work / "qa_vtc_cap"), epochs=10_000, max_steps=steps, batch_size=32,
                   seed=ctx.seed, log_every=20, save_every=1_000_000, keep_last=1, resume=False,
                   progress=ctx.progress),
        qa=QASection(head="vtc_cap"))


def fit_vtc_cap(ctx: DemoContext, backbone: torch.nn.Module, steps: int) -> VideoQA:
    """``vtc_cap`` fine-tuned by the one training loop (:func:`vtc_cap_config`), the global RNG left as it was
    (the rows after it keep their numbers)."""
    with seeded(ctx.seed):
        return train(vtc_cap_config(ctx, backbone, steps)).model


def demo_stage(ctx: DemoContext) -> list[dict[str, Any]]:
    qa_epochs, caption_steps = BUDGET.get(ctx.preset, BUDGET["default"])
    torch.manual_seed(ctx.seed)
    model = load_model(ctx.mm_checkpoint).eval()
    if model.caption is None:
        raise RuntimeError(f"{ctx.mm_checkpoint}: the demo's multimodal model has no caption decoder")
    w = ctx.world
    captions = {s: read_video_text(w / f"captions_{s}.jsonl") for s in ("train", "val", "test")}
    qa = {s: read_qa(w / f"qa_{s}.jsonl") for s in ("train", "val", "test")}
    videos = sorted({s.video for v in captions.values() for s in v})
    row = {v: i for i, v in enumerate(videos)}

    t0 = time.perf_counter()
    dataset = VideoDataset(videos, common.eval_view(model), training=False, strict=True)
    device = torch.device("cpu")

    def encode(clips: torch.Tensor) -> torch.Tensor:
        feats = model.visual.forward_features(clips)
        emb = torch.nn.functional.normalize(model.visual.pool(feats), dim=-1)
        # Embedding and tokens travel together: (B, 1 + T * N, D), the embedding padded to the token width.
        tokens = feats.tokens.flatten(1, 2)
        return torch.cat([torch.nn.functional.pad(emb, (0, tokens.shape[-1] - emb.shape[-1]))[:, None], tokens], 1)

    out, _ = common.map_views(model, encode, dataset, batch_size=32, device=device, progress=ctx.progress,
                              desc="frozen multimodal features")
    out = out[:, 0]
    emb = out[:, 0, : model.config.embed_dim]
    t = model.config.num_frames
    tokens = out[:, 1:].reshape(len(videos), t, -1, out.shape[-1])
    rows: list[dict[str, Any]] = []

    # --- open-ended QA: our head on frozen features, then the official vtc_cap head fine-tuned end to end
    tok = get_tokenizer("clip", context_length=model.config.context_length)
    features = {}
    with torch.no_grad():
        for split, samples in qa.items():
            ids = tok([s.question for s in samples])
            ids = ids[:, : int((ids != 0).sum(dim=1).max())]
            question = torch.cat([model.text.forward_tokens(ids[i:i + 512]) for i in range(0, len(ids), 512)])
            features[split] = QAFeatures(tokens, torch.tensor([row[s.video] for s in samples]), question,
                                         question_padding(ids))
    qa_model, _ = fit_qa_model(model, qa["train"], features["train"], width=128, heads=4, layers=2,
                               epochs=qa_epochs, seed=ctx.seed, progress=ctx.progress)
    ours = {s: evaluate_qa(qa_model, qa[s], train=qa["train"], features=features[s], progress=False)
            for s in ("val", "test")}
    rows += qa_rows("frozen MM + QA head", "", ours, qa)
    steps = VTC_CAP_STEPS.get(ctx.preset, VTC_CAP_STEPS["default"])
    vtc_cap = fit_vtc_cap(ctx, model, steps)
    official = {s: evaluate_qa(vtc_cap, qa[s], train=qa["train"], batch_size=32, progress=False)
                for s in ("val", "test")}
    rows += qa_rows(f"MM + vtc_cap head (official; end to end, {steps} steps)", " (vtc_cap)", official, qa)

    # --- captioning: the decoder pretrained with the contrastive stage, fine-tuned for captioning on frozen
    # video tokens; the beam width is the one with the best validation CIDEr-D.
    def rows_of(samples):
        return [row[s.video] for s in samples]

    def tokens_of(samples):
        return tokens[rows_of(samples)].flatten(1, 2)

    fine_tune_decoder(model, captions["train"], video_tokens=tokens_of(captions["train"]), steps=caption_steps,
                      seed=ctx.seed, progress=ctx.progress)
    references = {s: {x.video: list(x.captions) for x in captions[s]} for s in ("val", "test")}

    def beam_captions(split: str, beams: int) -> dict[str, str]:
        samples, out_ = captions[split], {}
        with torch.no_grad():
            for i in range(0, len(samples), 64):
                ids = model.generate_from_tokens(tokens_of(samples[i:i + 64]), max_len=20,
                                                 strategy="beam" if beams > 1 else "greedy", num_beams=beams)
                out_.update(zip((x.video for x in samples[i:i + 64]), tok.batch_decode(ids), strict=True))
        return out_

    beams = max(CAPTION_BEAMS, key=lambda b: caption_metrics(references["val"], beam_captions("val", b))["cider"])
    save_model(model, ctx.work / "captioner")  # the fine-tuned decoder, for `internvideo caption --beam {beams}`
    (ctx.work / "captioner" / "beams.txt").write_text(f"{beams}\n", encoding="utf-8")
    scores = caption_metrics(references["test"], beam_captions("test", beams))
    baseline = caption_metrics(references["test"], nearest_captions(
        captions["train"], emb[rows_of(captions["train"])], captions["test"], emb[rows_of(captions["test"])]))
    for metric, short in (("bleu4", "BLEU-4"), ("cider", "CIDEr-D")):
        rows.append({"family": "captioning", "model": f"frozen MM + fine-tuned caption decoder (beam {beams})",
                     "metric": f"{short} vs the world's captions (%)", "short": f"caption {short}",
                     "value": scores[metric], "chance": baseline[metric]})
    for r_ in rows:
        r_["seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def qa_rows(name: str, suffix: str, results: dict[str, dict[str, Any]],
            qa: dict[str, list]) -> list[dict[str, Any]]:
    """Table rows of one QA head: test accuracy on all questions and on the motion questions, each with the
    validation number (``val``) and its most-frequent-answer baseline."""
    r, v = results["test"], results["val"]
    rows = [{"family": "open-ended QA", "model": name, "metric": "accuracy, all questions (%)",
             "short": f"QA acc{suffix}", "value": r["accuracy"], "chance": r["baseline"]["accuracy"],
             "val": v["accuracy"]}]
    motion = [s for s in qa["train"] if s.type == "motion"]
    if motion and "motion" in r.get("per_type", {}):
        # The stated baseline for motion questions: always the most frequent motion answer of training.
        common_motion = answer_vocabulary([s.answer for s in motion], 1)[0]
        test_motion = [s for s in qa["test"] if s.type == "motion"]
        base = 100.0 * float(np.mean([s.answer == common_motion for s in test_motion]))
        rows.append({"family": "open-ended QA", "model": name, "metric": "accuracy, motion questions (%)",
                     "short": f"QA motion acc{suffix}", "value": r["per_type"]["motion"], "chance": base,
                     "val": v.get("per_type", {}).get("motion")})
    return rows


__all__ = ["BUDGET", "CAPTION_BEAMS", "VTC_CAP_STEPS", "demo_stage", "fit_vtc_cap", "qa_rows", "vtc_cap_config"]
