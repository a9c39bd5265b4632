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

__all__ = ["MissingFile", "UsageError", "UserError", "printable", "run_command", "user_error_line"]


class UserError(Exception):
    """Bad input that the user can fix; the message says what and where."""


class UsageError(UserError):
    """A bad option value or argument (``--beam 0``, overlapping class lists, a rate out of range)."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist.

    Also a :class:`FileNotFoundError`, so code that asks "is it there?" with
    ``except FileNotFoundError`` keeps working whoever raised it.
    """


# Characters a terminal acts on rather than shows: C0/C1 controls (ESC starts colour and cursor sequences, CR
# overwrites the line), line/paragraph separators and the bidirectional overrides that reorder what follows.
_UNSAFE = {c for c in map(chr, range(0x20))} | {chr(0x7F)} | {chr(c) for c in range(0x80, 0xA0)} | set(
    "\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object) -> str:
    """``str(text)`` with the characters a terminal would act on escaped (``\\x1b``, ``\\u202e``): a file
    name can hold any of them, and printed raw it could recolour, overwrite or reorder the output."""
    text = str(text)
    if not any(c in _UNSAFE for c in text):
        return text
    return "".join(c.encode("unicode_escape").decode("ascii") if c in _UNSAFE else c for c in text)


def user_error_line(e: BaseException) -> str | None:
    """The one line a user error prints as (without the ``prog: error:`` prefix); None for a bug."""
    if isinstance(e, OSError) and not isinstance(e, UserError):
        if e.filename is None or not e.strerror:
            return None  # an OSError that names no file is not something the user can act on
        return printable(f"{e.strerror}: {e.filename}")
    if not isinstance(e, UserError):
        return None
    return printable(" ".join(str(e).split()) or type(e).__name__)  # a file name may hold control characters


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
