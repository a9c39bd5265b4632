"""The ``internvideo`` command."""
from __future__ import annotations

import argparse
import functools
import sys
import time

import torch

from . import argtypes
from .errors import run_command


def _param_count(name: str) -> int:
    from .models import build_model, count_parameters

    with torch.device("meta"):  # no memory for ViT-H
        return count_parameters(build_model(name))


def cmd_models(args: argparse.Namespace) -> int:
    from .models import NAMED_CONFIGS, list_models

    print(f"{'model':34s} {'class':22s} {'params':>10s}")
    for name in list_models():
        cls, _ = NAMED_CONFIGS[name]
        print(f"{name:34s} {cls.__name__:22s} {_param_count(name) / 1e6:9.1f}M")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """List the models and run one tiny forward pass of each tiny model."""
    from .models import build_model, list_models
    from .models.protocols import VideoLanguageModel
    from .models.videomae import VideoMAEPretrain, tube_mask

    cmd_models(args)
    print()
    torch.manual_seed(0)
    for name in [n for n in list_models() if "tiny" in n]:
        model = build_model(name).eval()
        c = model.config
        video = torch.randn(1, 3, c.num_frames, c.img_size, c.img_size)
        t0 = time.perf_counter()
        with torch.no_grad():
            if isinstance(model, VideoMAEPretrain):
                out = model(video, tube_mask(1, c.grid, c.mask_ratio))
                desc = f"loss {out['loss'].item():.4f}, pred {tuple(out['pred'].shape)}"
            elif isinstance(model, VideoLanguageModel):
                desc = f"video embedding {tuple(model.encode_video(video).shape)}"
            else:
                desc = f"logits {tuple(model(video).shape)}"
        print(f"{name}: input {tuple(video.shape)} -> {desc} in {(time.perf_counter() - t0) * 1e3:.1f} ms")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import main as train_main

    return train_main(args.config, args.set)  # config errors are user errors: one line from main()


# ----------------------------------------------------------------------------- data, evaluation, demo


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import make_world

    print(make_world(args.out, num_videos=args.videos, seed=args.seed, size=args.size, num_frames=args.frames,
                     fps=args.fps, num_long=args.long, num_ava=args.ava, num_images=args.images))
    return 0


def _add_synth(sub) -> None:
    s = sub.add_parser("synth", help="generate the synthetic video world (clips + every annotation format)",
                       description="Write the synthetic world: action clips with classification lists, captions, "
                                   "QA and multiple choice, open-set lists, image-text pairs, long videos with "
                                   "ActivityNet-style segments and AVA-style boxes (see docs/data.md).")
    s.add_argument("out", help="output folder (created; files in it are overwritten)")
    s.add_argument("--videos", type=argtypes.positive_int, default=600, help="action clips, balanced over the 10 classes")
    s.add_argument("--seed", type=argtypes.nonnegative_int, default=0, help="everything is a function of the seed")
    s.add_argument("--size", type=argtypes.positive_int, default=64, help="frame side in pixels (even)")
    s.add_argument("--frames", type=argtypes.positive_int, default=16, help="frames per clip")
    s.add_argument("--fps", type=argtypes.positive_int, default=8, help="frame rate written into the files")
    s.add_argument("--long", type=argtypes.nonnegative_int, default=None, help="long videos for localization (default videos/10)")
    s.add_argument("--ava", type=argtypes.nonnegative_int, default=None, help="two-actor videos with boxes (default videos/10)")
    s.add_argument("--images", type=argtypes.nonnegative_int, default=None, help="image-text pairs (default videos/5)")
    s.set_defaults(func=cmd_synth)


def cmd_shard(args: argparse.Namespace) -> int:
    from .data.shards import write_shards

    index = write_shards(args.list, args.out, root=args.root, shard_size=args.shard_size,
                         shuffle_seed=args.shuffle_seed, progress=True)
    shards = index["shards"]
    print(f"{index['samples']} samples in {len(shards)} shard(s) in {args.out}: "
          f"data.shards: \"{args.out.rstrip('/')}/{{000000..{len(shards) - 1:06d}}}.tar\"")
    for entry in index["skipped"]:
        print(f"skipped (unreadable): {entry['path']}: {entry['reason']}")
    return 1 if index["skipped"] else 0


def _add_shard(sub) -> None:
    s = sub.add_parser("shard", help="write WebDataset tar shards (video bytes + JSON) from a list, for training",
                       description="Copy the videos of a classification list or video-text JSON lines, as they are, "
                                   "into WebDataset tar shards with a shards.json index (see docs/data.md, "
                                   "'Training from shards'). Unreadable videos are listed and skipped (exit status "
                                   "1); rerunning after an interruption resumes.")
    s.add_argument("list", help="classification list (path label) or video-text JSON lines (.jsonl)")
    s.add_argument("--root", default=None, help="folder the list's paths are relative to (default: the list's)")
    s.add_argument("--out", required=True, help="output folder for NNNNNN.tar and shards.json")
    s.add_argument("--shard-size", default="1GB", help="bytes per shard at most, e.g. 1GB, 500MB")
    s.add_argument("--shuffle-seed", type=int, default=None,
                   help="shuffle the samples once before sharding (default: keep the list's order)")
    s.set_defaults(func=cmd_shard)


def cmd_synth_nav(args: argparse.Namespace) -> int:
    from .data.vln_world import make_nav_world

    print(make_nav_world(args.out, houses=args.houses, unseen=args.unseen, paths_per_house=args.paths,
                         dim=args.dim, seed=args.seed, view_images=args.view_images))
    return 0


def _add_synth_nav(sub) -> None:
    s = sub.add_parser("synth-nav", help="generate the synthetic navigation world (R2R files, graphs, view features)",
                       description="Write houses as navigation graphs with landmark view features and templated "
                                   "instructions, in the R2R file formats (see docs/vln.md).")
    s.add_argument("out", help="output folder (created; files in it are overwritten)")
    s.add_argument("--houses", type=argtypes.positive_int, default=8, help="houses (scans) in all")
    s.add_argument("--unseen", type=argtypes.nonnegative_int, default=2, help="houses held out for R2R_val_unseen.json")
    s.add_argument("--paths", type=argtypes.positive_int, default=40, help="paths per house, three instructions each")
    s.add_argument("--dim", type=argtypes.positive_int, default=64, help="view feature width D")
    s.add_argument("--seed", type=argtypes.nonnegative_int, default=0, help="everything is a function of the seed")
    s.add_argument("--view-images", type=argtypes.nonnegative_int, default=0, metavar="SIZE",
                   help="also render views/{scan}/{viewpoint}/{k}.jpg, SIZE pixels square (for internvideo extract "
                        "--vln-views; default 0: none)")
    s.set_defaults(func=cmd_synth_nav)


def _add_eval(sub) -> None:
    from .experiments import fusion_ablation
    from .tasks import EVAL_COMMANDS
    from .train.heads import fit_openset_head

    # Tasks never train: the commands that do get their training from here (train/, experiments/).
    openset_help, openset_arguments, openset_main = EVAL_COMMANDS["openset"]
    commands = {**EVAL_COMMANDS, "openset": (openset_help, openset_arguments,
                                             functools.partial(openset_main, fit=fit_openset_head)),
                "fusion": ("CMA ablation: each encoder alone, late fusion, CMA with L=1/2/4 (trains each variant)",
                           fusion_ablation.add_arguments, fusion_ablation.main)}

    e = sub.add_parser("eval", help="evaluate a model on a downstream task",
                       description="Evaluate a checkpoint with the paper's protocols; each task prints a table and "
                                   "writes JSON with --out (see docs/evaluation.md).")
    tasks = e.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, (help_text, add_arguments, main) in commands.items():
        # Both spellings work: multiple-choice / multiple_choice, linear-probe / linear_probe.
        aliases = [name.replace("-", "_")] if "-" in name else []
        t = tasks.add_parser(name, aliases=aliases, help=help_text, description=help_text)
        add_arguments(t)
        t.set_defaults(func=main)


def _add_extract(sub) -> None:
    from .tasks import extract

    x = sub.add_parser("extract", help="per-video features (.npy + index.jsonl) from any of our models",
                       description=(extract.__doc__ or "").split("\n\n")[0])
    extract.add_arguments(x)
    x.set_defaults(func=extract.main)


def _add_merge(sub) -> None:
    from .tasks import merge

    m = sub.add_parser("merge", help="merge a video-language model with CLIP as the official evaluations do",
                       description=(merge.__doc__ or "").split("\n\n")[0])
    merge.add_arguments(m)
    m.set_defaults(func=merge.main)


def _add_search(sub) -> None:
    from .search.commands import add_commands

    add_commands(sub)  # index, search, serve


def _add_caption(sub) -> None:
    from .tasks import caption

    c = sub.add_parser("caption", help="generate a caption for each video (greedy or beam search)",
                       description="Print one caption per video from a multimodal model with a caption decoder; "
                                   "unreadable videos are reported and skipped (exit status 1).")
    caption.add_caption_arguments(c)
    c.set_defaults(func=caption.caption_main)


def _add_predict(sub) -> None:
    from .tasks import predict

    p = sub.add_parser("predict", help="what is in these videos? top-k classes, zero-shot labels, or a timeline",
                       description="Print a classifier's top-k classes for each video, or a video-language "
                                   "model's zero-shot labels (--labels/--classes); --every gives a timeline. "
                                   "Exit status: the number of videos that could not be read.")
    predict.add_arguments(p)
    p.set_defaults(func=predict.main)


def cmd_export_hf(args: argparse.Namespace) -> int:
    from .checkpoints.export import export_hf
    from .tasks.common import load_model_arg

    out = export_hf(load_model_arg(args.model), args.out_dir, source=args.model)
    print(f"wrote {out} ({', '.join(sorted(f.name for f in out.iterdir()))})")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .checkpoints.export import push_hf
    from .tasks.common import load_model_arg

    print(push_hf(load_model_arg(args.model), args.repo_id, source=args.model, private=args.private))
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .checkpoints.onnx import export_onnx
    from .tasks.common import load_model_arg

    for path, report in export_onnx(load_model_arg(args.model), args.out, opset=args.opset,
                                    check=not args.no_check).items():
        print(f"wrote {path}" + (f" (onnxruntime vs torch: max relative difference {report:.2e})"
                                 if report is not None else ""))
    return 0


def _add_export(sub) -> None:
    e = sub.add_parser("export", help="write a model for other tools: Hugging Face transformers, ONNX",
                       description="Export a checkpoint: `export hf` writes a transformers directory (VideoMAE) or "
                                   "ours with a model card; `export onnx` an ONNX graph checked against torch.")
    kinds = e.add_subparsers(dest="kind", required=True, metavar="FORMAT")
    h = kinds.add_parser("hf", help="a Hugging Face directory (transformers VideoMAE classes; else ours + model card)")
    h.add_argument("model", help="checkpoint directory/file or hub id hf:ORG/NAME")
    h.add_argument("out_dir", help="output directory (created)")
    h.set_defaults(func=cmd_export_hf)
    o = kinds.add_parser("onnx", help="ONNX graph(s) via torch.export, checked with onnxruntime (needs [export])")
    o.add_argument("model", help="checkpoint directory/file or hub id hf:ORG/NAME")
    o.add_argument("out", help="OUT.onnx; a video-language model writes OUT.video.onnx and OUT.text.onnx")
    o.add_argument("--opset", type=int, default=18, help="ONNX opset version")
    o.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-torch check")
    o.set_defaults(func=cmd_export_onnx)


def _add_push(sub) -> None:
    p = sub.add_parser("push", help="export a model (as `export hf`) and upload it to the Hugging Face hub")
    p.add_argument("model", help="checkpoint directory/file or hub id hf:ORG/NAME")
    p.add_argument("repo_id", metavar="ORG/NAME", help="hub repository (created if new; log in with `hf auth login`)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.set_defaults(func=cmd_push)


def _add_demo(sub) -> None:
    from . import demo

    d = sub.add_parser("demo", help="the end-to-end miniature InternVideo on the synthetic world (CPU minutes)",
                       description=(demo.__doc__ or "").split("\n\n")[0])
    demo.add_arguments(d)
    d.set_defaults(func=demo.main)


class _HelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # identity, not ==: a default of 0 is worth showing, False (an off switch) is not
        if (not text or "default" in text.lower() or default is None or default is False
                or default is argparse.SUPPRESS or default == [] or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


class _Parser(argtypes.OneLineParser):
    """Every (sub-)command's parser uses :class:`_HelpFormatter`, and reports a bad argument in one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="internvideo", description="InternVideo: general video foundation models")
    p.add_argument("--debug", action="store_true", help="show the full traceback of errors (user errors print "
                                                        "one line otherwise)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the named models with parameter counts").set_defaults(func=cmd_models)
    sub.add_parser("smoke", help="list models and run a tiny forward pass").set_defaults(func=cmd_smoke)
    t = sub.add_parser("train", help="train with a YAML recipe (launch with torchrun for several processes)")
    t.add_argument("config", nargs="?", help="YAML recipe (see configs/); omit to configure with --set only")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set optim.lr=1e-4 run.batch_size=8")
    t.set_defaults(func=cmd_train)
    _add_synth(sub)
    _add_shard(sub)
    _add_synth_nav(sub)
    _add_eval(sub)
    _add_extract(sub)
    _add_merge(sub)
    _add_search(sub)
    _add_caption(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_push(sub)
    _add_demo(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.func, args, prog=parser.prog)  # user errors: one line; bugs: the traceback


if __name__ == "__main__":
    sys.exit(main())
