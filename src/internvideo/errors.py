"""The one user-error contract.

A user's mistake (a config key, an annotation line, a checkpoint, a model that
does not fit the task, a search index, a video file, a command-line value)
raises a :class:`UserError` subclass whose message names the file, line or
key. Only the command line prints it, through :func:`run_command` (``cli.main``
and ``python -m internvideo.search`` both call it): one line
``internvideo: error: ...``, exit status 2. An :class:`OSError` that names a
file (``open()`` of a missing path, a permission denied) is the user's too and
prints as ``<reason>: <file>``. Every other exception (``TypeError``, a plain
``ValueError``, ``KeyError``, ...) is a bug and keeps its traceback;
``--debug`` (or ``INTERNVIDEO_DEBUG=1``) shows the traceback of user errors
too. This module imports nothing of the package, so every layer may use it.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

__all__ = ["MissingFile", "UsageError", "UserError", "run_command", "user_error_line"]


class UserError(Exception):
    """Bad input that the user can fix; the message says what and where."""


class UsageError(UserError):
    """A bad option value or argument (``--beam 0``, overlapping class lists, a rate out of range)."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist.

    Also a :class:`FileNotFoundError`, so code that asks "is it there?" with
    ``except FileNotFoundError`` keeps working whoever raised it.
    """


def user_error_line(e: BaseException) -> str | None:
    """The one line a user error prints as (without the ``prog: error:`` prefix); None for a bug."""
    if isinstance(e, OSError) and not isinstance(e, UserError):
        if e.filename is None or not e.strerror:
            return None  # an OSError that names no file is not something the user can act on
        return f"{e.strerror}: {e.filename}"
    if not isinstance(e, UserError):
        return None
    return " ".join(str(e).split()) or type(e).__name__


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, *,
                prog: str = "internvideo") -> int:
    """``func(args)``; a user error prints one line on stderr and returns 2, anything else propagates."""
    try:
        return func(args)
    except Exception as e:  # noqa: BLE001 - sorted by user_error_line: user errors one line, bugs re-raised
        line = user_error_line(e)
        if line is None or getattr(args, "debug", False) or os.environ.get("INTERNVIDEO_DEBUG"):
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 2
