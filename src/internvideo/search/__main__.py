"""``python -m internvideo.search index|search|serve ...``: the same commands as ``internvideo index/search/serve``."""
from __future__ import annotations

import sys

from .. import argtypes
from .commands import add_commands


def main(argv: list[str] | None = None) -> int:
    parser = argtypes.OneLineParser(prog="internvideo", description="text-to-video search")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
