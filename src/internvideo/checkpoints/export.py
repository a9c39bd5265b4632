"""Writing a model for other tools: an HF transformers directory (VideoMAE) or ours plus a model card.

``export_hf`` turns a VideoMAE classifier into a ``VideoMAEForVideoClassification``
directory (``config.json`` with ``id2label``, ``model.safetensors``,
``preprocessor_config.json`` with the model's own mean/std/size) and a
pretraining model into ``VideoMAEForPreTraining``; ``transformers``'
``from_pretrained`` reads them, and :func:`~internvideo.load_model` reads them
back into the same model. Models transformers has no class for (the
multimodal model, fusion, ...) are written in our format. Every export gets a
model card (``README.md``) with what the checkpoint carries: its config and
input recipe, and, for a checkpoint inside a training run directory, the
training recipe, data and metrics.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from ..models.videomae import VideoMAEClassifier, VideoMAEPretrain
from ..extras import require
from .base import CONFIG_NAME, WEIGHTS_NAME, save_model
from .hub import HUB_PREFIX, parse_hub_id
from .loading import PREPROCESSOR_NAME
from .videomae import hf_differences, to_hf

log = logging.getLogger(__name__)

__all__ = ["export_hf", "model_card", "preprocessor_config", "push_hf"]


def preprocessor_config(model: nn.Module) -> dict[str, Any]:
    """``VideoMAEImageProcessor`` settings that reproduce the model's eval transform (short side, centre crop)."""
    c = model.config
    return {
        "image_processor_type": "VideoMAEImageProcessor", "do_resize": True, "size": {"shortest_edge": c.img_size},
        "resample": 2, "do_center_crop": True, "crop_size": {"height": c.img_size, "width": c.img_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(c.mean), "image_std": list(c.std),
    }


def export_hf(model: nn.Module, out_dir: str | os.PathLike, source: str | None = None) -> Path:
    """Write ``model`` for the Hugging Face ecosystem into ``out_dir`` (see the module docstring); returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, (VideoMAEClassifier, VideoMAEPretrain)):
        for note in hf_differences(model):
            log.warning("%s", note)
        sd, config = to_hf(model)
        tmp = out / (WEIGHTS_NAME + ".tmp")
        save_file(sd, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out / WEIGHTS_NAME)
        (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (out / PREPROCESSOR_NAME).write_text(json.dumps(preprocessor_config(model), indent=2) + "\n")
        kind = config["architectures"][0]
    else:
        save_model(model, out)
        kind = None
    (out / "README.md").write_text(model_card(model, source, hf_class=kind), encoding="utf-8")
    return out


def push_hf(model: nn.Module, repo_id: str, *, source: str | None = None, private: bool = False,
            commit_message: str | None = None) -> str:
    """Export ``model`` (:func:`export_hf`) and upload it to the hub repository ``repo_id`` (created if new).

    A thin wrapper over ``huggingface_hub``'s ``create_repo`` + ``upload_folder``
    (log in first: ``hf auth login``). Returns the commit URL.
    """
    hub = require("huggingface_hub", "export", "internvideo push")
    parse_hub_id(HUB_PREFIX + repo_id)  # the same ORG/NAME rule as loading
    api = hub.HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(model, tmp, source=source)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                 commit_message=commit_message or f"internvideo export of {type(model).__name__}")
    return str(getattr(info, "commit_url", info))


def _run_files(source: str | None) -> dict[str, Any]:
    """What a checkpoint inside a training run carries: ``run/checkpoints/step_N`` -> ``run/config.yaml`` etc."""
    if source is None or not Path(source).is_dir():
        return {}
    ckpt = Path(source).resolve()
    found: dict[str, Any] = {}
    best = ckpt / "best.json"
    if best.exists():
        found["best"] = json.loads(best.read_text())
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    if run is not None:
        if (run / "config.yaml").exists():
            found["recipe"] = (run / "config.yaml").read_text()
        if (run / "summary.json").exists():
            found["summary"] = json.loads((run / "summary.json").read_text())
    return found


def model_card(model: nn.Module, source: str | None = None, hf_class: str | None = None) -> str:
    """A model card (markdown with YAML front matter) from what the model and its run directory record."""
    cfg = dataclasses.asdict(model.config)
    cls = type(model).__name__
    names = cfg.pop("class_names", None)
    run = _run_files(source)
    tags = ["video", "internvideo"] + (["video-classification"] if hf_class == "VideoMAEForVideoClassification"
                                        else [])
    lines = ["---", "library_name: " + ("transformers" if hf_class else "internvideo"),
             "tags:", *[f"- {t}" for t in tags], "---", "", f"# {cls}", ""]
    if hf_class:
        lines += [f"A `transformers` `{hf_class}` exported by `internvideo export hf`:", "", "```python",
                  "from transformers import AutoModel, AutoConfig",
                  "model = AutoModel.from_pretrained(THIS_DIRECTORY)  # or AutoModelForVideoClassification", "```",
                  "", "It loads back into internvideo unchanged: `internvideo.load_model(THIS_DIRECTORY)`.", ""]
    else:
        lines += ["An internvideo checkpoint (no `transformers` class exists for this model):", "", "```python",
                  "import internvideo", "model = internvideo.load_model(THIS_DIRECTORY)", "```", ""]
    recipe = {k: cfg[k] for k in ("num_frames", "frame_interval", "sampling", "img_size", "mean", "std") if k in cfg}
    lines += ["## Input recipe", "", "| field | value |", "|---|---|",
              *[f"| {k} | {v} |" for k, v in recipe.items()], ""]
    if names:
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        lines += ["## Classes", "", shown, ""]
    lines += ["## Config", "", "```json", json.dumps(cfg, indent=1, default=str), "```", ""]
    if "summary" in run or "best" in run:
        lines += ["## Metrics recorded by the training run", ""]
        if "best" in run:
            b = run["best"]
            lines.append(f"- best {b.get('metric')}: {b.get('value')} (step {b.get('step')})")
        if "summary" in run:
            s = run["summary"]
            lines += [f"- {k}: {s[k]}" for k in ("steps", "metric", "best", "best_step", "seconds") if k in s]
        lines.append("")
    if "recipe" in run:
        lines += ["## Training recipe and data", "", "```yaml", run["recipe"].rstrip(), "```", ""]
    else:
        lines += ["## Training", "", "The checkpoint records no training run (not exported from a run directory).",
                  ""]
    return "\n".join(lines)
