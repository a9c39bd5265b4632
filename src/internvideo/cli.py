"""The ``internvideo`` command."""
from __future__ import annotations

import argparse
import sys
import time

import torch


def _param_count(name: str) -> int:
    from .models import build_model

    with torch.device("meta"):  # no memory for ViT-H
        model = build_model(name)
    return sum(p.numel() for p in model.parameters())


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
            elif hasattr(model, "encode_video"):
                desc = f"video embedding {tuple(model.encode_video(video).shape)}"
            else:
                desc = f"logits {tuple(model(video).shape)}"
        print(f"{name}: input {tuple(video.shape)} -> {desc} in {(time.perf_counter() - t0) * 1e3:.1f} ms")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import main as train_main

    return train_main(args.config, args.set)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="internvideo", description="InternVideo: general video foundation models")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the named models with parameter counts").set_defaults(func=cmd_models)
    sub.add_parser("smoke", help="list models and run a tiny forward pass").set_defaults(func=cmd_smoke)
    t = sub.add_parser("train", help="train with a YAML recipe (launch with torchrun for several processes)")
    t.add_argument("config", nargs="?", help="YAML recipe (see configs/); omit to configure with --set only")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set optim.lr=1e-4 run.batch_size=8")
    t.set_defaults(func=cmd_train)
    # Until the end-to-end demo lands, the README's main command is the smoke run.
    sub.add_parser("demo", help="the end-to-end miniature InternVideo (currently: smoke run)").set_defaults(
        func=cmd_smoke)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
