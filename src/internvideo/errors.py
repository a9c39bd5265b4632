"""The one user-error contract.

A user's mistake (a config key, an annotation line, a checkpoint, a model that
does not fit the task, a search index, a video file) raises a :class:`UserError`
subclass whose message names the file, line or key. Only ``cli.main`` prints
it, as one line (``internvideo: error: ...``, exit status 2); every other
exception is a bug and keeps its traceback. This module imports nothing of the
package, so every layer may use it.
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input that the user can fix; the message says what and where."""
