"""The ``index``, ``search`` and ``serve`` sub-commands, for ``internvideo`` and ``python -m internvideo.search``."""
from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from ..data import VideoError
from . import index, query, server
from .store import SearchIndexError

COMMANDS = {
    "index": ("index a folder of videos for text search (windows, embeddings, thumbnails)", index),
    "search": ("search an index with a text query", query),
    "serve": ("serve an index as a web page (127.0.0.1 by default)", server),
}

#: Errors a user can fix (a wrong path, another model, bad settings): one line, not a traceback.
USER_ERRORS = (SearchIndexError, VideoError, FileNotFoundError, ValueError, TypeError)


def _guarded(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser
             ) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(main)
    def run(args: argparse.Namespace) -> int:
        try:
            return main(args)
        except USER_ERRORS as e:
            parser.exit(2, f"internvideo: error: {e}\n")
    return run


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the three commands to an ``add_subparsers()`` object."""
    for name, (help_text, module) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).split("\n\n")[0])
        module.add_arguments(p)
        p.set_defaults(func=_guarded(module.main, p))
