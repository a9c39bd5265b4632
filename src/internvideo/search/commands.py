"""The ``index``, ``search`` and ``serve`` sub-commands, for ``internvideo`` and ``python -m internvideo.search``."""
from __future__ import annotations

import argparse

from . import index, query, server

COMMANDS = {
    "index": ("index a folder of videos for text search (windows, embeddings, thumbnails)", index),
    "search": ("search an index with a text query", query),
    "serve": ("serve an index as a web page (127.0.0.1 by default)", server),
}


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the three commands to an ``add_subparsers()`` object."""
    for name, (help_text, module) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).split("\n\n")[0])
        module.add_arguments(p)
        p.set_defaults(func=module.main)
