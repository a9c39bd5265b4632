"""``python -m internvideo.tasks.search index|search|serve ...``: the three commands on their own.

The same functions back ``internvideo index/search/serve``; this entry point
lets them run (and be tested in a subprocess) without the main CLI.
"""
from __future__ import annotations

import argparse
import sys

from ...data import VideoError
from . import index, query, server
from .store import SearchIndexError

COMMANDS = {
    "index": ("index a folder of videos for text search", index),
    "search": ("search an index with a text query", query),
    "serve": ("serve an index as a web page (127.0.0.1 by default)", server),
}


def build_parser(prog: str = "internvideo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="text-to-video search")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, module) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).split("\n\n")[0])
        module.add_arguments(p)
        p.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (SearchIndexError, VideoError, FileNotFoundError, ValueError, TypeError) as e:
        # User errors: one line, argparse's format and exit code.
        parser.exit(2, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
