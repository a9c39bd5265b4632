"""Checkpoint base types and readers: our directory format, raw weight files, checked loading.

Our format is a directory with ``config.json`` (model class + config dataclass)
and ``model.safetensors``. The layout converters (:mod:`.videomae`, :mod:`.clip`)
import this module and describe their layout with a :class:`Format`;
:mod:`.loading` detects the layout of a file and loads it. Nothing here
unpickles code: ``.pth`` files go through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
import zipfile
from typing import Callable, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .. import fileio
from ..fileio import atomic_path
from ..errors import MissingFile, UserError
from ..models import MODEL_CLASSES, NAMED_CONFIGS, apply_overrides
from ..models.config_io import config_from_json
from ..models.protocols import FusionModel

log = logging.getLogger(__name__)
StateDict = dict[str, torch.Tensor]
HeadPolicy = Literal["error", "reinit", "slice"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model; the message says which key/file."""


class UnsureArchitecture(CheckpointError):
    """Shapes leave config ``fields`` undetermined; ``load_model`` accepts them as overrides (``guess`` holds the rest)."""

    def __init__(self, message: str, fields: list[str], cls: type, guess: object) -> None:
        super().__init__(message)
        self.fields, self.cls, self.guess = fields, cls, guess


def load_safetensors(path: str | os.PathLike) -> StateDict:
    """``safetensors.torch.load_file`` whose errors name the file (a truncated file says only "incomplete metadata")."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise MissingFile(f"checkpoint not found: {path}") from None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type, and OSError for bad files
        raise CheckpointError(f"{path}: not a readable safetensors file, truncated or corrupt "
                              f"({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- our format


def _model_class_name(model: nn.Module) -> str:
    # FSDP2 swaps the class for a generated subclass ("FSDPVideoMAEPretrain"); name the model's own class.
    for cls in type(model).__mro__:
        if cls.__name__ in MODEL_CLASSES:
            return cls.__name__
    return type(model).__name__


def save_model(model: nn.Module, directory: str | os.PathLike, state_dict: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (weights renamed into place when complete).

    ``state_dict`` supplies the weights when the live ones are sharded (FSDP).
    """
    directory = Path(directory)
    meta = _describe(model)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in (state_dict or model.state_dict()).items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    fileio.write_json(directory / CONFIG_NAME, meta)
    return directory


def _describe(model: nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{type(model).__name__} has no dataclass .config; cannot save a self-describing checkpoint")
    meta = {"format": "internvideo", "class": _model_class_name(model), "config": dataclasses.asdict(cfg)}
    if isinstance(model, FusionModel):  # its two frozen backbones, each with its own config
        meta["submodels"] = {name: {k: v for k, v in _describe(m).items() if k != "format"}
                             for name, m in model.submodels().items()}
    return meta


def _build(meta: dict, source: object, overrides: dict | None = None) -> nn.Module:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: expected a JSON object with 'class' and 'config', got {type(meta).__name__}")
    cls_name = meta.get("class")
    if cls_name not in MODEL_CLASSES:
        raise CheckpointError(f"{source}: unknown model class {cls_name!r}; known: {sorted(MODEL_CLASSES)}")
    if "config" not in meta:
        raise CheckpointError(f"{source}: no 'config' object (the {cls_name} fields)")
    cls = MODEL_CLASSES[cls_name]
    cfg = apply_overrides(config_from_json(_config_class(cls), meta["config"], str(source), CheckpointError),
                          overrides or {})
    submodels = meta.get("submodels", {})
    if not isinstance(submodels, dict):
        raise CheckpointError(f"{source}: 'submodels' must be a JSON object")
    children = {name: _build(sub, f"{source} [{name}]") for name, sub in submodels.items()}
    return cls(cfg, **children)


def read_config_json(path: Path) -> dict:
    """A checkpoint's ``config.json`` as a JSON object; every way it can be unreadable is an error naming it."""
    try:
        meta = json.loads(fileio.read_text(path))
    except fileio.TextDecodeError as e:
        raise CheckpointError(f"{e} (a binary file where {CONFIG_NAME} belongs?)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); an interrupted save? Save the model again") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level, got {type(meta).__name__}")
    return meta


def _is_ours(path: Path) -> bool:
    cfg = path / CONFIG_NAME
    if not (path.is_dir() and cfg.exists()):
        return False
    return read_config_json(cfg).get("format") == "internvideo"


def _build_ours(path: Path, overrides: dict) -> tuple[nn.Module, StateDict]:
    meta = read_config_json(path / CONFIG_NAME)
    return _build(meta, path / CONFIG_NAME, overrides), load_safetensors(path / WEIGHTS_NAME)


def _config_class(cls: type[nn.Module]) -> type:
    if getattr(cls, "config_class", None) is not None:
        return cls.config_class
    for model_cls, cfg in NAMED_CONFIGS.values():
        if model_cls is cls or issubclass(cls, model_cls) or issubclass(model_cls, cls):
            return type(cfg)
    raise CheckpointError(f"no config class registered for {cls.__name__}")


# ----------------------------------------------------------------------------- reading raw files


def _unwrap(obj: object, source: object) -> StateDict:
    # Training scripts wrap weights differently: {"model"}, DeepSpeed {"module"}, Lightning {"state_dict"}.
    for key in ("model", "module", "state_dict", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return _unwrap(obj[key], source)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: expected a state dict of tensors (possibly under 'model'/'module'/'state_dict')")
    return obj


def is_torchscript(path: Path) -> bool:
    # TorchScript archives are zip files carrying serialized code next to the tensors.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Tensors from a ``.safetensors`` or pickled ``.pth``/``.pt``/``.bin`` file (weights only)."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if is_torchscript(path):  # never hand these to torch.load: it would dispatch to torch.jit.load
        raise CheckpointError(f"{path} is a TorchScript archive (as OpenAI ships CLIP). Reading it runs code stored "
                              "in the file; if you trust it, pass allow_torchscript=True.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # The weights-only unpickler stops at the first object that is not plain data: the file would run code.
        found = [line.strip() for line in str(e).splitlines() if "unsupported" in line.lower()]
        first = found[0] if found else "not plain tensors"
        raise CheckpointError(
            f"{path}: refused: the file contains pickled code or objects other than tensors ({first}). "
            "Loading it would execute that code, so it was not loaded; nothing in it ran. Use a checkpoint "
            "saved as plain tensors (safetensors or a weights-only state dict) from a source you trust."
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: could not be read as a weights-only checkpoint, truncated or not a "
                              f"PyTorch file ({type(e).__name__}: {e})") from None
    return _unwrap(obj, path)


def _read_dir_weights(path: Path) -> StateDict:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).exists():
            return read_state_dict(path / name)
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")


# ----------------------------------------------------------------------------- foreign layouts


@dataclass(frozen=True)
class Format:
    """One foreign layout: how to recognise it, turn it into ours, and infer the architecture.

    ``detect`` gets the raw state dict and, for directories, the parsed
    ``config.json`` (else None). ``convert(sd, meta, target)`` returns a state
    dict in the key layout of ``target`` (a model instance, or None for the
    layout's natural class). ``infer(sd, meta)`` returns ``(model class, config)``.
    """

    name: str
    detect: Callable[[StateDict, dict | None], bool]
    convert: Callable[[StateDict, dict | None, nn.Module | None], StateDict]
    infer: Callable[[StateDict, dict | None], tuple[type[nn.Module], object]]


# ----------------------------------------------------------------------------- loading into a model


@dataclass
class LoadReport:
    source: str
    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {self.source} ({self.format})"]
        for name in ("missing", "unexpected", "reinitialised", "resized"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name} ({len(keys)}): {', '.join(keys)}")
        return "; ".join(parts)


def _is_head_key(key: str) -> bool:
    return key.split(".")[0] in ("head", "fc_head", "classifier")


def load_state_dict_checked(model: nn.Module, sd: StateDict, *, head: HeadPolicy = "error",
                            source: str = "<state dict>", fmt: str = "internvideo",
                            strict: bool = False) -> LoadReport:
    """Load ``sd`` into ``model`` reporting every key that does not fit.

    Learnable position tables of another grid are interpolated. A classifier
    head of another size is an error unless ``head="reinit"`` (keep the fresh
    head) or ``head="slice"`` (keep the first rows, e.g. a 400-class head from a
    K710 model whose first classes are Kinetics-400). Any other shape mismatch is
    an error naming the key and both shapes. ``strict`` turns missing/unexpected
    keys into an error too.
    """
    own = model.state_dict()
    report = LoadReport(source=source, format=fmt)
    to_load: StateDict = {}
    for key, value in sd.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key]
        if value.shape != target.shape:
            if key.endswith("pos_embed") and hasattr(model, "resize_pos_embed"):
                value = model.resize_pos_embed(key, value)
                report.resized.append(key)
            elif _is_head_key(key) and head == "reinit":
                report.reinitialised.append(key)
                continue
            elif _is_head_key(key) and head == "slice" and value.shape[1:] == target.shape[1:] \
                    and value.shape[0] >= target.shape[0]:
                value = value[: target.shape[0]]
                report.resized.append(key)
            else:
                hint = " (pass head='reinit' or head='slice' for a classifier of another size)" if _is_head_key(key) else ""
                raise CheckpointError(f"{source}: shape mismatch for {key}: checkpoint {tuple(value.shape)}, "
                                      f"model {tuple(target.shape)}{hint}")
        to_load[key] = value.to(target.dtype)
    report.missing = [k for k in own if k not in to_load and k not in report.reinitialised]
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"{source}: missing keys {report.missing}, unexpected keys {report.unexpected}")
    model.load_state_dict(to_load, strict=False)
    if report.missing or report.unexpected or report.reinitialised or report.resized:
        log.warning("%s", report)
    return report
