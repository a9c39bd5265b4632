"""Typed training configs, loaded from YAML with ``--set key=value`` overrides.

Every section is a dataclass; an unknown or mistyped key is an error that names
it and lists the valid ones. The resolved config is written beside the
checkpoints so a run can always be reproduced from its directory.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .. import fileio
from ..errors import MissingFile, UserError
from ..models.config_io import coerce


@dataclass
class ModelSection:
    name: str = "videomae_tiny_pretrain"
    pretrained: str | None = None
    head: Literal["reinit", "slice", "error"] = "reinit"
    allow_partial_pretrained: bool = False  # accept `pretrained` weights that fill half the model's tensors or fewer
    overrides: dict[str, Any] = field(default_factory=dict)  # config fields of the named model
    # fusion only: the two frozen backbones (directories of ours or any supported checkpoint)
    mae_backbone: str | None = None
    mm_backbone: str | None = None
    # contrastive, with a caption decoder: "train" gives the decoder a closed vocabulary, the tokens of the
    # training captions (model config caption_vocab); "full": all of CLIP's 49k tokens
    caption_vocab: Literal["full", "train"] = "full"


@dataclass
class DataSection:
    """What is about the data: where it is and how strongly to augment it.

    Which frames a model sees, at what size and with which normalisation is the
    model's input recipe (``model.overrides``: ``num_frames``, ``frame_interval``,
    ``sampling``, ``img_size``, ``mean``, ``std``; see ``internvideo.recipe``).
    """

    root: str = ""  # paths in the lists are relative to it
    train: str = ""  # classification list / video-text JSONL, relative to root
    val: str | None = None
    classes: str | None = None  # classes.txt for classification lists
    # post-pretraining on a union of label sets (Kinetics-710 style): more (list, classes) pairs, merged by name
    extra_train: list[list[str]] = field(default_factory=list)
    short_side: int = 256  # eval resize before the center crop
    # augmentation: the fields of data.transforms.TrainTransformConfig, by the same names
    hflip: bool = True  # off for direction-sensitive data (Something-Something, the synthetic world)
    scale: tuple[float, float] = (0.08, 1.0)  # random resized crop scale (classification)
    crop: Literal["random_resized", "multi_scale"] = "random_resized"  # multi_scale: VideoMAE pretraining crop
    multi_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # multi_scale: crop sides, fractions of the short side
    max_distort: int = 1  # multi_scale: scale steps between crop width and height (0: square crops)
    randaugment: str | None = None  # e.g. "rand-m7-n4-mstd0.5-inc1" (VideoMAE fine-tuning)
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    strict: bool = False  # raise on an unreadable video instead of skipping it
    num_workers: int = 2
    # the DataLoader: page-locked batches for fast copies to the GPU (ignored without CUDA), workers kept alive
    # across epochs, batches each worker prepares ahead (None: PyTorch's default, 2)
    pin_memory: bool = True
    persistent_workers: bool = False
    prefetch_factor: int | None = None
    # VideoMAE's num_sample: each decoded clip gives this many augmented views, each a sample (run.batch_size
    # counts views and must be a multiple of it)
    repeats: int = 1
    # WebDataset shards written by `internvideo shard`, e.g. "shards/{000000..000127}.tar" (local paths or URLs);
    # they replace data.train's list (classification: the classes come from the shard index or data.classes)
    shards: str | None = None
    shuffle_buffer: int = 128  # samples held per loader worker to shuffle a stream (memory: x the mean video size)
    # decode every video once, whole, and keep it in memory (small sets such as the synthetic world; videos
    # beyond 2 GiB in all are decoded on demand as usual)
    decode_once: bool = False


@dataclass
class LocalizeSection:
    """Objective ``localize`` only: ``data.train`` (and ``data.val``, default the same file) is an
    ActivityNet-style JSON; features are one .npy per video in ``features`` (``internvideo extract --window``
    output, or your own with the timing given below)."""

    # folder of per-video features, relative to data.root; a list: several folders concatenated per time step
    # (lengths and timing must agree)
    features: str | list[str] | None = None
    prefix: str = ""  # feature file = <prefix><video id><file_ext> (ActionFormer's file_prefix, e.g. "v_")
    file_ext: Literal[".npy", ".pkl", ".csv"] = ".npy"
    train_subset: str = "training"
    val_subset: str = "validation"
    # frames between feature windows (read from extract's index when present); -1: fixed-length features spanning
    # the video (ActionFormer's feat_stride -1: stride = duration x fps / length)
    feat_stride: float | None = None
    window_frames: float | None = None  # frames per feature window (with feat_stride -1: in strides)
    fps: float | None = None  # frame rate (else the index's, or the JSON's per-video "fps")
    crop_ratio: tuple[float, float] | None = None  # ActionFormer's random crop fraction, e.g. [0.9, 1.0]
    resize_to: int | None = None  # resample every sequence to this many features (ActionFormer's ActivityNet)
    tiou: tuple[float, ...] = ()  # evaluation tIoU thresholds; empty: ActivityNet 0.5:0.95:0.05


@dataclass
class QASection:
    """Objective ``qa`` only."""

    answers: int = 1500  # answer vocabulary = this many most frequent training answers
    # the answer head: "cross" (ours, models/qa.py) or "vtc_cap" (the official head over the caption decoder)
    head: Literal["cross", "vtc_cap"] = "cross"


@dataclass
class FusionSection:
    """Objective ``fusion`` only (the two frozen backbones are ``model.mae_backbone`` / ``model.mm_backbone``)."""

    feature_cache: str | None = None  # cache frozen-backbone features here and train from them


@dataclass
class ContrastiveSection:
    """Objective ``contrastive`` only."""

    caption_weight: float = 1.0  # weight of the captioning loss


@dataclass
class OpenSetSection:
    """Objective ``openset`` only."""

    # the EDL loss (models.openset.edl_loss): DEAR's loss_type; InternVideo's run uses "log"
    loss: Literal["digamma", "log", "mse"] = "digamma"
    kl: bool = True  # the KL term; false = DEAR's with_kldiv=False (InternVideo's run)
    edl_annealing_epochs: float = 10.0  # the KL weight grows to 1 over these epochs (DEAR); <= 0: 1 from the start


#: Keys that moved (to the model's input recipe, or to their objective's section): an old recipe using one gets an
#: error saying where it went.
MOVED_KEYS = {f"data.{k}": f"model.overrides.{k}" for k in
              ("num_frames", "frame_interval", "sampling", "img_size", "mean", "std", "mask_ratio")} | {
    "data.mm_num_frames": "the multimodal backbone's own num_frames",
    "data.mm_mean": "the multimodal backbone's own mean", "data.mm_std": "the multimodal backbone's own std",
    "data.flip": "data.hflip", "data.multiscale_crop": "data.crop=multi_scale"} | {
    f"data.{k}": f"localize.{k}" for k in (f.name for f in dataclasses.fields(LocalizeSection))} | {
    "data.qa_answers": "qa.answers", "data.feature_cache": "fusion.feature_cache",
    "optim.caption_weight": "contrastive.caption_weight",
    "optim.edl_annealing_epochs": "openset.edl_annealing_epochs"}


@dataclass
class AVASection:
    """Objective ``ava`` only (``data.train`` / ``data.val`` are AVA CSVs; see ``train/objectives/ava.py``)."""

    labels: str = ""  # label map .pbtxt: the classes (head size = largest id) and the evaluated ones
    videos: str | None = None  # folder of <video_id>.<ext> files (default: data.root)
    proposals: str | None = None  # person proposals for validation (CSV or pickle); None: ground-truth boxes
    proposal_threshold: float = 0.8  # proposals kept at validation (official VideoMAE AVA: 0.8)
    exclude: str | None = None  # excluded timestamps CSV for validation
    time_offset: float = 0.0  # seconds before frame 0 of the files (900 for AVA's 15:00-30:00 cuts)
    box_jitter: float = 0.05  # train-time box jitter, fraction of the box side (ours; 0 = off)
    box_scale: tuple[float, float] = (1.0, 1.25)  # train-time scale range before the random crop
    freeze_backbone: bool = False  # train the RoI head only
    # The official InternVideo/AlphAction input and box handling (configs/ava/internvideo_*.yaml turn them on):
    keep_aspect: bool = False  # short side -> short_side, aspect kept; train: random img_size crop; test: whole frame
    short_side: int | None = None  # short side of resized frames with keep_aspect (official 256; None: img_size)
    resize_antialias: bool = True  # low-pass when shrinking (ours); the official cv2 bilinear resize does not
    box_aug: tuple[float, float, float, float] | None = None  # official random_aug (0.2, 0.1, 0.1, 0.05) after crop
    box_extend: tuple[float, float] | None = None  # test-time box growth (w, h); official (0.1, 0.05)
    box_score: bool = False  # action scores times the person detector's score (official)
    frame_shift: int = 0  # frames added to the sampled indices (official 1: keyframe neighbours -31..+29)
    # AVA-Kinetics: the Kinetics part (kinetics_{train,val}_v1.0.csv) beside data.train / data.val
    kinetics_train: str | None = None
    kinetics_val: str | None = None
    kinetics_videos: str | None = None  # folder of <youtube_id>_<start>_<end>.<ext> clips (sub-folders too)
    kinetics_proposals: str | None = None  # person proposals of the Kinetics val keyframes (CSV or pickle)
    kinetics_missing: Literal["error", "skip"] = "error"  # a keyframe without its clip: error, or skip and count


@dataclass
class VLNSection:
    """Objective ``vln`` only (``data.train`` / ``data.val`` are R2R JSON files; see ``train/objectives/vln.py``)."""

    connectivity: str = ""  # folder of {scan}_connectivity.json, relative to data.root
    features: str = ""  # view features {scan}_{viewpoint} -> (36, D): a folder of .npy, an .npz or an HDF5 file
    max_steps: int = 15  # decisions per episode (HAMT: 15)
    teacher_weight: float = 1.0  # imitation: teacher forcing along the shortest path to the goal
    sample_weight: float = 1.0  # student forcing: sampled actions, each step supervised by the shortest-path teacher
    val_episodes: int | None = None  # validate on the first N instructions of data.val (None: all)


@dataclass
class OptimSection:
    lr: float = 1.5e-4  # base learning rate for a global batch of 256 (scaled linearly)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    # cosine: warmup then cosine to min_lr; step: warmup then lr x gamma at each epoch in milestones (mmcv's step)
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    layer_decay: float | None = None  # layer-wise lr decay (fine-tuning), e.g. 0.75
    # lr multiplier per parameter-name prefix, longest prefix wins, e.g. {"visual.": 0.004, "qa.": 10}
    # (the official recipes' coef_lr / lr_mult); the others keep the base lr
    lr_groups: dict[str, float] = field(default_factory=dict)
    clip_grad: float | None = None
    accum_steps: int = 1
    ema: float | None = None  # e.g. 0.9999
    scale_lr: bool = True  # lr * global_batch / 256


@dataclass
class RunSection:
    out_dir: str = "runs/default"
    epochs: int = 1
    max_steps: int | None = None  # stops early (counts optimiser steps)
    batch_size: int = 8  # per process
    seed: int = 0
    # auto: bf16 where the device computes it natively; fp16 (+ loss scaling): GPUs without bf16, refused on CPU
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    grad_checkpointing: bool = False
    compile: bool = False
    distributed: Literal["ddp", "fsdp"] = "ddp"
    log_every: int = 10
    save_every: int = 100  # steps; a checkpoint is also written at the end
    keep_last: int = 2  # newest checkpoints kept; 0 keeps all. The newest (the final one) is never pruned
    eval_every: int | None = None  # steps; None: at the end of every epoch
    resume: bool = True  # continue from the latest checkpoint in out_dir if there is one
    progress: bool = True


@dataclass
class TrainConfig:
    objective: str = "mae"  # a key of internvideo.train.objectives.OBJECTIVES (checked there)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)
    # one section per objective that has settings of its own (read only by that objective)
    ava: AVASection = field(default_factory=AVASection)
    localize: LocalizeSection = field(default_factory=LocalizeSection)
    qa: QASection = field(default_factory=QASection)
    fusion: FusionSection = field(default_factory=FusionSection)
    contrastive: ContrastiveSection = field(default_factory=ContrastiveSection)
    openset: OpenSetSection = field(default_factory=OpenSetSection)
    vln: VLNSection = field(default_factory=VLNSection)


class ConfigError(UserError):
    pass


def _coerce(value: Any, tp: Any, where: str) -> Any:
    return coerce(value, tp, where, ConfigError, _build_section, numeric_strings=True)


def _build_section(cls: type, value: Any, where: str):
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {value!r}")
    return _build(cls, value, where)


def _build(cls: type, data: dict, where: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        if key in MOVED_KEYS:
            raise ConfigError(f"config key {key!r} has moved: set {MOVED_KEYS[key]}")
        raise ConfigError(f"unknown config key {key!r}; valid keys{' of ' + where if where else ''}: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML recipe and apply ``key.sub=value`` overrides (values parsed as YAML)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise MissingFile(f"config not found: {path}")
        try:
            data = yaml.safe_load(fileio.read_text(path)) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({getattr(e, 'problem', None) or e}); "
                              "quote it, e.g. --set 'data.train=\"a: b.txt\"'") from None
        _set_path(data, key.strip(), value)
    cfg = _build(TrainConfig, data)
    validate(cfg)
    return cfg


def _range(where: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (lo is None or (value > lo if lo_open else value >= lo))
    ok = ok and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        low = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        high = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        raise ConfigError(f"{where}: must be {' and '.join(x for x in (low, high) if x)}"
                          f"{' (or null)' if optional else ''}, got {value!r}")


def validate(cfg: TrainConfig) -> None:
    """Range checks of every numeric field, naming the key (types are checked when the config is built)."""
    r, o, d = cfg.run, cfg.optim, cfg.data
    for key in ("epochs", "batch_size", "log_every", "save_every"):
        _range(f"run.{key}", getattr(r, key), 1)
    _range("run.max_steps", r.max_steps, 1, optional=True)
    _range("run.eval_every", r.eval_every, 1, optional=True)
    _range("run.keep_last", r.keep_last, 0)  # 0 = keep every checkpoint
    _range("optim.lr", o.lr, 0, lo_open=True)
    for key in ("min_lr", "weight_decay", "warmup_steps", "warmup_epochs"):
        _range(f"optim.{key}", getattr(o, key), 0)
    _range("contrastive.caption_weight", cfg.contrastive.caption_weight, 0)
    for i, b in enumerate(o.betas):
        _range(f"optim.betas[{i}]", b, 0, 1, hi_open=True)
    _range("optim.layer_decay", o.layer_decay, 0, 1, lo_open=True, optional=True)
    for prefix, mult in o.lr_groups.items():
        if not isinstance(prefix, str):
            raise ConfigError(f"optim.lr_groups: keys are parameter-name prefixes (strings), got {prefix!r}")
        _range(f"optim.lr_groups[{prefix!r}]", mult, 0)
    _range("optim.clip_grad", o.clip_grad, 0, lo_open=True, optional=True)
    _range("optim.accum_steps", o.accum_steps, 1)
    _range("optim.ema", o.ema, 0, 1, lo_open=True, hi_open=True, optional=True)
    _check_schedule(cfg)
    _range("data.short_side", d.short_side, 1)
    _range("data.scale[0]", d.scale[0], 0, 1, lo_open=True)
    _range("data.scale[1]", d.scale[1], d.scale[0], 1)
    for key in ("random_erasing", "label_smoothing"):
        _range(f"data.{key}", getattr(d, key), 0, 1, hi_open=True)
    for key in ("mixup", "cutmix"):
        _range(f"data.{key}", getattr(d, key), 0)
    _range("data.num_workers", d.num_workers, 0)
    _range("data.prefetch_factor", d.prefetch_factor, 1, optional=True)
    _range("data.repeats", d.repeats, 1)
    _range("data.shuffle_buffer", d.shuffle_buffer, 0)
    if r.batch_size % d.repeats:
        raise ConfigError(f"run.batch_size ({r.batch_size}) must be a multiple of data.repeats ({d.repeats}): "
                          "it counts the augmented views, data.repeats of them per decoded clip")
    _range("vln.max_steps", cfg.vln.max_steps, 1)
    for key in ("teacher_weight", "sample_weight"):
        _range(f"vln.{key}", getattr(cfg.vln, key), 0)
    _range("vln.val_episodes", cfg.vln.val_episodes, 1, optional=True)
    m = cfg.model.overrides
    if "mask_ratio" in m:
        _range("model.overrides.mask_ratio", m["mask_ratio"], 0, 1, lo_open=True, hi_open=True)
    for key in ("num_frames", "img_size", "frame_interval", "num_classes"):
        if key in m:
            _range(f"model.overrides.{key}", m[key], 1)
    if "std" in m:
        std = m["std"]
        if not isinstance(std, (list, tuple)) or not all(isinstance(x, (int, float)) and x > 0 for x in std):
            raise ConfigError(f"model.overrides.std: must be a list of positive numbers (per-channel std), got {std!r}")


def _check_schedule(cfg: TrainConfig) -> None:
    """Cross-field checks of the learning-rate schedule (each field alone is in range; together they must make a
    schedule that warms up, then decays from lr down to min_lr). The step count is checked again, once the data
    size fixes it, by :func:`check_warmup`."""
    o, r = cfg.optim, cfg.run
    if o.min_lr > o.lr:  # the cosine would climb from lr to min_lr
        raise ConfigError(f"optim.min_lr ({o.min_lr:g}) is above optim.lr ({o.lr:g}): the schedule decays from lr to "
                          "min_lr, so min_lr must be <= lr")
    if o.warmup_steps and o.warmup_epochs:
        raise ConfigError(f"optim.warmup_steps ({o.warmup_steps}) and optim.warmup_epochs ({o.warmup_epochs:g}) are "
                          "both set; set one of them (the other to 0)")
    if o.warmup_epochs and o.warmup_epochs >= r.epochs:
        raise ConfigError(f"optim.warmup_epochs ({o.warmup_epochs:g}) must be less than run.epochs ({r.epochs}): the "
                          "run would end before warmup does")
    if o.warmup_steps and r.max_steps is not None and o.warmup_steps >= r.max_steps:
        raise ConfigError(f"optim.warmup_steps ({o.warmup_steps}) must be less than run.max_steps ({r.max_steps}): "
                          "the run would end before warmup does")


def check_warmup(warmup: int, total: int) -> None:
    """Warmup must end before the run does (``total`` optimiser steps, known once the data size is)."""
    if total > 1 and warmup >= total:
        raise ConfigError(f"the warmup ({warmup} steps, from optim.warmup_steps / optim.warmup_epochs) is not shorter "
                          f"than the run ({total} steps, from run.epochs / run.max_steps and the data size)")


def config_to_dict(cfg: TrainConfig) -> dict:
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    fileio.write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
