"""``python -m internvideo.search index|search|serve ...``: the same commands as ``internvideo index/search/serve``."""
from __future__ import annotations

import sys

from .. import argtypes
from ..errors import run_command
from .commands import add_commands


def main(argv: list[str] | None = None) -> int:
    parser = argtypes.OneLineParser(prog="internvideo", description="text-to-video search")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of user errors too")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args.func, args, prog=parser.prog)  # the one printer of cli.main


if __name__ == "__main__":
    sys.exit(main())
